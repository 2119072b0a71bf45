"""The admin pool's commands: `/ping`, `/status`, `/instances` (ko: `/핑` `/상태`
`/인스턴스`). They read snapshots and answer at once; they never become jobs, so
they answer whichever pools are off (a pool with no key), the admin pool too."""

from __future__ import annotations

from collections.abc import Sequence

import discord
from discord import app_commands
from discord.ext import commands

from aibot.catalogue import POOLS
from aibot.discord.embeds import instances_embed, status_embed
from aibot.discord.i18n import language
from aibot.discord.render import ping_text
from aibot.discord.reply import NO_MENTIONS
from aibot.router import Router
from aibot.transport import JobQueue

__all__ = ["AdminCog"]


class AdminCog(commands.Cog, name="admin"):
    """How the bot is doing: gateway latency, pools, and where each pool runs."""

    def __init__(
        self,
        client: discord.AutoShardedClient,
        queue: JobQueue,
        router: Router,
        *,
        off: Sequence[str] = (),
    ) -> None:
        self.client = client
        self.queue = queue
        self.router = router
        self.off = tuple(off)  # pools with no key: /status and /instances say so

    @app_commands.command(
        name="ping", description="Gateway latency per shard, and the pools running here"
    )
    async def ping(self, interaction: discord.Interaction) -> None:
        lang = language(interaction.locale)
        content = ping_text(self.client.latencies, self.queue.pools(), lang)
        await interaction.response.send_message(content, allowed_mentions=NO_MENTIONS)

    @app_commands.command(
        name="status",
        description="What each pool is doing: workers, queue, latency, keys, budget",
    )
    async def status(self, interaction: discord.Interaction) -> None:
        lang = language(interaction.locale)
        snapshots = self.queue.snapshots()
        here = self.queue.pools()
        missing = [name for name in POOLS if name not in here and name not in self.off]
        embed = status_embed(snapshots, missing, lang, off=self.off)
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @app_commands.command(
        name="instances",
        description="Which pool serves which channels and commands, and where it runs",
    )
    async def instances(self, interaction: discord.Interaction) -> None:
        lang = language(interaction.locale)
        embed = instances_embed(self.router.routes(), self.queue.pools(), lang, off=self.off)
        await interaction.response.send_message(embed=embed, ephemeral=True)
