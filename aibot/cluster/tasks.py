"""The cluster's background loops: pausing between tries while Redis fails, and
stopping them for certain.

redis-py's asyncio client can swallow a task's cancellation when it arrives
at the wrong moment inside a command (redis/redis-py#2028, #2551): the loop
then goes on as if nothing happened and `await task` waits forever (seen
here as a gateway taking 60 s to close). `stop_tasks` cancels again until
the tasks are done, so a lost cancel costs one `every` interval, not a hang.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any

__all__ = ["Backoff", "LoopTask", "stop_tasks"]


class Backoff:
    """The pause before the next try of something failing: `first` seconds after the
    first failure, twice as long after each one in a row, `most` seconds at most;
    `reset()` once a try succeeds."""

    def __init__(self, first: float, most: float) -> None:
        self.first = first
        self.most = most
        self.seconds = first  # the next pause
        self.failures = 0  # in a row

    async def pause(self) -> None:
        """Count a failure and sleep the pause it calls for."""
        self.failures += 1
        seconds, self.seconds = self.seconds, min(self.most, self.seconds * 2)
        await asyncio.sleep(seconds)

    def reset(self) -> None:
        self.seconds = self.first
        self.failures = 0


async def stop_tasks(tasks: Collection[asyncio.Task[Any]], *, every: float = 0.5) -> None:
    """Cancel `tasks` and wait until each is done, cancelling again every
    `every` seconds one that is still running. Their results and errors are
    dropped (they are loops being stopped)."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=every)
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" warning


class LoopTask:
    """A background loop: `start()` runs `run()` (until cancelled) in a task of
    its own, once; `stop()` stops it for certain (`stop_tasks`)."""

    _task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        if self._task is not None:
            await stop_tasks([self._task])
            self._task = None
