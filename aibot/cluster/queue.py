"""The gateway's job transport in cluster mode: jobs go to their pool's Redis stream.

`RedisQueue` implements `aibot.transport.JobQueue`. `submit` appends the job to
its pool's `JobStream`; the worker processes take it from there. Everything the
front asks before the defer (`loads`, `pools`, `wait_estimate`, `snapshots`) is
answered from state a background task refreshes every `refresh` seconds (the
live heartbeats and the streams' loads), never with I/O on the call. A pool no
live process runs reads as `keys_down`, so the router overflows its jobs to the
admin pool (the reference design's takeover) or refuses them with words.

Redis away: the refresh notices within a second and `reachable` turns False;
`ClusterGate` then refuses every command at once, privately ("temporarily
unavailable"), before any defer, and a `submit` that fails after the defer
raises `TemporarilyUnavailable`, which the deferred message says. Everything
resumes by itself when the refresh reaches Redis again.

The admin's controls act on every process through Redis (`aibot.cluster.controls`):
`list_jobs` reads the streams (jobs held by any worker, then the ones waiting);
`cancel` records a request for a job that is there to cancel, which the worker
holding it (or one taking it out of the stream) carries out; `pause` / `unpause`
set a flag every worker's take loop honours. A paused pool's commands are
refused before the defer, as in one process, and `/status` shows it paused.
The synchronous `jobs()` lists only the jobs this process's own pools hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError

from aibot.catalogue import POOLS, SERVICE_ESTIMATE
from aibot.cluster.batch import Batched
from aibot.cluster.commands import CALL_TIMEOUT, redis_call
from aibot.cluster.controls import Controls, ListedJob
from aibot.cluster.heartbeat import VERSION, Heartbeat, NodeInfo, live_nodes
from aibot.cluster.runner import Runner
from aibot.cluster.streams import JobStream, StreamLoad, entry_fields, stream_loads
from aibot.cluster.tasks import stop_tasks
from aibot.cluster.views import merged_snapshots, node_snapshot
from aibot.jobs import Job, TemporarilyUnavailable
from aibot.router import PoolLoad
from aibot.settings import Settings
from aibot.snapshots import NodeSnapshot, PoolSnapshot

__all__ = ["RedisQueue"]

log = logging.getLogger("aibot.cluster.queue")

_DOWN = PoolLoad(keys_down=True)


class RedisQueue:
    """`JobQueue` over Redis streams (see the module docstring). `runner`, when
    given, runs this process's own pools (`AIBOT_POOLS`) from the same streams.
    `starters` run first at `start`, `closers` last at `aclose` (before Redis is
    closed), `on_beat` after each heartbeat. `watch`, when given, is a client of
    its own for the refresh and the heartbeat: a burst of commands holding every
    connection of `redis` must not make this process think Redis unreachable
    (and refuse everything) while it is only busy."""

    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        *,
        runner: Runner | None = None,
        shards: Callable[[], Sequence[int]] = tuple,
        refresh: float = 0.5,
        beat_every: float = 1.0,
        closers: Sequence[Callable[[], Awaitable[object]]] = (),
        starters: Sequence[Callable[[], Awaitable[object]]] = (),
        on_beat: Sequence[Callable[[], Awaitable[object]]] = (),
        watch: Redis | None = None,
        batched: Batched | None = None,
    ) -> None:
        cluster = settings.cluster
        assert cluster is not None, "RedisQueue is cluster mode's"
        self.redis = redis
        self._watch = watch if watch is not None else redis
        self.settings = settings
        self.prefix = cluster.prefix
        self.node = cluster.node
        self.runner = runner
        self.refresh = refresh
        self.streams = {
            pool: JobStream(redis, pool, prefix=self.prefix, lease=cluster.lease_seconds)
            for pool in POOLS
        }
        self._batched = batched if batched is not None else Batched(redis)
        self._shards = shards
        self._closers = tuple(closers)  # what the runner's worker holds open
        self._starters = tuple(starters)  # e.g. the shard claims: may refuse the start
        self._started_at = time.time()
        self.heartbeat = Heartbeat(
            self._watch, self.node_info, prefix=self.prefix, ttl=5.0, on_beat=on_beat
        )
        self._beat_every = beat_every
        self.reachable = False
        self._round_trip: float | None = None  # seconds, as the last refresh measured
        self._nodes: list[NodeInfo] = []
        self._loads: dict[str, StreamLoad] = {}
        self._views: dict[str, PoolSnapshot] = {}
        self._task: asyncio.Task[None] | None = None
        self.controls = Controls(self._watch, self.prefix, lease=cluster.lease_seconds)
        self._paused: frozenset[str] = frozenset()  # pools an admin paused
        # Per server, by job id: the jobs `list_jobs` last read there.
        self._listed: dict[int, dict[str, ListedJob]] = {}

    # ------------------------------------------------- answered from memory

    def pools(self) -> tuple[str, ...]:
        """The pools some live process runs."""
        served = {pool for node in self._nodes for pool in node.pools}
        return tuple(pool for pool in POOLS if pool in served)

    def loads(self) -> Mapping[str, PoolLoad]:
        served, paused = self.pools(), self._paused
        loads = {pool: self._load(pool) if pool in served else _DOWN for pool in POOLS}
        for pool in paused:
            loads[pool] = dataclasses.replace(loads[pool], paused=True)
        return loads

    def _load(self, pool: str) -> PoolLoad:
        stream = self._loads.get(pool)
        nodes = sum(pool in node.pools for node in self._nodes)
        capacity = self.settings.pools[pool].queue_size * max(1, nodes)
        return PoolLoad(full=stream is not None and stream.waiting >= capacity)

    def wait_estimate(self, pool: str) -> float:
        view = self._views.get(pool)
        stream = self._loads.get(pool)
        workers = view.workers_total if view is not None else 0
        service = view.p50_ms / 1000 if view is not None and view.p50_ms else SERVICE_ESTIMATE[pool]
        waiting = stream.waiting if stream is not None else 0
        return service * max(1, waiting) / max(1, workers)

    def snapshots(self) -> list[PoolSnapshot]:
        return [self._shown(self._views[pool]) for pool in POOLS if pool in self._views]

    def _shown(self, view: PoolSnapshot) -> PoolSnapshot:
        """The pool as the pause flag says at once (heartbeats follow within a beat)."""
        if view.name in self._paused and view.state == "running":
            return dataclasses.replace(view, state="paused")
        if view.name not in self._paused and view.state == "paused":
            return dataclasses.replace(view, state="running")
        return view

    def jobs(self) -> list[tuple[str, Job, str]]:
        """The jobs this process's own pools hold (`AIBOT_POOLS`), none for a
        gateway alone: `list_jobs` reads every process's from Redis."""
        return self.runner.worker.jobs() if self.runner is not None else []

    # ---------------------------------------------------------------- jobs

    async def submit(self, job: Job) -> int:
        """Append `job` to its pool's stream; its place in line, estimated from the
        stream's load. `TemporarilyUnavailable` when Redis cannot take it."""
        if not self.reachable:
            raise TemporarilyUnavailable("redis unreachable")
        key, fields = self.streams[job.pool].key, entry_fields(job)
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                # With the other jobs handed over in this turn of the loop, in one
                # pipeline: a burst's XADDs cost a fraction of as many lone calls.
                await self._batched.call(lambda pipe: pipe.xadd(key, fields))
        except (RedisError, TimeoutError) as error:
            log.warning("job %s: not queued, Redis away (%r)", job.id, error)
            raise TemporarilyUnavailable("redis unreachable") from None
        return self._place(job.pool)

    def _place(self, pool: str) -> int:
        stream, view = self._loads.get(pool), self._views.get(pool)
        if stream is None or view is None:
            return 1
        free = view.workers_total - stream.pending
        return 1 if stream.waiting < free else stream.waiting - free + 2

    async def list_jobs(self, guild_id: int) -> list[tuple[str, Job, str]]:
        """(pool, job, running or queued) of a server's jobs in the streams,
        whichever worker holds them: running first, per pool."""
        async with redis_call():
            listed = await self.controls.jobs(POOLS, guild_id)
        self._listed[guild_id] = {entry.job.id: entry for entry in listed}
        return [(entry.pool, entry.job, entry.state) for entry in listed]

    async def cancel(self, job_id: str) -> bool:
        """Ask the cluster to cancel `job_id`, listed a moment ago (`list_jobs`):
        True when it is there to cancel (running or waiting); the worker that holds
        or takes it tells its member."""
        listed = next((jobs[job_id] for jobs in self._listed.values() if job_id in jobs), None)
        if listed is None:
            return False
        async with redis_call():
            asked = await self.controls.request_cancel(listed.pool, listed.entry_id, job_id)
        if asked:
            log.info("job %s: cancel asked of the %s pool's workers", job_id, listed.pool)
        return asked

    async def pause(self, pool: str) -> None:
        await self._switch(pool, pause=True)

    async def unpause(self, pool: str) -> None:
        await self._switch(pool, pause=False)

    async def _switch(self, pool: str, *, pause: bool) -> None:
        """Set or clear the pool's pause flag for every process; this gateway's
        intake and views follow at once, the workers within a poll."""
        async with redis_call():
            if pause:
                await self.controls.pause(pool, by=self.node)
            else:
                await self.controls.unpause(pool)
        self._paused = self._paused | {pool} if pause else self._paused - {pool}
        log.info("%s: %s for every process", pool, "paused" if pause else "resumed")

    # ------------------------------------------------------ start and stop

    async def start(self) -> None:
        """Run the `starters` (their error stops the start), then start refreshing
        (the first refresh done before it returns, if Redis answers) and this
        process's own pools."""
        for begin in self._starters:
            await begin()
        await self._refresh_once()
        self._task = asyncio.create_task(self._refresh_forever(), name="aibot-cluster-refresh")
        if self.runner is not None:
            await self.runner.start()

    async def drain(self, timeout: float) -> None:
        if self.runner is not None:
            await self.runner.drain(timeout)

    async def aclose(self) -> None:
        if self._task is not None:
            await stop_tasks([self._task])
            self._task = None
        await self.heartbeat.stop()
        if self.runner is not None:
            await self.runner.worker.aclose()
        for close in self._closers:
            try:
                await close()
            except Exception:  # the others and the connections still close
                log.exception("closing the cluster queue: a part failed")
        await self.redis.aclose()
        if self._watch is not self.redis:
            await self._watch.aclose()

    # ------------------------------------------------------------ refresh

    def node_info(self) -> NodeInfo:
        shards = tuple(self._shards())
        if self.runner is not None:
            return self.runner.node_info(shards)
        return NodeInfo(self.node, version=VERSION, shards=shards, started_at=self._started_at)

    async def _refresh_forever(self) -> None:
        last_beat, failing = 0.0, ""
        while True:
            await asyncio.sleep(self.refresh)
            try:
                await self._refresh_once()
                now = time.monotonic()
                if self.reachable and now - last_beat >= self._beat_every:
                    last_beat = now
                    with contextlib.suppress(RedisError, TimeoutError):
                        async with asyncio.timeout(CALL_TIMEOUT):
                            await self.heartbeat.beat()
            except Exception as error:
                # Not Redis away (the refresh handles that): a bug, or a heartbeat
                # this version cannot read. Said once; the next round tries again,
                # for this loop keeps the views, the heartbeat and the shard claims.
                if repr(error) != failing:
                    log.exception("the cluster refresh failed; trying again")
                failing = repr(error)
            else:
                failing = ""

    async def _refresh_once(self) -> None:
        start = time.perf_counter()
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                await self._watch.ping()
                self._round_trip = time.perf_counter() - start
                nodes = await live_nodes(self._watch, prefix=self.prefix)
                loads = await stream_loads(self._watch, POOLS, prefix=self.prefix)
                paused = await self.controls.paused(POOLS)
        except (RedisError, TimeoutError, OSError) as error:
            self._round_trip = math.inf
            if self.reachable or not self._nodes:
                log.warning("Redis unreachable (%r): commands are refused for now", error)
            self.reachable = False
            # Nothing read now is known: no pool's figures shown as if they were live.
            self._nodes, self._loads, self._views = [], {}, {}
            return
        if not self.reachable:
            log.info("Redis reachable: taking commands")
        self.reachable = True
        self._nodes, self._loads, self._paused = nodes, loads, paused
        self._views = {view.name: view for view in merged_snapshots(nodes)}

    def problem(self) -> str | None:
        """What `/health` reports: Redis unreachable, or nothing."""
        return None if self.reachable else "redis unreachable"

    # ------------------------------------------------------------ status views

    def nodes(self) -> list[NodeSnapshot]:
        """Every live process as the last refresh saw it (this one always: also
        while Redis is away, when no heartbeat can be read)."""
        nodes = [node_snapshot(info, here=self.node) for info in self._nodes]
        if not any(node.here for node in nodes):
            nodes.insert(0, node_snapshot(self.node_info(), here=self.node))
        return nodes

    def round_trip(self) -> float | None:
        """Seconds the last refresh's PING to Redis took; `math.inf` when it did not
        answer within `CALL_TIMEOUT` (None before the first). A burst of `/ping`s
        costs Redis nothing."""
        return self._round_trip
