"""The composition root of cluster mode (`AIBOT_REDIS_URL` set), imported by
`aibot.app.create_bot` only then.

- `create_gateway(settings)`: the gateway holds the Discord gateway and the front
  for every pool; its jobs go over Redis (`aibot.cluster.queue.RedisQueue`), the
  gate is `SharedGate`; it runs its own pools too (`AIBOT_POOLS`, none with
  `AIBOT_POOLS=none`) from the same streams.
- a worker-only process (`AIBOT_GATEWAY=off`) is `aibot.app_worker.create_worker`,
  whose `cluster_runner` also feeds a gateway's own pools.

What must hold for the whole bot lives in Redis for every process: the keys'
budgets (`SharedKeyRing`), conversation memory (`SharedMemory`, which the
gateway's `/reset` forgets too), the gate and `/admin quota` (`SharedGate`).
The usage ledger stays in the gateway's SQLite file: worker processes publish
their outcomes (`OutcomePublisher`) and the gateway's `OutcomeFollower` records
them, once per job id, so `/stats` shows the whole bot. The operators' alerts
go the same way: a worker-only process publishes them (`AlertPublisher`) and
every gateway posts them (`AlertFollower`). A gateway claims its shards in
Redis before it connects, `AIBOT_SHARD_IDS` or, without them, the whole bot
(`ShardClaims`, renewed by its heartbeat; with `AIBOT_GATEWAY=standby` it waits
for them), and identifies through `IdentifyLock`, its buckets Discord's
`max_concurrency`. A gateway that finds its shards taken over closes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from aibot.alerts import AlertHub
from aibot.app_worker import cluster_runner, flush_rings, forgive_rings, refresh_rings
from aibot.catalogue import POOLS
from aibot.cluster.alerts import AlertFollower
from aibot.cluster.batch import Batched
from aibot.cluster.commands import ClusterConversations, ClusterGate, ClusterLimits
from aibot.cluster.connection import connect
from aibot.cluster.gate import SharedGate
from aibot.cluster.memory import SharedMemory
from aibot.cluster.outcomes import OutcomeFollower
from aibot.cluster.queue import RedisQueue
from aibot.cluster.rooms import SharedRoomRecords
from aibot.cluster.shards import IdentifyLock, ShardClaims, shard_words
from aibot.discord.bot import AibotBot, discord_clock
from aibot.discord.intake import Intake
from aibot.discord.reply import Replies
from aibot.discord.rooms import Rooms
from aibot.foreground import Foreground
from aibot.router import Router
from aibot.settings import Settings
from aibot.store import Store
from aibot.store.gate import pool_of
from aibot.watch import ProviderWatch, WatchedGate, WatchedLedger, watch_rings

__all__ = ["create_gateway"]

log = logging.getLogger("aibot.cluster")


def create_gateway(settings: Settings) -> AibotBot:
    """Cluster mode's gateway: every pool's commands (the pools run wherever a
    worker runs them), jobs over Redis, the gate and memory in Redis."""
    cluster = settings.cluster
    assert cluster is not None
    # The front serves every pool; which ones are up, the heartbeats say.
    front = dataclasses.replace(settings, enabled_pools=POOLS)
    router = Router(front)
    foreground = Foreground(gap=settings.burst_gap)
    bot = AibotBot(front, router=router, foreground=foreground)
    # The ledger (/stats) and the admin actions stay in the gateway's SQLite file.
    store = Store(settings, clock=discord_clock)
    redis = connect(cluster.redis_url)
    memory = SharedMemory(redis, cluster.prefix, settings.chat_history_tokens)
    # A turn of the loop's gate takes and job appends go to Redis as one pipeline.
    batched = Batched(redis)
    shared_gate = SharedGate(redis, cluster.prefix, settings, store.calendar, batched=batched)
    # The gateway's own notices (a job refused after its defer): no stream entry
    # stands behind such a job, so no other process can answer it.
    replies = Replies(bot, on_lost=bot.metrics.delivery_failed)
    # What operators must act on (keys disabled in this process's pools, pauses, ...).
    alerts = AlertHub(clock=discord_clock)
    # Several gateways keep a ledger each: each reads every outcome (its own group).
    group = f"ledger:{cluster.node}" if settings.shard_ids else "ledger"
    # A provider failing, seen in the workers' outcomes and in this process's own.
    providers = ProviderWatch(alerts, discord_clock)
    follower = OutcomeFollower(
        redis,
        cluster.prefix,
        store.ledger,
        group=group,
        turn=foreground.turn,
        watch=providers.seen,
    )
    # The worker-only processes' alerts (keys they disabled), into this one's rooms.
    worker_alerts = AlertFollower(redis, cluster.prefix, alerts, turn=foreground.turn)
    starters: list[Callable[[], Awaitable[object]]] = [
        _started(follower.start),
        _started(worker_alerts.start),
    ]
    closers: list[Callable[[], Awaitable[object]]] = [follower.stop, worker_alerts.stop]
    on_beat: list[Callable[[], Awaitable[object]]] = []
    runner = None
    if settings.enabled_pools:
        worker_replies = Replies(bot, on_lost=bot.metrics.delivery_failed, every_job=True)
        # Its own pools write the SQLite ledger directly (a job id counts once there).
        runner = cluster_runner(
            settings,
            redis,
            store,
            foreground.replies(worker_replies),
            bot.metrics.observe,
            beat=False,
            ledger=WatchedLedger(store.ledger, providers),
            memory=memory,
            alerts=alerts,
        )
        worker_replies.delivery = runner.deliveries
        watch_rings(runner.worker.pools.values(), alerts)
        starters.append(lambda: forgive_rings(runner.worker))
        closers += [lambda: flush_rings(runner.worker), worker_replies.close]
    # Its shards (every one without AIBOT_SHARD_IDS) are claimed before it connects.
    shards = _GatewayShards(bot, redis, settings)
    starters[:0] = [shards.claim, shards.learn_concurrency]
    on_beat.append(shards.claims.renew)  # first: a later hook failing cannot skip it
    if runner is not None:
        on_beat.append(lambda: refresh_rings(runner.worker))
    closers.append(shards.claims.release)
    queue = RedisQueue(
        redis,
        settings,
        runner=runner,
        shards=lambda: bot.shard_ids or (),
        closers=closers,
        starters=starters,
        on_beat=on_beat,
        watch=connect(cluster.redis_url, max_connections=2),
        batched=batched,
    )
    # The operators hear when a daily budget is 90% spent, from the counts each
    # take brings back.
    gate = WatchedGate(
        ClusterGate(shared_gate, lambda: queue.reachable),
        shared_gate,
        alerts,
        day=store.calendar.day,
        pool_of=pool_of,
    )
    intake = Intake(
        router=router,
        queue=queue,
        replies=replies,
        gate=gate,
        draining=lambda: bot.draining,
        foreground=foreground,
    )
    rooms = Rooms(bot, alerts, SharedRoomRecords(redis, cluster.prefix))
    bot.serve(
        store=store,
        replies=replies,
        queue=queue,
        intake=intake,
        rooms=rooms,
        memory=ClusterConversations(memory),
        limits=ClusterLimits(shared_gate),
    )
    bot.health_checks.append(queue.problem)
    return bot


class _GatewayShards:
    """The shards of one gateway process: its claims in Redis (waited for as a
    standby), and the IDENTIFY lock it connects through."""

    def __init__(self, bot: AibotBot, redis: Redis, settings: Settings) -> None:
        cluster = settings.cluster
        assert cluster is not None
        self.bot = bot
        self.standby = cluster.standby
        self.claims = ShardClaims(
            redis,
            cluster.node,
            settings.shard_ids,
            settings.shard_count,
            prefix=cluster.prefix,
            on_lost=self.lost,
        )
        self.lock = IdentifyLock(redis, prefix=cluster.prefix, holder=cluster.node)
        bot.before_identify_hook = self.lock  # type: ignore[method-assign]
        self.closing: asyncio.Task[None] | None = None

    async def claim(self) -> None:
        """Claim the shards before the gateway connects: refuse (`ShardConflict`)
        when another holds them, or as a standby wait for their claims to end.
        A standby dispatches `standing_by` (whom it waits for) at each try (the
        command line tells systemd the start goes on) and starts nothing else
        until it holds them."""
        ids = shard_words(self.claims.shard_ids)
        await self.claims.claim(
            wait=self.standby,
            waiting=lambda held: self.bot.dispatch("standing_by", f"{ids} held by {held.holder}"),
        )

    async def learn_concurrency(self) -> None:
        """Discord's IDENTIFY concurrency for this bot (`GET /gateway/bot`'s
        `session_start_limit.max_concurrency`, through discord.py's public
        `fetch_session_start_limits`) sets the lock's buckets. If Discord does not
        say, 1 bucket: always allowed, only slower for a big bot."""
        try:
            limits = await self.bot.fetch_session_start_limits()
        except Exception as error:  # any failure: 1 is never wrong
            log.warning("IDENTIFY concurrency unknown (%s): one IDENTIFY at a time", error)
            return
        self.lock.max_concurrency = max(1, limits.max_concurrency)

    def lost(self, shards: tuple[int, ...]) -> None:
        """A renewal found shards held by another gateway (this one stalled past
        its claims and a standby took over): stop serving them. The bot closes
        (draining what it accepted) and dispatches `shards_lost` (the shards, in
        words), so the command line exits with a failure and systemd restarts it."""
        if self.closing is not None:
            return
        log.error(
            "another gateway took over %s (this one stalled past its claims' expiry): closing",
            shard_words(shards),
        )
        self.bot.dispatch("shards_lost", shard_words(shards))
        self.closing = asyncio.create_task(self.bot.close(), name="aibot-shards-lost")


def _started(start: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    """A synchronous start (it makes a task on the running loop) as a starter."""

    async def begin() -> None:
        start()

    return begin
