"""The admin pool's commands: `/ping`, `/status`, `/instances` (ko: `/핑` `/상태`
`/인스턴스`). They read snapshots and answer at once; they never become jobs, so
they answer whichever pools are off (a pool with no key), the admin pool too.

In cluster mode they show every live process (node), not only this one: `/ping`
counts them and shows Redis's round trip as last measured (every half second),
`/status` and `/instances` add a field per node (its pools and free slots, shards,
version, time up)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import discord
from discord import app_commands
from discord.ext import commands

from aibot.catalogue import POOLS
from aibot.discord.embeds import instances_embed, status_embed
from aibot.discord.i18n import language, text
from aibot.discord.render import ping_text
from aibot.discord.reply import NO_MENTIONS
from aibot.router import Router
from aibot.snapshots import NodeSnapshot
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
        cluster: bool = False,
    ) -> None:
        self.client = client
        self.queue = queue
        self.router = router
        self.off = tuple(off)  # pools with no key: /status and /instances say so
        self.cluster = cluster  # several processes: show each live node

    @app_commands.command(
        name="ping", description="Gateway latency per shard, and the pools running here"
    )
    async def ping(self, interaction: discord.Interaction) -> None:
        lang = language(interaction.locale)
        content = ping_text(self.client.latencies, self.queue.pools(), lang)
        if self.cluster:
            content += "\n" + self._cluster_line(lang)
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
        embed = status_embed(snapshots, missing, lang, off=self.off, nodes=self._nodes())
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @app_commands.command(
        name="instances",
        description="Which pool serves which channels and commands, and where it runs",
    )
    async def instances(self, interaction: discord.Interaction) -> None:
        lang = language(interaction.locale)
        embed = instances_embed(
            self.router.routes(), self.queue.pools(), lang, off=self.off, nodes=self._nodes()
        )
        await interaction.response.send_message(embed=embed, ephemeral=True)

    def _nodes(self) -> list[NodeSnapshot] | None:
        """Every live node in cluster mode; None in embedded mode (one process)."""
        return self.queue.nodes() if self.cluster else None

    def _cluster_line(self, lang: str) -> str:
        """Live nodes and Redis's round trip (as last measured), for `/ping` in
        cluster mode."""
        seconds = self.queue.round_trip()
        if seconds is None or math.isinf(seconds):
            redis = text(lang, "redis_unreachable")
        else:
            redis = f"{seconds * 1000:.1f} ms"
        return text(lang, "ping_cluster", nodes=len(self.queue.nodes()), redis=redis)
