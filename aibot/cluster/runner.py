"""A worker process's pools, fed from their job streams (cluster mode).

For each pool it runs, the `Runner` takes as many jobs as the pool has free slots
from the pool's `JobStream` (a dead worker's first: `JobStream.take` reclaims), and
hands each to the `Worker`, which runs it as in one process. It renews the leases
of the jobs it holds every lease/3; a job whose lease went to another worker is
dropped (`Worker.drop`: stopped, its outcome not its own, its reply silent; its
entry reclaimed here before it stopped waits for it). Its progress and streaming
edits stop once its lease may have run out (`StreamDeliveries.current`): a worker
woken from a stall must not write over the reclaimer's answer. Once a job's
outcome is known (`observe`, after the reply is finished), its entry is
acknowledged and deleted, retried while Redis is away.

A reclaimed job goes on as its first worker left it (`RedisJournal.left`); a job
delivered too often (every worker that took it died) is dead-lettered and its
member told. Jobs taken over from a worker that stopped answering are alerted
(`reclaimed`: pool, node, how many), as one process alerts the jobs it resumed.

The admin's controls (`aibot.cluster.controls`), read every `control_every` s: a
paused pool takes no new jobs (running ones finish); a cancelled job held here is
cancelled as in one process, and one no worker took yet is taken out of its
stream by one worker, which tells its member and records it (nothing runs).

Redis away: every loop catches redis-py's errors, backs off and goes on; jobs
held keep running and their acknowledgements wait for Redis to come back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from aibot.alerts import Alert, Alerts
from aibot.cluster.controls import CancelRequest, Controls
from aibot.cluster.deliveries import StreamDeliveries
from aibot.cluster.heartbeat import VERSION, Heartbeat, NodeInfo
from aibot.cluster.journal import RedisJournal
from aibot.cluster.streams import Delivery, JobStream
from aibot.cluster.tasks import Backoff, stop_tasks
from aibot.cluster.views import snapshot_to_dict
from aibot.jobs import AibotError, Cancelled, GaveUp, Job
from aibot.ports import ReplyFactory
from aibot.snapshots import PoolSnapshot
from aibot.worker import Observer, Worker

__all__ = ["Runner"]

log = logging.getLogger("aibot.cluster.runner")

T = TypeVar("T")
# Seconds between tries while Redis fails: the first pause, the longest.
_BACKOFF_FIRST, _BACKOFF_MAX = 0.05, 1.0


@dataclass(slots=True)
class _Held:
    """A job this process runs: its pool and the delivery it came with."""

    pool: str
    delivery: Delivery


class Runner:
    """Feeds `worker`'s pools (`pools`) from their streams; see the module docstring.

    `observe` must be the worker's observer (`Worker(observe=runner.observe)`):
    it is how the runner learns a job's outcome. `beat`: keep this process's heartbeat
    (a worker-only process; `on_beat` after each); a gateway folds `node_info()` into its own."""

    def __init__(
        self,
        redis: Redis,
        worker: Worker,
        *,
        replies: ReplyFactory,
        deliveries: StreamDeliveries,
        journal: RedisJournal,
        node: str,
        pools: Sequence[str],
        prefix: str = "aibot",
        lease: float = 3.0,
        beat: bool = True,
        on_beat: Sequence[Callable[[], Awaitable[object]]] = (),
        observe: Observer | None = None,
        control_every: float = 0.25,
        alerts: Alerts | None = None,
    ) -> None:
        self.redis = redis
        self.worker = worker
        self.replies = replies
        self.deliveries = deliveries
        self.journal = journal
        self.node = node
        self.lease = lease
        self.streams = {pool: JobStream(redis, pool, prefix=prefix, lease=lease) for pool in pools}
        self.started_at = time.time()
        self.heartbeat = (
            Heartbeat(redis, self.node_info, prefix=prefix, on_beat=on_beat) if beat else None
        )
        self._observe = observe
        self._alerts = alerts
        self._held: dict[str, _Held] = {}  # by job id
        self._freed = {pool: asyncio.Event() for pool in pools}
        self._loops: list[asyncio.Task[None]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self.controls = Controls(redis, prefix, lease=lease)
        self.control_every = control_every
        self._paused: frozenset[str] = frozenset()  # as the last control poll saw them
        self._cancels: Mapping[str, CancelRequest] = {}
        self._control: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ start, stop

    async def start(self) -> None:
        """Begin taking jobs; the heartbeat's first beat before (raises when Redis
        cannot be reached at start)."""
        if self.heartbeat is not None:
            await self.heartbeat.start()
        await self._control_once()  # a paused pool takes nothing, from the start
        self._control = asyncio.create_task(self._control_forever(), name="controls")
        for pool in self.streams:
            self._loops.append(asyncio.create_task(self._take_forever(pool), name=f"take-{pool}"))
        self._loops.append(asyncio.create_task(self._renew_forever(), name="renew"))

    async def drain(self, timeout: float) -> None:
        """Take no more jobs; give the held ones `timeout` seconds; leave the rest to
        another worker (their replies say nothing here; their uses stand)."""
        self._stopping = True
        for task in self._loops[:-1]:  # the take loops; renewals go on meanwhile
            task.cancel()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._unfinished() and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for job_id in self._unfinished():
            self._held.pop(job_id, None)
            self.deliveries.release(job_id)
            log.info("job %s: left to another worker", job_id)
        await self.worker.drain(0, handed_back=True)
        if self._tasks:  # acknowledgements still being retried
            await asyncio.wait(set(self._tasks), timeout=max(1.0, deadline - loop.time()))
        await stop_tasks([*self._loops, *self._tasks, *filter(None, [self._control])])
        if self.heartbeat is not None:
            await self.heartbeat.stop()

    def _unfinished(self) -> list[str]:
        """Held jobs whose delivery this process has not claimed."""
        return [job_id for job_id in self._held if not self.deliveries.committed(job_id)]

    # ------------------------------------------------------------ taking jobs

    def taking(self) -> tuple[str, ...]:
        """The pools whose take loop runs (none before `start` or after `drain`)."""
        # The take loops are started first, one per stream, in the streams' order.
        loops = zip(self.streams, self._loops, strict=False)  # no loops before `start`
        return tuple(pool for pool, task in loops if not task.done())

    def free_slots(self, pool: str) -> int:
        if pool in self._paused:
            return 0
        snapshot = self.worker.pools[pool].snapshot()
        if snapshot.state != "running":
            return 0
        return max(0, snapshot.workers_total - snapshot.workers_busy - snapshot.queued)

    async def _take_forever(self, pool: str) -> None:
        stream, freed = self.streams[pool], self._freed[pool]
        backoff = Backoff(_BACKOFF_FIRST, _BACKOFF_MAX)
        while not self._stopping:
            free = self.free_slots(pool)
            if free <= 0:
                freed.clear()
                await freed.wait()
                continue
            asked = time.monotonic()  # the leases of what it takes start after this
            try:
                deliveries = await stream.take(self.node, free)
            except RedisError as error:
                if not backoff.failures:
                    log.warning("%s: cannot take jobs, Redis away (%r); retrying", pool, error)
                await backoff.pause()
                continue
            if backoff.failures:
                log.info("%s: taking jobs again", pool)
                backoff.reset()
            taken_over = 0  # jobs started here that another worker had taken
            for delivery in deliveries:
                if await self._start(pool, stream, delivery, asked) and delivery.deliveries > 1:
                    taken_over += 1
            if taken_over and self._alerts is not None:
                detail = {"node": self.node, "jobs": str(taken_over)}
                self._alerts.alert(Alert("reclaimed", pool=pool, detail=detail))

    async def _start(self, pool: str, stream: JobStream, delivery: Delivery, asked: float) -> bool:
        """Run the delivered job here; True if it started (not answered, dead, cancelled, held)."""
        job = delivery.job
        if delivery.answered:
            return False  # an earlier delivery answered it; the stream finished the entry
        if delivery.dead:
            self.deliveries.hold(stream, delivery, since=asked)
            self._spawn(self._give_up(delivery))
            return False
        held = self._held.get(job.id)
        if held is not None:  # its own entry, reclaimed after a stall: still running here
            held.delivery = delivery
            self.deliveries.hold(stream, delivery, since=asked)
            return False
        if job.id in self._cancels:
            self._spawn(self._tell_cancelled(pool, stream, delivery))
            return False
        if self.worker.holds(job.id):  # dropped here a moment ago, its run not over yet
            self._held[job.id] = _Held(pool, delivery)  # renewed, not yet claimable
            self._spawn(self._start_when_over(pool, stream, delivery))
            return False
        self._held[job.id] = _Held(pool, delivery)
        self.deliveries.hold(stream, delivery, since=asked)
        try:
            if delivery.deliveries > 1:
                job = await self.journal.left(job)
            await self.worker.submit(job)
        except Exception as refused:  # left pending: reclaimed (dead-lettered in the end)
            if isinstance(refused, AibotError | RedisError):
                log.info("job %s: not taken here (%r)", job.id, refused)
            else:
                log.error("job %s: could not be started here\n%s", job.id, job.trace(refused))
            self._held.pop(job.id, None)
            self.deliveries.release(job.id)
            return False
        return True

    async def _start_when_over(self, pool: str, stream: JobStream, delivery: Delivery) -> None:
        """Start `delivery` once the dropped run of its job here stopped (its reply is silent)."""
        await self.worker.run_over(delivery.job.id)
        if not self._stopping:
            await self._start(pool, stream, delivery, time.monotonic())

    async def _give_up(self, delivery: Delivery) -> None:
        """Tell the member of a dead-lettered job it could not be done; use given back."""
        log.warning("job %s: delivered %d times, given up", delivery.job.id, delivery.deliveries)
        try:
            await self.replies.make(delivery.job).fail(GaveUp())
            await self.worker.give_back(delivery.job)
        finally:
            self.deliveries.release(delivery.job.id)

    # ---------------------------------------------------------------- outcomes

    def observe(self, job: Job, error: AibotError | None, seconds: float) -> None:
        """The worker's observer: the job's outcome is known and its reply
        finished: acknowledge its entry (in a task: observers do not wait)."""
        if self._observe is not None:
            self._observe(job, error, seconds)
        held = self._held.get(job.id)
        if held is None:
            # Dropped (lease lost) or left to another worker: a slot is free now.
            for freed in self._freed.values():
                freed.set()
            return
        if not self.deliveries.committed(job.id):
            # Its reply did not win the delivery: whoever did finishes the entry, or
            # it is reclaimed and run again.
            log.info("job %s: its delivery went to another worker, dropped", job.id)
            del self._held[job.id]
            self.deliveries.release(job.id)
            self._freed[held.pool].set()
            return
        self._spawn(self._finish(job.id, held))

    async def _finish(self, job_id: str, held: _Held) -> None:
        stream = self.streams[held.pool]
        try:
            await self._retrying(lambda: stream.finish(held.delivery.entry_id, sent=job_id))
        finally:
            if self._held.get(job_id) is held:
                del self._held[job_id]
            self.deliveries.release(job_id)
            self._freed[held.pool].set()

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        backoff = Backoff(_BACKOFF_FIRST, _BACKOFF_MAX)
        while True:
            try:
                return await call()
            except RedisError:
                await backoff.pause()

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ leases

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            for pool, stream in self.streams.items():
                await self._renew(pool, stream)

    async def _renew(self, pool: str, stream: JobStream) -> None:
        held = {h.delivery.entry_id: job_id for job_id, h in self._held.items() if h.pool == pool}
        if not held:
            return
        asked = time.monotonic()
        try:
            owned = await stream.renew(self.node, held)
        except RedisError:
            return  # Redis away (or restarted empty): keep running what is held
        for entry_id, job_id in held.items():
            if entry_id in owned:
                self.deliveries.renewed(job_id, since=asked)
            elif not self.deliveries.claiming(job_id):
                self._drop(job_id)

    def _drop(self, job_id: str) -> None:
        """Another worker has the job now: stop it here, silently."""
        self._held.pop(job_id, None)
        self.deliveries.release(job_id)
        log.info("job %s: lease lost, dropped", job_id)
        self.worker.drop(job_id)

    # ------------------------------------------------------------------ status

    def node_info(self, shards: Sequence[int] = ()) -> NodeInfo:
        """This process as its heartbeat shows it."""
        return NodeInfo(
            node=self.node,
            pools=tuple(self.streams),
            free_slots={pool: self.free_slots(pool) for pool in self.streams},
            version=VERSION,
            shards=tuple(shards),
            started_at=self.started_at,
            snapshots=tuple(snapshot_to_dict(self._shown(s)) for s in self.worker.snapshots()),
        )

    def _shown(self, snapshot: PoolSnapshot) -> PoolSnapshot:
        """A pool an admin paused shows as paused (the take loop is what stops)."""
        if snapshot.name in self._paused and snapshot.state == "running":
            return dataclasses.replace(snapshot, state="paused")
        return snapshot

    # ---------------------------------------------------------------- controls

    async def _control_forever(self) -> None:
        while True:
            await asyncio.sleep(self.control_every)
            await self._control_once()

    async def _control_once(self) -> None:
        """Read the admin's controls and act on them; Redis away: keep the last ones."""
        try:
            state = await self.controls.poll(self.streams)
        except RedisError:
            return
        for pool in self._paused - state.paused:
            log.info("%s: resumed by an admin", pool)
            self._freed[pool].set()  # its take loop waits for a free slot
        for pool in state.paused - self._paused:
            log.info("%s: paused by an admin; taking no new jobs", pool)
        self._paused, self._cancels = state.paused, state.cancels
        for request in state.cancels.values():
            if request.pool not in self.streams:
                continue
            if request.job_id in self._held:
                self.worker.cancel(request.job_id)  # told and recorded as in one process
                continue
            try:
                job = await self.controls.drop_waiting(request)
            except RedisError:
                return
            if job is not None:
                delivery = Delivery(request.entry_id, job, 1, self.node)
                self._spawn(
                    self._tell_cancelled(request.pool, self.streams[request.pool], delivery)
                )

    async def _tell_cancelled(self, pool: str, stream: JobStream, delivery: Delivery) -> None:
        """Cancelled by an admin before it ran: told once, recorded, its entry finished."""
        job = delivery.job
        log.info("job %s: cancelled by an admin before it ran", job.id)
        self.deliveries.hold(stream, delivery, since=time.monotonic())
        try:
            await self.replies.make(job).fail(Cancelled())
        finally:
            if self.deliveries.committed(job.id):
                self.worker.cancelled_unstarted(job)
                await self._finish(job.id, _Held(pool, delivery))
            else:
                self.deliveries.release(job.id)
        if self._observe is not None:
            self._observe(job, Cancelled(), 0.0)
