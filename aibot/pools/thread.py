"""An event loop in a thread of its own, and how to reach a loop from another thread.

With `AIBOT_POOL_THREADS=true`, each pool runs its workers on a `LoopThread`: the
openai SDK's stream parsing, Discord edits and uploads of one pool then never queue
on the gateway's loop, nor on another pool's; the gateway's loop only routes, gates
and defers, and `Pool.submit` is safe from any thread. It is off by default: under
CPython's GIL, `python -m bench.front` measured the gateway's defers 2-4x slower
with it (every system call the gateway makes hands the lock to a busy pool thread,
and it waits a switch interval to get it back), so it is meant for free-threaded
Python builds, where the threads run in parallel.

`run_on(loop, coro)` and `call_on(loop, fn)` are the one way code here crosses
from one loop to another: directly when already on that loop (one loop for
everything, as under SimCord), through the thread-safe calls otherwise.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["LoopThread", "call_on", "current_loop", "run_on"]

log = logging.getLogger("aibot.pool")

T = TypeVar("T")

# Seconds `stop()` waits for the thread to end; its loop has no work left by then
# (the pool drained), so this only bounds a bug.
_JOIN_TIMEOUT = 10.0


def current_loop() -> asyncio.AbstractEventLoop | None:
    """The loop running in this thread, or None."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def run_on(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    """Await `coro` run on `loop`, from any loop. Cancelling the caller cancels it there.
    Raises RuntimeError (and drops `coro`) when `loop` no longer runs."""
    if current_loop() is loop:
        return await coro
    if loop.is_closed() or not loop.is_running():
        coro.close()
        raise RuntimeError("that event loop is not running")
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))


def call_on(loop: asyncio.AbstractEventLoop, fn: Callable[..., object], *args: object) -> None:
    """Call `fn(*args)` on `loop`: now when this is its thread, else soon in its thread."""
    if current_loop() is loop:
        fn(*args)
    else:
        loop.call_soon_threadsafe(fn, *args)


class LoopThread:
    """A daemon thread named `aibot-pool-<name>` running an event loop of its own.

    `start()` returns once the loop runs; `submit`, `call` and `run` hand it work
    from any thread; `stop()` lets the callbacks already handed over run, cancels
    what tasks are left (none, after a pool's drain), closes the loop and joins.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=f"aibot-pool-{name}", daemon=True)
        self._running = threading.Event()

    def start(self) -> LoopThread:
        self._thread.start()
        self._running.wait()
        return self

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._running.set)
        try:
            self.loop.run_forever()
        finally:
            self._close()

    def _close(self) -> None:
        loop = self.loop
        try:
            left = asyncio.all_tasks(loop)
            if left:
                log.warning("%s: cancelling %d task(s) left at stop", self._thread.name, len(left))
                for task in left:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run `coro` on this loop; its result as a thread-safe future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, fn: Callable[..., object], *args: object) -> None:
        """Call `fn(*args)` in this thread, soon."""
        self.loop.call_soon_threadsafe(fn, *args)

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro` run on this loop, from any other loop (or this one)."""
        return await run_on(self.loop, coro)

    def stop(self) -> None:
        """Stop the loop once the callbacks already handed to it ran, and join.
        Safe to call twice; not from this thread itself."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("a LoopThread cannot stop itself")
        if not self._thread.is_alive():
            if self._thread.ident is None and not self.loop.is_closed():
                self.loop.close()  # never started
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(_JOIN_TIMEOUT)
        if self._thread.is_alive():
            log.error("%s did not stop within %.0f s", self._thread.name, _JOIN_TIMEOUT)

    def __repr__(self) -> str:
        return f"LoopThread({self.name!r}, alive={self.alive})"
