"""Cluster mode's worker side (`AIBOT_REDIS_URL` set).

- `cluster_runner(...)`: the `Runner` that feeds a process's own pools
  (`AIBOT_POOLS`) from their Redis streams, its keys' budgets, gate, journal and
  memory shared with every process. A worker-only process runs one, and so does
  a gateway that runs pools (`aibot.app_cluster.create_gateway`).
- `create_worker(env)`: a worker-only process (`AIBOT_GATEWAY=off`), answering
  over HTTP with no gateway: its outcomes go to the gateways' ledgers
  (`OutcomePublisher`), its alerts to their alert rooms (`AlertPublisher`), and
  it serves its own `/health` and `/metrics`. The command line runs it
  (`aibot.cli_worker`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from redis.asyncio import Redis

from aibot.alerts import Alerts
from aibot.cluster.alerts import AlertPublisher
from aibot.cluster.budget import SharedBudgets
from aibot.cluster.commands import ClusterGate
from aibot.cluster.connection import connect
from aibot.cluster.deliveries import StreamDeliveries
from aibot.cluster.gate import SharedGate
from aibot.cluster.journal import RedisJournal
from aibot.cluster.memory import SharedMemory
from aibot.cluster.outcomes import OutcomePublisher
from aibot.cluster.ring import SharedKeyRing, shared_rings
from aibot.cluster.runner import Runner
from aibot.cluster.worker_status import WorkerStatus
from aibot.discord.bot import discord_clock
from aibot.discord.headless import HeadlessReplies
from aibot.http import HttpServer, Metrics, start_http
from aibot.ports import Ledger, ReplyFactory
from aibot.settings import Settings
from aibot.store import Store
from aibot.watch import watch_rings
from aibot.worker import Observer, Worker

__all__ = [
    "WorkerProcess",
    "cluster_runner",
    "create_worker",
    "flush_rings",
    "forgive_rings",
    "refresh_rings",
]

log = logging.getLogger("aibot.cluster")


async def flush_rings(worker: Worker) -> None:
    """Send the shared rings' last key reports (429s, disabled keys) to Redis."""
    for ring in _shared_rings(worker):
        await ring.flush()


async def forgive_rings(worker: Worker) -> None:
    """Give every key of the worker's rings another chance (`SharedKeyRing.forgive`)."""
    for ring in _shared_rings(worker):
        await ring.forgive()


async def refresh_rings(worker: Worker) -> None:
    """Learn what other processes did to the worker's keys (disabled one, cooled one),
    for this process's status views (`SharedKeyRing.refresh`): a heartbeat hook."""
    for ring in _shared_rings(worker):
        await ring.refresh()


def _shared_rings(worker: Worker) -> list[SharedKeyRing]:
    rings = (ring for context in worker.pools.contexts.values() for ring in context.rings.values())
    return [ring for ring in rings if isinstance(ring, SharedKeyRing)]


def cluster_runner(
    settings: Settings,
    redis: Redis,
    store: Store,
    replies: ReplyFactory,
    observe: Observer | None,
    *,
    beat: bool,
    ledger: Ledger,
    memory: SharedMemory,
    alerts: Alerts,
) -> Runner:
    """A worker for `settings.enabled_pools` fed from their streams, its keys'
    budgets shared with every process through Redis; it alerts the jobs it takes
    over from a worker that stopped."""
    cluster = settings.cluster
    assert cluster is not None
    runner: Runner | None = None

    def outcome(*args: object) -> None:
        runner.observe(*args)  # type: ignore[union-attr, arg-type]

    journal = RedisJournal(redis, prefix=cluster.prefix)
    deliveries = StreamDeliveries(journal)
    # No progress or streaming edit, and no exchange remembered, once a stall may
    # have cost the job's lease.
    replies = deliveries.fenced(replies)
    worker = Worker(
        settings,
        replies=replies,
        gate=ClusterGate(SharedGate(redis, cluster.prefix, settings, store.calendar)),
        ledger=ledger,
        journal=journal,
        memory=deliveries.fenced_memory(memory),
        observe=outcome,
        ring=shared_rings(SharedBudgets(redis, cluster.prefix)),
    )
    runner = Runner(
        redis,
        worker,
        replies=replies,
        deliveries=deliveries,
        journal=journal,
        node=cluster.node,
        pools=settings.enabled_pools,
        prefix=cluster.prefix,
        lease=cluster.lease_seconds,
        beat=beat,
        on_beat=[lambda: refresh_rings(worker)],
        observe=observe,
        alerts=alerts,
    )
    return runner


