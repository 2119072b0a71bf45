"""The composition root: `create_bot(env)` builds the whole bot from one mapping.

Settings come from the mapping (the process environment when None); the router is
built here; the store, the pools (key rings, provider clients) and the cogs start in
the bot's `setup_hook` and stop in its `close()`. Tests and `run.py` build bots only
through this function, so each test builds as many independent worlds as it likes.
"""

from __future__ import annotations

import gc
from collections.abc import Mapping

from aibot.discord.bot import AibotBot
from aibot.router import Router
from aibot.settings import Settings

__all__ = ["create_bot", "freeze_startup_heap"]


def create_bot(env: Mapping[str, str] | None = None) -> AibotBot:
    """A ready-to-start bot (an `AutoShardedBot`) configured by `env`.

    Raises `SettingsError` listing every bad variable. Sharding follows
    `AIBOT_SHARD_COUNT` / `AIBOT_SHARD_IDS` when set, else Discord's recommendation.
    """
    settings = Settings.from_env(env)
    return AibotBot(settings, router=Router(settings))


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
