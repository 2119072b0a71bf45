"""`/image` (ko: `/이미지`): the image pool's command; the image comes back in an embed."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from aibot.catalogue import PROVIDER_KINDS, PROVIDERS
from aibot.discord.intake import Intake

__all__ = ["ImageCog"]

# Ratios every image provider understands (MiniMax, Stability; OpenAI maps them to sizes).
ASPECT_RATIOS = ("1:1", "16:9", "9:16", "3:2", "2:3", "21:9")
IMAGE_PROVIDERS = tuple(p for p in PROVIDERS if "image" in PROVIDER_KINDS[p])


class ImageCog(commands.Cog, name="image"):
    """Commands of the image pool."""

    def __init__(self, intake: Intake) -> None:
        self.intake = intake

    @app_commands.command(name="image", description="Make an image from a description")
    @app_commands.describe(
        prompt="What the image should show",
        provider="Which image service to use (default: the first one with room)",
        aspect_ratio="Shape of the image, width:height (default 1:1)",
        negative_prompt="What the image must not show",
    )
    @app_commands.choices(
        provider=[app_commands.Choice(name=p, value=p) for p in IMAGE_PROVIDERS],
        aspect_ratio=[app_commands.Choice(name=r, value=r) for r in ASPECT_RATIOS],
    )
    async def image(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 2000],
        provider: str | None = None,
        aspect_ratio: str = "1:1",
        negative_prompt: app_commands.Range[str, 1, 1000] | None = None,
    ) -> None:
        args: dict[str, object] = {"prompt": prompt, "aspect_ratio": aspect_ratio}
        if provider:
            args["provider"] = provider
        if negative_prompt:
            args["negative_prompt"] = negative_prompt
        await self.intake.submit(interaction, "image", args)
