"""The embeds the bot shows: a generated image's, `/status` and `/instances`, and the
`/admin` and `/stats` pages.

Pure functions of plain data (snapshots, store rows), no I/O, so the words are
checked without Discord.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import discord

from aibot.catalogue import POOLS
from aibot.discord.i18n import command_name, duration, text
from aibot.jobs import Job, Result
from aibot.secrets import redact
from aibot.snapshots import KeyRingSnapshot, NodeSnapshot, PoolSnapshot
from aibot.store import DaySummary, DayUsage, Limits, MemberUsage

__all__ = [
    "STATS_DAYS",
    "image_embed",
    "instances_embed",
    "jobs_embed",
    "keys_embed",
    "node_line",
    "quota_embed",
    "stats_embed",
    "status_embed",
    "summary_embed",
]

STATS_DAYS = 7  # the days /stats sums up
_EMBED_DESCRIPTION_LIMIT = 4096
_FIELD_LIMIT = 1024
_EMBED_LIMIT = 5800  # Discord's 6,000 characters per message's embeds, with room to spare
_LIST_LIMIT = 15  # jobs shown per pool; an embed field holds 1,024 characters
_NODE_LIMIT = 20  # node fields: with the four pools', within Discord's 25 per embed
_KEYS_PER_RING = 10
_KEY_ORDER = {"disabled": 0, "cooling": 1, "busy": 2, "ready": 3}  # trouble first


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


def status_embed(
    snapshots: Sequence[PoolSnapshot],
    missing: Sequence[str],
    lang: str,
    *,
    off: Sequence[str] = (),
    nodes: Sequence[NodeSnapshot] | None = None,
) -> discord.Embed:
    """`/status`: one field per pool from its snapshot; pools not run here say so,
    and so do the pools that are `off` (no key). Cluster mode (`nodes` given):
    the pools summed over every live node, then a field per node."""
    embed = discord.Embed(title=text(lang, "status_title"), colour=discord.Colour.green())
    values = {snap.name: _status_line(snap, lang) for snap in snapshots}
    nowhere = "status_missing" if nodes is None else "status_nowhere"
    values.update((name, text(lang, nowhere)) for name in missing)
    values.update((name, text(lang, "status_off")) for name in off)
    order = {name: index for index, name in enumerate(POOLS)}
    for name in sorted(values, key=lambda name: order.get(name, len(order))):
        embed.add_field(name=name, value=values[name], inline=False)
    if nodes is not None:
        _add_nodes(embed, nodes, lang)
    return embed


def _status_line(snap: PoolSnapshot, lang: str) -> str:
    budget = f"{snap.budget_left:.0f}/{snap.budget_limit:.0f}" if snap.budget_limit else "-"
    return text(
        lang,
        "status_line",
        state=text(lang, f"state_{snap.state}") if snap.state else "-",
        busy=snap.workers_busy,
        total=snap.workers_total,
        queued=snap.queued,
        queue_size=snap.queue_size,
        done=snap.done,
        failed=snap.failed,
        p50=_latency(snap.p50_ms, snap.done + snap.failed),
        p95=_latency(snap.p95_ms, snap.done + snap.failed),
        keys_ok=snap.keys_healthy,
        keys=snap.keys_total,
        budget=budget,
    )


def instances_embed(
    routes: Sequence[tuple[str, Sequence[str], Sequence[str]]],
    here: Sequence[str],
    lang: str,
    *,
    off: Sequence[str] = (),
    nodes: Sequence[NodeSnapshot] | None = None,
) -> discord.Embed:
    """`/instances`: for each pool, its commands, channel patterns and where it runs
    (nowhere, for the pools that are `off`). Cluster mode (`nodes` given): the
    live nodes that run each pool, then a field per node."""
    embed = discord.Embed(title=text(lang, "instances_title"), colour=discord.Colour.blurple())
    for pool, patterns, commands in routes:
        value = text(
            lang,
            "instances_line",
            commands=", ".join(f"/{c}" for c in commands) or text(lang, "none"),
            channels=_clip(", ".join(f"`{p}`" for p in patterns), 600) or text(lang, "none"),
            where=_where(pool, here, off, nodes, lang),
        )
        embed.add_field(name=pool, value=value, inline=False)
    if nodes is not None:
        _add_nodes(embed, nodes, lang)
    return embed


def _where(
    pool: str,
    here: Sequence[str],
    off: Sequence[str],
    nodes: Sequence[NodeSnapshot] | None,
    lang: str,
) -> str:
    if pool in off:
        return text(lang, "status_off")
    if nodes is not None:
        names = [node.name for node in nodes if pool in node.pools]
        return _clip(", ".join(names), 300) if names else text(lang, "nowhere")
    return text(lang, "here" if pool in here else "elsewhere")


def _add_nodes(embed: discord.Embed, nodes: Sequence[NodeSnapshot], lang: str) -> None:
    """A field per live node (this process first): its pools with their free
    slots, its shards, version and age; the rest counted in the footer."""
    ordered = sorted(nodes, key=lambda node: (not node.here, node.name))
    for shown, node in enumerate(ordered):
        name = text(lang, "node_name_here" if node.here else "node_name", name=node.name)
        value = node_line(node, lang)
        if shown >= _NODE_LIMIT or len(embed) + len(name) + len(value) > _EMBED_LIMIT:
            embed.set_footer(text=text(lang, "node_more", count=len(ordered) - shown))
            break
        embed.add_field(name=name, value=value, inline=False)


def node_line(node: NodeSnapshot, lang: str, *, now: float | None = None) -> str:
    """One node in words: pools (free slots), shards, version, time up."""
    pools = ", ".join(
        text(lang, "node_pool", pool=pool, free=node.free_slots.get(pool, 0)) for pool in node.pools
    )
    return _clip(
        text(
            lang,
            "node_line",
            pools=pools or text(lang, "none"),
            shards=", ".join(map(str, node.shards)) or "-",
            version=node.version or "?",
            age=duration(node.age(now), lang),
        )
    )


def keys_embed(
    snapshots: Sequence[PoolSnapshot], lang: str, *, secrets: Iterable[str] = ()
) -> discord.Embed:
    """`/admin keys`: one field per pool and provider, a line per (redacted) key, keys
    in trouble first. `secrets` are masked should a provider's reason quote one."""
    embed = discord.Embed(title=text(lang, "admin_keys_title"), colour=discord.Colour.gold())
    rings = [(snap.name, ring) for snap in snapshots for ring in snap.rings]
    for shown, (pool, ring) in enumerate(rings):
        name, value = f"{pool} · {ring.provider}", _ring_lines(ring, lang, tuple(secrets))
        # Discord refuses a message whose embeds hold over 6,000 characters in all.
        if len(embed) + len(name) + len(value) > _EMBED_LIMIT:
            embed.set_footer(text=text(lang, "admin_more", count=len(rings) - shown))
            break
        embed.add_field(name=name, value=value, inline=False)
    if not rings:
        embed.description = text(lang, "admin_keys_none")
    return embed


