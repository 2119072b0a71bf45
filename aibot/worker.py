"""The worker: owns a job's whole life once the front has accepted it.

Built from settings and a few ports (`aibot.ports`), it holds the pools and,
through them, the key rings and provider clients. For each job it is handed
(`submit`) it journals the job, makes the job's reply from the job alone
(`ReplyFactory`), queues it in its pool (or the admin pool, when its own filled
up since the front looked) and, when the pool is done with it, records the
outcome: the latency for /metrics, a ledger row, the quota back when the
provider failed it, the journal entry closed. A job that finds every key of its
pool dead is moved to the admin pool (`handoff`) rather than failed.

At start (`resume`) it takes up what an earlier run left unanswered: a video
polls its provider task again; a chat or image job runs again while its
interaction token can still answer, and is otherwise told the bot restarted, so
no deferred message is left "thinking...". At shutdown (`drain`) it lets running
jobs finish and tells the members whose jobs could not, except videos, which
the next start resumes.

The worker knows nothing of Discord or of how jobs reach it: the in-process
transport (`aibot.transport.LocalQueue`) calls it directly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

from aibot.jobs import (
    AibotError,
    Cancelled,
    Job,
    KeysDown,
    Progress,
    QueueFull,
    Reply,
    Restarted,
    Result,
    ShuttingDown,
)
from aibot.keys import KeyRing
from aibot.pools import Pools, RingFactory, build_pools
from aibot.pools.base import Pool
from aibot.pools.video import BILLED_BY, resume
from aibot.ports import Gate, Journal, Ledger, Memory, ReplyFactory
from aibot.router import PoolLoad, Router
from aibot.settings import Settings
from aibot.snapshots import PoolSnapshot

__all__ = [
    "LONG_COMMANDS",
    "NOT_THEIR_FAULT",
    "QUEUE_NOTICE_SECONDS",
    "RERUN_MARGIN",
    "Worker",
]

log = logging.getLogger("aibot.worker")

# Jobs that take minutes: their place in line is shown at once, and one left
# running at shutdown or by a crash is resumed at the next start (a video's
# provider task is polled again, not paid for twice).
LONG_COMMANDS = frozenset({"video"})
# Failures that are not the member's (the provider's, our keys', the bot's own): their
# use is given back.
NOT_THEIR_FAULT = frozenset(
    {
        "unavailable",
        "incomplete",
        "bad_answer",
        "misconfigured",
        "no_key",
        "bad_key",
        "rate_limited",
        "internal",
    }
)
# Seconds of expected wait from which a chat or image job is told its place in line.
QUEUE_NOTICE_SECONDS = 5.0
# A chat or image job left by a crash runs again only if its interaction token can
# still answer for this many seconds; otherwise the member is asked to ask again.
RERUN_MARGIN = 60.0
# Members told at once at shutdown that their job did not finish: each is a request
# of its own to Discord, and hundreds one by one could outlast systemd's stop timeout.
NOTICES_AT_ONCE = 16
# Seconds between looks at whether a dropped run has stopped (`run_over`).
RUN_OVER_POLL = 0.1

Observer = Callable[[Job, AibotError | None, float], None]


class Worker:
    """Runs accepted jobs in its pools; see the module docstring. Every port is
    optional, so a test or a benchmark builds a worker with only what it needs.
    `clock` gives unix seconds on the clock of `Job.token_expires_at`; `ring`
    makes the pools' key rings (cluster mode: rings shared through Redis)."""

    def __init__(
        self,
        settings: Settings,
        *,
        replies: ReplyFactory,
        gate: Gate | None = None,
        ledger: Ledger | None = None,
        journal: Journal | None = None,
        memory: Memory | None = None,
        observe: Observer | None = None,
        clock: Callable[[], float] = time.time,
        ring: RingFactory = KeyRing,
    ) -> None:
        self.settings = settings
        self.pools: Pools = build_pools(
            settings,
            memory=memory,
            journal=journal,
            on_outcome=self._outcome,
            handoff=self._handoff,
            ring=ring,
        )
        self._router = Router(settings)
        self._replies = replies
        self._gate = gate
        self._ledger = ledger
        self._journal = journal
        self._observe = observe
        self._clock = clock
        self._open: dict[str, Reply] = {}  # replies of the jobs in the pools
        self._dropped: set[str] = set()  # jobs that go on elsewhere (see `drop`)

    # ------------------------------------------------------------- taking jobs

    async def submit(self, job: Job) -> int:
        """Take a routed job (`job.pool` set): its place in line (1: started now).
        Raises the pool's typed refusal (`QueueFull`, `Paused`, `ShuttingDown`),
        the job then left as it was: the caller tells the member."""
        pool = self._pool(job)
        if self._journal is not None:
            # Journaled before it runs (written behind, no round trip): a restart
            # from here on takes it up again.
            await self._journal.submitted(job)
        reply = self._replies.make(job)
        try:
            position = self._queue(pool, job, reply)
        except AibotError as refused:
            if self._journal is not None:
                await self._journal.finished(job.id, refused.kind)
            raise
        self._open[job.id] = reply
        # A video takes minutes: its place in line is shown at once. Other jobs wait
        # behind others only briefly, and "thinking..." says enough, unless the wait
        # is long; in a burst those edits would cost the most when time is shortest.
        if job.command in LONG_COMMANDS or (
            position > 1 and self.pools[job.pool].wait_estimate() >= QUEUE_NOTICE_SECONDS
        ):
            await reply.progress(Progress("queued", position=position))
        return position

    def _queue(self, pool: Pool, job: Job, reply: Reply) -> int:
        """Queue the job in `pool`, or in the admin pool when `pool` is full and may
        overflow (it filled up since the front routed the job)."""
        try:
            return pool.submit(job, reply)
        except QueueFull:
            other = self._router.overflow(job.command, pool.name, self.loads())
            if other is None or other not in self.pools:
                raise
            position = self.pools[other].submit(job, reply)
            job.pool = other
            return position

    def _handoff(self, job: Job, reply: Reply, error: AibotError) -> bool:
        """A job that found every key of its pool dead (`KeysDown`, nothing shown
        yet) runs in the admin pool, with the same reply, when overflow allows;
        True when it was moved."""
        if not isinstance(error, KeysDown):
            return False
        other = self._router.overflow(job.command, job.pool, self.loads())
        if other is None or other not in self.pools:
            return False
        try:
            self.pools[other].submit(job, reply)
        except AibotError:
            return False
        log.info("job %s: every %s key is down, the %s pool runs it", job.id, job.pool, other)
        job.pool = other
        return True

    def _pool(self, job: Job) -> Pool:
        pool = self.pools.get(job.pool)
        if pool is None:
            raise ShuttingDown(f"the {job.pool} pool does not run here")
        return pool

    async def resume(self) -> None:
        """Take up the jobs an earlier run left unanswered (see the module
        docstring): each runs again, or its member is told the bot restarted."""
        if self._journal is None:
            return
        for job, task_id, key in await self._journal.unfinished():
            pool = self.pools.get(job.pool or self._router.pool_for(job.command))
            if pool is None:
                log.info("job %s: its pool %s does not run here", job.id, job.pool)
                continue
            reply = self._replies.make(job)
            if job.command not in LONG_COMMANDS and not self._can_answer(job):
                await self._restarted(job, reply)
                continue
            again = resume(job, task_id, key) if task_id and key else job
            try:
                # Accepted already, and its provider task (if any) is on this pool's
                # keys: it stays in this pool, whatever room the queue has now.
                pool.submit(again, reply, past_the_limit=True)
            except AibotError as error:
                await reply.fail(error)
                await self._journal.finished(job.id, error.kind)
                continue
            self._open[job.id] = reply
            log.info("job %s: resumed after a restart", job.id)

    def _can_answer(self, job: Job) -> bool:
        """The job's interaction token answers long enough for the job to run again."""
        return self._clock() + RERUN_MARGIN < job.token_expires_at

    async def _restarted(self, job: Job, reply: Reply) -> None:
        """Tell the member of a job a crash cut short to ask again; close it."""
        error = Restarted()
        await reply.fail(error)
        await self.give_back(job)
        if self._ledger is not None:
            self._record(job, None, error, 0.0)
        await self._journal.finished(job.id, error.kind)  # type: ignore[union-attr]
        log.info("job %s: cut short by a restart, its member is asked again", job.id)

    # ---------------------------------------------------------------- outcomes

    async def _outcome(
        self, job: Job, result: Result | None, error: AibotError | None, seconds: float
    ) -> None:
        """After every job: its latency, a ledger row, the quota back when the
        failure was not the member's, the journal entry closed (not for a job
        dropped: see `drop`)."""
        self._open.pop(job.id, None)
        if self._observe is not None:
            self._observe(job, error, seconds)
        if job.id in self._dropped:
            self._dropped.discard(job.id)
            return
        if self._ledger is not None:
            self._record(job, result, error, seconds)
        if error is not None and error.kind in NOT_THEIR_FAULT:
            await self.give_back(job)
        if self._journal is not None:
            await self._journal.finished(job.id, "done" if error is None else error.kind)

    def cancelled_unstarted(self, job: Job) -> None:
        """The ledger row of a job an admin cancelled before any pool took it
        (cluster mode: still in its stream), as a queued job cancelled here gets."""
        if self._ledger is not None:
            self._record(job, None, Cancelled(), 0.0)

    async def give_back(self, job: Job) -> None:
        """The member's use of `job` back (when the gate still knows the take)."""
        if self._gate is not None:
            await self._gate.refund(job)

    def _record(
        self, job: Job, result: Result | None, error: AibotError | None, seconds: float
    ) -> None:
        meta = result.meta if result is not None else {}
        files = len(result.files) if result is not None else 0
        # A failure counts against the provider whose call failed, if one did.
        failed_on = error if error is not None and error.provider else None
        # A clip is billed once its task exists, waited for to the end or not.
        billed_by = str(job.args.get(BILLED_BY) or "")
        self._ledger.record(  # type: ignore[union-attr]
            job,
            provider=str(
                meta.get("provider") or (failed_on and failed_on.provider) or billed_by or "-"
            ),
            key_id=str(meta.get("key_id") or (failed_on and failed_on.key_id) or ""),
            outcome="ok" if error is None else error.kind,
            latency=seconds,
            tokens_in=int(meta.get("tokens_in") or 0),
            tokens_out=int(meta.get("tokens_out") or 0),
            images=files if job.command == "image" else 0,
            video_seconds=float(job.args.get("duration") or 0)
            if job.command == "video" and (files or billed_by)
            else 0.0,
        )

    # ------------------------------------------------------------ admin, views

    def loads(self) -> Mapping[str, PoolLoad]:
        return {name: pool.load() for name, pool in self.pools.items()}

    def wait_estimate(self, pool: str) -> float:
        return self.pools[pool].wait_estimate()

    def snapshots(self) -> list[PoolSnapshot]:
        return [pool.snapshot() for pool in self.pools.values()]

    def jobs(self) -> list[tuple[str, Job, str]]:
        """(pool, job, running or queued) of every job held, per pool in turn order."""
        return [
            (name, job, state) for name, pool in self.pools.items() for job, state in pool.jobs()
        ]

    def cancel(self, job_id: str) -> bool:
        return any(pool.cancel(job_id) for pool in self.pools.values())

    def drop(self, job_id: str) -> None:
        """Stop a job that goes on elsewhere (cluster mode: another worker holds it
        now). Its outcome here is not the job's: no ledger row, no use given
        back, and its journal entry (a video's task) stays for the one running it."""
        if self.cancel(job_id):
            self._dropped.add(job_id)

    def holds(self, job_id: str) -> bool:
        """Whether a run of the job is here, not over yet: also one dropped (`drop`)
        that has not stopped yet (a video waiting out its key's pace)."""
        return job_id in self._open

    async def run_over(self, job_id: str) -> None:
        """Until no run of the job is here (see `holds`)."""
        while job_id in self._open:
            await asyncio.sleep(RUN_OVER_POLL)

    def pause(self, pool: str) -> None:
        self.pools[pool].pause()

    def unpause(self, pool: str) -> None:
        self.pools[pool].resume()

    # ---------------------------------------------------------------- shutdown

    async def drain(self, timeout: float, *, handed_back: bool = False) -> None:
        """Stop taking jobs, give running ones `timeout` seconds, then tell the
        members whose jobs did not finish to ask again, their use given back (a few
        at once: hundreds may be queued); videos are left to the next start.
        `handed_back`: the jobs not finished go on elsewhere (cluster mode: another
        worker takes them up), so nobody is told and nothing is given back."""
        results = await asyncio.gather(
            *(pool.drain(timeout) for pool in self.pools.values()), return_exceptions=True
        )
        if handed_back:
            self._open.clear()
            return
        left = {job.id: job for jobs in results if isinstance(jobs, list) for job in jobs}
        at_once = asyncio.Semaphore(NOTICES_AT_ONCE)

        async def tell(job_id: str, reply: Reply) -> None:
            async with at_once:
                await reply.fail(ShuttingDown())
            job = left.get(job_id)
            if job is not None:
                await self.give_back(job)
            if self._journal is not None:
                await self._journal.finished(job_id, ShuttingDown.kind)

        told = []
        for job_id, reply in self._open.items():
            job = left.get(job_id)
            if job is not None and job.command in LONG_COMMANDS and self._journal is not None:
                continue  # journaled: resumed and delivered after the restart
            told.append(tell(job_id, reply))
        await asyncio.gather(*told)
        self._open.clear()

    async def aclose(self) -> None:
        """Close the provider clients (after `drain`)."""
        await self.pools.aclose()
