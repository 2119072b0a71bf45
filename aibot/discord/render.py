"""Turning results and snapshots into Discord messages: splitting long text at 2,000
characters, the image embed, and the admin commands' pages.

Pure functions of plain data (no I/O), so the Reply and the admin cog stay short and
the rules are tested directly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import discord

from aibot.discord.i18n import text
from aibot.jobs import Result
from aibot.snapshots import PoolSnapshot

__all__ = [
    "MESSAGE_LIMIT",
    "image_embed",
    "instances_embed",
    "ping_text",
    "split_message",
    "status_embed",
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


def image_embed(result: Result, lang: str, *, prompt: str, filename: str) -> discord.Embed:
    """The embed around a generated image: the prompt, provider, model, seed, time."""
    meta = result.meta
    embed = discord.Embed(
        title=text(lang, "image_title"),
        description=_clip(prompt, _EMBED_DESCRIPTION_LIMIT),
        colour=discord.Colour.blurple(),
    )
    embed.set_image(url=f"attachment://{filename}")
    for key, value in (
        ("field_provider", meta.get("provider")),
        ("field_model", meta.get("model")),
        ("field_seed", meta.get("seed")),
    ):
        if value not in (None, ""):
            embed.add_field(name=text(lang, key), value=_clip(str(value), _FIELD_LIMIT))
    seconds = meta.get("seconds")
    if isinstance(seconds, int | float):
        embed.add_field(name=text(lang, "field_time"), value=f"{seconds:.1f} s")
    return embed


def ping_text(latencies: Iterable[tuple[int, float]], pools: Sequence[str], lang: str) -> str:
    """`/ping`: gateway latency per shard and the pools of this process."""
    shards = ", ".join(
        text(lang, "ping_shard", shard=shard, ms=_ms(latency)) for shard, latency in latencies
    )
    return text(lang, "ping", shards=shards or "-", pools=", ".join(pools) or text(lang, "none"))


def status_embed(
    snapshots: Sequence[PoolSnapshot], missing: Sequence[str], lang: str
) -> discord.Embed:
    """`/status`: one field per pool from its snapshot; pools not run here say so."""
    embed = discord.Embed(title=text(lang, "status_title"), colour=discord.Colour.green())
    for snap in snapshots:
        budget = f"{snap.budget_left:.0f}/{snap.budget_limit:.0f}" if snap.budget_limit else "-"
        value = text(
            lang,
            "status_line",
            state=text(lang, f"state_{snap.state}") if snap.state else "-",
            busy=snap.workers_busy,
            total=snap.workers_total,
            queued=snap.queued,
            queue_size=snap.queue_size,
            done=snap.done,
            failed=snap.failed,
            p50=_latency(snap.p50_ms),
            p95=_latency(snap.p95_ms),
            keys_ok=snap.keys_healthy,
            keys=snap.keys_total,
            budget=budget,
        )
        embed.add_field(name=snap.name, value=value, inline=False)
    for name in missing:
        embed.add_field(name=name, value=text(lang, "status_missing"), inline=False)
    return embed


def instances_embed(
    routes: Sequence[tuple[str, Sequence[str], Sequence[str]]],
    here: Sequence[str],
    lang: str,
) -> discord.Embed:
    """`/instances`: for each pool, its commands, channel patterns and where it runs."""
    embed = discord.Embed(title=text(lang, "instances_title"), colour=discord.Colour.blurple())
    for pool, patterns, commands in routes:
        value = text(
            lang,
            "instances_line",
            commands=", ".join(f"/{c}" for c in commands) or text(lang, "none"),
            channels=_clip(", ".join(f"`{p}`" for p in patterns), 600) or text(lang, "none"),
            where=text(lang, "here" if pool in here else "elsewhere"),
        )
        embed.add_field(name=pool, value=value, inline=False)
    return embed


def _ms(seconds: float) -> str:
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # nan before first beat
        return "-"
    return f"{seconds * 1000:.0f} ms"


def _latency(ms: float) -> str:
    return f"{ms:.0f} ms" if ms else "-"


def _clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"
