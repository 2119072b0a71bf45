"""What a provider's answer says about its rate limits, read in one place.

- `retry_after`: how long a 429 asks us to wait (`retry-after-ms`, or
  `retry-after` as seconds or an HTTP date).
- `rate_headers`: the `x-ratelimit-*` headers of an answer, which a provider
  client keeps on its result for the key ring.
- `requests_left`: what the ring reads from those to tighten a key's pace
  (`x-ratelimit-remaining-requests`, `x-ratelimit-reset-requests`).
- `parse_duration`: OpenAI's durations (`12ms`, `6m0s`, `1h2m3.5s`).

Header names are matched whatever their case: aiohttp's and httpx's header
mappings ignore case, a plain dict (a test's, or `rate_headers`' own) does not.
Everything here is pure: no clock but the wall clock an HTTP date needs.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Mapping

__all__ = ["header", "parse_duration", "rate_headers", "requests_left", "retry_after"]

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_RATE_PREFIX = "x-ratelimit-"


def header(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header `name` (lower case), whatever the mapping's case handling."""
    value = headers.get(name)
    if value is not None:
        return value
    return next((v for k, v in headers.items() if k.lower() == name), None)


def parse_duration(text: str | None) -> float | None:
    """Seconds in an OpenAI rate-limit duration (`12ms`, `1s`, `6m0s`,
    `1h2m3.5s`) or a plain number of seconds; None when it is neither."""
    if not text:
        return None
    text = text.strip()
    seconds = _seconds(text)
    if seconds is not None:
        return seconds
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait after a 429, from `retry-after-ms` or `retry-after`
    (seconds or an HTTP date; a date already past is 0); None when neither says."""
    if not headers:
        return None
    millis = _seconds(header(headers, "retry-after-ms"))
    if millis is not None:
        return millis / 1000
    value = header(headers, "retry-after")
    if value is None:
        return None
    seconds = _seconds(value)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def rate_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """The `x-ratelimit-*` headers of an answer, names lower-cased: what a
    provider result hands to `Lease.ok`."""
    if not headers:
        return {}
    found = {}
    for name, value in headers.items():
        lowered = name.lower()
        if lowered.startswith(_RATE_PREFIX):
            found[lowered] = value
    return found


def requests_left(headers: Mapping[str, str]) -> tuple[int, float] | None:
    """(requests left, seconds until that count resets) from
    `x-ratelimit-remaining-requests` and `x-ratelimit-reset-requests`; None
    unless both are there and readable."""
    remaining = _seconds(header(headers, "x-ratelimit-remaining-requests"))
    reset = parse_duration(header(headers, "x-ratelimit-reset-requests"))
    if remaining is None or reset is None:
        return None
    return int(remaining), reset


def _seconds(text: str | None) -> float | None:
    """A plain non-negative number (a negative one is 0); None when `text` is
    not a finite number."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return max(0.0, value) if math.isfinite(value) else None
