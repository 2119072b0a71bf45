"""The garbage collector, kept out of the members' way while the bot serves.

CPython's cycle collector stops the event loop while it runs. Its young generations
hold only what was made recently and take well under a millisecond, but a full
collection walks every object the process holds. During a burst of commands that
is thousands of objects in flight (interactions, members, tasks, requests), and a
full collection then takes tens of milliseconds, every command arriving meanwhile
waiting behind it: measured with `bench.front --cluster`, most of a gateway's defer
p99 above the bare bot's came from one full collection landing in the burst.

So, once the bot serves (`python run.py`, and the benchmarks, as it does):
- `freeze_startup_heap`: every object alive at start (modules, classes, the command
  tree, settings, caches) is moved out of the collector's sight for good;
- `IdleCollections`: the young generations are collected as usual, full
  collections only when no command has come for `quiet` seconds, and at the latest
  `at_most` seconds after the last one, so that memory held in reference cycles
  stays bounded under a steady stream of commands too. (Garbage without cycles is
  freed at once, by reference counting, whatever the collector does.)

Both are process-wide, for serving only: tests build many bots in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Callable

__all__ = ["IdleCollections", "freeze_startup_heap"]

# The third threshold counts the young collections between two full ones: this many
# never come between two of ours (one a second at most under load is usual).
_NO_AUTOMATIC_FULL_COLLECTION = 1_000_000


def freeze_startup_heap() -> None:
    """Collect, then move every object alive now out of the garbage collector's sight
    for good. A full collection otherwise walks them all again, some 80 ms on a small
    machine with every thread stopped."""
    gc.collect()
    gc.freeze()


class IdleCollections:
    """Full garbage collections when the bot is idle (see the module docstring).

    `idle_for()` says how long the bot has had no command to answer (seconds)."""

    def __init__(
        self,
        idle_for: Callable[[], float],
        *,
        quiet: float = 1.0,
        at_most: float = 60.0,
        check_every: float = 0.5,
    ) -> None:
        self.idle_for = idle_for
        self.quiet = quiet
        self.at_most = at_most
        self.check_every = check_every
        self.collections = 0  # full collections run by this object
        self._task: asyncio.Task[None] | None = None
        self._thresholds: tuple[int, int, int] | None = None

    def start(self) -> None:
        """Freeze the heap as it is now and take over full collections."""
        if self._task is not None:
            return
        freeze_startup_heap()
        young, middle, _full = self._thresholds = gc.get_threshold()
        gc.set_threshold(young, middle, _NO_AUTOMATIC_FULL_COLLECTION)
        self._task = asyncio.create_task(self._run(), name="aibot-idle-collections")

    async def stop(self) -> None:
        """Give full collections back to the collector's own schedule, and the
        frozen heap back to the collector."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
        gc.unfreeze()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(self.check_every)
            now = loop.time()
            # The oldest generation's count: young collections since the last full one.
            if self.due(self.idle_for(), now - last, promoted=gc.get_count()[2]):
                gc.collect()
                self.collections += 1
                last = loop.time()

    def due(self, idle: float, since_last: float, *, promoted: int) -> bool:
        """Whether a full collection runs now: objects were `promoted` to the oldest
        generation since the last one, and the bot has been idle `quiet` seconds or
        the last one is `at_most` seconds old."""
        if not promoted:
            return False
        return idle >= self.quiet or since_last >= self.at_most
