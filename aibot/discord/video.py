"""`/video` (ko: `/비디오`): the video pool's command; minutes of work, shown as progress."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from aibot.discord.intake import Intake

__all__ = ["VideoCog"]


class VideoCog(commands.Cog, name="video"):
    """Commands of the video pool."""

    def __init__(self, intake: Intake) -> None:
        self.intake = intake

    @app_commands.command(name="video", description="Make a short video (takes a few minutes)")
    @app_commands.describe(
        prompt="What happens in the video",
        model="Video model name (default: the configured one)",
        duration="Length of the clip in seconds (default 6)",
    )
    @app_commands.choices(
        duration=[
            app_commands.Choice(name="6 seconds", value=6),
            app_commands.Choice(name="10 seconds", value=10),
        ]
    )
    async def video(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 2000],
        model: app_commands.Range[str, 1, 64] | None = None,
        duration: int = 6,
    ) -> None:
        args: dict[str, object] = {"prompt": prompt, "duration": duration}
        if model:
            args["model"] = model
        await self.intake.submit(interaction, "video", args)
