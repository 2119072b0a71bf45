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

__all__ = ["create_bot", "freeze_startup_heap"]


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
