"""`FakeDiscord`: the fake's server on 127.0.0.1, its state, and how tests drive it.

It owns what Discord knows (the bot user, the guilds spread over the shards,
the synced commands), serves the gateway, the REST API and `/_control` from
one aiohttp application, and dispatches slash commands: one at a time
(`send_interaction`) or as a timed burst for a benchmark (`burst`).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from aiohttp import web

from . import payloads
from .control import Control
from .gateway import Gateway
from .messages import Messages
from .payloads import FakeGuild
from .records import Recorder, SentInteraction
from .rest import API_PREFIX, RestApi
from .wire import dumps

__all__ = ["DEFAULT_CHANNELS", "DEFAULT_TOKEN", "RESPONSE_DEADLINE", "FakeDiscord"]

DEFAULT_CHANNELS = ("general", "채팅방-1", "이미지생성-1", "비디오생성-1")
DEFAULT_TOKEN = "fake-discord-bot-token"
# Discord voids an interaction token that was not answered within 3 s.
RESPONSE_DEADLINE = 3.0


class FakeDiscord(Recorder):
    """Discord's REST API and gateway on 127.0.0.1, for one bot token.

    A `FakeDiscord` is also its own `Recorder`: `fake.records`,
    `fake.wait_for(...)`, `fake.results()`, `fake.reset()`.
    """

    def __init__(
        self,
        *,
        shard_count: int = 2,
        guilds: int = 4,
        channels: Sequence[str] = DEFAULT_CHANNELS,
        token: str = DEFAULT_TOKEN,
        port: int = 0,
        heartbeat_interval_ms: int = 41_250,
        response_deadline: float = RESPONSE_DEADLINE,
        max_concurrency: int = 1,
    ) -> None:
        super().__init__()
        self.shard_count = shard_count
        self.max_concurrency = max_concurrency  # IDENTIFYs per 5 s, as /gateway/bot says
        self.token = token
        self.port = port
        self.response_deadline = response_deadline
        self.heartbeat_interval_ms = heartbeat_interval_ms
        # The next this many interaction callbacks find the connection cut before
        # any answer, as when Discord becomes unreachable mid-request (not taken).
        self.cut_callbacks = 0
        self.ids = payloads.Snowflakes()
        self.application_id = self.ids()
        self.bot_user = payloads.user(self.application_id, "aibot-fake", bot=True)
        self.guilds = FakeGuild.spread(guilds, channels, shard_count, self.ids)
        self.commands: dict[str, dict[str, Any]] = {}
        self.messages = Messages(self)
        self.gateway = Gateway(self)
        self._runner: web.AppRunner | None = None

    # ----- lifecycle -------------------------------------------------------

    @property
    def origin(self) -> str:
        """Where the fake listens: `http://127.0.0.1:port`."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What `discord.http.Route.BASE` must be."""
        return f"{self.origin}{API_PREFIX}"

    @property
    def ws_url(self) -> str:
        """The gateway, as `GET /gateway/bot` gives it."""
        return f"ws://127.0.0.1:{self.port}/gateway"

    async def start(self) -> None:
        """Serve on `port` (0: a free one, then `port` says which)."""
        self._runner = web.AppRunner(self._app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Close the shards' connections and stop serving."""
        await self.gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[FakeDiscord]:
        """`async with fake.running():` started, and stopped afterwards."""
        await self.start()
        try:
            yield self
        finally:
            await self.stop()

    def _app(self) -> web.Application:
        rest = RestApi(self)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.add_routes(
            [
                web.get("/gateway", self.gateway.connect),
                *rest.routes(),
                *Control(self).routes(),
                rest.fallback(),
            ]
        )
        return app

    # ----- shards ----------------------------------------------------------

    @property
    def ready_shards(self) -> list[int]:
        """Shards that have IDENTIFYed and got READY on a live connection."""
        return self.gateway.ready_shards

    async def wait_ready(self, timeout: float = 15.0) -> None:
        """Until every shard has IDENTIFYed and received READY and its guilds."""
        await self.until(lambda: len(self.ready_shards) == self.shard_count, timeout)

    # ----- dispatching interactions ----------------------------------------

    async def send_interaction(
        self,
        command: str,
        options: Mapping[str, Any] | Sequence[Mapping[str, Any]] = (),
        *,
        guild: FakeGuild | int | None = None,
        channel: str = "general",
        user_id: int | None = None,
        locale: str = "en-US",
    ) -> SentInteraction:
        """Dispatch a slash command's INTERACTION_CREATE on its guild's shard.

        `options` is {name: value} or Discord's option list. The member is the
        guild's tester unless `user_id` is given.
        """
        target = self._guild(guild)
        planned = self._plan(command, options, target, channel, user_id, locale)
        return await self.gateway.dispatch(*planned)

    async def burst(
        self, mix: Sequence[Mapping[str, Any]], *, count: int, duration: float = 1.0
    ) -> float:
        """Send `count` interactions evenly over `duration` seconds, across every guild.

        `mix` entries are {"name", "options"?, "channel"?, "locale"?}, taken in
        turn; each interaction comes from its own member. Every payload is built
        before the first is sent, so the fake's own work stays out of the timing.
        Returns the seconds the sending took.
        """
        first_user = self.ids()
        planned = []
        for i in range(count):
            spec = mix[i % len(mix)]
            guild = self.guilds[i % len(self.guilds)]
            channel, locale = spec.get("channel", "general"), spec.get("locale", "en-US")
            options = spec.get("options", ())
            planned.append(
                self._plan(spec["name"], options, guild, channel, first_user + i, locale)
            )
        interval = duration / count if count else 0.0
        start = time.perf_counter()
        for i, (body, sent) in enumerate(planned):
            delay = start + i * interval - time.perf_counter()
            if delay > 0.0005:
                await asyncio.sleep(delay)
            self.note_late(-delay * 1000.0)
            await self.gateway.dispatch(body, sent)
        return time.perf_counter() - start

    def _guild(self, guild: FakeGuild | int | None) -> FakeGuild:
        if isinstance(guild, FakeGuild):
            return guild
        return next(g for g in self.guilds if guild in (None, g.id))

    def _plan(
        self,
        command: str,
        options: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        guild: FakeGuild,
        channel: str,
        user_id: int | None,
        locale: str,
    ) -> tuple[str, SentInteraction]:
        """The INTERACTION_CREATE payload, already JSON, and what will be recorded."""
        if isinstance(options, Mapping):
            options = [payloads.option(k, v) for k, v in options.items()]
        sent = SentInteraction(
            id=self.ids(),
            command=command,
            guild_id=guild.id,
            channel_id=guild.channel_id(channel),
            user_id=user_id or guild.tester_id,
            shard_id=guild.shard_id,
            sent_at=0.0,
            token=secrets.token_urlsafe(48),
        )
        known = self.commands.get(command)
        payload = payloads.interaction(
            interaction_id=sent.id,
            token=sent.token,
            application_id=self.application_id,
            command=command,
            command_id=int(known["id"]) if known else payloads.command_id(command),
            options=options,
            guild=guild,
            channel_name=channel,
            user_id=sent.user_id,
            locale=locale,
        )
        return dumps(payload), sent
