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

Every pool runs on the event loop that calls it; times are that loop's clock.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from aibot.jobs import AibotError, Cancelled, Job, Paused, QueueFull, Reply, Result, ShuttingDown
from aibot.leases import Ring
from aibot.logs import log_context
from aibot.pools.figures import Figures
from aibot.router import PoolLoad
from aibot.snapshots import PoolSnapshot

__all__ = ["Handoff", "Outcome", "Pool", "Work"]

# A role's work: runs the job, telling `reply` its progress (and a streamed answer),
# and returns the result, which the pool then delivers on the reply.
Work = Callable[[Job, Reply], Awaitable[Result]]
# Told after every job: the job, its result (None when it failed), its error (None
# when it succeeded) and its seconds since submit.
Outcome = Callable[[Job, Result | None, AibotError | None, float], Awaitable[None]]
# Asked when a job's work failed, before its reply is told: True when someone else
# (another pool) took the job and its reply over; this pool then forgets the job.
Handoff = Callable[[Job, Reply, AibotError], bool]


@dataclass(eq=False, slots=True)
class _Entry:
    """A job in the pool, with its reply and its times (loop.time())."""

    job: Job
    reply: Reply = field(repr=False)
    seq: int
    submitted: float
    started: float | None = None  # None while queued
    task: asyncio.Task[None] | None = field(default=None, repr=False)  # once started
    stop: str = ""  # why the pool stopped it: "cancel" or "drain"
    # "" before its work, then "working", then "answering". Only while working is its
    # task cancelled: a task cancelled before its first step would never run its own
    # clean-up (before the work, `stop` is checked instead), and an answer cut short
    # would be lost (a finished video counts as delivered once its upload starts).
    phase: str = ""


