"""A small Discord, over a real socket, for the real discord.py bot.

`FakeDiscord` is an aiohttp server on 127.0.0.1 that plays enough of Discord's
REST API and gateway for a `discord.ext.commands.AutoShardedBot` to log in,
discover its shards through `GET /gateway/bot`, IDENTIFY each shard, receive
READY and GUILD_CREATE, and answer slash commands through the interaction
callback and webhook endpoints. It shows what SimCord cannot: URL overrides,
shard discovery, the websocket handshake, multipart uploads, the latency of a
real socket.

Every answer the bot sends (callback, followup, edit, channel message) is kept
as a `Record` with its arrival time (`time.perf_counter`: real time, whatever
clock the bot runs on), body and uploaded files, so tests assert what the bot
did and the front benchmark measures INTERACTION_CREATE sent -> callback arrived.
Discord's rules that matter to a bot hold: a callback later than 3 s or a second
callback is refused, and the first followup after a defer edits the deferred
message.

In-process (tests)::

    async with FakeDiscord(shard_count=2).running() as fake:
        with pointed_at(fake):
            task = asyncio.create_task(bot.start(fake.token))
            await fake.wait_ready(timeout=15)
            sent = await fake.send_interaction("chat", {"prompt": "hi"}, channel="채팅방-1")
            [callback] = await fake.wait_for("callback", interaction_id=sent.id)

In its own process (benchmarks): `python -m aibot.sandbox.fake_discord --port 0`
prints one JSON line with its URLs and serves `/_control/ready`, `/_control/burst`,
`/_control/results`, `/_control/reset` besides Discord; `FakeDiscordProcess`
starts it and drives it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientSession, ClientTimeout, WSMsgType, web

from aibot.sandbox import discord_payloads as payloads
from aibot.sandbox.discord_payloads import EPHEMERAL, LOADING, FakeGuild

try:  # orjson keeps the fake's own CPU cost low under a benchmark burst
    import orjson

    def _dumps(data: Any) -> str:
        return orjson.dumps(data).decode()

    _loads: Callable[[str | bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover - orjson is optional
    _loads = json.loads

    def _dumps(data: Any) -> str:
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


__all__ = [
    "DEFAULT_CHANNELS",
    "FakeDiscord",
    "FakeDiscordProcess",
    "FakeGuild",
    "Record",
    "SentInteraction",
    "main",
    "pointed_at",
]

API_PREFIX = "/api/v10"
DEFAULT_CHANNELS = ("general", "채팅방-1", "이미지생성-1", "비디오생성-1")
DEFAULT_TOKEN = "fake-discord-bot-token"
# Discord voids an interaction token that was not answered within 3 s.
RESPONSE_DEADLINE = 3.0

Files = tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class SentInteraction:
    """One INTERACTION_CREATE the fake dispatched (the token is a secret: no repr)."""

    id: int
    command: str
    guild_id: int
    channel_id: int
    user_id: int
    shard_id: int
    sent_at: float
    token: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Record:
    """One request the bot made.

    `kind`: gateway_bot, login, application, sync, callback, followup, edit,
    fetch, delete, message, message_edit, unknown. `at` is `time.perf_counter()` on arrival;
    `status` what the fake answered; `body` the JSON (or multipart
    `payload_json`); `files` the uploads as (filename, size).
    """

    kind: str
    at: float
    status: int = 200
    interaction_id: int = 0
    body: Mapping[str, Any] = field(default_factory=dict)
    files: Files = ()
    message_id: int | None = None

    @property
    def callback_type(self) -> int | None:
        """The interaction response type of a callback (4 = message, 5 = deferred)."""
        return self.body.get("type")


@dataclass(slots=True)
class _Session:
    """One gateway connection: the shard it identified as and its sequence."""

    ws: web.WebSocketResponse
    shard_id: int | None = None
    session_id: str = ""
    seq: int = 0

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


def _json(data: Any, status: int = 200) -> web.Response:
    # discord.py parses JSON only when Content-Type is exactly application/json;
    # web.json_response would add "; charset=utf-8".
    body = _dumps(data).encode()
    return web.Response(status=status, body=body, headers={"Content-Type": "application/json"})


def _error(status: int, message: str, code: int = 0) -> web.Response:
    return _json({"message": message, "code": code}, status)


class FakeDiscord:
    """Discord's REST API and gateway on 127.0.0.1, for one bot token."""

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
    ) -> None:
        self.shard_count = shard_count
        self.token = token
        self.port = port
        self.response_deadline = response_deadline
        self._heartbeat_ms = heartbeat_interval_ms
        self._ids = payloads.Snowflakes()
        self.application_id = self._ids()
        self.bot_user = payloads.user(self.application_id, "aibot-fake", bot=True)
        self.guilds = FakeGuild.spread(guilds, channels, shard_count, self._ids)
        self.records: list[Record] = []
        self.identified: list[tuple[int, int]] = []
        self.commands: dict[str, dict[str, Any]] = {}
        self._sessions: dict[int, _Session] = {}
        self._resumable: dict[str, _Session] = {}
        self._sent: dict[int, SentInteraction] = {}  # since the last reset()
        self._by_token: dict[str, SentInteraction] = {}
        self._answered: dict[int, Record] = {}
        # Which client connections carried callbacks: a bot that reuses its HTTP
        # connections needs few; one that opens one per answer pays a TCP handshake.
        self._callback_peers: set[object] = set()
        self._late_ms = 0.0  # the latest send of a burst behind its schedule
        self._originals: dict[int, int] = {}
        self._messages: dict[int, dict[str, Any]] = {}
        self._changed: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None

    # ----- lifecycle -------------------------------------------------------

    @property
    def base_url(self) -> str:
        """What `discord.http.Route.BASE` must be."""
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    @property
    def ws_url(self) -> str:
        """The gateway, as `GET /gateway/bot` gives it."""
        return f"ws://127.0.0.1:{self.port}/gateway"

    async def start(self) -> None:
        self._runner = web.AppRunner(self._app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        for session in list(self._sessions.values()):
            await session.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[FakeDiscord]:
        await self.start()
        try:
            yield self
        finally:
            await self.stop()

    def reset(self) -> None:
        """Start a new measurement: forget the records and what `results()` counts.

        Interactions already sent stay valid, as on Discord: a job of an earlier
        burst still answers through its token.
        """
        self.records.clear()
        self.identified.clear()
        self._sent.clear()
        self._callback_peers.clear()
        self._late_ms = 0.0

    # ----- what tests wait for ---------------------------------------------

    @property
    def ready_shards(self) -> list[int]:
        """Shards that have IDENTIFYed and got READY on a live connection."""
        return sorted(s for s, session in self._sessions.items() if not session.ws.closed)

    async def wait_ready(self, timeout: float = 15.0) -> None:
        """Until every shard has IDENTIFYed and received READY and its guilds."""
        await self._wait(lambda: len(self.ready_shards) == self.shard_count, timeout)

    async def wait_for(
        self, kind: str, *, interaction_id: int | None = None, count: int = 1, timeout: float = 10.0
    ) -> list[Record]:
        """The first `count` records of `kind` (for one interaction), waiting up to `timeout`."""

        def wanted(r: Record) -> bool:
            return r.kind == kind and interaction_id in (None, r.interaction_id)

        return await self.wait_until(wanted, count=count, timeout=timeout)

    async def wait_until(
        self, wanted: Callable[[Record], bool], *, count: int = 1, timeout: float = 10.0
    ) -> list[Record]:
        """The first `count` records that satisfy `wanted`, waiting up to `timeout`."""
        await self._wait(lambda: sum(map(wanted, self.records)) >= count, timeout)
        return [r for r in self.records if wanted(r)][:count]

    def records_of(self, kind: str, interaction_id: int | None = None) -> list[Record]:
        return [
            r for r in self.records if r.kind == kind and interaction_id in (None, r.interaction_id)
        ]

    async def _wait(self, done: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not done():
                if self._changed is None:
                    self._changed = asyncio.Event()
                await self._changed.wait()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def _record(self, kind: str, *, at: float | None = None, **fields: Any) -> Record:
        record = Record(kind, time.perf_counter() if at is None else at, **fields)
        self.records.append(record)
        self._notify()
        return record

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
        return await self._dispatch(*planned)

    async def burst(
        self, mix: Sequence[Mapping[str, Any]], *, count: int, duration: float = 1.0
    ) -> float:
        """Send `count` interactions evenly over `duration` seconds, across every guild.

        `mix` entries are {"name", "options"?, "channel"?, "locale"?}, taken in
        turn; each interaction comes from its own member. Every payload is built
        before the first is sent, so the fake's own work stays out of the timing.
        Returns the seconds the sending took.
        """
        first_user = self._ids()
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
            self._late_ms = max(self._late_ms, -delay * 1000.0)
            await self._dispatch(body, sent)
        return time.perf_counter() - start

    def results(self) -> dict[str, Any]:
        """What the bot did with the interactions sent since the last `reset()`.

        `latencies_ms`: sorted, from the INTERACTION_CREATE frame sent to the
        first accepted callback arriving, one per answered interaction;
        `callback_types`: {"5": deferred, "4": answered at once};
        `callback_connections`: client connections that carried those callbacks;
        `late_send_ms`: how far behind its schedule a `burst` sent its latest
        interaction (the fake's own hiccups: the ones after it arrive together);
        `cpu_seconds`: CPU time of this process so far (what the fake costs).
        """
        latencies = []
        types: dict[str, int] = {}
        for sent in self._sent.values():
            record = self._answered.get(sent.id)
            if record is not None:
                latencies.append((record.at - sent.sent_at) * 1000.0)
                types[str(record.callback_type)] = types.get(str(record.callback_type), 0) + 1
        return {
            "sent": len(self._sent),
            "answered": len(latencies),
            "latencies_ms": sorted(latencies),
            "callback_types": types,
            "refused_callbacks": sum(1 for r in self.records_of("callback") if r.status >= 400),
            "followups": len(self.records_of("followup")),
            "edits": len(self.records_of("edit")),
            "callback_connections": len(self._callback_peers),
            "late_send_ms": round(self._late_ms, 2),
            "cpu_seconds": time.process_time(),
        }

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
            id=self._ids(),
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
        return _dumps(payload), sent

    async def _dispatch(self, body: str, sent: SentInteraction) -> SentInteraction:
        session = self._sessions.get(sent.shard_id)
        if session is None or session.ws.closed:
            raise RuntimeError(f"shard {sent.shard_id} is not connected")
        # Stamped before the write: a callback cannot arrive before its stamp.
        sent = dataclasses.replace(sent, sent_at=time.perf_counter())
        self._sent[sent.id] = sent
        self._by_token[sent.token] = sent
        seq = session.next_seq()
        await session.ws.send_str(f'{{"op":0,"t":"INTERACTION_CREATE","s":{seq},"d":{body}}}')
        return sent

    # ----- the aiohttp application -----------------------------------------

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        api, hook = API_PREFIX, API_PREFIX + "/webhooks/{app}/{token}"
        routes = [
            web.get("/gateway", self._gateway),
            web.get(api + "/gateway/bot", self._gateway_bot),
            web.get(api + "/users/@me", self._users_me),
            web.get(api + "/oauth2/applications/@me", self._application),
            web.put(api + "/applications/{app}/commands", self._sync),
            web.put(api + "/applications/{app}/guilds/{guild}/commands", self._sync),
            web.post(api + "/interactions/{id}/{token}/callback", self._callback),
            web.post(hook, self._followup),
            web.get(hook + "/messages/{message}", self._fetch),
            web.patch(hook + "/messages/{message}", self._edit),
            web.delete(hook + "/messages/{message}", self._delete),
            web.post(api + "/channels/{channel}/messages", self._channel_message),
            web.patch(api + "/channels/{channel}/messages/{message}", self._channel_edit),
            web.get("/_control/ready", self._control_ready),
            web.post("/_control/burst", self._control_burst),
            web.get("/_control/results", self._control_results),
            web.post("/_control/reset", self._control_reset),
            web.route("*", "/{tail:.*}", self._unknown),
        ]
        app.add_routes(routes)
        return app

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bot {self.token}"

    async def _gateway_bot(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, "401: Unauthorized")
        self._record("gateway_bot")
        limit = {"total": 1000, "remaining": 1000, "reset_after": 86_400_000, "max_concurrency": 1}
        return _json({"url": self.ws_url, "shards": self.shard_count, "session_start_limit": limit})

    async def _users_me(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            self._record("login", status=401)
            return _error(401, "401: Unauthorized")
        self._record("login")
        return _json({**self.bot_user, "verified": True, "mfa_enabled": False, "flags": 0})

    async def _application(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, "401: Unauthorized")
        self._record("application")
        return _json(payloads.application(self.application_id, self.bot_user))

    async def _sync(self, request: web.Request) -> web.Response:
        """`tree.sync()`: echo each command with its id and application id."""
        if not self._authorized(request):
            return _error(401, "401: Unauthorized")
        echoed = []
        for command in await request.json(loads=_loads):
            known = self.commands.get(command["name"])
            cid = known["id"] if known else str(self._ids())
            app_id = str(self.application_id)
            echoed.append({**command, "id": cid, "application_id": app_id, "version": "1"})
        self.commands.update({c["name"]: c for c in echoed})
        self._record("sync", body={"commands": echoed})
        return _json(echoed)

    async def _unknown(self, request: web.Request) -> web.Response:
        # Token-like path segments are secrets; keep only their shape.
        path = "/".join("..." if len(p) > 40 else p for p in request.path.split("/"))
        self._record("unknown", status=404, body={"method": request.method, "path": path})
        return _error(404, "404: Not Found")

    # ----- the gateway -----------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        session = _Session(ws)
        await ws.send_str(_dumps({"op": 10, "d": {"heartbeat_interval": self._heartbeat_ms}}))
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await self._on_frame(session, _loads(msg.data))
        finally:
            if session.shard_id is not None and self._sessions.get(session.shard_id) is session:
                del self._sessions[session.shard_id]
                self._notify()
        return ws

    async def _on_frame(self, session: _Session, frame: dict[str, Any]) -> None:
        op = frame.get("op")
        if op == 1:  # heartbeat
            await session.ws.send_str('{"op":11}')
        elif op == 2:
            await self._identify(session, frame["d"])
        elif op == 6:
            await self._resume(session, frame["d"])

    async def _identify(self, session: _Session, data: dict[str, Any]) -> None:
        if data.get("token") != self.token:
            await session.ws.close(code=4004, message=b"Authentication failed.")
            return
        shard_id, count = data.get("shard", [0, 1])
        if count != self.shard_count or not 0 <= shard_id < count:
            await session.ws.close(code=4010, message=b"Invalid shard.")
            return
        session.shard_id, session.session_id = shard_id, secrets.token_hex(16)
        mine = [g for g in self.guilds if g.shard_id == shard_id]
        ready = payloads.ready(
            self.bot_user,
            mine,
            session_id=session.session_id,
            resume_url=self.ws_url,
            shard=(shard_id, count),
            application_id=self.application_id,
        )
        await self._send_event(session, "READY", ready)
        for guild in mine:
            await self._send_event(
                session, "GUILD_CREATE", payloads.guild_create(guild, ready["user"])
            )
        self.identified.append((shard_id, count))
        self._sessions[shard_id] = self._resumable[session.session_id] = session
        self._notify()

    async def _resume(self, session: _Session, data: dict[str, Any]) -> None:
        # Nothing is replayed: the fake only sends what a test asks for, live.
        old = self._resumable.get(data.get("session_id", ""))
        if data.get("token") != self.token or old is None:
            await session.ws.send_str('{"op":9,"d":false}')  # invalid session: IDENTIFY again
            return
        session.shard_id, session.session_id, session.seq = old.shard_id, old.session_id, old.seq
        self._sessions[old.shard_id] = self._resumable[old.session_id] = session  # type: ignore[index]
        await self._send_event(session, "RESUMED", {})
        self._notify()

    async def _send_event(self, session: _Session, event: str, data: Any) -> None:
        frame = {"op": 0, "t": event, "s": session.next_seq(), "d": data}
        await session.ws.send_str(_dumps(frame))

    # ----- interaction responses -------------------------------------------

    async def _callback(self, request: web.Request) -> web.Response:
        at = time.perf_counter()
        body, files = await _read_body(request)
        sent = self._by_token.get(request.match_info["token"])
        refusal = self._refuse_callback(sent, request.match_info["id"], at)
        if sent is None or refusal is not None:
            iid = sent.id if sent else 0
            self._record("callback", at=at, status=refusal.status, interaction_id=iid, body=body)
            return refusal
        mid = self._open_original(sent, body, files)
        record = self._record(
            "callback", at=at, interaction_id=sent.id, body=body, files=files, message_id=mid
        )
        self._answered[sent.id] = record
        self._callback_peers.add(request.transport)
        if "with_response" not in request.query:
            return web.Response(status=204)
        return _json(self._callback_response(sent, body.get("type")))

    def _refuse_callback(
        self, sent: SentInteraction | None, raw_id: str, at: float
    ) -> web.Response | None:
        if sent is None or str(sent.id) != raw_id or at - sent.sent_at > self.response_deadline:
            return _error(404, "Unknown interaction", 10062)
        if sent.id in self._answered:
            return _error(400, "Interaction has already been acknowledged.", 40060)
        return None

    def _open_original(
        self, sent: SentInteraction, body: Mapping[str, Any], files: Files
    ) -> int | None:
        """A message response (4) or a defer (5) creates the original message."""
        kind = body.get("type")
        if kind not in (4, 5):
            return None
        data = dict(body.get("data") or {})
        data["flags"] = (data.get("flags") or 0) | (LOADING if kind == 5 else 0)
        message = self._new_message(sent.channel_id, data, files, webhook=True)
        message["type"] = 20  # a reply to a slash command
        message["interaction_metadata"] = payloads.interaction_metadata(
            sent.id, sent.command, sent.user_id, sent.guild_id
        )
        self._originals[sent.id] = int(message["id"])
        return int(message["id"])

    def _callback_response(self, sent: SentInteraction, kind: int | None) -> dict[str, Any]:
        """`?with_response=1`: what discord.py 2.5+ reads after a callback."""
        message_id = self._originals.get(sent.id)
        message = self._messages.get(message_id) if message_id else None
        flags = message["flags"] if message else 0
        interaction = {
            "id": str(sent.id),
            "type": 2,
            "response_message_id": str(message_id) if message_id else None,
            "response_message_loading": bool(flags & LOADING),
            "response_message_ephemeral": bool(flags & EPHEMERAL),
        }
        resource = {"type": kind, "message": message} if message else None
        return {"interaction": interaction, "resource": resource}

    async def _followup(self, request: web.Request) -> web.Response:
        body, files = await _read_body(request)
        sent = self._by_token.get(request.match_info["token"])
        if sent is None or sent.id not in self._answered:
            self._record("followup", status=404, body=body, files=files)
            return _error(404, "Unknown Webhook", 10015)
        original = self._messages.get(self._originals.get(sent.id, 0))
        if original is not None and original["flags"] & LOADING:
            # Discord: the first followup after a defer becomes the deferred message.
            message = self._update(original, body, files)
        else:
            message = self._new_message(sent.channel_id, body, files, webhook=True)
        mid = int(message["id"])
        self._record("followup", interaction_id=sent.id, body=body, files=files, message_id=mid)
        return _json(message)

    async def _edit(self, request: web.Request) -> web.Response:
        body, files = await _read_body(request)
        sent, message = self._webhook_message(request)
        iid = sent.id if sent else 0
        if message is None:
            self._record("edit", status=404, interaction_id=iid, body=body, files=files)
            return _error(404, "Unknown Message", 10008)
        message = self._update(message, body, files)
        mid = int(message["id"])
        self._record("edit", interaction_id=iid, body=body, files=files, message_id=mid)
        return _json(message)

    async def _fetch(self, request: web.Request) -> web.Response:
        sent, message = self._webhook_message(request)
        self._record("fetch", status=200 if message else 404, interaction_id=sent.id if sent else 0)
        return _json(message) if message else _error(404, "Unknown Message", 10008)

    async def _delete(self, request: web.Request) -> web.Response:
        sent, message = self._webhook_message(request)
        status = 204 if message else 404
        self._record("delete", status=status, interaction_id=sent.id if sent else 0)
        if message is None:
            return _error(404, "Unknown Message", 10008)
        del self._messages[int(message["id"])]
        return web.Response(status=204)

    async def _channel_message(self, request: web.Request) -> web.Response:
        """A message with the bot token (a job that outlived its interaction token)."""
        if not self._authorized(request):
            return _error(401, "401: Unauthorized")
        body, files = await _read_body(request)
        message = self._new_message(int(request.match_info["channel"]), body, files)
        self._record("message", body=body, files=files, message_id=int(message["id"]))
        return _json(message)

    async def _channel_edit(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, "401: Unauthorized")
        body, files = await _read_body(request)
        message = self._messages.get(int(request.match_info["message"]))
        if message is None:
            self._record("message_edit", status=404, body=body, files=files)
            return _error(404, "Unknown Message", 10008)
        message = self._update(message, body, files)
        mid = int(message["id"])
        self._record("message_edit", body=body, files=files, message_id=mid)
        return _json(message)

    def _webhook_message(
        self, request: web.Request
    ) -> tuple[SentInteraction | None, dict[str, Any] | None]:
        sent = self._by_token.get(request.match_info["token"])
        if sent is None:
            return None, None
        raw = request.match_info["message"]
        message_id = self._originals.get(sent.id) if raw == "@original" else int(raw)
        return sent, self._messages.get(message_id or 0)

    def _new_message(
        self, channel_id: int, body: Mapping[str, Any], files: Files, *, webhook: bool = False
    ) -> dict[str, Any]:
        message = payloads.message(
            self._ids(),
            channel_id,
            author=self.bot_user,
            body=body,
            attachments=[self._attachment(name, size) for name, size in files],
            webhook_id=self.application_id if webhook else None,
        )
        self._messages[int(message["id"])] = message
        return message

    def _update(
        self, message: dict[str, Any], body: Mapping[str, Any], files: Files
    ) -> dict[str, Any]:
        """An edit: given fields replace, `attachments` lists those kept, files are added."""
        for key in ("content", "embeds", "components"):
            if key in body:
                message[key] = body[key] if body[key] is not None else type(message[key])()
        kept = message["attachments"]
        if "attachments" in body:
            wanted = {str(a.get("id")) for a in body["attachments"] or []}
            kept = [a for a in kept if a["id"] in wanted]
        message["attachments"] = kept + [self._attachment(name, size) for name, size in files]
        message["flags"] = (message["flags"] & ~LOADING) | (body.get("flags") or 0)
        message["edited_timestamp"] = payloads.iso()
        return message

    def _attachment(self, name: str, size: int) -> dict[str, Any]:
        return payloads.attachment(
            self._ids(), name, size, base_url=f"http://127.0.0.1:{self.port}"
        )

    # ----- control channel (a benchmark in another process) ----------------

    async def _control_ready(self, request: web.Request) -> web.Response:
        try:
            await self.wait_ready(float(request.query.get("timeout", "30")))
        except TimeoutError:
            return _json({"ready": False, "shards": self.ready_shards}, 504)
        return _json({"ready": True, "shards": self.ready_shards})

    async def _control_burst(self, request: web.Request) -> web.Response:
        spec = await request.json(loads=_loads)
        count, duration = int(spec["count"]), float(spec.get("duration", 1.0))
        seconds = await self.burst(spec["mix"], count=count, duration=duration)
        return _json({"sent": count, "seconds": seconds})

    async def _control_results(self, request: web.Request) -> web.Response:
        return _json(self.results())

    async def _control_reset(self, request: web.Request) -> web.Response:
        self.reset()
        gc.collect()  # between measurements, not inside one (see `_serve`)
        return _json({"reset": True})


async def _read_body(request: web.Request) -> tuple[dict[str, Any], Files]:
    """JSON body, or multipart `payload_json` plus `files[n]` parts as (name, size)."""
    if not request.can_read_body:
        return {}, ()
    if not request.content_type.startswith("multipart/"):
        return await request.json(loads=_loads), ()
    body: dict[str, Any] = {}
    files = []
    async for part in await request.multipart():
        data = await part.read()  # type: ignore[union-attr]
        if part.name == "payload_json":
            body = _loads(data)
        elif part.name and part.name.startswith("files["):
            files.append((part.filename or part.name, len(data)))
    return body, tuple(files)


@contextlib.contextmanager
def pointed_at(fake: FakeDiscord | FakeDiscordProcess) -> Iterator[None]:
    """Point discord.py's REST base and default gateway at the fake; restore after.

    One `Route.BASE` covers the bot's REST calls and the interaction webhooks.
    Never call `http.set_api_version()` inside: it resets the base.
    """
    import discord.gateway
    import discord.http
    import yarl

    old_base = discord.http.Route.BASE
    old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = fake.base_url
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.ws_url)
    try:
        yield
    finally:
        discord.http.Route.BASE = old_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway


class FakeDiscordProcess:
    """A `FakeDiscord` in a child process, driven over its `/_control` endpoints.

    A benchmark keeps the fake's CPU out of the bot's process this way::

        async with FakeDiscordProcess.spawn(shard_count=2, guilds=16) as fake:
            with pointed_at(fake):
                ...start the bot with fake.token...
                await fake.wait_ready()
                await fake.burst(mix, count=1000, duration=1.0)
                results = await fake.results()
    """

    def __init__(self, info: Mapping[str, Any], token: str) -> None:
        self.port: int = info["port"]
        self.base_url: str = info["base_url"]
        self.ws_url: str = info["ws_url"]
        self.token = token
        self._control = f"http://127.0.0.1:{self.port}/_control"
        self._http = ClientSession(timeout=ClientTimeout(total=120))

    @classmethod
    @contextlib.asynccontextmanager
    async def spawn(
        cls, *, shard_count: int = 2, guilds: int = 4, token: str = DEFAULT_TOKEN
    ) -> AsyncIterator[FakeDiscordProcess]:
        args = ["--port", "0", "--shards", str(shard_count), "--guilds", str(guilds)]
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "aibot.sandbox.fake_discord",
            *args,
            stdout=asyncio.subprocess.PIPE,
            env=_child_env(token),
        )
        try:
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), 30)
            if not line:
                raise RuntimeError("the fake Discord process exited before it was ready")
            fake = cls(json.loads(line), token)
            try:
                yield fake
            finally:
                await fake._http.close()
        finally:
            if process.returncode is None:
                process.terminate()
                await asyncio.wait_for(process.wait(), 10)

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        async with self._http.request(method, self._control + path, **kwargs) as response:
            data = await response.json(content_type=None)
            if response.status >= 400:
                raise RuntimeError(f"fake Discord {path}: {response.status} {data}")
            return data

    async def wait_ready(self, timeout: float = 30.0) -> list[int]:
        """Until every shard is identified; the ready shard ids."""
        data = await self._call("GET", "/ready", params={"timeout": str(timeout)})
        return data["shards"]

    async def burst(
        self, mix: Sequence[Mapping[str, Any]], *, count: int, duration: float = 1.0
    ) -> float:
        """See `FakeDiscord.burst`; returns once every interaction is sent."""
        spec = {"mix": list(mix), "count": count, "duration": duration}
        return (await self._call("POST", "/burst", json=spec))["seconds"]

    async def results(self) -> dict[str, Any]:
        """See `FakeDiscord.results`."""
        return await self._call("GET", "/results")

    async def reset(self) -> None:
        await self._call("POST", "/reset")


