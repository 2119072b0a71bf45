"""The composition root: `create_bot(env)` builds the whole bot from one mapping.

Settings come from the mapping (the process environment when None). Everything is
built here, nothing started: the store (closed), the worker with its pools, key
rings and provider clients, the in-process job transport, the replies, the intake
and the bot. The bot's `setup_hook` starts them and its `close()` drains them.
Tests and `run.py` build bots only through this function, so each test builds as
many independent worlds as it likes.

Cluster mode (`AIBOT_REDIS_URL` set): `create_bot` builds a gateway whose jobs go
over Redis (`aibot.cluster.queue.RedisQueue`, the gate `SharedGate`), running
its own pools (`AIBOT_POOLS`, none with `AIBOT_POOLS=none`) from the same
streams; `create_worker` builds a worker-only process (`AIBOT_GATEWAY=off`).
Everything of cluster mode is imported inside those branches: without
`AIBOT_REDIS_URL`, redis is never imported.
"""

from __future__ import annotations

import dataclasses
import gc
from collections.abc import Mapping
from typing import TYPE_CHECKING

from aibot.discord.bot import AibotBot, discord_clock
from aibot.discord.intake import Intake
from aibot.discord.reply import Replies
from aibot.foreground import Foreground
from aibot.ports import ReplyFactory
from aibot.router import Router
from aibot.settings import Settings
from aibot.store import Store
from aibot.transport import LocalQueue
from aibot.worker import Observer, Worker

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from aibot.cluster.runner import Runner
    from aibot.discord.headless import HeadlessReplies

__all__ = ["WorkerProcess", "create_bot", "create_worker", "freeze_startup_heap"]


def create_bot(env: Mapping[str, str] | None = None) -> AibotBot:
    """A ready-to-start bot (an `AutoShardedBot`) configured by `env`.

    Raises `SettingsError` listing every bad variable. Sharding follows
    `AIBOT_SHARD_COUNT` / `AIBOT_SHARD_IDS` when set, else Discord's recommendation.
    """
    settings = Settings.from_env(env)
    if settings.cluster is not None:
        return _create_gateway(settings)
    router = Router(settings)
    # Members' commands go before the pools' work (see aibot.foreground).
    foreground = Foreground(gap=settings.burst_gap)
    bot = AibotBot(settings, router=router, foreground=foreground)
    # Days and cooldowns follow the clock of interaction timestamps.
    store = Store(settings, clock=discord_clock)
    replies = Replies(bot, delivery=store.journal, on_lost=bot.metrics.delivery_failed)
    worker = Worker(
        settings,
        # Members first: the worker's replies and hand-overs wait for their turn.
        replies=foreground.replies(replies),
        gate=store.gate,
        ledger=store.ledger,
        journal=store.journal,
        memory=store.memory,
        observe=bot.metrics.observe,
    )
    queue = LocalQueue(worker, turn=foreground.turn)
    intake = Intake(
        router=router,
        queue=queue,
        replies=replies,
        gate=store.gate,
        draining=lambda: bot.draining,
        foreground=foreground,
    )
    bot.serve(store=store, replies=replies, queue=queue, intake=intake)
    return bot


def _create_gateway(settings: Settings) -> AibotBot:
    """Cluster mode's gateway: every pool's commands (the pools run wherever a
    worker runs them), jobs over Redis, the gate in Redis."""
    from aibot.catalogue import POOLS
    from aibot.cluster.connection import connect
    from aibot.cluster.gate import SharedGate
    from aibot.cluster.queue import ClusterGate, RedisQueue

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
    bot.serve(store=store, replies=replies, queue=queue, intake=intake)
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
    from aibot.cluster.deliveries import StreamDeliveries
    from aibot.cluster.gate import SharedGate
    from aibot.cluster.journal import RedisJournal
    from aibot.cluster.queue import ClusterGate
    from aibot.cluster.runner import Runner

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
    from aibot.cluster.connection import connect
    from aibot.discord.headless import HeadlessReplies

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


def freeze_startup_heap() -> None:
    """Once the bot is up (`python run.py`, the benchmark): collect, then move every
    object alive now (modules, classes, the command tree, settings, caches) out of
    the garbage collector's sight for good. A full collection otherwise walks them
    all again, some 80 ms on a small machine with every thread stopped, long enough
    to make the commands arriving meanwhile miss their few milliseconds.

    Process-wide and for serving only: tests build many bots in one process and
    would keep each one's objects forever."""
    gc.collect()
    gc.freeze()
