"""The fake Discord's websocket gateway: HELLO, IDENTIFY, RESUME, heartbeats, dispatches.

Each shard IDENTIFYs with the bot token and `[shard_id, shard_count]`, and gets
READY and then a GUILD_CREATE for each of its guilds. A wrong token closes
with 4004, a wrong shard with 4010. Nothing is replayed on RESUME: the fake
only sends what a test asks for, live.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from . import payloads
from .records import SentInteraction
from .wire import dumps, loads

if TYPE_CHECKING:
    from .server import FakeDiscord

__all__ = ["Gateway", "Session"]


@dataclass(slots=True)
class Session:
    """One gateway connection: the shard it identified as and its sequence."""

    ws: web.WebSocketResponse
    shard_id: int | None = None
    session_id: str = ""
    seq: int = 0

    def next_seq(self) -> int:
        """The sequence number of the next dispatch on this connection."""
        self.seq += 1
        return self.seq


class Gateway:
    """The shards' connections to the fake, and the events sent over them.

    Reads the fake's token, shard count, guilds, bot user and gateway URL;
    notes each IDENTIFY in its `identified` and every interaction sent.
    """

    def __init__(self, fake: FakeDiscord) -> None:
        self._fake = fake
        self._sessions: dict[int, Session] = {}  # by shard id: the live one
        self._resumable: dict[str, Session] = {}  # by session id

    @property
    def ready_shards(self) -> list[int]:
        """Shards that have IDENTIFYed and got READY on a live connection."""
        return sorted(s for s, session in self._sessions.items() if not session.ws.closed)

    async def close(self) -> None:
        """Close every shard's connection."""
        for session in list(self._sessions.values()):
            await session.ws.close()

    async def dispatch(self, body: str, sent: SentInteraction) -> SentInteraction:
        """Send an INTERACTION_CREATE (`body`, already JSON) on its shard; `sent`, stamped."""
        session = self._sessions.get(sent.shard_id)
        if session is None or session.ws.closed:
            raise RuntimeError(f"shard {sent.shard_id} is not connected")
        # Stamped before the write: a callback cannot arrive before its stamp.
        sent = dataclasses.replace(sent, sent_at=time.perf_counter())
        self._fake.note_sent(sent)
        seq = session.next_seq()
        await session.ws.send_str(f'{{"op":0,"t":"INTERACTION_CREATE","s":{seq},"d":{body}}}')
        return sent

    async def connect(self, request: web.Request) -> web.WebSocketResponse:
        """`GET /gateway`: one shard's connection, from HELLO until it closes."""
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        session = Session(ws)
        hello = {"heartbeat_interval": self._fake.heartbeat_interval_ms}
        await ws.send_str(dumps({"op": 10, "d": hello}))
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await self._on_frame(session, loads(msg.data))
        finally:
            if session.shard_id is not None and self._sessions.get(session.shard_id) is session:
                del self._sessions[session.shard_id]
                self._fake.changed()
        return ws

    async def _on_frame(self, session: Session, frame: dict[str, Any]) -> None:
        op = frame.get("op")
        if op == 1:  # heartbeat
            await session.ws.send_str('{"op":11}')
        elif op == 2:
            await self._identify(session, frame["d"])
        elif op == 6:
            await self._resume(session, frame["d"])

    async def _identify(self, session: Session, data: dict[str, Any]) -> None:
        fake = self._fake
        if data.get("token") != fake.token:
            await session.ws.close(code=4004, message=b"Authentication failed.")
            return
        shard_id, count = data.get("shard", [0, 1])
        if count != fake.shard_count or not 0 <= shard_id < count:
            await session.ws.close(code=4010, message=b"Invalid shard.")
            return
        session.shard_id, session.session_id = shard_id, secrets.token_hex(16)
        mine = [g for g in fake.guilds if g.shard_id == shard_id]
        ready = payloads.ready(
            fake.bot_user,
            mine,
            session_id=session.session_id,
            resume_url=fake.ws_url,
            shard=(shard_id, count),
            application_id=fake.application_id,
        )
        await self._send_event(session, "READY", ready)
        for guild in mine:
            await self._send_event(
                session, "GUILD_CREATE", payloads.guild_create(guild, ready["user"])
            )
        fake.identified.append((shard_id, count))
        self._sessions[shard_id] = self._resumable[session.session_id] = session
        fake.changed()

    async def _resume(self, session: Session, data: dict[str, Any]) -> None:
        old = self._resumable.get(data.get("session_id", ""))
        if data.get("token") != self._fake.token or old is None:
            await session.ws.send_str('{"op":9,"d":false}')  # invalid session: IDENTIFY again
            return
        session.shard_id, session.session_id, session.seq = old.shard_id, old.session_id, old.seq
        self._sessions[old.shard_id] = self._resumable[old.session_id] = session  # type: ignore[index]
        await self._send_event(session, "RESUMED", {})
        self._fake.changed()

    async def _send_event(self, session: Session, event: str, data: Any) -> None:
        frame = {"op": 0, "t": event, "s": session.next_seq(), "d": data}
        await session.ws.send_str(dumps(frame))
