"""aibot: one Discord bot, four isolated AI worker pools.

`aibot.create_bot(env)` builds the bot. It is imported on first use, so that the
engine, the store or the fake providers can be imported without discord.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aibot.app import create_bot

__all__ = ["create_bot"]


def __getattr__(name: str) -> Any:
    if name == "create_bot":
        from aibot.app import create_bot

        return create_bot
    raise AttributeError(f"module 'aibot' has no attribute {name!r}")
