"""The composition root: `create_bot(env)` builds the whole bot from one mapping.

Settings come from the mapping (the process environment when None). Everything is
built here, nothing started: the store (closed), the worker with its pools, key
rings and provider clients, the in-process job transport, the replies, the intake
and the bot. The bot's `setup_hook` starts them and its `close()` drains them.
Tests and `run.py` build bots only through this function, so each test builds as
many independent worlds as it likes.

Cluster mode (`AIBOT_REDIS_URL` set) is composed in `aibot.app_cluster`, imported
only then: without `AIBOT_REDIS_URL`, redis is never imported.
"""

from __future__ import annotations

import gc
from collections.abc import Mapping

from aibot.alerts import AlertHub
from aibot.discord.bot import AibotBot, discord_clock
from aibot.discord.intake import Intake
from aibot.discord.reply import Replies
from aibot.discord.rooms import Rooms
from aibot.foreground import Foreground
from aibot.router import Router
from aibot.settings import Settings
from aibot.store import Store
from aibot.store.gate import pool_of
from aibot.transport import LocalQueue
from aibot.watch import ProviderWatch, WatchedGate, WatchedLedger, watch_rings
from aibot.worker import Worker

__all__ = ["SERVING_GC_THRESHOLD", "create_bot", "tune_gc_for_serving"]

# New objects between two collections of the youngest generation while the bot
# serves (CPython's default: 700; see `tune_gc_for_serving`).
SERVING_GC_THRESHOLD = 5_000


def create_bot(env: Mapping[str, str] | None = None) -> AibotBot:
    """A ready-to-start bot (an `AutoShardedBot`) configured by `env`.

    Raises `SettingsError` listing every bad variable. Sharding follows
    `AIBOT_SHARD_COUNT` / `AIBOT_SHARD_IDS` when set, else Discord's recommendation.
    """
    settings = Settings.from_env(env)
    if settings.cluster is not None:
        from aibot.app_cluster import create_gateway

        return create_gateway(settings)
    router = Router(settings)
    # Members' commands go before the pools' work (see aibot.foreground).
    foreground = Foreground(gap=settings.burst_gap)
    bot = AibotBot(settings, router=router, foreground=foreground)
    # Days and cooldowns follow the clock of interaction timestamps.
    store = Store(settings, clock=discord_clock)
    replies = Replies(bot, delivery=store.journal, on_lost=bot.metrics.delivery_failed)
    # What operators must act on, raised where the engine already reports it.
    alerts = AlertHub(clock=discord_clock)
    worker = Worker(
        settings,
        # Members first: the worker's replies wait for their turn (and the intake
        # hands jobs over in turn, below).
        replies=foreground.replies(replies),
        gate=store.gate,
        ledger=WatchedLedger(store.ledger, ProviderWatch(alerts, discord_clock)),
        journal=store.journal,
        memory=store.memory,
        observe=bot.metrics.observe,
        clock=discord_clock,
    )
    watch_rings(worker.pools.values(), alerts)
    queue = LocalQueue(worker)
    intake = Intake(
        router=router,
        queue=queue,
        replies=replies,
        gate=WatchedGate(store.gate, store.gate, alerts, day=store.calendar.day, pool_of=pool_of),
        draining=lambda: bot.draining,
        foreground=foreground,
        # Members first: the worker, on this loop, takes each job after the burst.
        hand_over_in_turn=True,
    )
    rooms = Rooms(bot, alerts, store.rooms)
    bot.serve(store=store, replies=replies, queue=queue, intake=intake, rooms=rooms)
    return bot


def tune_gc_for_serving() -> None:
    """Once the bot is up (`python run.py`, the benchmarks), set the garbage collector
    for serving:

    - collect, then move every object alive now (modules, classes, the command tree,
      settings, caches) out of its sight for good. A full collection otherwise walks
      them all again, some 80 ms on a small machine with every thread stopped, long
      enough to make the commands arriving meanwhile miss their few milliseconds;
    - collect the youngest objects after `SERVING_GC_THRESHOLD` new ones, not
      CPython's 700. A command's objects (the interaction, its job, the defer's
      request) live a few turns of the loop; collected every 700 allocations, a
      burst's are caught alive again and again, walked, and moved to the older
      generations, which then need collecting too. The more commands arrive, the
      more are alive at once, so past some rate the collector takes the time the
      commands need, they pile up, and it takes more.

    Measured with `bench.front`'s bursts, 2 s each at a fixed rate: at 500 commands
    a second, 13-15 ms in the collector instead of 26, its longest pause no longer
    (2-4 ms; 20,000 made it 7-13 ms, which showed in the defer p99); of 8 bursts at
    1,800 a second, 0 and 3 held the capacity scenario's bar with CPython's
    threshold, 5 and 7 with 10,000; at 2,100 a second, 5 and 6 with 5,000, 6 and 6
    with 20,000.

    Process-wide and for serving only: tests build many bots in one process and
    would keep each one's objects forever."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(SERVING_GC_THRESHOLD, older, oldest)
