"""The one `Pool`: a bounded, fair queue of jobs and the workers that run them.

Each role (chat, image, video, admin) is a `Pool` with its own queue, workers
and key rings, so one role's trouble never delays another. What differs per
role is only the `work` function (see `pools/chat.py` and friends).

- Bounded: a full queue refuses at once with `QueueFull(retry_after=...)`, an
  estimate from recent service times; nothing waits silently.
- Fair: every member has their own line and lines take turns, so one member's
  fifty jobs cannot starve another member's one.
- No idle waits: a job gets its own task when a worker slot is free (at most
  `workers` run at once); when it ends, the next job in turn starts in a new
  task. Nothing sits parked on a Queue or Event, which would keep SimCord (and
  any "is the bot quiet?" check) from ever settling.

Threads. A pool's jobs run on one event loop, the pool's: a `LoopThread` of its
own (see `pools/thread.py`), or the loop that first submits to it. Everything
else may be called from any thread: `submit`, `cancel`, `pause`, `resume`,
`jobs`, `load`, `position`, `wait_estimate` and `snapshot` take the pool's lock
for the few dictionary operations they need, and hand what must happen on the
pool's loop (starting a job's task, cancelling it, a coroutine given to
`run_soon`) to that loop. `drain` runs itself on the pool's loop, whoever awaits
it. Times are the pool loop's clock.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import math
import threading
import traceback
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aibot.jobs import AibotError, Cancelled, Job, Paused, QueueFull, Reply, ShuttingDown
from aibot.keys import KeyRing
from aibot.logs import log_context
from aibot.pools.thread import call_on, run_on
from aibot.router import PoolLoad
from aibot.snapshots import PoolSnapshot

__all__ = ["Outcome", "Pool", "Work"]

Work = Callable[[Job, Reply], Awaitable[None]]
Outcome = Callable[[Job, AibotError | None, float], Awaitable[None] | None]
T = TypeVar("T")

_LATENCIES = 2048  # jobs kept for the percentiles
_SERVICE_TIMES = 64  # jobs kept for the wait estimate
# Every PoolLoad there is, by (full, keys_down, paused).
_LOADS = {flags: PoolLoad(*flags) for flags in itertools.product((False, True), repeat=3)}


@dataclass(eq=False)
class _Entry:
    """A job in the pool, with its reply and its times (loop.time())."""

    job: Job
    reply: Reply = field(repr=False)
    seq: int
    submitted: float
    started: float | None = None  # None while queued
    # Made on the pool's loop just after the job is taken (None in between).
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    stop: str = ""  # why the pool cancelled its task: "cancel" or "drain"
    # In its work: only then is its task cancelled. A task cancelled before its first
    # step would never run its own clean-up; before the work, `stop` is checked instead.
    working: bool = False


class Pool:
    """Runs `work(job, reply)` for submitted jobs, at most `workers` at a time,
    with at most `queue_size` waiting. See the module docstring.

    `service_estimate` is the seconds a job is assumed to take until some have
    finished; it only feeds `wait_estimate`. `loop` is the loop the jobs run on
    (a `LoopThread`'s); None binds the pool to the loop that first submits.
    """

    def __init__(
        self,
        name: str,
        work: Work,
        *,
        workers: int,
        queue_size: int,
        rings: Sequence[KeyRing] = (),
        on_outcome: Outcome | None = None,
        service_estimate: float = 10.0,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.name = name
        self.workers = workers
        self.queue_size = queue_size
        self.rings = tuple(rings)
        self.done = 0
        self.failed = 0
        self._work = work
        self._on_outcome = on_outcome
        self._service_estimate = service_estimate
        self._log = logging.getLogger(f"aibot.pool.{name}")
        self._state = "running"  # running, paused, draining, stopped
        self._lines: dict[int, deque[_Entry]] = {}  # per member, in turn order
        self._queued: dict[str, _Entry] = {}
        self._running: dict[str, _Entry] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._seq = itertools.count()
        self._latencies: deque[float] = deque(maxlen=_LATENCIES)
        self._percentiles: list[float] | None = None  # of _latencies, until the next job ends
        self._service: deque[float] = deque(maxlen=_SERVICE_TIMES)
        self._loop = loop
        # Handed over from other threads, for `_wake` to start on the pool's loop: jobs
        # taken into a worker slot, and coroutines (`run_soon`). One wake-up is asked
        # for at a time, so a burst of submits wakes the pool's loop (and has its
        # thread compete for the interpreter) once, not once a job.
        self._starting: list[_Entry] = []
        self._posted: list[Coroutine[Any, Any, None]] = []
        self._wake_asked = False
        # Guards the state, the lines, the jobs (queued, starting, running) and the
        # figures. Held only for dictionary work, never across an await or a callback.
        self._lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop the pool's jobs run on (None until bound, see the class)."""
        return self._loop

    def _bound(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    async def run_on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro` run on the pool's loop (e.g. closing its provider clients)."""
        return await run_on(self._bound(), coro)

    def run_soon(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run `coro` as a task on the pool's loop, from any thread, without waiting
        for it (the front hands over a deferred job this way); `drain` waits for it."""
        with self._lock:
            self._posted.append(coro)
            wake = self._ask_wake()
        if wake:
            call_on(self._bound(), self._wake)

    def _ask_wake(self) -> bool:
        """Under the lock: True when the caller must have `_wake` called."""
        if self._wake_asked:
            return False
        self._wake_asked = True
        return True

    # -- taking jobs -------------------------------------------------------

    def submit(self, job: Job, reply: Reply) -> int:
        """Queue `job`; returns its place in line (1 = started now, 2 = next).
        Never blocks. Raises `ShuttingDown`, `Paused` or `QueueFull`
        (ValueError for a job id the pool already holds: a caller's bug).
        Safe from any thread; a job that starts at once starts on the pool's loop."""
        loop = self._bound()
        with self._lock:
            if self._state in ("draining", "stopped"):
                raise ShuttingDown(f"the {self.name} pool is shutting down")
            if self._state == "paused":
                raise Paused(f"the {self.name} pool is paused")
            if job.id in self._queued or job.id in self._running:
                raise ValueError(f"job {job.id} is already in the {self.name} pool")
            if len(self._queued) >= self.queue_size:
                wait = self._wait_estimate()
                raise QueueFull(f"the {self.name} queue is full", retry_after=wait)
            now = loop.time()
            entry = _Entry(job, reply, next(self._seq), now)
            self._lines.setdefault(job.user_id, deque()).append(entry)
            self._queued[job.id] = entry
            wake = self._take_free(now)
            # Most jobs start at once: no need to rank them in the queue.
            position = 1 if entry.started is not None else self._rank(entry) + 1
        if wake:
            call_on(loop, self._wake)
        return position

    def wait_estimate(self) -> float:
        """Seconds until a place frees up: recent service time x queued / workers."""
        with self._lock:
            return self._wait_estimate()

    def _wait_estimate(self) -> float:
        service = self._service
        average = sum(service) / len(service) if service else self._service_estimate
        return average * max(1, len(self._queued)) / self.workers

    def _take_free(self, now: float | None = None) -> bool:
        """Take queued jobs, in turn order, into the free worker slots (under the
        lock). True when `_wake` must be called to give them their tasks. `now`:
        the loop's time, when the caller has it (the clock is read only when a
        job is taken)."""
        while self._state == "running" and len(self._running) < self.workers and self._lines:
            entry = self._take()
            if now is None:
                now = self._bound().time()
            entry.started = now
            self._running[entry.job.id] = entry
            self._starting.append(entry)
        return bool(self._starting) and self._ask_wake()

    def _wake(self) -> None:
        """On the pool's loop: a task for each job taken (unless a drain handed it
        back meanwhile) and for each coroutine handed over since the last call."""
        loop = self._bound()
        with self._lock:
            entries, self._starting = self._starting, []
            posted, self._posted = self._posted, []
            self._wake_asked = False
            for entry in entries:
                if entry.stop == "drain":
                    continue
                entry.task = loop.create_task(
                    self._run(entry), name=f"aibot.pool.{self.name}.{entry.job.id}"
                )
                self._keep(entry.task)
            for coro in posted:
                self._keep(loop.create_task(coro))

    def _take(self) -> _Entry:
        """The next job in turn order: the first member's line, who then goes last."""
        user, line = next(iter(self._lines.items()))
        entry = line.popleft()
        del self._lines[user]
        if line:
            self._lines[user] = line
        del self._queued[entry.job.id]
        return entry

    def _keep(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)  # referenced until done: never garbage-collected
        task.add_done_callback(self._tasks.discard)

    # -- running jobs ------------------------------------------------------

    async def _run(self, entry: _Entry) -> None:
        """One job's task: the work, then (its slot already given to the next
        job, its outcome counted) the failure reply and the outcome report.
        Every log line it writes is tagged with the pool, the job and the shard
        it came from."""
        job = entry.job
        # "" (not None) clears a shard tag the starting task may have carried over.
        shard = "" if job.shard_id is None else job.shard_id
        with log_context(pool=self.name, job=job.id, shard=shard):
            error: AibotError | None = None
            seconds = 0.0
            ended = False  # the work returned (not cancelled from outside the pool)
            try:
                error = await self._attempt(entry)
                ended = True
            finally:
                # One acquisition of the lock for the slot and the figures.
                with self._lock:
                    del self._running[job.id]
                    # A job drain() handed back is not finished: not counted, not told.
                    told = ended and entry.stop != "drain"
                    if told:
                        seconds = self._count(entry, error)
                    wake = self._take_free()
            if not told:
                return
            if wake:
                self._wake()
            await self._tell(entry, error, seconds)

    async def _attempt(self, entry: _Entry) -> AibotError | None:
        """Run the work; its error, or None when it succeeded."""
        if entry.stop:  # cancelled or handed back before its task began
            return Cancelled("cancelled")
        entry.working = True
        try:
            await self._work(entry.job, entry.reply)
        except asyncio.CancelledError:
            if not entry.stop:
                raise  # cancelled from outside the pool (the loop is closing)
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
            return Cancelled("cancelled")
        except AibotError as error:
            return error
        except Exception as error:
            self._log.error("job %s: unexpected error\n%s", entry.job.id, _trace(error, entry.job))
            return AibotError("internal")
        return None

    async def _finish(self, entry: _Entry, error: AibotError | None) -> None:
        """Count the outcome, fail the reply if needed, tell `on_outcome`."""
        with self._lock:
            seconds = self._count(entry, error)
        await self._tell(entry, error, seconds)

    def _count(self, entry: _Entry, error: AibotError | None) -> float:
        """Under the lock: the outcome into the figures; the job's seconds since submit."""
        now = self._bound().time()
        seconds = now - entry.submitted
        if entry.started is not None:
            self._latencies.append(seconds)
            self._service.append(now - entry.started)
            self._percentiles = None
        if error is None:
            self.done += 1
        else:
            self.failed += 1
        return seconds

    async def _tell(self, entry: _Entry, error: AibotError | None, seconds: float) -> None:
        """Fail the reply if needed, then tell `on_outcome`."""
        if error is not None:
            try:
                await entry.reply.fail(error)
            except Exception as exc:
                # Type only: a Discord error can carry the webhook URL (token).
                self._log.warning("job %s: reply.fail raised %s", entry.job.id, type(exc).__name__)
        if self._on_outcome is not None:
            try:
                result = self._on_outcome(entry.job, error, seconds)
                if result is not None and inspect.isawaitable(result):
                    await result
            except Exception as exc:
                trace = _trace(exc, entry.job)
                self._log.error("job %s: on_outcome failed\n%s", entry.job.id, trace)

    # -- admin controls ----------------------------------------------------

    @property
    def paused(self) -> bool:
        return self._state == "paused"

    def pause(self) -> None:
        """Refuse new jobs (`Paused`) and start no queued ones; running ones go on."""
        with self._lock:
            if self._state != "running":
                return
            self._state = "paused"
        self._log.info("paused")

    def resume(self) -> None:
        with self._lock:
            if self._state != "paused":
                return
            self._state = "running"
            wake = self._take_free()
        self._log.info("resumed")
        if wake:
            call_on(self._bound(), self._wake)

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued or running job; its reply fails with `Cancelled`."""
        with self._lock:
            entry = self._queued.pop(job_id, None)
            if entry is not None:
                line = self._lines[entry.job.user_id]
                line.remove(entry)
                if not line:
                    del self._lines[entry.job.user_id]
            else:
                entry = self._running.get(job_id)
                if entry is None:
                    return False
                if entry.stop:
                    return True
                entry.stop = "cancel"
        call_on(self._bound(), self._cancelled, entry)
        return True

    def _cancelled(self, entry: _Entry) -> None:
        """On the pool's loop: a cancelled queued job is told so; a running one
        has its task cancelled, if it is still in its work by now."""
        if entry.started is None:
            self._keep(self._bound().create_task(self._finish(entry, Cancelled())))
        elif entry.working and entry.job.id in self._running:
            entry.task.cancel()  # type: ignore[union-attr]

    async def drain(self, timeout: float) -> list[Job]:
        """Stop taking jobs, give running ones `timeout` seconds, cancel the rest.
        Returns the jobs not finished (queued, and cancelled running ones) in
        the order they were submitted; their replies are left alone. Runs on the
        pool's loop whoever awaits it."""
        return await run_on(self._bound(), self._drain(timeout))

    async def _drain(self, timeout: float) -> list[Job]:
        with self._lock:
            self._state = "draining"
            left = list(self._queued.values())
            self._queued.clear()
            self._lines.clear()
            running = []
            for entry in list(self._running.values()):
                if entry.task is None:  # taken, its task not made yet: hand it back
                    entry.stop = "drain"
                    del self._running[entry.job.id]
                    left.append(entry)
                else:
                    running.append(entry)
        self._wake()  # what was handed over meanwhile: coroutines now run (jobs refuse)
        if running:
            await asyncio.wait([e.task for e in running if e.task], timeout=timeout)
        with self._lock:
            for entry in running:
                if entry.job.id in self._running:
                    entry.stop = "drain"
                    if entry.working:
                        entry.task.cancel()  # type: ignore[union-attr]
                    left.append(entry)
        while self._tasks:  # also those handed over while this drain waited
            await asyncio.gather(*self._tasks, return_exceptions=True)
        with self._lock:
            self._state = "stopped"
        self._log.info("drained: %d job(s) not finished", len(left))
        return [entry.job for entry in sorted(left, key=lambda e: e.seq)]

    # -- views -------------------------------------------------------------

    def position(self, job_id: str) -> int | None:
        """Place in line, on `submit`'s scale: 1 while the job runs, 2 for the
        next to start, and so on; None when the pool does not hold it."""
        with self._lock:
            return self._position(job_id)

    def _position(self, job_id: str) -> int | None:
        if job_id in self._running:
            return 1
        entry = self._queued.get(job_id)
        # A queued job always waits: a free slot would have started it.
        return None if entry is None else self._rank(entry) + 1

    def _rank(self, entry: _Entry) -> int:
        """1-based order in which the queued `entry` will be taken."""
        user = entry.job.user_id
        k = self._lines[user].index(entry)
        ahead, before = k, True
        for other, line in self._lines.items():
            if other == user:
                before = False
            else:  # lines before ours take their turn first in round k+1
                ahead += min(len(line), k + 1 if before else k)
        return ahead + 1

    def _in_turn(self) -> list[_Entry]:
        """Queued entries in the order they will be taken."""
        lines = list(self._lines.values())
        longest = max((len(line) for line in lines), default=0)
        return [line[k] for k in range(longest) for line in lines if k < len(line)]

    def jobs(self) -> list[tuple[Job, str]]:
        """Running jobs (oldest first), then queued ones in turn order."""
        with self._lock:
            running = sorted(self._running.values(), key=lambda e: e.seq)
            queued = self._in_turn()
        return [(e.job, "running") for e in running] + [(e.job, "queued") for e in queued]

    def load(self) -> PoolLoad:
        # No lock: it reads three values, each read at once, and serves as a hint
        # (the router's); `submit` decides under the lock. The front asks every
        # pool's load for every command: a loop, not a generator, and one of the
        # eight possible answers made once.
        keys_down = bool(self.rings)
        for ring in self.rings:
            if not ring.all_down:
                keys_down = False
                break
        full = len(self._queued) >= self.queue_size
        return _LOADS[full, keys_down, self._state == "paused"]

    def snapshot(self) -> PoolSnapshot:
        """Plain data for status, /health and /metrics, from any thread running a
        loop. The percentiles are worked out once per finished job, not per call."""
        with self._lock:
            if self._percentiles is None:
                self._percentiles = _percentiles_ms(self._latencies, (0.50, 0.95, 0.99))
            p50, p95, p99 = self._percentiles
            state, busy, queued = self._state, len(self._running), len(self._queued)
            done, failed = self.done, self.failed
        return PoolSnapshot(
            name=self.name,
            state=state,
            workers_busy=busy,
            workers_total=self.workers,
            queued=queued,
            queue_size=self.queue_size,
            done=done,
            failed=failed,
            p50_ms=p50,
            p95_ms=p95,
            p99_ms=p99,
            rings=tuple(ring.snapshot() for ring in self.rings),
        )

    def __repr__(self) -> str:
        return f"Pool({self.name!r}, state={self._state}, queued={len(self._queued)})"


def _percentiles_ms(seconds: deque[float], quantiles: Sequence[float]) -> list[float]:
    """Nearest-rank percentiles in milliseconds (0 when nothing finished yet)."""
    ordered = sorted(seconds)
    if not ordered:
        return [0.0 for _ in quantiles]
    return [ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000 for q in quantiles]


def _trace(error: BaseException, job: Job) -> str:
    """A traceback for the log, without the job's interaction token."""
    text = "".join(traceback.format_exception(error))
    return text.replace(job.token, "[token]") if job.token else text
