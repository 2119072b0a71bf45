"""What a gateway's commands ask of Redis, each call bounded, so that a member is
answered within Discord's 3 s whatever Redis does, and Redis away is said in words.

`redis_call()` gives a call `CALL_TIMEOUT` seconds and turns Redis's failures into
`TemporarilyUnavailable` (the member reads "temporarily unavailable, try again
shortly"). `ClusterGate` is the intake's gate before the defer, failing closed;
`ClusterLimits` what `/admin quota` reads and sets, `ClusterConversations` what
`/reset` forgets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from redis.exceptions import RedisError

from aibot.cluster.gate import SharedGate
from aibot.cluster.memory import SharedMemory
from aibot.jobs import Job, TemporarilyUnavailable
from aibot.ports import Limits

__all__ = [
    "CALL_TIMEOUT",
    "ClusterConversations",
    "ClusterGate",
    "ClusterLimits",
    "redis_call",
]

log = logging.getLogger("aibot.cluster.commands")

# Seconds a member's command waits for Redis before it is refused.
CALL_TIMEOUT = 1.0
# A take refused for want of an answer is taken back at once, and again this many
# seconds later: it may reach Redis after the first try.
UNDO_AGAIN = 2.0


@contextlib.asynccontextmanager
async def redis_call() -> AsyncIterator[None]:
    """A call to Redis on a command's path: `CALL_TIMEOUT` seconds at most, and
    any failure of Redis's said as `TemporarilyUnavailable`."""
    try:
        async with asyncio.timeout(CALL_TIMEOUT):
            yield
    except (RedisError, TimeoutError):
        raise TemporarilyUnavailable("redis unreachable") from None


class ClusterGate:
    """The gate before the defer in cluster mode: `SharedGate`, failing closed.
    With Redis unreachable (as `reachable()` last saw it, or this very call), every
    command is refused at once with `TemporarilyUnavailable`: no defer without
    a durable job behind it."""

    def __init__(self, gate: SharedGate, reachable: Callable[[], bool] = lambda: True) -> None:
        self.gate = gate
        self.reachable = reachable
        self._undoing: set[asyncio.Task[None]] = set()

    async def take(self, job: Job) -> None:
        if not self.reachable():
            raise TemporarilyUnavailable("redis unreachable")
        try:
            async with redis_call():
                await self.gate.take(job)
        except TemporarilyUnavailable:
            # Sent, perhaps counted, its answer lost: the member, refused, must not
            # pay a use and a cooldown for it.
            task = asyncio.get_running_loop().create_task(self._undo(job))
            self._undoing.add(task)
            task.add_done_callback(self._undoing.discard)
            raise

    async def _undo(self, job: Job) -> None:
        for pause in (0.0, UNDO_AGAIN):
            await asyncio.sleep(pause)
            with contextlib.suppress(TemporarilyUnavailable):
                async with redis_call():
                    if await self.gate.undo(job):
                        log.info("job %s: its take, answered too late, taken back", job.id)
                        return

    async def refund(self, job: Job) -> bool:
        try:
            return await self.gate.refund(job)
        except RedisError as error:
            log.info("job %s: use not given back, Redis away (%r)", job.id, error)
            return False

    async def undo(self, job: Job) -> bool:
        try:
            return await self.gate.undo(job)
        except RedisError as error:
            log.info("job %s: take not taken back, Redis away (%r)", job.id, error)
            return False


class ClusterLimits:
    """`aibot.ports.QuotaLimits` over the shared gate, each call bounded."""

    def __init__(self, gate: SharedGate) -> None:
        self.gate = gate

    async def limits(self, guild_id: int | None, pool: str) -> Limits:
        async with redis_call():
            return await self.gate.limits(guild_id, pool)

    async def set_limits(self, guild_id: int, pool: str, **given: Any) -> Limits:
        """`given`: cooldown, daily_quota, daily_budget (see `QuotaLimits`)."""
        async with redis_call():
            return await self.gate.set_limits(guild_id, pool, **given)

    async def clear_limits(self, guild_id: int, pool: str) -> Limits:
        async with redis_call():
            return await self.gate.clear_limits(guild_id, pool)


class ClusterConversations:
    """`aibot.ports.Conversations` over the shared memory, each call bounded."""

    def __init__(self, memory: SharedMemory) -> None:
        self.memory = memory

    async def reset(self, channel_id: int, user_id: int) -> int:
        async with redis_call():
            return await self.memory.reset(channel_id, user_id)
