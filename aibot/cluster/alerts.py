"""Operators' alerts from worker processes to the gateways, over a Redis stream.

A worker-only process (`AIBOT_GATEWAY=off`) has no Discord connection and no
alert room, yet its key rings are where a key the provider refuses is found out
(`aibot.watch.watch_rings`). Its `AlertPublisher` implements `aibot.alerts.Alerts`:
`alert(...)` never blocks; a `Sender` (bounded, in order, a few tries) adds the
alert to the stream `<prefix>:alerts` as one JSON field (plain text meant for
the operators: never a secret, as everywhere alerts go).

Every gateway runs an `AlertFollower`: it reads the alerts added since it started
(no consumer group: every gateway sees every alert and posts it into the servers
it holds) and hands each alert to its `AlertHub`, which folds repeats
as it does its own. Alerts are not urgent: each read waits for the background's
turn (`aibot.foreground`). An alert raised while no gateway was reading is not
posted later: it would be stale news, and the worker's log has it. Redis away:
the publisher drops what it cannot send after its tries (logged), the follower
logs, waits and reads on. The stream is capped (approximately) at `keep` alerts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as redis

from aibot.alerts import Alert, Alerts
from aibot.cluster.sender import FAILURES, Sender
from aibot.cluster.tasks import Backoff, LoopTask

__all__ = ["AlertFollower", "AlertPublisher", "alerts_stream"]

log = logging.getLogger("aibot.cluster.alerts")

_KEEP = 1_000


def alerts_stream(prefix: str) -> str:
    """The stream's Redis key."""
    return f"{prefix}:alerts"


class AlertPublisher:
    """A worker's `Alerts` port: each alert goes to the gateways through Redis."""

    def __init__(self, client: redis.Redis, prefix: str, *, keep: int = _KEEP) -> None:
        self._client = client
        self._stream = alerts_stream(prefix)
        self._keep = keep
        self._sender = Sender("alerts", limit=keep, pauses=(0.5, 2.0, 5.0))

    def alert(self, alert: Alert) -> None:
        fields: dict[Any, Any] = {"alert": json.dumps(_as_dict(alert))}
        self._sender.send(
            lambda: self._client.xadd(self._stream, fields, maxlen=self._keep, approximate=True)
        )

    async def flush(self) -> None:
        """Wait until every alert raised so far is in the stream (or given up)."""
        await self._sender.flush()


class AlertFollower(LoopTask):
    """A gateway's reader of the alerts stream into its `alerts` hub. `start()` /
    `stop()` a task following it; `step()` reads once, for tests. A read waits
    `block` seconds at most for an alert."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        alerts: Alerts,
        *,
        block: float = 1.0,
        turn: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._client = client
        self._stream = alerts_stream(prefix)
        self._alerts = alerts
        self._block_ms = max(1, round(block * 1000))
        self._turn = turn
        self._last: str | None = None  # the latest entry read; None: not started

    async def run(self) -> None:
        """Follow the stream until cancelled; Redis failing is waited out."""
        backoff = Backoff(0.5, 5.0)
        while True:
            try:
                await self.step()
                backoff.reset()
            except FAILURES as err:
                log.warning(
                    "alerts: Redis failed (%s); again in %.1fs", type(err).__name__, backoff.seconds
                )
                await backoff.pause()

    async def step(self, *, block: bool = True) -> int:
        """Hand on the alerts added since the last read (waiting up to the block
        time for one when `block`), in the background's turn. Returns how many."""
        if self._turn is not None:
            await self._turn()
        if self._last is None:
            # New alerts only: from the stream's latest entry as this gateway starts.
            latest: Any = await self._client.xrevrange(self._stream, count=1)
            self._last = latest[0][0] if latest else "0-0"
        streams: dict[Any, Any] = {self._stream: self._last}
        # (stream, [(id, fields), ...]) pairs: redis-py's decoded reply.
        answer: Any = await self._client.xread(streams, block=self._block_ms if block else None)
        told = 0
        for _, entries in answer or []:
            for entry_id, fields in entries:
                self._last = entry_id
                try:
                    alert = _from_dict(json.loads(fields["alert"]))
                except (KeyError, TypeError, ValueError) as error:
                    log.warning("alerts: entry %s unreadable (%r), skipped", entry_id, error)
                    continue
                self._alerts.alert(alert)
                told += 1
        return told


def _as_dict(alert: Alert) -> dict[str, object]:
    return {
        "kind": alert.kind,
        "pool": alert.pool,
        "guild_id": alert.guild_id,
        "detail": dict(alert.detail),
    }


def _from_dict(data: dict[str, object]) -> Alert:
    guild_id = data.get("guild_id")
    detail = data.get("detail") or {}
    if not isinstance(detail, dict):
        raise TypeError("detail is not a mapping")
    return Alert(
        kind=str(data["kind"]),
        pool=str(data.get("pool") or ""),
        guild_id=int(guild_id) if isinstance(guild_id, int) else None,
        detail={str(k): str(v) for k, v in detail.items()},
    )
