"""The composition root of cluster mode (`AIBOT_REDIS_URL` set), imported by
`aibot.app.create_bot` only then, and by the command line for worker processes.

- `create_gateway(settings)`: the gateway holds the Discord gateway and the front
  for every pool; its jobs go over Redis (`aibot.cluster.queue.RedisQueue`), the
  gate is `SharedGate`; it runs its own pools too (`AIBOT_POOLS`, none with
  `AIBOT_POOLS=none`) from the same streams.
- `create_worker(env)`: a worker-only process (`AIBOT_GATEWAY=off`) running
  `AIBOT_POOLS` from their streams, answering over HTTP with no gateway.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from redis.asyncio import Redis

from aibot.alerts import AlertHub
from aibot.catalogue import POOLS
from aibot.cluster.connection import connect
from aibot.cluster.deliveries import StreamDeliveries
from aibot.cluster.gate import SharedGate
from aibot.cluster.journal import RedisJournal
from aibot.cluster.queue import ClusterGate, RedisQueue
from aibot.cluster.runner import Runner
from aibot.discord.bot import AibotBot, discord_clock
from aibot.discord.headless import HeadlessReplies
from aibot.discord.intake import Intake
from aibot.discord.reply import Replies
from aibot.discord.rooms import Rooms
from aibot.foreground import Foreground
from aibot.ports import ReplyFactory
from aibot.router import Router
from aibot.settings import Settings
from aibot.store import Store
from aibot.watch import watch_rings
from aibot.worker import Observer, Worker

__all__ = ["WorkerProcess", "create_gateway", "create_worker"]


def create_gateway(settings: Settings) -> AibotBot:
    """Cluster mode's gateway: every pool's commands (the pools run wherever a
    worker runs them), jobs over Redis, the gate in Redis."""
    cluster = settings.cluster
    assert cluster is not None
    # The front serves every pool; which ones are up, the heartbeats say.
    front = dataclasses.replace(settings, enabled_pools=POOLS)
    router = Router(front)
    foreground = Foreground(gap=settings.burst_gap)
    bot = AibotBot(front, router=router, foreground=foreground)
    # Memory and the ledger stay in each process's SQLite file for now (/stats,
    # /reset read the gateway's): their Redis versions plug in here.
    store = Store(settings, clock=discord_clock)
    redis = connect(cluster.redis_url)
    # The gateway's own notices (a job refused after its defer): no stream entry
    # stands behind such a job, so no other process can answer it.
    replies = Replies(bot, on_lost=bot.metrics.delivery_failed)
    # What operators must act on (keys disabled in this process's pools, pauses, ...).
    alerts = AlertHub(clock=discord_clock)
    runner, closers = None, []
    if settings.enabled_pools:
        worker_replies = Replies(bot, on_lost=bot.metrics.delivery_failed, every_job=True)
        runner = _runner(
            settings,
            redis,
            store,
            foreground.replies(worker_replies),
            bot.metrics.observe,
            beat=False,
        )
        worker_replies.delivery = runner.deliveries
        watch_rings(runner.worker.pools.values(), alerts)
        closers.append(worker_replies.close)
    queue = RedisQueue(
        redis, settings, runner=runner, shards=lambda: bot.shard_ids or (), closers=closers
    )
    gate = ClusterGate(
        SharedGate(redis, cluster.prefix, settings, store.calendar), lambda: queue.reachable
    )
    intake = Intake(
        router=router,
        queue=queue,
        replies=replies,
        gate=gate,
        draining=lambda: bot.draining,
        foreground=foreground,
    )
    rooms = Rooms(bot, alerts)
    bot.serve(store=store, replies=replies, queue=queue, intake=intake, rooms=rooms)
    bot.health_checks.append(queue.problem)
    return bot


def _runner(
    settings: Settings,
    redis: Redis,
    store: Store,
    replies: ReplyFactory,
    observe: Observer | None,
    *,
    beat: bool,
) -> Runner:
    """A worker for `settings.enabled_pools` fed from their streams."""
    cluster = settings.cluster
    assert cluster is not None
    runner: Runner | None = None

    def outcome(*args: object) -> None:
        runner.observe(*args)  # type: ignore[union-attr, arg-type]

    journal = RedisJournal(redis, prefix=cluster.prefix)
    worker = Worker(
        settings,
        replies=replies,
        gate=ClusterGate(SharedGate(redis, cluster.prefix, settings, store.calendar)),
        ledger=store.ledger,
        journal=journal,
        memory=store.memory,
        observe=outcome,
    )
    runner = Runner(
        redis,
        worker,
        replies=replies,
        deliveries=StreamDeliveries(),
        journal=journal,
        node=cluster.node,
        pools=settings.enabled_pools,
        prefix=cluster.prefix,
        lease=cluster.lease_seconds,
        beat=beat,
        observe=observe,
    )
    return runner


class WorkerProcess:
    """A worker-only process (`AIBOT_GATEWAY=off`): its pools fed from Redis,
    its replies over HTTP with no gateway. `start`, then `drain`, then `aclose`."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store,
        redis: Redis,
        headless: HeadlessReplies,
        runner: Runner,
    ) -> None:
        self.settings = settings
        self.store = store
        self.redis = redis
        self.headless = headless
        self.runner = runner

    async def start(self) -> None:
        await self.store.start()
        await self.headless.open()
        await self.runner.start()

    async def drain(self, timeout: float) -> None:
        await self.runner.drain(timeout)

    async def aclose(self) -> None:
        await self.runner.worker.aclose()
        await self.headless.close()
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
    runner = _runner(settings, redis, store, headless.replies, None, beat=True)
    headless.replies.delivery = runner.deliveries
    return WorkerProcess(settings, store=store, redis=redis, headless=headless, runner=runner)
