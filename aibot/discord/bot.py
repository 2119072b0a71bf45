"""The bot: one `AutoShardedBot` (one gateway connection for every pool) that opens the
store, starts the pools and loads the cogs in `setup_hook`, and drains in `close()`.

Only the cogs of the pools this process runs are loaded (`AIBOT_POOLS`); the admin
cog always is. Commands are registered with Discord only on request (`sync_only`,
i.e. `python run.py --sync`), never on every start.

Every pool runs its jobs on the bot's loop, next to the gateway.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import traceback

import discord
from discord import app_commands
from discord.ext import commands

from aibot.discord.admin import AdminCog
from aibot.discord.chat import ChatCog
from aibot.discord.i18n import Translator, error_text, language
from aibot.discord.image import ImageCog
from aibot.discord.intake import DURABLE_COMMANDS, Intake
from aibot.discord.manage import ManageCog
from aibot.discord.reply import Replies
from aibot.discord.video import VideoCog
from aibot.foreground import Foreground
from aibot.http import HttpServer, Metrics, start_http
from aibot.jobs import AibotError, Job, ShuttingDown
from aibot.pools import Pools, build_pools
from aibot.pools.video import resume
from aibot.router import Router
from aibot.settings import POOLS, Settings
from aibot.snapshots import PoolSnapshot
from aibot.status import BotInfo, EventLog, SourceFunctions, StatusSource
from aibot.store import Store

__all__ = ["PROVIDER_FAULTS", "AibotBot"]

log = logging.getLogger("aibot.discord")

# Failures that are the provider's (or our keys'), not the member's: their quota is
# given back.
PROVIDER_FAULTS = frozenset({"unavailable", "no_key", "bad_key", "rate_limited"})
_COGS = {"chat": ChatCog, "image": ImageCog, "video": VideoCog}


class _Tree(app_commands.CommandTree["AibotBot"]):
    """The command tree: every slash command's task is foreground work (see
    `aibot.foreground`) from its first step."""

    async def interaction_check(self, interaction: discord.Interaction[AibotBot], /) -> bool:
        interaction.client.foreground.serving()
        return True


class AibotBot(commands.AutoShardedBot):
    """aibot on Discord. Built by `aibot.create_bot`; see the module docstring."""

    def __init__(self, settings: Settings, *, router: Router | None = None) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            help_command=None,
            intents=discord.Intents.default(),
            # Nothing the bot writes may ping anyone unless a message says so.
            allowed_mentions=discord.AllowedMentions.none(),
            shard_count=settings.shard_count,
            shard_ids=list(settings.shard_ids) if settings.shard_ids else None,
            tree_cls=_Tree,
        )
        self.settings = settings
        self.router = router or Router(settings)
        # Members' commands go before the pools' work (see aibot.foreground).
        self.foreground = Foreground(gap=settings.burst_gap)
        self.replies = Replies(self, turn=self.foreground.turn)
        self.pools: Pools = Pools()
        self.store: Store | None = None
        self.intake: Intake | None = None
        self.events = EventLog()  # what the status panel lists; run.py feeds it the logs
        # (not `self.status`: discord.Client uses that name for its presence)
        self._source = SourceFunctions(self.bot_info, self.pool_snapshots, self.events.events)
        self.metrics = Metrics(self._source)
        self.http_server: HttpServer | None = None
        self.tree.error(self.on_app_command_error)
        self.sync_only = False  # `run.py --sync`: register the commands, start nothing
        self.draining = False
        self._started_at: float | None = None

    # ------------------------------------------------------------ start, stop

    async def setup_hook(self) -> None:
        await self.tree.set_translator(Translator())
        if self.sync_only:
            await self._add_cogs()
            return
        settings = self.settings
        await self.replies.open()
        self.store = await Store.open(None, settings, clock=_clock, turn=self.foreground.turn)
        self.replies.journal = self.store.journal
        self.pools = build_pools(
            settings,
            memory=self.store.memory,
            journal=self.store.journal,
            on_outcome=self.record_outcome,
            turn=self.foreground.turn,
        )
        self.intake = Intake(
            router=self.router,
            pools=self.pools,
            replies=self.replies,
            gate=self.store.gate,
            journal=self.store.journal,
            draining=lambda: self.draining,
            foreground=self.foreground,
        )
        await self._add_cogs()
        # Wall-clock: uptime is read from other threads (the panel) and other clocks.
        self._started_at = time.time()
        if settings.http is not None:
            host, port = settings.http
            self.http_server = await start_http(self._source, host, port, metrics=self.metrics)
        await self.resume_jobs()

    async def _add_cogs(self) -> None:
        for name, cog in _COGS.items():
            if name in self.settings.enabled_pools:
                await self.add_cog(cog(self.intake))
        await self.add_cog(AdminCog(self, self.pools, self.router))
        await self.add_cog(ManageCog(self))

    async def sync_commands(self) -> list[discord.app_commands.AppCommand]:
        """Register the slash commands: with the dev guild only (at once), or globally."""
        guild_id = self.settings.dev_guild
        if guild_id is None:
            return await self.tree.sync()
        guild = discord.Object(guild_id)
        self.tree.copy_global_to(guild=guild)
        return await self.tree.sync(guild=guild)

    async def close(self) -> None:
        """Stop taking jobs, let running ones finish (`AIBOT_DRAIN_SECONDS`), tell the
        members whose jobs could not finish, close the store, then the gateway."""
        if not self.draining:
            self.draining = True
            await self._drain()
        await super().close()

    async def _drain(self) -> None:
        timeout = self.settings.drain_seconds
        if self.intake is not None:
            await self.intake.settle(timeout)  # deferred jobs on their way to a pool
        results = await asyncio.gather(
            *(pool.drain(timeout) for pool in self.pools.values()), return_exceptions=True
        )
        left = {job.id for jobs in results if isinstance(jobs, list) for job in jobs}
        for reply in self.replies.unfinished():
            if reply.job.id in left and self._resumable(reply.job):
                continue  # journaled: resumed and delivered after the restart
            await reply.fail(ShuttingDown())
        await self.release()

    async def release(self) -> None:
        """Let go of what the process holds outside the gateway: provider clients, the
        answers' HTTP session, the store file, the HTTP server. `close()` ends with it;
        a test that simulates a crash calls it on the crashed bot."""
        await self.pools.aclose()
        await self.replies.close()
        if self.store is not None:
            await self.store.close()
        if self.http_server is not None:
            await self.http_server.stop()
            self.http_server = None

    def _resumable(self, job: Job) -> bool:
        return job.command in DURABLE_COMMANDS and self.store is not None

    async def resume_jobs(self) -> None:
        """Submit again the video jobs a previous run left unfinished; each polls its
        provider task (no new task, no new charge) and is delivered once."""
        assert self.store is not None
        for job, task_id, key in await self.store.journal.unfinished():
            pool = self.pools.get(job.pool or "video")
            if pool is None:
                log.info("job %s: its pool %s does not run here", job.id, job.pool)
                continue
            again = resume(job, task_id, key) if task_id and key else job
            reply = self.replies.make(again)
            try:
                pool.submit(again, reply)
            except AibotError as error:
                await reply.fail(error)
                await self.store.journal.finished(job.id, error.kind)
                continue
            log.info("job %s: resumed after a restart", job.id)

    async def on_app_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        """A command failed in a way nothing expected (a bug): log it, and tell the
        member in one sentence; never a traceback, never "thinking..." forever."""
        if _has_own_error_handler(interaction.command):
            return  # its cog (or the command) explains its own failures
        trace = "".join(traceback.format_exception(error))
        name = interaction.command.qualified_name if interaction.command else "?"
        log.error("/%s failed\n%s", name, trace.replace(interaction.token, "[token]"))
        words = error_text(AibotError(), language(interaction.locale))
        try:
            if interaction.response.is_done():
                await interaction.edit_original_response(content=words, embeds=[], attachments=[])
            else:
                await interaction.response.send_message(words, ephemeral=True)
        except discord.HTTPException as failure:
            log.warning("/%s: could not tell the member (HTTP %s)", name, failure.status)

    # --------------------------------------------------------------- outcomes

    async def record_outcome(self, job: Job, error: AibotError | None, seconds: float) -> None:
        """After every job: its latency for /metrics, a ledger row, and the quota back
        when the provider failed."""
        meta = self.replies.meta(job.id)
        self.metrics.observer(job.pool)(job, error, seconds)
        store = self.store
        if store is None:
            return
        files = int(meta.get("files") or 0)
        # A failure counts against the provider whose call failed, if one did.
        failed_on = error if error is not None and error.provider else None
        store.ledger.record(
            job,
            provider=str(meta.get("provider") or (failed_on and failed_on.provider) or "-"),
            key_id=str(meta.get("key_id") or (failed_on and failed_on.key_id) or ""),
            outcome="ok" if error is None else error.kind,
            latency=seconds,
            tokens_in=int(meta.get("tokens_in") or 0),
            tokens_out=int(meta.get("tokens_out") or 0),
            images=files if job.command == "image" else 0,
            video_seconds=float(job.args.get("duration") or 0)
            if files and job.command == "video"
            else 0.0,
        )
        if error is not None and error.kind in PROVIDER_FAULTS:
            store.gate.refund(job)

    # ------------------------------------------------------------------ status

    def bot_info(self) -> BotInfo:
        """The bot as the status panel and /health show it."""
        shards = tuple(
            (shard, latency * 1000 if math.isfinite(latency) else None)
            for shard, latency in self.latencies
        )
        started = self._started_at
        uptime = time.time() - started if started is not None else 0.0
        here = self.settings.enabled_pools
        return BotInfo(
            name=str(self.user) if self.user else "aibot",
            guilds=len(self.guilds),
            shards=shards,
            uptime_s=uptime,
            gateway_up=self.is_ready() and not self.is_closed(),
            mode="all pools" if set(here) == set(POOLS) else ", ".join(here),
        )

    def pool_snapshots(self) -> list[PoolSnapshot]:
        return [pool.snapshot() for pool in self.pools.values()]

    def status_source(self) -> StatusSource:
        """What the console panel, /health and /metrics read."""
        return self._source


def _has_own_error_handler(command: object) -> bool:
    if getattr(command, "on_error", None) is not None:
        return True
    cog = getattr(command, "binding", None)
    return isinstance(cog, commands.Cog) and (
        type(cog).cog_app_command_error is not commands.Cog.cog_app_command_error
    )


def _clock() -> float:
    """Unix seconds as Discord sees them: days and cooldowns follow the same clock as
    interaction timestamps (SimCord moves it in tests)."""
    return discord.utils.utcnow().timestamp()
