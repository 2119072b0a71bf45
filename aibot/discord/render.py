"""Text for Discord messages: splitting long text at 2,000 characters (never inside
a word when it can help it, code fences closed and reopened), and `/ping`'s line.

Pure functions of plain data (no I/O); the embeds are in `aibot.discord.embeds`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from aibot.discord.i18n import text

__all__ = [
    "MESSAGE_LIMIT",
    "ping_text",
    "split_message",
]

MESSAGE_LIMIT = 2000
_EMBED_DESCRIPTION_LIMIT = 4096
_FIELD_LIMIT = 1024
_FENCE = "```"
_CLOSE = "\n```"
# Where a long answer may be cut, best first: a paragraph, a line, a sentence, a word.
_SENTENCE_END = re.compile(r"[.!?。！？](?=\s)")


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Cut `text` into messages of at most `limit` characters, on a paragraph, line,
    sentence or word boundary, closing an open ``` fence at the end of a part and
    reopening it (with its language) at the start of the next.

    A growing text keeps its earlier parts unchanged once they are full, so a
    streaming answer only ever edits its last message (and the one before, once).
    """
    parts: list[str] = []
    fence: str | None = None
    rest = text
    while rest.strip():
        prefix = f"{fence}\n" if fence else ""
        room = limit - len(prefix)
        if len(rest) <= room:
            parts.append(prefix + rest.rstrip())
            break
        cut = _cut(rest, room - len(_CLOSE))
        chunk, rest = rest[:cut].rstrip(), rest[cut:]
        rest = rest[1:] if rest.startswith("\n") else rest
        fence = _open_fence(chunk, fence)
        parts.append(prefix + chunk + (_CLOSE if fence else ""))
    return [part for part in parts if part.strip()]


def _cut(text: str, room: int) -> int:
    """The index to cut `text` at: the last good boundary within `room` characters,
    not in its first quarter (which would make tiny messages); else a hard cut."""
    window = text[:room]
    floor = room // 4
    for boundary in ("\n\n", "\n"):
        at = window.rfind(boundary)
        if at > floor:
            return at + len(boundary)
    ends = [m.end() for m in _SENTENCE_END.finditer(window) if m.end() > floor]
    if ends:
        return ends[-1] + 1
    at = window.rfind(" ")
    return at + 1 if at > floor else room


def _open_fence(chunk: str, fence: str | None) -> str | None:
    """The fence line still open after `chunk` (e.g. "```python"), given the one open
    before it."""
    for line in chunk.split("\n"):
        stripped = line.strip()
        if stripped.startswith(_FENCE):
            fence = None if fence else stripped
    return fence


def ping_text(latencies: Iterable[tuple[int, float]], pools: Sequence[str], lang: str) -> str:
    """`/ping`: gateway latency per shard and the pools of this process."""
    shards = ", ".join(
        text(lang, "ping_shard", shard=shard, ms=_ms(latency)) for shard, latency in latencies
    )
    return text(lang, "ping", shards=shards or "-", pools=", ".join(pools) or text(lang, "none"))


def _ms(seconds: float) -> str:
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # nan before first beat
        return "-"
    return f"{seconds * 1000:.0f} ms"