def _ring_lines(ring: KeyRingSnapshot, lang: str, secrets: tuple[str, ...]) -> str:
    keys = sorted(ring.keys, key=lambda key: _KEY_ORDER.get(key.state, 0))
    lines = []
    for key in keys[:_KEYS_PER_RING]:
        line = text(
            lang,
            "admin_key_line",
            key_id=key.key_id,
            state=text(lang, f"admin_key_{key.state}"),
            calls=key.calls,
            limited=key.rate_limited,
            failures=key.failures,
        )
        if key.cooling_for > 0:
            line += text(lang, "admin_key_rest", wait=duration(key.cooling_for, lang))
        if key.reason:
            line += f" · {_masked(key.reason, secrets)}"
        lines.append(line)
    if len(keys) > _KEYS_PER_RING:
        lines.append(text(lang, "admin_more", count=len(keys) - _KEYS_PER_RING))
    return _clip("\n".join(lines) or "-")


def _masked(words: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret in words:
            words = words.replace(secret, redact(secret))
    return words


def quota_embed(
    limits: Mapping[str, Limits], bot_budgets: Mapping[str, int], lang: str
) -> discord.Embed:
    """`/admin quota`: the limits in force on this server, one field per pool. A
    server budget that is the bot's (`bot_budgets`, every server's together) says so."""
    embed = discord.Embed(title=text(lang, "admin_quota_title"), colour=discord.Colour.gold())
    for pool, limit in limits.items():
        unlimited = text(lang, "admin_quota_unlimited")
        budget = f"{limit.daily_budget:,}" if limit.daily_budget else unlimited
        if limit.daily_budget and limit.daily_budget == bot_budgets.get(pool):
            budget = text(lang, "admin_quota_bot_budget", budget=budget)
        value = text(
            lang,
            "admin_quota_line",
            cooldown=duration(limit.cooldown, lang) if limit.cooldown > 0 else unlimited,
            quota=f"{limit.daily_quota:,}" if limit.daily_quota else unlimited,
            budget=budget,
        )
        embed.add_field(name=pool, value=value, inline=False)
    return embed


def jobs_embed(held: Mapping[str, Sequence[tuple[Job, str]]], lang: str) -> discord.Embed:
    """`/admin jobs`: running then queued jobs of each pool, with the ids to cancel."""
    embed = discord.Embed(title=text(lang, "admin_jobs_title"), colour=discord.Colour.gold())
    for pool, entries in held.items():
        if not entries:
            continue
        lines = [
            text(
                lang,
                "admin_job_line",
                id=job.id,
                state=text(lang, f"admin_job_{state}"),
                command=command_name(job.command, lang),
                user=job.user_id,
            )
            for job, state in entries[:_LIST_LIMIT]
        ]
        if len(entries) > _LIST_LIMIT:
            lines.append(text(lang, "admin_more", count=len(entries) - _LIST_LIMIT))
        embed.add_field(name=pool, value=_clip("\n".join(lines)), inline=False)
    if not embed.fields:
        embed.description = text(lang, "admin_jobs_none")
    return embed


def stats_embed(
    rows: Sequence[DayUsage], today: str, top: Sequence[MemberUsage] | None, lang: str
) -> discord.Embed:
    """`/stats`: today's and the window's figures per pool and provider; the top
    members when `top` is given (admins only)."""
    embed = discord.Embed(title=text(lang, "stats_title"), colour=discord.Colour.blurple())
    windows = (
        (text(lang, "stats_today", day=today), [r for r in rows if r.day == today]),
        (text(lang, "stats_week", days=STATS_DAYS), rows),
    )
    for name, chosen in windows:
        lines = [
            text(lang, "stats_line", pool=pool, provider=provider, jobs=jobs, failed=failed)
            + f" · {_dollars(cost)}"
            for (pool, provider), (jobs, failed, cost) in _totals(chosen).items()
        ]
        embed.add_field(name=name, value=_clip("\n".join(lines) or text(lang, "stats_none")))
    if top is not None:
        lines = [
            text(lang, "stats_top_line", rank=rank, user=member.user_id, jobs=member.jobs)
            + f" · {_dollars(member.cost)}"
            for rank, member in enumerate(top, start=1)
        ]
        embed.add_field(
            name=text(lang, "stats_top", days=STATS_DAYS),
            value=_clip("\n".join(lines) or text(lang, "stats_none")),
            inline=False,
        )
    return embed


def summary_embed(summary: DaySummary, lang: str) -> discord.Embed:
    """The daily summary in the statistics channel: a day's jobs, failures and
    estimated cost, per pool and provider, and its busiest hour."""
    totals = text(
        lang,
        "summary_totals",
        jobs=summary.jobs,
        failed=summary.failed,
        cost=_dollars(summary.cost),
    )
    if summary.busiest_hour is not None:
        hour, jobs = summary.busiest_hour
        busiest = text(lang, "summary_busiest", start=hour, end=(hour + 1) % 24, jobs=jobs)
        totals = f"{totals}\n{busiest}"
    embed = discord.Embed(
        title=text(lang, "summary_title", day=summary.day),
        description=totals,
        colour=discord.Colour.blurple(),
    )
    lines = [
        text(lang, "stats_line", pool=pool, provider=provider, jobs=jobs, failed=failed)
        + f" · {_dollars(cost)}"
        for (pool, provider), (jobs, failed, cost) in _totals(summary.rows).items()
    ]
    embed.add_field(
        name=text(lang, "summary_pools"),
        value=_clip("\n".join(lines) or text(lang, "stats_none")),
        inline=False,
    )
    return embed


def _totals(rows: Iterable[DayUsage]) -> dict[tuple[str, str], tuple[int, int, float]]:
    """(jobs, failed, cost) per (pool, provider), summed over days, in pool order."""
    totals: dict[tuple[str, str], tuple[int, int, float]] = {}
    for row in rows:
        jobs, failed, cost = totals.get((row.pool, row.provider), (0, 0, 0.0))
        totals[row.pool, row.provider] = (jobs + row.jobs, failed + row.failed, cost + row.cost)
    order = {name: index for index, name in enumerate(POOLS)}
    return dict(sorted(totals.items(), key=lambda item: (order.get(item[0][0], 99), item[0])))


def _dollars(cost: float) -> str:
    # Estimates of fractions of a cent: four places below a dollar, and never a
    # "$0.0000" that would read as free.
    if cost <= 0:
        return "$0"
    if cost < 0.0001:
        return "<$0.0001"
    return f"${cost:,.2f}" if cost >= 1 else f"${cost:.4f}"


def _latency(ms: float, finished: int) -> str:
    """A latency; "-" until a job finished. Under a virtual clock (SimCord, the
    demo) no time passes while the bot works: those jobs took "<1 ms"."""
    if not finished:
        return "-"
    return "<1 ms" if ms < 1 else f"{ms:.0f} ms"


def _clip(value: str, limit: int = _FIELD_LIMIT) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"
