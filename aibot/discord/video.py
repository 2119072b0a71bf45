"""`/video` (ko: `/비디오`): the video pool's command; minutes of work, shown as progress.

With a `picture` attached, the clip starts from it (its first frame); the
picture is checked here, before the defer.
"""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from aibot.catalogue import FRAME_TYPES
from aibot.discord.attachments import picture_args, picture_refusal, refuse
from aibot.discord.i18n import language
from aibot.discord.intake import Intake

__all__ = ["VideoCog"]


class VideoCog(commands.Cog, name="video"):
    """Commands of the video pool. `max_bytes`: the largest picture taken."""

    def __init__(self, intake: Intake, *, max_bytes: int) -> None:
        self.intake = intake
        self.max_bytes = max_bytes

    @app_commands.command(name="video", description="Make a short video (takes a few minutes)")
    @app_commands.describe(
        prompt="What happens in the video",
        model="Video model name (default: the configured one)",
        duration="Length of the clip in seconds (default 6)",
        picture="A picture the clip starts from (PNG or JPEG)",
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
        picture: discord.Attachment | None = None,
    ) -> None:
        args: dict[str, object] = {"prompt": prompt, "duration": duration}
        if model:
            args["model"] = model
        if picture is not None:
            lang = language(interaction.locale)
            refusal = picture_refusal(
                picture, accepted=FRAME_TYPES, max_bytes=self.max_bytes, lang=lang
            )
            if refusal is not None:
                return await refuse(interaction, refusal)
            args["picture"] = picture_args(picture)
        await self.intake.submit(interaction, "video", args)
