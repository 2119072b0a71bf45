"""Running the bot from inside Discord: `/admin` for server managers, and the members'
own `/stats` and `/reset` (ko: `/관리`, `/통계`, `/초기화`).

- `/admin keys | quota | pause | resume | jobs | backup`: Discord shows the group to members
  with Manage Server (its default permission). A server may show it to more members
  in its own command settings, so a check runs too: it lets in Manage Server and the
  role named by `AIBOT_ADMIN_ROLE` (a name or an id) and refuses everyone else,
  privately. Every use is written to the ledger's admin actions.
- `/stats`: this server's jobs, failures and estimated cost per pool and provider,
  today and over the last 7 days; admins also see the top 10 members.
- `/reset`: forgets the member's /chat conversation in this channel.

Every answer is private (ephemeral) and immediate: nothing here becomes a job.
Pausing a pool and key health are about this process (a pause, in cluster mode,
about every process), so they span every server the bot is in; jobs are listed
and cancelled only within the admin's own server, wherever they run.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import discord
from discord import app_commands
from discord.ext import commands

from aibot.alerts import Alert
from aibot.catalogue import COMMAND_POOL, POOLS
from aibot.discord.embeds import STATS_DAYS, jobs_embed, keys_embed, quota_embed, stats_embed
from aibot.discord.i18n import command_name, error_text, language, text
from aibot.discord.reply import NO_MENTIONS
from aibot.discord.rooms import Rooms
from aibot.jobs import AibotError, Job, TemporarilyUnavailable
from aibot.ports import AboveBotBudget, Conversations, QuotaLimits
from aibot.settings import Settings
from aibot.store import Store, StoreError
from aibot.store.gate import StoreLimits
from aibot.transport import JobQueue

__all__ = ["Host", "ManageCog", "is_admin"]

log = logging.getLogger("aibot.discord.manage")

# Pools whose limits members spend (a command's role), and every pool for pause/resume.
_LIMITED_POOLS = tuple(dict.fromkeys(COMMAND_POOL.values()))
_LIMITED_CHOICES = [app_commands.Choice(name=p, value=p) for p in _LIMITED_POOLS]
_POOL_CHOICES = [app_commands.Choice(name=p, value=p) for p in POOLS]
_TOP_MEMBERS = 10


class Host(Protocol):
    """What the cog reads from the bot (`AibotBot`), at the time of each command:
    the store is open only once `setup_hook` has run. `memory` and `limits`,
    when set (cluster mode), stand in for the store's memory and gate."""

    @property
    def settings(self) -> Settings: ...

    @property
    def queue(self) -> JobQueue: ...

    @property
    def store(self) -> Store | None: ...

    @property
    def rooms(self) -> Rooms: ...

    @property
    def memory(self) -> Conversations | None: ...

    @property
    def limits(self) -> QuotaLimits | None: ...


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
        snapshots = self.host.queue.snapshots()
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
        gate = self._limits()
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
            detail = ", ".join(f"{name}={value:g}" for name, value in given.items())
            try:
                await gate.set_limits(
                    guild_id,
                    pool,
                    cooldown=cooldown,
                    daily_quota=daily_quota,
                    daily_budget=daily_budget,
                )
            except AboveBotBudget as above:
                self._record(interaction, "quota.set", f"{pool}: {detail}: above the bot's")
                notes.append(text(lang, "admin_quota_above_bot", pool=pool, budget=above.budget))
            else:
                self._record(interaction, "quota.set", f"{pool}: {detail}")
                notes.append(text(lang, "admin_quota_saved", pool=pool))
        if not notes:
            self._record(interaction, "quota.show", pool or "all")
        shown = (pool,) if pool else _LIMITED_POOLS
        limits = {name: await gate.limits(guild_id, name) for name in shown}
        bot_budgets = {name: self.host.settings.pools[name].daily_budget for name in shown}
        embed = quota_embed(limits, bot_budgets, lang)
        await _private(interaction, "\n".join(notes) or None, embed=embed)

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
        held = await _jobs_by_pool(self.host.queue, interaction.guild_id, pool)
        if cancel is None:
            self._record(interaction, "jobs", pool or "all")
            await _private(interaction, embed=jobs_embed(held, lang))
            return
        job_id = cancel.strip().strip("`")
        for name, entries in held.items():
            for job, _state in entries:
                if job.id != job_id:
                    continue
                # Not cancelled: its answer is going out (or just went).
                cancelled = await self.host.queue.cancel(job_id)
                detail = f"{name} {job_id} /{job.command} of {job.user_id}"
                self._record(interaction, "cancel", detail if cancelled else f"{detail}: too late")
                key = "admin_cancelled" if cancelled else "admin_cancel_late"
                command = command_name(job.command, lang)
                words = text(lang, key, id=job_id, command=command, user=job.user_id)
                await _private(interaction, words)
                return
        # Recorded too: an id from another server is someone probing.
        self._record(interaction, "cancel", f"{job_id}: not found on this server")
        await _private(interaction, text(lang, "admin_cancel_unknown", id=job_id))

    @admin.command(name="backup", description="Back the bot's data up now, checked, and say where")
    async def backup(self, interaction: discord.Interaction) -> None:
        lang = language(interaction.locale)
        self._store()
        # A backup reads the whole file: answer within Discord's 3 s first.
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            made = await self.host.rooms.back_up(by_hand=True)
        except StoreError as failure:
            self._record(interaction, "backup", f"failed: {failure}")
            await _private(interaction, text(lang, "backup_failed", reason=failure))
            return
        self._record(interaction, "backup", str(made.path))
        words = text(
            lang,
            "backup_done",
            path=made.path,
            size=_size(made.size),
            seconds=f"{made.seconds:.1f}",
            keep=self.host.settings.rooms.backup_keep,
        )
        await _private(interaction, words)

    async def _switch(self, interaction: discord.Interaction, name: str, *, pause: bool) -> None:
        lang = language(interaction.locale)
        queue = self.host.queue
        before = _state_of(queue, name)
        if before is None:
            await _private(interaction, text(lang, "admin_pool_missing", pool=name))
            return
        if pause:
            await queue.pause(name)
        else:
            await queue.unpause(name)
        after = _state_of(queue, name)
        self._record(interaction, "pause" if pause else "resume", f"{name}: {before} -> {after}")
        if after != before:
            by = {"by": interaction.user.name, "guild": getattr(interaction.guild, "name", "?")}
            self.host.rooms.alerts.alert(Alert("paused" if pause else "resumed", name, detail=by))
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
        rows = await store.ledger.stats(interaction.guild_id, STATS_DAYS)
        top = None
        if self.is_admin(interaction):
            top = await store.ledger.top_members(interaction.guild_id, STATS_DAYS, _TOP_MEMBERS)
        embed = stats_embed(rows, store.calendar.day(), top, lang)
        await interaction.followup.send(embed=embed, ephemeral=True, allowed_mentions=NO_MENTIONS)

    @app_commands.command(
        name="reset", description="Forget your /chat conversation in this channel"
    )
    async def reset(self, interaction: discord.Interaction) -> None:
        lang = language(interaction.locale)
        channel_id = interaction.channel_id or 0
        memory = self.host.memory or self._store().memory
        removed = await memory.reset(channel_id, interaction.user.id)
        words = text(lang, "reset_done" if removed else "reset_empty")
        await _private(interaction, words)

    # ---------------------------------------------------------------- errors

    async def cog_app_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        lang = language(interaction.locale)
        original = getattr(error, "original", None)
        if isinstance(error, app_commands.CheckFailure):
            words = text(lang, "admin_refused")
        elif isinstance(original, TemporarilyUnavailable):  # cluster mode: Redis away
            words = error_text(original, lang)
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

    def _limits(self) -> QuotaLimits:
        return self.host.limits or StoreLimits(self._store().gate)

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


def _size(size: int) -> str:
    """Bytes as a person reads them: 812 KB, 3.4 MB."""
    if size < 1_000_000:
        return f"{max(1, round(size / 1000))} KB"
    return f"{size / 1_000_000:.1f} MB"


def _state_of(queue: JobQueue, pool: str) -> str | None:
    """The pool's state (running, paused, ...), None when it does not run."""
    return next((s.state for s in queue.snapshots() if s.name == pool), None)


async def _jobs_by_pool(
    queue: JobQueue, guild_id: int | None, only: str | None
) -> dict[str, list[tuple[Job, str]]]:
    """This server's jobs per pool (every pool that runs, or `only`)."""
    held: dict[str, list[tuple[Job, str]]] = {
        name: [] for name in queue.pools() if only in (None, name)
    }
    if guild_id is None:  # /admin runs in servers only
        return held
    for name, job, state in await queue.list_jobs(guild_id):
        if name in held:
            held[name].append((job, state))
    return held
