"""Pointing discord.py at a fake Discord, in this process."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .process import FakeDiscordProcess
    from .server import FakeDiscord

__all__ = ["pointed_at"]


@contextlib.contextmanager
def pointed_at(fake: FakeDiscord | FakeDiscordProcess) -> Iterator[None]:
    """Point discord.py's REST base and default gateway at the fake; restore after.

    One `Route.BASE` covers the bot's REST calls and the interaction webhooks.
    Never call `http.set_api_version()` inside: it resets the base.
    """
    import discord.gateway
    import discord.http
    import yarl

    old_base = discord.http.Route.BASE
    old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = fake.base_url
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.ws_url)
    try:
        yield
    finally:
        discord.http.Route.BASE = old_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway
