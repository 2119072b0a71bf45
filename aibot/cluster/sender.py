"""Writes to Redis that a synchronous caller hands off: `Sender`.

Some reports are made where nothing may wait: a key lease's outcome
(`Lease.ok` / `rate_limited` / `bad_key` are plain methods, called on every
provider call) and a ledger row (`Ledger.record` never blocks). A `Sender`
takes each write as a coroutine factory, queues it (bounded) and sends the
queue in order from one task of its own, which exists only while there is
something to send: no idle task is left behind on the loop, and a write
never overtakes an earlier one.

A write that fails (Redis down or slow) is tried again after each of
`pauses`; then it is dropped and logged, unless the sender `persists`, in
which case it is tried again at the last pause until it goes through (the
writes behind it wait). A full queue drops the oldest write, counted in
`dropped` and logged: memory stays bounded whatever Redis does.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from redis.exceptions import RedisError

__all__ = ["FAILURES", "Sender"]

log = logging.getLogger("aibot.cluster.sender")

# What a write to Redis may fail with while Redis is down, slow or restarting.
FAILURES = (RedisError, OSError, TimeoutError)

Write = Callable[[], Awaitable[object]]


class Sender:
    """Queued writes sent in order by one short-lived task (see the module doc).
    `name` says what is sent, for the log."""

    def __init__(
        self,
        name: str,
        *,
        limit: int = 1000,
        pauses: Sequence[float] = (0.2, 1.0),
        persist: bool = False,
    ) -> None:
        if limit < 1 or not pauses:
            raise ValueError("a sender needs room for one write and at least one pause")
        self.name = name
        self.dropped = 0  # writes given up: queue full, or failed past the pauses
        self._pauses = tuple(pauses)
        self._persist = persist
        self._queue: deque[Write] = deque(maxlen=limit)
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._queue)

    def send(self, write: Write) -> None:
        """Queue `write` (a function making the coroutine that writes) and make
        sure the sending task runs. Never waits; must be called on the loop."""
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
            log.warning("%s: %d queued, dropping the oldest", self.name, len(self._queue))
        self._queue.append(write)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def flush(self) -> None:
        """Wait until everything queued so far was sent (or given up)."""
        while self._task is not None:
            await asyncio.shield(self._task)

    async def _run(self) -> None:
        try:
            while self._queue:
                write = self._queue[0]
                await self._deliver(write)
                if self._queue and self._queue[0] is write:  # unless dropped meanwhile
                    self._queue.popleft()
        finally:
            # No await between the empty check and this: a `send` either saw
            # this task running (and its write was taken) or starts a new one.
            self._task = None

    async def _deliver(self, write: Write) -> None:
        tries = 0
        while True:
            try:
                await write()
                return
            except FAILURES as err:
                if tries >= len(self._pauses) and not self._persist:
                    self.dropped += 1
                    log.warning("%s: gave up a write (%s)", self.name, type(err).__name__)
                    return
                pause = self._pauses[min(tries, len(self._pauses) - 1)]
                if tries == 0:
                    log.info("%s: Redis failed (%s), trying again", self.name, type(err).__name__)
                tries += 1
                await asyncio.sleep(pause)
