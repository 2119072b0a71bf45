"""Running the bot from inside Discord: `/admin` for server managers, and the members'
own `/stats` and `/reset` (ko: `/관리`, `/통계`, `/초기화`).

- `/admin keys | quota | pause | resume | jobs`: Discord shows the group to members
  with Manage Server (its default permission). A server may show it to more members
  in its own command settings, so a check runs too: it lets in Manage Server and the
  role named by `AIBOT_ADMIN_ROLE` (a name or an id) and refuses everyone else,
  privately. Every use is written to the ledger's admin actions.
- `/stats`: this server's jobs, failures and estimated cost per pool and provider,
  today and over the last 7 days; admins also see the top 10 members.
- `/reset`: forgets the member's /chat conversation in this channel.

Every answer is private (ephemeral) and immediate: nothing here becomes a job.
Pausing a pool and key health are about this process, so they span every server
the bot is in; jobs are listed and cancelled only within the admin's own server.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import discord
from discord import app_commands
from discord.ext import commands

from aibot.discord.i18n import duration, error_text, language, text
from aibot.discord.reply import NO_MENTIONS
from aibot.jobs import AibotError, Job
from aibot.pools.base import Pool
from aibot.secrets import redact
from aibot.settings import COMMAND_POOL, POOLS, Settings
from aibot.snapshots import KeyRingSnapshot, PoolSnapshot
from aibot.store import DayUsage, Limits, MemberUsage, Store

__all__ = ["Host", "ManageCog", "is_admin"]

log = logging.getLogger("aibot.discord.manage")

# Pools whose limits members spend (a command's role), and every pool for pause/resume.
_LIMITED_POOLS = tuple(dict.fromkeys(COMMAND_POOL.values()))
_LIMITED_CHOICES = [app_commands.Choice(name=p, value=p) for p in _LIMITED_POOLS]
_POOL_CHOICES = [app_commands.Choice(name=p, value=p) for p in POOLS]
_LIST_LIMIT = 15  # jobs shown per pool; an embed field holds 1,024 characters
_FIELD_LIMIT = 1024
_EMBED_LIMIT = 5800  # Discord's 6,000 characters per message's embeds, with room to spare
_KEYS_PER_RING = 10
_KEY_ORDER = {"disabled": 0, "cooling": 1, "busy": 2, "ready": 3}  # trouble first
_STATS_DAYS = 7
_TOP_MEMBERS = 10


class Host(Protocol):
    """What the cog reads from the bot (`AibotBot`), at the time of each command:
    the store and pools exist only once `setup_hook` has run."""

    settings: Settings
    pools: Mapping[str, Pool]
    store: Store | None


def is_admin(interaction: discord.Interaction, admin_role: str | None) -> bool:
    """Manage Server (or Administrator) in this server, or the admin role by id or
    name (case-insensitive). Never true outside a server."""
    member = interaction.user
    if interaction.guild_id is None or not isinstance(member, discord.Member):
        return False
    # Discord computes these for the interaction; no cache is needed.
    permissions = interaction.permissions
    if permissions.administrator or permissions.manage_guild:
        return True
    wanted = (admin_role or "").strip().removeprefix("@")
    if not wanted:
        return False
    return any(str(r.id) == wanted or r.name.casefold() == wanted.casefold() for r in member.roles)


def _admin_only(interaction: discord.Interaction) -> bool:
    cog = getattr(interaction.command, "binding", None)
    return isinstance(cog, ManageCog) and cog.is_admin(interaction)


class _AdminGroup(app_commands.Group):
    """`/admin`: its check covers every subcommand, including ones added later."""

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        return _admin_only(interaction)


class ManageCog(commands.Cog, name="manage"):
    """`/admin`, `/stats` and `/reset`; see the module docstring."""

    admin = _AdminGroup(
        name="admin",
        description="Run the bot: key health, limits, pauses and jobs",
        guild_only=True,
        default_permissions=discord.Permissions(manage_guild=True),
    )

    def __init__(self, host: Host) -> None:
        self.host = host

    def is_admin(self, interaction: discord.Interaction) -> bool:
        return is_admin(interaction, self.host.settings.admin_role)

    # ---------------------------------------------------------------- /admin

    @admin.command(name="keys", description="Health of every key per pool and provider (redacted)")
    async def keys(self, interaction: discord.Interaction) -> None:
        lang = language(interaction.locale)
        snapshots = [pool.snapshot() for pool in self.host.pools.values()]
        self._record(interaction, "keys", f"{sum(len(s.rings) for s in snapshots)} key rings")
        secrets = self.host.settings.secrets()
        await _private(interaction, embed=keys_embed(snapshots, lang, secrets=secrets))

    @admin.command(
        name="quota", description="Show or set this server's cooldown, daily quota and daily budget"
    )
    @app_commands.describe(
        pool="The pool whose limits to show or change",
        cooldown="Seconds a member waits between two commands",
        daily_quota="Commands per member per day (0: no limit)",
        daily_budget="Commands per day for the whole server (0: no limit)",
        reset="Go back to the bot's settings for this pool",
    )
    @app_commands.choices(pool=_LIMITED_CHOICES)
    async def quota(
        self,
        interaction: discord.Interaction,
        pool: str | None = None,
        cooldown: app_commands.Range[float, 0, 86_400] | None = None,
        daily_quota: app_commands.Range[int, 0, 10_000_000] | None = None,
        daily_budget: app_commands.Range[int, 0, 100_000_000] | None = None,
        reset: bool = False,
    ) -> None:
        lang = language(interaction.locale)
        gate = self._store().gate
        guild_id = interaction.guild_id or 0
        values = {"cooldown": cooldown, "daily_quota": daily_quota, "daily_budget": daily_budget}
        given = {name: value for name, value in values.items() if value is not None}
        if (given or reset) and pool is None:
            await _private(interaction, text(lang, "admin_quota_pick_pool"))
            return
        notes = []
        if pool is not None and reset:
            await gate.clear_limits(guild_id, pool)
            self._record(interaction, "quota.reset", pool)
            notes.append(text(lang, "admin_quota_reset", pool=pool))
        if pool is not None and given:
            await gate.set_limits(guild_id, pool, **given)
            detail = ", ".join(f"{name}={value:g}" for name, value in given.items())
            self._record(interaction, "quota.set", f"{pool}: {detail}")
            notes.append(text(lang, "admin_quota_saved", pool=pool))
        if not notes:
            self._record(interaction, "quota.show", pool or "all")
        shown = (pool,) if pool else _LIMITED_POOLS
        limits = {name: gate.limits(guild_id, name) for name in shown}
        await _private(interaction, "\n".join(notes) or None, embed=quota_embed(limits, lang))

    @admin.command(name="pause", description="Stop a pool taking new jobs; running ones finish")
    @app_commands.describe(pool="The pool to pause")
    @app_commands.choices(pool=_POOL_CHOICES)
    async def pause(self, interaction: discord.Interaction, pool: str) -> None:
        await self._switch(interaction, pool, pause=True)

    @admin.command(name="resume", description="Let a paused pool take jobs again")
    @app_commands.describe(pool="The pool to resume")
    @app_commands.choices(pool=_POOL_CHOICES)
    async def resume(self, interaction: discord.Interaction, pool: str) -> None:
        await self._switch(interaction, pool, pause=False)

    @admin.command(
        name="jobs", description="List this server's queued and running jobs, or cancel one"
    )
    @app_commands.describe(
        pool="Only this pool's jobs", cancel="The id of a job to cancel (from the list)"
    )
    @app_commands.choices(pool=_POOL_CHOICES)
    async def jobs(
        self,
        interaction: discord.Interaction,
        pool: str | None = None,
        cancel: app_commands.Range[str, 1, 64] | None = None,
    ) -> None:
        lang = language(interaction.locale)
        pools = {n: p for n, p in self.host.pools.items() if pool in (None, n)}
        held = {n: _jobs_of(p, interaction.guild_id) for n, p in pools.items()}
        if cancel is None:
            self._record(interaction, "jobs", pool or "all")
            await _private(interaction, embed=jobs_embed(held, lang))
            return
        job_id = cancel.strip().strip("`")
        for name, entries in held.items():
            for job, _state in entries:
                if job.id == job_id and pools[name].cancel(job_id):
                    detail = f"{name} {job_id} /{job.command} of {job.user_id}"
                    self._record(interaction, "cancel", detail)
                    words = text(
                        lang, "admin_cancelled", id=job_id, command=job.command, user=job.user_id
                    )
                    await _private(interaction, words)
                    return
        # Recorded too: an id from another server is someone probing.
        self._record(interaction, "cancel", f"{job_id}: not found on this server")
        await _private(interaction, text(lang, "admin_cancel_unknown", id=job_id))

    async def _switch(self, interaction: discord.Interaction, name: str, *, pause: bool) -> None:
        lang = language(interaction.locale)
        pool = self.host.pools.get(name)
        if pool is None:
            await _private(interaction, text(lang, "admin_pool_missing", pool=name))
            return
        before = pool.snapshot().state
        if pause:
            pool.pause()
        else:
            pool.resume()
        after = pool.snapshot().state
        self._record(interaction, "pause" if pause else "resume", f"{name}: {before} -> {after}")
        if after == ("paused" if pause else "running"):
            words = text(lang, "admin_paused" if pause else "admin_resumed", pool=name)
        else:
            words = text(lang, "admin_pool_state", pool=name, state=text(lang, f"state_{after}"))
        await _private(interaction, words)

    # ------------------------------------------------------ /stats, /reset

    @app_commands.command(
        name="stats", description="Jobs, failures and estimated cost today and over the last 7 days"
    )
    @app_commands.guild_only()
    async def stats(self, interaction: discord.Interaction) -> None:
        lang = language(interaction.locale)
        store = self._store()
        # Reading the ledger is a database query: answer within Discord's 3 s first.
        await interaction.response.defer(ephemeral=True, thinking=True)
        rows = await store.ledger.stats(interaction.guild_id, _STATS_DAYS)
        top = None
        if self.is_admin(interaction):
            top = await store.ledger.top_members(interaction.guild_id, _STATS_DAYS, _TOP_MEMBERS)
        embed = stats_embed(rows, store.calendar.day(), top, lang)
        await interaction.followup.send(embed=embed, ephemeral=True, allowed_mentions=NO_MENTIONS)

    @app_commands.command(
        name="reset", description="Forget your /chat conversation in this channel"
    )
    async def reset(self, interaction: discord.Interaction) -> None:
        lang = language(interaction.locale)
        channel_id = interaction.channel_id or 0
        removed = await self._store().memory.reset(channel_id, interaction.user.id)
        words = text(lang, "reset_done" if removed else "reset_empty")
        await _private(interaction, words)

    # ---------------------------------------------------------------- errors

    async def cog_app_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        lang = language(interaction.locale)
        if isinstance(error, app_commands.CheckFailure):
            words = text(lang, "admin_refused")
        else:
            name = interaction.command.qualified_name if interaction.command else "?"
            log.error("/%s failed", name, exc_info=error)
            words = error_text(AibotError("internal"), lang)
        try:
            await _private(interaction, words)
        except discord.HTTPException as failure:
            log.warning("could not tell the member /%s failed: %r", interaction.command, failure)

    # --------------------------------------------------------------- helpers

    def _store(self) -> Store:
        store = self.host.store
        if store is None:
            raise RuntimeError("the store is not open (the bot is not started)")
        return store

    def _record(self, interaction: discord.Interaction, action: str, detail: str) -> None:
        self._store().ledger.record_admin(interaction.guild_id, interaction.user.id, action, detail)


async def _private(
    interaction: discord.Interaction, content: str | None = None, **message: Any
) -> None:
    """Answer privately: the response, or a private followup once it was used."""
    if interaction.response.is_done():
        await interaction.followup.send(
            content or discord.utils.MISSING,
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
            **message,
        )
        return
    await interaction.response.send_message(
        content, ephemeral=True, allowed_mentions=NO_MENTIONS, **message
    )


def _jobs_of(pool: Pool, guild_id: int | None) -> list[tuple[Job, str]]:
    """A pool's running and queued jobs from one server (an admin sees only their own)."""
    return [(job, state) for job, state in pool.jobs() if job.guild_id == guild_id]


# ------------------------------------------------------------------ pages
# Pure functions of plain data, so the words are checked without Discord.


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


def quota_embed(limits: Mapping[str, Limits], lang: str) -> discord.Embed:
    """`/admin quota`: the limits in force on this server, one field per pool."""
    embed = discord.Embed(title=text(lang, "admin_quota_title"), colour=discord.Colour.gold())
    for pool, limit in limits.items():
        unlimited = text(lang, "admin_quota_unlimited")
        value = text(
            lang,
            "admin_quota_line",
            cooldown=duration(limit.cooldown, lang) if limit.cooldown > 0 else unlimited,
            quota=f"{limit.daily_quota:,}" if limit.daily_quota else unlimited,
            budget=f"{limit.daily_budget:,}" if limit.daily_budget else unlimited,
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
                command=job.command,
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
        (text(lang, "stats_week", days=_STATS_DAYS), rows),
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
            name=text(lang, "stats_top", days=_STATS_DAYS),
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


def _clip(value: str) -> str:
    return value if len(value) <= _FIELD_LIMIT else value[: _FIELD_LIMIT - 1] + "…"
