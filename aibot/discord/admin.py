"""The admin pool's commands: `/ping`, `/status`, `/instances` (ko: `/핑` `/상태`
`/인스턴스`). They read snapshots and answer at once; they never become jobs."""

from __future__ import annotations

from collections.abc import Mapping

import discord
from discord import app_commands
from discord.ext import commands

from aibot.discord.i18n import language
from aibot.discord.render import instances_embed, ping_text, status_embed
from aibot.discord.reply import NO_MENTIONS
from aibot.pools.base import Pool
from aibot.router import Router
from aibot.settings import POOLS

__all__ = ["AdminCog"]


class AdminCog(commands.Cog, name="admin"):
    """How the bot is doing: gateway latency, pools, and where each pool runs."""

    def __init__(
        self, client: discord.AutoShardedClient, pools: Mapping[str, Pool], router: Router
    ) -> None:
        self.client = client
        self.pools = pools
        self.router = router

    @app_commands.command(
        name="ping", description="Gateway latency per shard, and the pools running here"
    )
    async def ping(self, interaction: discord.Interaction) -> None:
        lang = language(interaction.locale)
        content = ping_text(self.client.latencies, list(self.pools), lang)
        await interaction.response.send_message(content, allowed_mentions=NO_MENTIONS)

    @app_commands.command(
        name="status",
        description="What each pool is doing: workers, queue, latency, keys, budget",
    )
    async def status(self, interaction: discord.Interaction) -> None:
        lang = language(interaction.locale)
        snapshots = [pool.snapshot() for pool in self.pools.values()]
        missing = [name for name in POOLS if name not in self.pools]
        embed = status_embed(snapshots, missing, lang)
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @app_commands.command(
        name="instances",
        description="Which pool serves which channels and commands, and where it runs",
    )
    async def instances(self, interaction: discord.Interaction) -> None:
        lang = language(interaction.locale)
        embed = instances_embed(self.router.routes(), list(self.pools), lang)
        await interaction.response.send_message(embed=embed, ephemeral=True)
