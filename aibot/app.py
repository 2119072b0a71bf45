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
from aibot.watch import WatchedGate, WatchedLedger, watch_rings
from aibot.worker import Worker

__all__ = ["SERVING_GC_THRESHOLDS", "create_bot", "tune_gc_for_serving"]

# The garbage collector's thresholds while the bot serves (see `tune_gc_for_serving`).
SERVING_GC_THRESHOLDS = (20_000, 20, 20)


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
        # Members first: the worker's replies and hand-overs wait for their turn.
        replies=foreground.replies(replies),
        gate=store.gate,
        ledger=WatchedLedger(store.ledger, alerts, discord_clock),
        journal=store.journal,
        memory=store.memory,
        observe=bot.metrics.observe,
        clock=discord_clock,
    )
    watch_rings(worker.pools.values(), alerts)
    queue = LocalQueue(worker, turn=foreground.turn)
    intake = Intake(
        router=router,
        queue=queue,
        replies=replies,
        gate=WatchedGate(store.gate, store.gate, alerts, day=store.calendar.day, pool_of=pool_of),
        draining=lambda: bot.draining,
        foreground=foreground,
    )
    rooms = Rooms(bot, alerts)
    bot.serve(store=store, replies=replies, queue=queue, intake=intake, rooms=rooms)
    return bot


def tune_gc_for_serving() -> None:
    """Once the bot is up (`python run.py`, the benchmarks), set the garbage collector
    for serving:

    - collect, then move every object alive now (modules, classes, the command tree,
      settings, caches) out of its sight for good. A full collection otherwise walks
      them all again, some 80 ms on a small machine with every thread stopped, long
      enough to make the commands arriving meanwhile miss their few milliseconds;
    - collect less often (`SERVING_GC_THRESHOLDS`: the youngest objects after 20,000
      new ones instead of CPython's 700, each older generation after 20 collections
      of the one below instead of 10). A command's objects (the interaction, its
      job, the defer's request) live a few turns of the loop; collected every 700
      allocations, a burst's are caught alive again and again, walked, and moved to
      the older generations, which then need collecting too. The more commands
      arrive, the more are alive at once, so past some rate the collector takes
      the time the commands need, they pile up, and it takes more.

    Measured with `bench.front`'s bursts, 2 s each at a fixed rate (how many of 8
    held the capacity scenario's bar): at 1,800 commands a second 0 and 3 with
    CPython's thresholds, 5 and 7 with 10,000; at 2,300 a second, 4 and 6 with these,
    3 and 0 with 50,000 for the youngest (a larger young generation is slower to
    walk). The collector's time in a 2 s burst at 1,500 a second fell from 55-200 ms
    to 30-50 ms.

    Process-wide and for serving only: tests build many bots in one process and
    would keep each one's objects forever."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVING_GC_THRESHOLDS)