class Pool:
    """Runs `work(job, reply)` for submitted jobs, at most `workers` at a time,
    with at most `queue_size` waiting. See the module docstring.

    `service_estimate` is the seconds a job is assumed to take until some have
    finished; it only feeds `wait_estimate`. A job's work returns its `Result`; the
    pool finishes the reply with it (or fails the reply with the job's error) and
    hands both to `on_outcome`.
    """

    def __init__(
        self,
        name: str,
        work: Work,
        *,
        workers: int,
        queue_size: int,
        rings: Sequence[Ring] = (),
        on_outcome: Outcome | None = None,
        handoff: Handoff | None = None,
        service_estimate: float = 10.0,
    ) -> None:
        self.name = name
        self.workers = workers
        self.queue_size = queue_size
        self.rings = tuple(rings)
        self._work = work
        self._on_outcome = on_outcome
        self._handoff = handoff
        self.figures = Figures(service_estimate)
        self._log = logging.getLogger(f"aibot.pool.{name}")
        self._task_prefix = f"aibot.pool.{name}."  # + the job's id: its task's name
        self._state = "running"  # running, paused, draining, stopped
        self._lines: dict[int, deque[_Entry]] = {}  # per member, in turn order
        self._queued: dict[str, _Entry] = {}
        self._running: dict[str, _Entry] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._seq = itertools.count()

    # -- taking jobs -------------------------------------------------------

    def submit(self, job: Job, reply: Reply, *, past_the_limit: bool = False) -> int:
        """Queue `job`; returns its place in line (1 = started now, 2 = next).
        Never blocks. Raises `ShuttingDown`, `Paused`, `QueueFull` (not
        `past_the_limit`: a job accepted before a restart) or ValueError for a
        job id the pool already holds (a caller's bug)."""
        if self._state != "running":
            if self._state == "paused":
                raise Paused(f"the {self.name} pool is paused")
            raise ShuttingDown(f"the {self.name} pool is shutting down")
        if job.id in self._queued or job.id in self._running:
            raise ValueError(f"job {job.id} is already in the {self.name} pool")
        if len(self._queued) >= self.queue_size and not past_the_limit:
            raise QueueFull(f"the {self.name} queue is full", retry_after=self.wait_estimate())
        loop = asyncio.get_running_loop()
        entry = _Entry(job, reply, next(self._seq), loop.time())
        if not self._lines and len(self._running) < self.workers:
            # Nobody waiting and a slot free, the common case: its turn is now.
            self._start(entry, entry.submitted, loop)
            return 1
        line = self._lines.get(job.user_id)
        if line is None:
            line = self._lines[job.user_id] = deque()
        line.append(entry)
        self._queued[job.id] = entry
        self._start_free()
        return 1 if entry.started is not None else self._rank(entry) + 1

    def wait_estimate(self) -> float:
        """Seconds until a place frees up: recent service time x queued / workers."""
        return self.figures.service_time() * max(1, len(self._queued)) / self.workers

    def _start_free(self) -> None:
        """Start queued jobs, in turn order, in the free worker slots."""
        if self._state != "running" or not self._lines or len(self._running) >= self.workers:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._state == "running" and len(self._running) < self.workers and self._lines:
            self._start(self._take(), now, loop)

    def _start(self, entry: _Entry, now: float, loop: asyncio.AbstractEventLoop) -> None:
        """Run `entry` in a task of its own, from `now`. Every log line the task
        writes is tagged with the pool, the job and the shard it came from: the
        tags are set in the context the task runs in, once, before it starts, so
        they last exactly as long as the task and there is nothing to reset."""
        entry.started = now
        job = entry.job
        self._running[job.id] = entry
        # "" (not None) clears a shard tag the starting task may have carried over.
        shard = "" if job.shard_id is None else job.shard_id
        context = contextvars.copy_context()
        context.run(log_context(pool=self.name, job=job.id, shard=shard).__enter__)
        task = loop.create_task(self._run(entry), name=self._task_prefix + job.id, context=context)
        entry.task = task
        # Referenced until it ends (it takes itself out): never garbage-collected.
        self._tasks.add(task)

    def _take(self) -> _Entry:
        """The next job in turn order: the first member's line, who then goes last."""
        user, line = next(iter(self._lines.items()))
        entry = line.popleft()
        del self._lines[user]
        if line:
            self._lines[user] = line
        del self._queued[entry.job.id]
        return entry

    def _rank(self, entry: _Entry) -> int:
        """1-based order in which the queued `entry` will be taken."""
        user = entry.job.user_id
        own = self._lines[user]
        if len(own) == 1 and next(reversed(self._lines)) == user:
            # The one job of the last line (a member with nothing else queued: most
            # jobs): after one job of every other line. Said without walking them all,
            # since a burst from many members makes thousands of lines.
            return len(self._lines)
        k = own.index(entry)
        ahead, before = k, True
        for other, line in self._lines.items():
            if other == user:
                before = False
            else:  # lines before ours take their turn first in round k+1
                ahead += min(len(line), k + 1 if before else k)
        return ahead + 1

    # -- running jobs ------------------------------------------------------

    async def _run(self, entry: _Entry) -> None:
        """One job's task: the work and the answer, then (its slot already given to
        the next job, its outcome counted) the failure reply and the outcome report."""
        job = entry.job
        result: Result | None = None
        error: AibotError | None = None
        try:
            try:
                if entry.stop:  # cancelled before its work began
                    error = Cancelled("cancelled")
                else:
                    entry.phase = "working"
                    result = await self._work(job, entry.reply)
                    entry.phase = "answering"
                    await entry.reply.finish(result)
            except asyncio.CancelledError:
                if entry.phase != "working" or not entry.stop:
                    raise  # cancelled from outside the pool (the loop is closing)
                asyncio.current_task().uncancel()  # type: ignore[union-attr]
                error = Cancelled("cancelled")
            except AibotError as err:
                if not entry.phase:
                    raise
                error = err
            except Exception as err:
                if not entry.phase:
                    raise
                self._log.error("job %s: unexpected error\n%s", job.id, job.trace(err))
                error = AibotError("internal")
            finally:
                del self._running[job.id]
            if entry.stop == "drain":
                return  # handed back by drain(): not finished, so not counted nor told
            # Handed off: another pool runs it now, and tells its outcome.
            moved = error is not None and not entry.stop and self._handed_off(entry, error)
            seconds = 0.0 if moved else self._count(entry, error)
            if self._lines:
                self._start_free()
            if not moved:
                await self._tell(entry, result if error is None else None, error, seconds)
        finally:
            self._tasks.discard(entry.task)

    def _handed_off(self, entry: _Entry, error: AibotError) -> bool:
        if self._handoff is None:
            return False
        try:
            return self._handoff(entry.job, entry.reply, error)
        except Exception as exc:
            self._log.error("job %s: handoff failed\n%s", entry.job.id, entry.job.trace(exc))
            return False

    async def _finish(self, entry: _Entry, error: AibotError | None) -> None:
        """Count the outcome, fail the reply if needed, tell `on_outcome` (in a task
        of its own, kept in `_tasks`, which it leaves at its end)."""
        try:
            await self._tell(entry, None, error, self._count(entry, error))
        finally:
            self._tasks.discard(asyncio.current_task())

    def _count(self, entry: _Entry, error: AibotError | None) -> float:
        """The outcome into the figures; the job's seconds since submit."""
        now = asyncio.get_running_loop().time()
        started = entry.started
        service = None if started is None else now - started
        self.figures.count(error is not None, now - entry.submitted, service)
        return now - entry.submitted

    async def _tell(
        self, entry: _Entry, result: Result | None, error: AibotError | None, seconds: float
    ) -> None:
        """Fail the reply if needed, then tell `on_outcome`."""
        if error is not None:
            try:
                await entry.reply.fail(error)
            except Exception as exc:
                # Type only: a Discord error can carry the webhook URL (token).
                self._log.warning("job %s: reply.fail raised %s", entry.job.id, type(exc).__name__)
        if self._on_outcome is not None:
            try:
                await self._on_outcome(entry.job, result, error, seconds)
            except Exception as exc:
                trace = entry.job.trace(exc)
                self._log.error("job %s: on_outcome failed\n%s", entry.job.id, trace)

    # -- admin controls ----------------------------------------------------

    @property
    def done(self) -> int:
        return self.figures.done

    @property
    def failed(self) -> int:
        return self.figures.failed

    @property
    def paused(self) -> bool:
        return self._state == "paused"

    def pause(self) -> None:
        """Refuse new jobs (`Paused`) and start no queued ones; running ones go on."""
        if self._state != "running":
            return
        self._state = "paused"
        self._log.info("paused")

    def resume(self) -> None:
        if self._state != "paused":
            return
        self._state = "running"
        self._log.info("resumed")
        self._start_free()

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued or running job; its reply fails with `Cancelled`. False
        for a job this pool does not hold, or one whose answer is going out."""
        entry = self._queued.pop(job_id, None)
        if entry is not None:
            line = self._lines[entry.job.user_id]
            line.remove(entry)
            if not line:
                del self._lines[entry.job.user_id]
            told = asyncio.get_running_loop().create_task(self._finish(entry, Cancelled()))
            self._tasks.add(told)  # referenced until it ends: it takes itself out
            return True
        entry = self._running.get(job_id)
        if entry is None or entry.phase == "answering":
            return False
        if not entry.stop:
            entry.stop = "cancel"
            if entry.phase == "working":
                entry.task.cancel()  # type: ignore[union-attr]
        return True

    async def drain(self, timeout: float) -> list[Job]:
        """Stop taking jobs, give running ones `timeout` seconds, cancel the rest
        (answers going out end as they would). Returns the jobs not finished (queued,
        cancelled running ones) in submission order; their replies left alone."""
        self._state = "draining"
        left = list(self._queued.values())
        self._queued.clear()
        self._lines.clear()
        running = list(self._running.values())
        if running:
            await asyncio.wait([e.task for e in running if e.task], timeout=timeout)
        for entry in running:
            if entry.job.id in self._running and entry.phase != "answering":
                entry.stop = "drain"
                if entry.phase == "working":
                    entry.task.cancel()  # type: ignore[union-attr]
                left.append(entry)
        while self._tasks:  # also the outcomes still being told
            await asyncio.gather(*self._tasks, return_exceptions=True)
            # A task leaves `_tasks` at its end; one cancelled before its first step
            # (the loop closing) never ran to leave it.
            self._tasks = {task for task in self._tasks if not task.done()}
        self._state = "stopped"
        self._log.info("drained: %d job(s) not finished", len(left))
        return [entry.job for entry in sorted(left, key=lambda e: e.seq)]

    # -- views -------------------------------------------------------------

    def _in_turn(self) -> list[_Entry]:
        """Queued entries in the order they will be taken."""
        lines = list(self._lines.values())
        longest = max((len(line) for line in lines), default=0)
        return [line[k] for k in range(longest) for line in lines if k < len(line)]

    def jobs(self) -> list[tuple[Job, str]]:
        """Running jobs (oldest first), then queued ones in turn order."""
        running = sorted(self._running.values(), key=lambda e: e.seq)
        return [(e.job, "running") for e in running] + [(e.job, "queued") for e in self._in_turn()]

    def load(self) -> PoolLoad:
        # The front asks every pool's load for every command: a loop, not a
        # generator, and positional arguments.
        rings = self.rings
        keys_down = bool(rings)
        for ring in rings:
            if not ring.all_down:
                keys_down = False
                break
        queued = len(self._queued)
        room = self.queue_size - queued + max(0, self.workers - len(self._running))
        return PoolLoad(queued >= self.queue_size, keys_down, self._state == "paused", room)

    def snapshot(self) -> PoolSnapshot:
        """Plain data for status, /health and /metrics."""
        p50, p95, p99 = self.figures.percentiles_ms()
        return PoolSnapshot(
            name=self.name,
            state=self._state,
            workers_busy=len(self._running),
            workers_total=self.workers,
            queued=len(self._queued),
            queue_size=self.queue_size,
            done=self.figures.done,
            failed=self.figures.failed,
            p50_ms=p50,
            p95_ms=p95,
            p99_ms=p99,
            rings=tuple(ring.snapshot() for ring in self.rings),
        )

    def __repr__(self) -> str:
        return f"Pool({self.name!r}, state={self._state}, queued={len(self._queued)})"
