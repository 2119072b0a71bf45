"""Secrets made safe to show: API keys redacted, fingerprinted, scrubbed from text.

A key is never shown whole: in logs, errors, snapshots and the status panel it
appears as `redact(key)` (`sk-...abcd`); journals and the ledger find a key again
by `fingerprint(key)`; text that came from a provider (an error message may quote
the key it was sent) passes through `scrub` before it becomes an error's detail.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

__all__ = ["fingerprint", "redact", "safe_to_show", "scrub"]

# Anything shaped like a key or a bearer token, whoever's it is.
_SECRET_PATTERN = re.compile(r"(sk-|key-|Bearer\s+)[\w\-.]{4,}", re.IGNORECASE)
# How much provider text an error's detail keeps.
_DETAIL_LIMIT = 200


def redact(secret: str) -> str:
    """The form of a secret that may be shown: `sk-...abcd`. Short secrets show
    at most two characters (`...cd`), tiny ones none; never the whole value."""
    if len(secret) >= 16:
        return f"{secret[:3]}...{secret[-4:]}"
    if len(secret) >= 6:
        return f"...{secret[-2:]}"
    return "..."


def fingerprint(secret: str) -> str:
    """A stable, non-reversible name for a key (sha256, 16 hex digits): what
    journals and the ledger store to find the same key again."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def safe_to_show(value: str, secrets: Iterable[str]) -> str:
    """`value` as it is, or redacted when it holds a secret: something shaped like
    a key or a bearer token, or one of `secrets` (each may be a comma-separated list)."""
    listed = (s.strip() for many in secrets for s in many.split(","))
    if _SECRET_PATTERN.search(value) or any(s and s in value for s in listed):
        return redact(value)
    return value


def scrub(text: str, key: str | None = None, *, limit: int = _DETAIL_LIMIT) -> str:
    """Provider text made safe for a detail: the key (and anything shaped like a
    key) redacted, whitespace collapsed, cut to `limit` characters."""
    if key:
        text = text.replace(key, redact(key))
    text = _SECRET_PATTERN.sub(lambda m: m.group(1) + "...", text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
