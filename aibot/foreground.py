"""Members first: what a member is waiting on runs before the work that can wait.

Discord voids an interaction not answered within 3 seconds, and the bot's first
answer to a command (a defer) takes well under a millisecond of work. The pools' work
(a job starting, a piece of a streamed answer, a reply written into Discord) and the
store's writes behind can wait a little. On one event loop nothing is preempted, so
in a burst of commands the defers would queue behind the pools' work. `Foreground`
lets them go first:

- the task that answers a member's command calls `serving()` as it starts (the
  front does it for every slash command) and counts as the foreground until it
  ends or calls `served()`: the intake does as its answer (a defer or a refusal)
  goes out, since the rest is Discord's round trip (tens of milliseconds, when
  the loop is free for other work);
- background work awaits `turn()` before each step, or is a call lined up by
  `call_in_turn()`. It goes on at once when no command is being answered and none
  came in the last `gap` seconds (in a burst the next one is on its way); else as
  soon as that holds, or after `patience` seconds at the latest, so a steady
  stream of commands slows the pools down but never stops them. A foreground
  task's own steps never wait for it;
- waiters go in the order they came, at most `batch` per turn of the loop, so the
  work let through at the end of a burst does not itself hold the next command up.

No polling and no idle timer: waiters are woken when the last foreground task is
done or the gap ends, and a timer runs only while someone waits. Times are the event
loop's.

The background's work waits in two places, both set up by the composition root
(`aibot.app`), so nothing below knows of it: the intake hands each deferred job to
the in-process transport in turn (`call_in_turn`: a call waiting in line, not a task
per job: a burst defers thousands of jobs, and thousands of waiting tasks are tens of
thousands of objects for the garbage collector to walk again and again), and every
reply the worker makes tells the member anything (progress, a piece of a streamed
answer, the result) in turn (`Foreground.replies`). Measured with `bench.front`:
without the second, the answers of the jobs taken early in a burst take the loop
from the defers of the commands still arriving (defer p99 of 100 ms and more instead
of a few).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import math
from collections import deque
from collections.abc import Awaitable, Callable

from aibot.jobs import AibotError, Job, Progress, Reply, Result
from aibot.ports import ReplyFactory

__all__ = ["Foreground"]

_Turn = Callable[[], Awaitable[None]]
# A waiter in line: (when its patience runs out, what to call on its turn).
_Waiter = tuple[float, Callable[[], object]]


class Foreground:
    """See the module docstring. One per bot, shared by the front and every pool."""

    def __init__(self, *, gap: float = 0.005, patience: float = 2.0, batch: int = 4) -> None:
        self.gap = gap
        self.patience = patience
        self.batch = batch
        self._last = -math.inf  # when the latest command came in
        self._front: set[asyncio.Task[object]] = set()
        self._waiters: deque[_Waiter] = deque()
        self._wake: asyncio.TimerHandle | asyncio.Handle | None = None
        self._wake_at = math.inf  # when `_wake` is due

    # ---------------------------------------------------------------- the front

    def serving(self) -> None:
        """The current task answers a member: background work waits until it is done."""
        task = asyncio.current_task()
        if task is None or task in self._front:
            return
        self._last = asyncio.get_running_loop().time()
        self._front.add(task)
        task.add_done_callback(self._done)

    def served(self) -> None:
        """The current task has given the member their first answer."""
        task = asyncio.current_task()
        if task is not None:
            self._done(task)

    def _done(self, task: asyncio.Task[object]) -> None:
        self._front.discard(task)
        if not self._front and self._waiters:
            self._arm(asyncio.get_running_loop())

    @property
    def busy(self) -> int:
        """Commands being answered now."""
        return len(self._front)

    @property
    def waiting(self) -> int:
        """Background steps (and calls, `call_in_turn`) waiting for their turn."""
        return len(self._waiters)

    # ----------------------------------------------------------- the background

    def replies(self, factory: ReplyFactory) -> ReplyFactory:
        """`factory`, whose replies each wait for the background's turn before
        telling the member anything."""
        return _RepliesInTurn(factory, self.turn)

    async def turn(self) -> None:
        """Wait until background work may go on (see the module docstring)."""
        loop = asyncio.get_running_loop()
        if not self._waiters and self._quiet(loop.time()):
            return
        if asyncio.current_task() in self._front:
            return  # a member's own command never waits for itself
        future: asyncio.Future[None] = loop.create_future()
        self._line_up(loop, functools.partial(_resolve, future))
        await future  # cancelled: left in the line, skipped when its turn comes

    def call_in_turn(self, callback: Callable[..., object], *args: object) -> None:
        """Call `callback(*args)` when background work may go on, as `turn` would
        return (at once when it may now), in the context of this call, like
        `loop.call_soon`. What waits is the call alone. `callback` must not raise."""
        loop = asyncio.get_running_loop()
        if not self._waiters and self._quiet(loop.time()):
            callback(*args)
            return
        self._line_up(loop, functools.partial(contextvars.copy_context().run, callback, *args))

    def _line_up(self, loop: asyncio.AbstractEventLoop, call: Callable[[], object]) -> None:
        self._waiters.append((loop.time() + self.patience, call))
        if self._wake is None:
            self._arm(loop)

    def _quiet(self, now: float) -> bool:
        """No command is being answered, and none came in the last `gap` seconds."""
        return not self._front and now - self._last >= self.gap

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wake when the first waiter may go: now when quiet; else at the end of the
        gap (no command is being answered) or when its patience runs out. A wake due
        no later stays: in a burst, each command's end would otherwise move it, twice
        a command, where waking once a gap and finding the burst still on costs less."""
        now = loop.time()
        at = self._waiters[0][0]
        if not self._front:
            at = min(at, self._last + self.gap)
        if self._wake is not None:
            if self._wake_at <= at:
                return
            self._wake.cancel()
        self._wake_at = at
        self._wake = loop.call_soon(self._release) if at <= now else loop.call_at(at, self._release)

    def _release(self) -> None:
        """Let up to `batch` waiters go: all when quiet, else those out of patience."""
        self._wake = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        quiet = self._quiet(now)
        released = 0
        waiters = self._waiters
        while waiters and released < self.batch:
            deadline, call = waiters[0]
            if not quiet and deadline > now:
                break
            waiters.popleft()
            call()
            released += 1
        if waiters:
            if released:
                self._wake, self._wake_at = loop.call_soon(self._release), now
            else:
                self._arm(loop)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():  # not cancelled meanwhile
        future.set_result(None)


class _RepliesInTurn:
    """A reply factory whose replies wait for `turn` before each call."""

    __slots__ = ("_factory", "_turn")

    def __init__(self, factory: ReplyFactory, turn: _Turn) -> None:
        self._factory = factory
        self._turn = turn

    def make(self, job: Job) -> Reply:
        return _ReplyInTurn(self._factory.make(job), self._turn)


class _ReplyInTurn:
    """A `Reply` that lets members' commands go first before each of its calls."""

    __slots__ = ("_reply", "_turn")

    def __init__(self, reply: Reply, turn: _Turn) -> None:
        self._reply = reply
        self._turn = turn

    async def progress(self, update: Progress) -> None:
        await self._turn()
        await self._reply.progress(update)

    async def stream(self, text: str) -> None:
        await self._turn()
        await self._reply.stream(text)

    async def finish(self, result: Result) -> None:
        await self._turn()
        await self._reply.finish(result)

    async def fail(self, error: AibotError) -> None:
        await self._turn()
        await self._reply.fail(error)
