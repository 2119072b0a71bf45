"""The Discord front: the bot, a cog per role, the Reply over the interaction webhook,
rendering and translations. Nothing below this package imports discord."""

from aibot.discord.bot import AibotBot
from aibot.discord.edits import EditBudget
from aibot.discord.reply import InteractionReply, Replies

__all__ = ["AibotBot", "EditBudget", "InteractionReply", "Replies"]
