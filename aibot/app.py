"""The composition root: `create_bot(env)` builds the whole bot from one mapping.

Settings come from the mapping (the process environment when None); the router is
built here; the store, the pools (key rings, provider clients) and the cogs start in
the bot's `setup_hook` and stop in its `close()`. Tests and `run.py` build bots only
through this function, so each test builds as many independent worlds as it likes.
"""

from __future__ import annotations

from collections.abc import Mapping

from aibot.discord.bot import AibotBot
from aibot.router import Router
from aibot.settings import Settings

__all__ = ["create_bot"]


def create_bot(env: Mapping[str, str] | None = None) -> AibotBot:
    """A ready-to-start bot (an `AutoShardedBot`) configured by `env`.

    Raises `SettingsError` listing every bad variable. Sharding follows
    `AIBOT_SHARD_COUNT` / `AIBOT_SHARD_IDS` when set, else Discord's recommendation.
    """
    settings = Settings.from_env(env)
    return AibotBot(settings, router=Router(settings))
