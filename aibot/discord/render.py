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
    "fences_closed",
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
# A fence line: ``` and an info string with no backtick (a line such as ```x``` is
# code inline, not a fence). What reopens a fence in the next part is ``` and the
# info string's language word, if it is a short one.
_FENCE_LINE = re.compile(r"```[^`]*")
_LANGUAGE = re.compile(r"[\w+#.-]{1,20}")


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Cut `text` into messages of at most `limit` characters, on a paragraph, line,
    sentence or word boundary, closing an open ``` fence at the end of a part and
    reopening it (with its language) at the start of the next.

    A growing text keeps its earlier parts unchanged once they are full, so a
    streaming answer only ever edits its last message (and the one before, once).
    """
    parts: list[str] = []
    fence: str | None = None
    in_line = False  # `rest` starts in the middle of a line a hard cut split
    rest = text
    while rest.strip():
        prefix = f"{fence}\n" if fence else ""
        room = limit - len(prefix)
        if len(rest) <= room:
            parts.append(prefix + rest.rstrip())
            break
        cut = _cut(rest, room - len(_CLOSE))
        chunk, rest = rest[:cut], rest[cut:]
        # Fences are told by whole lines: a line cut in two is read whole, with
        # the part its start is in.
        cut_in_line = not chunk.endswith("\n") and not rest.startswith("\n")
        lines = (chunk + rest.partition("\n")[0] if cut_in_line else chunk).split("\n")
        fence = _open_fence(lines[1:] if in_line else lines, fence)
        in_line = cut_in_line
        rest = rest[1:] if rest.startswith("\n") else rest
        parts.append(prefix + chunk.rstrip() + (_CLOSE if fence else ""))
    return [part for part in parts if part.strip()]


def fences_closed(text: str) -> str:
    """`text` with a ``` fence it leaves open closed: what is added after it (a
    notice that the answer stops there) is not read as code."""
    return text.rstrip() + _CLOSE if _open_fence(text.split("\n"), None) else text


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


def _open_fence(lines: Iterable[str], fence: str | None) -> str | None:
    """The fence still open after `lines` ("```" or e.g. "```python"), given the one
    open before them. Short whatever the fence line was: it starts every later part."""
    for line in lines:
        stripped = line.strip()
        if not _FENCE_LINE.fullmatch(stripped):
            continue
        if fence:
            fence = None
        else:
            words = stripped[len(_FENCE) :].split()
            language = words[0] if words and _LANGUAGE.fullmatch(words[0]) else ""
            fence = _FENCE + language
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