class WorkerProcess:
    """A worker-only process (`AIBOT_GATEWAY=off`): its pools fed from Redis,
    its replies over HTTP with no gateway, its outcomes published for the
    gateway's ledger, its own `/health` and `/metrics` on `AIBOT_HTTP` (unless
    off). `start`, then `drain`, then `aclose`."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store,
        redis: Redis,
        headless: HeadlessReplies,
        runner: Runner,
        outcomes: OutcomePublisher,
        alerts: AlertPublisher | None = None,
        status: WorkerStatus | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.redis = redis
        self.headless = headless
        self.runner = runner
        self.outcomes = outcomes
        self.alerts = alerts
        self.status = status if status is not None else WorkerStatus(runner, redis)
        self.metrics = metrics if metrics is not None else Metrics(self.status)
        self.http_server: HttpServer | None = None

    async def start(self) -> None:
        await self.store.start()
        await self.headless.open()
        await forgive_rings(self.runner.worker)
        await self.runner.start()
        if self.settings.http is not None:
            await self._serve_http(*self.settings.http)

    async def _serve_http(self, host: str, port: int) -> None:
        """`/health` and `/metrics`. A port another process holds (a worker beside
        the gateway, both on the default 8001) is logged, not fatal: the pools
        matter more than their health page."""
        status = self.status
        await status.probe()
        try:
            self.http_server = await start_http(
                status,
                host,
                port,
                metrics=self.metrics,
                checks=[status.problem],
                probe=status.probe,
            )
        except OSError as error:
            log.warning(
                "no /health or /metrics on %s:%d (%s): give this worker its own AIBOT_HTTP",
                host,
                port,
                os.strerror(error.errno) if error.errno else error,
            )

    async def drain(self, timeout: float) -> None:
        await self.runner.drain(timeout)

    async def aclose(self) -> None:
        if self.http_server is not None:
            await self.http_server.stop()
            self.http_server = None
        await self.runner.worker.aclose()
        await self.headless.close()
        await flush_rings(self.runner.worker)
        await self.outcomes.flush()
        if self.alerts is not None:
            await self.alerts.flush()
        await self.store.close()
        await self.redis.aclose()


def create_worker(env: Mapping[str, str] | None = None) -> WorkerProcess:
    """A worker-only process configured by `env` (needs `AIBOT_REDIS_URL`)."""
    settings = Settings.from_env(env)
    cluster = settings.cluster
    if cluster is None:
        raise ValueError("a worker process needs AIBOT_REDIS_URL")
    store = Store(settings, clock=discord_clock)
    redis = connect(cluster.redis_url)
    headless = HeadlessReplies(settings.discord_token or "")
    outcomes = OutcomePublisher(redis, cluster.prefix)
    memory = SharedMemory(redis, cluster.prefix, settings.chat_history_tokens)
    # This process has no rooms: its alerts (keys disabled, jobs taken over) go to
    # the gateways' alert rooms.
    alerts = AlertPublisher(redis, cluster.prefix)
    # Each job's seconds go to the process's /metrics (`metrics` is made just below).
    runner = cluster_runner(
        settings,
        redis,
        store,
        headless.replies,
        lambda *outcome: metrics.observe(*outcome),
        beat=True,
        ledger=outcomes,
        memory=memory,
        alerts=alerts,
    )
    headless.replies.delivery = runner.deliveries
    watch_rings(runner.worker.pools.values(), alerts)
    status = WorkerStatus(runner, redis)
    metrics = Metrics(status)
    return WorkerProcess(
        settings,
        store=store,
        redis=redis,
        headless=headless,
        runner=runner,
        outcomes=outcomes,
        alerts=alerts,
        status=status,
        metrics=metrics,
    )
