"""What a worker-only process (cluster mode, `AIBOT_GATEWAY=off`) shows on its own
`/health` and `/metrics`: its node, its pools and their free slots, and whether
Redis answers.

`WorkerStatus` is the `StatusSource` the HTTP server reads (`aibot.http`). It has
no gateway (`BotInfo.gateway` is False, so "gateway down" is never a problem
here); Redis's reachability is a PING made by `probe`, which the server awaits
before each answer, so `/health` says 503 within one request of Redis going
away and 200 again as soon as it is back. `problem` is the further check: no
pool's take loop running (before the start, after the drain, or a loop that
died).
"""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from aibot.cluster.runner import Runner
from aibot.cluster.views import node_snapshot
from aibot.snapshots import BotInfo, Event, NodeSnapshot, PoolSnapshot

__all__ = ["WorkerStatus"]

PROBE_TIMEOUT = 1.0  # seconds a PING may take before Redis counts as unreachable


class WorkerStatus:
    """A worker process's `StatusSource`, with its Redis `probe` and `problem` check."""

    def __init__(self, runner: Runner, redis: Redis) -> None:
        self.runner = runner
        self.redis = redis
        self.redis_up = False

    async def probe(self) -> None:
        """PING Redis (within `PROBE_TIMEOUT`) and remember whether it answered."""
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                await self.redis.ping()
        except (RedisError, TimeoutError, OSError):
            self.redis_up = False
        else:
            self.redis_up = True

    def problem(self) -> str | None:
        """What else makes `/health` say 503: no pool taking jobs here."""
        return None if self.runner.taking() else "no pool loop running"

    def bot_info(self) -> BotInfo:
        return BotInfo(
            name=self.runner.node,
            guilds=0,
            shards=(),
            uptime_s=time.time() - self.runner.started_at,
            gateway_up=False,
            mode=", ".join(self.runner.streams),
            gateway=False,
            redis_up=self.redis_up,
        )

    def pools(self) -> list[PoolSnapshot]:
        return self.runner.worker.snapshots()

    def events(self) -> list[Event]:
        return []

    def nodes(self) -> list[NodeSnapshot]:
        return [node_snapshot(self.runner.node_info(), here=self.runner.node)]
