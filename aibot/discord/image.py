"""`/image` (ko: `/이미지`): the image pool's command; the image comes back in an embed.

With a `picture` attached, the image is made from it (`strength`: how far it may
move from it); the picture is checked here, before the defer.
"""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from aibot.catalogue import PICTURE_KINDS, PICTURE_TYPES, PROVIDER_KINDS, PROVIDERS
from aibot.discord.attachments import picture_args, picture_refusal, refuse
from aibot.discord.i18n import language, text
from aibot.discord.intake import Intake

__all__ = ["ImageCog"]

# Ratios every image provider understands (MiniMax, Stability; OpenAI maps them to sizes).
ASPECT_RATIOS = ("1:1", "16:9", "9:16", "3:2", "2:3", "21:9")
IMAGE_PROVIDERS = tuple(p for p in PROVIDERS if "image" in PROVIDER_KINDS[p])


class ImageCog(commands.Cog, name="image"):
    """Commands of the image pool. `max_bytes`: the largest picture taken."""

    def __init__(self, intake: Intake, *, max_bytes: int) -> None:
        self.intake = intake
        self.max_bytes = max_bytes

    @app_commands.command(name="image", description="Make an image from a description")
    @app_commands.describe(
        prompt="What the image should show",
        provider="Which image service to use (default: the first one with room)",
        aspect_ratio="Shape of the image, width:height (default 1:1)",
        negative_prompt="What the image must not show",
        picture="A picture to start from: the new image is made from it (PNG, JPEG or WebP)",
        strength="How much to change the picture: 0 keeps it, 1 ignores it (default 0.6)",
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
        aspect_ratio: str | None = None,
        negative_prompt: app_commands.Range[str, 1, 1000] | None = None,
        picture: discord.Attachment | None = None,
        strength: app_commands.Range[float, 0.0, 1.0] | None = None,
    ) -> None:
        args: dict[str, object] = {"prompt": prompt}
        if provider:
            args["provider"] = provider
        if aspect_ratio:
            args["aspect_ratio"] = aspect_ratio
        if negative_prompt:
            args["negative_prompt"] = negative_prompt
        if picture is not None or strength is not None:
            lang = language(interaction.locale)
            if picture is None:
                return await refuse(interaction, text(lang, "strength_needs_picture"))
            refusal = picture_refusal(
                picture, accepted=self._readable(provider), max_bytes=self.max_bytes, lang=lang
            )
            if refusal is not None:
                return await refuse(interaction, refusal)
            args["picture"] = picture_args(picture)
            if strength is not None:
                args["strength"] = strength
        await self.intake.submit(interaction, "image", args)

    def _readable(self, chosen: str | None) -> frozenset[str]:
        """The kinds of picture the job's providers make an image from: the chosen
        one's, or any of the image pool's (the admin pool's when it has none), so a
        picture none of them reads is refused before anything is downloaded."""
        router = self.intake.router
        providers = (
            (chosen,) if chosen else router.providers("image", "image")
        ) or router.providers("admin", "image")
        readable = frozenset().union(*(PICTURE_KINDS.get(p, ()) for p in providers))
        return readable or PICTURE_TYPES  # no image service at all: the intake says so
