"""The bot: one `AutoShardedBot` (one gateway connection for every pool).

`aibot.app.create_bot` builds it with everything it serves (the store, the job
transport, the replies, the intake); `setup_hook` only starts them (opens the
store, resumes journaled jobs, loads the cogs) and `close()` drains them.

Only the cogs of the pools this process runs are loaded (`AIBOT_POOLS`, less the
pools with no key, which are off); the admin cog always is. Commands are registered
with Discord only on request (`sync_only`, i.e. `python run.py --sync`), never on
every start.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections.abc import Callable

import discord
from discord import app_commands
from discord.ext import commands

from aibot.catalogue import POOLS
from aibot.discord.admin import AdminCog
from aibot.discord.chat import ChatCog
from aibot.discord.i18n import Translator, command_name, error_text, language, text
from aibot.discord.image import ImageCog
from aibot.discord.intake import Intake
from aibot.discord.manage import ManageCog
from aibot.discord.reply import Replies
from aibot.discord.rooms import Rooms
from aibot.discord.video import VideoCog
from aibot.events import EventLog
from aibot.foreground import Foreground
from aibot.http import HttpServer, Metrics, start_http
from aibot.jobs import AibotError
from aibot.ports import Conversations, QuotaLimits
from aibot.router import Router
from aibot.settings import Settings
from aibot.snapshots import BotInfo, NodeSnapshot, PoolSnapshot, SourceFunctions, StatusSource
from aibot.store import Store
from aibot.transport import JobQueue

__all__ = ["AibotBot", "discord_clock"]

log = logging.getLogger("aibot.discord")


class _Tree(app_commands.CommandTree["AibotBot"]):
    """The command tree: every slash command's task is foreground work (see
    `aibot.foreground`) from its first step."""

    async def interaction_check(self, interaction: discord.Interaction[AibotBot], /) -> bool:
        interaction.client.foreground.serving()
        return True


class AibotBot(commands.AutoShardedBot):
    """aibot on Discord. Built by `aibot.create_bot`; see the module docstring."""

    def __init__(self, settings: Settings, *, router: Router, foreground: Foreground) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            help_command=None,
            intents=discord.Intents.default(),
            # Nothing the bot writes may ping anyone unless a message says so.
            allowed_mentions=discord.AllowedMentions.none(),
            shard_count=settings.shard_count,
            # Documented as optional (None: every shard); its type hint says a list.
            shard_ids=list(settings.shard_ids) if settings.shard_ids else None,  # type: ignore[arg-type]
            tree_cls=_Tree,
        )
        self.settings = settings
        self.router = router
        # Members' commands go before the pools' work (see aibot.foreground).
        self.foreground = foreground
        self.events = EventLog()  # what the status panel lists; run.py feeds it the logs
        # (not `self.status`: discord.Client uses that name for its presence)
        self._source = SourceFunctions(
            self.bot_info, self.pool_snapshots, self.events.events, self.node_snapshots
        )
        self.metrics = Metrics(self._source)
        self.http_server: HttpServer | None = None
        # Reasons for /health to say 503 (cluster mode adds: Redis unreachable). A
        # draining bot refuses every new command: a load balancer must know.
        self.health_checks: list[Callable[[], str | None]] = [
            lambda: "draining" if self.draining else None
        ]
        self.tree.error(self.on_app_command_error)
        self.sync_only = False  # `run.py --sync`: register the commands, start nothing
        self.draining = False
        self._started_at: float | None = None

    def serve(
        self,
        *,
        store: Store,
        replies: Replies,
        queue: JobQueue,
        intake: Intake,
        rooms: Rooms,
        memory: Conversations | None = None,
        limits: QuotaLimits | None = None,
    ) -> None:
        """What the bot serves, built by `create_bot`: started in `setup_hook`.
        `memory` and `limits` (cluster mode: in Redis) are what `/reset` and
        `/admin quota` use instead of the store's memory and gate."""
        self.store = store
        self.memory = memory
        self.limits = limits
        self.replies = replies
        self.queue = queue
        self.intake = intake
        self.rooms = rooms  # alerts, live status, daily summary and backup

    # ------------------------------------------------------------ start, stop

    async def on_message(self, message: discord.Message, /) -> None:
        """aibot answers slash commands only: a message, even one mentioning the
        bot, is no command (discord.py's own would log each as an error)."""

    async def setup_hook(self) -> None:
        await self.tree.set_translator(Translator())
        await self._add_cogs()
        if self.sync_only:
            return
        if self.settings.http is not None:
            # First: an address in use most often means another aibot runs here, on
            # these files; nothing of theirs (the jobs it runs) is taken up then.
            host, port = self.settings.http
            self.http_server = await start_http(
                self._source, host, port, metrics=self.metrics, checks=self.health_checks
            )
        await self.replies.open()
        await self.store.start()
        await self.queue.start()  # resumes the jobs an earlier run left unfinished
        self.rooms.start()
        # Wall-clock: uptime is read from other threads (the panel) and other clocks.
        self._started_at = time.time()

    async def _add_cogs(self) -> None:
        enabled, limit = self.settings.enabled_pools, self.settings.attachment_max_bytes
        if "chat" in enabled:
            await self.add_cog(ChatCog(self.intake))
        if "image" in enabled:
            await self.add_cog(ImageCog(self.intake, max_bytes=limit))
        if "video" in enabled:
            await self.add_cog(VideoCog(self.intake, max_bytes=limit))
        # Always: /ping, /status, /instances answer also when the admin pool is off.
        cluster = self.settings.cluster is not None
        await self.add_cog(
            AdminCog(self, self.queue, self.router, off=self.settings.off_pools, cluster=cluster)
        )
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
            await self._drain(self.settings.drain_seconds)
        await super().close()

    async def stop_at_once(self) -> None:
        """As `close()` with no time for running jobs, and the gateway left alone:
        Ctrl-C in the demo. The jobs are cancelled (their members told) before the
        clients are let go, so none opens an HTTP session after they are closed."""
        if self.draining:  # `close()` ran (or runs): let go of what it may not have yet
            await self.release()
            return
        self.draining = True
        await self._drain(0)

    async def _drain(self, timeout: float) -> None:
        await self.intake.settle(timeout)  # deferred jobs on their way to a pool
        await self.queue.drain(timeout)
        await self.release()

    async def release(self) -> None:
        """Let go of what the process holds outside the gateway: provider clients, the
        answers' HTTP session, the store file, the HTTP server. `close()` ends with it;
        a test that simulates a crash calls it on the crashed bot."""
        await self.rooms.aclose()
        await self.queue.aclose()
        await self.replies.close()
        await self.store.close()
        if self.http_server is not None:
            await self.http_server.stop()
            self.http_server = None

    async def on_app_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        """A command failed in a way nothing expected (a bug): log it, and tell the
        member in one sentence; never a traceback, never "thinking..." forever.

        A command Discord still lists but this bot no longer has (its pool turned off
        since the last `--sync`) is no bug: the member is told privately that it is
        not served here now, and that an admin can update the list."""
        lang = language(interaction.locale)
        if isinstance(error, app_commands.CommandNotFound):
            name = " ".join([*error.parents, error.name])
            log.warning("/%s is listed on Discord but not served here: run --sync", name)
            await _tell(interaction, text(lang, "not_synced", command=command_name(name, lang)))
            return
        if _has_own_error_handler(interaction.command):
            return  # its cog (or the command) explains its own failures
        trace = "".join(traceback.format_exception(error))
        name = interaction.command.qualified_name if interaction.command else "?"
        log.error("/%s failed\n%s", name, trace.replace(interaction.token, "[token]"))
        await _tell(interaction, error_text(AibotError(), lang))

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
            gateway_up=self.gateway_up(),
            mode="all pools" if set(here) == set(POOLS) else ", ".join(here),
        )

    def gateway_up(self) -> bool:
        """Ready, and every shard of this process connected: discord.py stays ready
        through a lost connection while it tries to make a new one."""
        shards = self.shards.values()
        ready = self.is_ready() and not self.is_closed()
        return ready and bool(shards) and not any(shard.is_closed() for shard in shards)

    def pool_snapshots(self) -> list[PoolSnapshot]:
        return self.queue.snapshots()

    def node_snapshots(self) -> list[NodeSnapshot]:
        """Every live process in cluster mode; none in embedded mode."""
        return self.queue.nodes() if self.settings.cluster is not None else []

    def status_source(self) -> StatusSource:
        """What the console panel, /health and /metrics read."""
        return self._source


async def _tell(interaction: discord.Interaction, words: str) -> None:
    """`words` for the member who ran the command: privately, or in place of the
    answer already begun."""
    try:
        if interaction.response.is_done():
            await interaction.edit_original_response(content=words, embeds=[], attachments=[])
        else:
            await interaction.response.send_message(words, ephemeral=True)
    except discord.HTTPException as failure:
        log.warning("could not tell the member (HTTP %s)", failure.status)


def _has_own_error_handler(command: object) -> bool:
    if getattr(command, "on_error", None) is not None:
        return True
    cog = getattr(command, "binding", None)
    return isinstance(cog, commands.Cog) and (
        type(cog).cog_app_command_error is not commands.Cog.cog_app_command_error
    )


def discord_clock() -> float:
    """Unix seconds as Discord sees them: days and cooldowns follow the same clock as
    interaction timestamps (SimCord moves it in tests)."""
    return discord.utils.utcnow().timestamp()