def _child_env(token: str) -> dict[str, str]:
    # The token goes through the environment, not argv (visible in `ps`); the
    # project root goes on the path so `-m aibot...` works from any directory.
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "AIBOT_FAKE_DISCORD_TOKEN": token, "PYTHONPATH": path}


async def _serve(args: argparse.Namespace, token: str) -> None:
    # This process stands in for Discord, whose servers do not stop for a garbage
    # collection of the bot's machine. Its automatic collector is off; every
    # /_control/reset (before each measurement) collects instead. Otherwise a full
    # pass over all the fake keeps (25 ms late in a run) lands inside a burst and is
    # timed as the bot's latency.
    gc.disable()
    fake = FakeDiscord(shard_count=args.shards, guilds=args.guilds, token=token, port=args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with fake.running():
        info = {"port": fake.port, "base_url": fake.base_url, "ws_url": fake.ws_url}
        print(json.dumps(info), flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m aibot.sandbox.fake_discord`: serve until SIGTERM or SIGINT.

    The bot token is `AIBOT_FAKE_DISCORD_TOKEN` (default `fake-discord-bot-token`).
    """
    parser = argparse.ArgumentParser(
        prog="python -m aibot.sandbox.fake_discord", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--shards", type=int, default=2, help="what GET /gateway/bot says")
    parser.add_argument("--guilds", type=int, default=4, help="guilds, spread over the shards")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args, os.environ.get("AIBOT_FAKE_DISCORD_TOKEN", DEFAULT_TOKEN)))


if __name__ == "__main__":
    main()
