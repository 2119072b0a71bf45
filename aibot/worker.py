"""The worker: owns a job's whole life once the front has accepted it.

Built from settings and a few ports (`aibot.ports`), it holds the pools and,
through them, the key rings and provider clients. For each job it is handed
(`submit`) it journals the job when it is durable, makes the job's reply from
the job alone (`ReplyFactory`), queues it in its pool and, when the pool is
done with it, records the outcome: the latency for /metrics, a ledger row, the
quota back when the provider failed it, the journal entry closed. At start
(`resume`) it submits again the durable jobs an earlier run left unfinished;
at shutdown (`drain`) it lets running jobs finish and tells the members whose
jobs could not, except the durable ones, which the next start resumes.

The worker knows nothing of Discord or of how jobs reach it: the in-process
transport (`aibot.transport.LocalQueue`) calls it directly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from aibot.jobs import AibotError, Job, Progress, Reply, Result, ShuttingDown
from aibot.pools import Pools, build_pools
from aibot.pools.base import Pool
from aibot.pools.video import resume
from aibot.ports import Gate, Journal, Ledger, Memory, ReplyFactory
from aibot.router import PoolLoad
from aibot.settings import Settings
from aibot.snapshots import PoolSnapshot

__all__ = ["DURABLE_COMMANDS", "PROVIDER_FAULTS", "QUEUE_NOTICE_SECONDS", "Worker"]

log = logging.getLogger("aibot.worker")

# Jobs long enough to be journaled and resumed after a restart.
DURABLE_COMMANDS = frozenset({"video"})
# Failures that are the provider's (or our keys'), not the member's: their quota is
# given back.
PROVIDER_FAULTS = frozenset(
    {"unavailable", "incomplete", "bad_answer", "no_key", "bad_key", "rate_limited"}
)
# Seconds of expected wait from which a chat or image job is told its place in line.
QUEUE_NOTICE_SECONDS = 5.0

Observer = Callable[[Job, AibotError | None, float], None]


class Worker:
    """Runs accepted jobs in its pools; see the module docstring. Every port is
    optional, so a test or a benchmark builds a worker with only what it needs."""

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
    ) -> None:
        self.settings = settings
        self.pools: Pools = build_pools(
            settings, memory=memory, journal=journal, on_outcome=self._outcome
        )
        self._replies = replies
        self._gate = gate
        self._ledger = ledger
        self._journal = journal
        self._observe = observe
        self._open: dict[str, Reply] = {}  # replies of the jobs in the pools

    # ------------------------------------------------------------- taking jobs

    async def submit(self, job: Job) -> int:
        """Take a routed job (`job.pool` set): its place in line (1: started now).
        Raises the pool's typed refusal (`QueueFull`, `Paused`, `ShuttingDown`),
        the job then left as it was: the caller tells the member."""
        pool = self._pool(job)
        durable = self._durable(job)
        if durable:
            # Journaled before it runs: a restart from here on resumes it.
            await self._journal.submitted(job)  # type: ignore[union-attr]
        reply = self._replies.make(job)
        try:
            position = pool.submit(job, reply)
        except AibotError as refused:
            if durable:
                await self._journal.finished(job.id, refused.kind)  # type: ignore[union-attr]
            raise
        self._open[job.id] = reply
        # A video takes minutes: its place in line is shown at once. Other jobs wait
        # behind others only briefly, and "thinking..." says enough, unless the wait
        # is long; in a burst those edits would cost the most when time is shortest.
        if durable or (position > 1 and pool.wait_estimate() >= QUEUE_NOTICE_SECONDS):
            await reply.progress(Progress("queued", position=position))
        return position

    def _pool(self, job: Job) -> Pool:
        pool = self.pools.get(job.pool)
        if pool is None:
            raise ShuttingDown(f"the {job.pool} pool does not run here")
        return pool

    def _durable(self, job: Job) -> bool:
        return self._journal is not None and job.command in DURABLE_COMMANDS

    async def resume(self) -> None:
        """Submit again the durable jobs an earlier run left unfinished; a video
        polls its provider task (no new task, no new charge) and is delivered once."""
        if self._journal is None:
            return
        for job, task_id, key in await self._journal.unfinished():
            pool = self.pools.get(job.pool or "video")
            if pool is None:
                log.info("job %s: its pool %s does not run here", job.id, job.pool)
                continue
            again = resume(job, task_id, key) if task_id and key else job
            reply = self._replies.make(again)
            try:
                pool.submit(again, reply)
            except AibotError as error:
                await reply.fail(error)
                await self._journal.finished(job.id, error.kind)
                continue
            self._open[job.id] = reply
            log.info("job %s: resumed after a restart", job.id)

    # ---------------------------------------------------------------- outcomes

    async def _outcome(
        self, job: Job, result: Result | None, error: AibotError | None, seconds: float
    ) -> None:
        """After every job: its latency, a ledger row, the quota back when the
        provider failed, the journal entry closed."""
        self._open.pop(job.id, None)
        if self._observe is not None:
            self._observe(job, error, seconds)
        if self._ledger is not None:
            self._record(job, result, error, seconds)
        if error is not None and error.kind in PROVIDER_FAULTS and self._gate is not None:
            await self._gate.refund(job)
        if self._durable(job):
            outcome = "done" if error is None else error.kind
            await self._journal.finished(job.id, outcome)  # type: ignore[union-attr]

    def _record(
        self, job: Job, result: Result | None, error: AibotError | None, seconds: float
    ) -> None:
        meta = result.meta if result is not None else {}
        files = len(result.files) if result is not None else 0
        # A failure counts against the provider whose call failed, if one did.
        failed_on = error if error is not None and error.provider else None
        self._ledger.record(  # type: ignore[union-attr]
            job,
            provider=str(meta.get("provider") or (failed_on and failed_on.provider) or "-"),
            key_id=str(meta.get("key_id") or (failed_on and failed_on.key_id) or ""),
            outcome="ok" if error is None else error.kind,
            latency=seconds,
            tokens_in=int(meta.get("tokens_in") or 0),
            tokens_out=int(meta.get("tokens_out") or 0),
            images=files if job.command == "image" else 0,
            video_seconds=float(job.args.get("duration") or 0)
            if files and job.command == "video"
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

    def pause(self, pool: str) -> None:
        self.pools[pool].pause()

    def unpause(self, pool: str) -> None:
        self.pools[pool].resume()

    # ---------------------------------------------------------------- shutdown

    async def drain(self, timeout: float) -> None:
        """Stop taking jobs, give running ones `timeout` seconds, then tell the
        members whose jobs did not finish; durable ones are left to the next start."""
        results = await asyncio.gather(
            *(pool.drain(timeout) for pool in self.pools.values()), return_exceptions=True
        )
        left = {job.id: job for jobs in results if isinstance(jobs, list) for job in jobs}
        for job_id, reply in list(self._open.items()):
            job = left.get(job_id)
            if job is not None and self._durable(job):
                continue  # journaled: resumed and delivered after the restart
            await reply.fail(ShuttingDown())
        self._open.clear()

    async def aclose(self) -> None:
        """Close the provider clients (after `drain`)."""
        await self.pools.aclose()
