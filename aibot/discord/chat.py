"""`/chat` (ko: `/채팅`): the chat pool's command; the answer streams into the reply."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from aibot.discord.intake import Intake

__all__ = ["ChatCog"]


class ChatCog(commands.Cog, name="chat"):
    """Commands of the chat pool."""

    def __init__(self, intake: Intake) -> None:
        self.intake = intake

    @app_commands.command(
        name="chat", description="Ask the AI; the answer appears as it is written"
    )
    @app_commands.describe(prompt="What you want to ask or say")
    async def chat(
        self, interaction: discord.Interaction, prompt: app_commands.Range[str, 1, 4000]
    ) -> None:
        await self.intake.submit(interaction, "chat", {"prompt": prompt})
