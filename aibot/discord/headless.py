"""Replies for a process with no gateway connection (a cluster mode worker).

A job's answer needs no gateway: the interaction webhook takes the job's
application id and token, and the channel fallback (once the token is gone)
needs only the bot token over HTTP. `HeadlessReplies` holds a plain
`discord.Client` that `open()` logs in over HTTP (`login`, never `connect`)
and the `Replies` made over it; `close()` lets both go.
"""

from __future__ import annotations

from collections.abc import Callable

import discord

from aibot.discord.reply import Delivery, Replies
from aibot.jobs import Job

__all__ = ["HeadlessReplies"]


class HeadlessReplies:
    """`Replies` (with `every_job` delivery claims by default) over an HTTP-only
    client logged in with the bot `token`."""

    def __init__(
        self,
        token: str,
        *,
        delivery: Delivery | None = None,
        every_job: bool = True,
        on_lost: Callable[[Job], None] | None = None,
    ) -> None:
        self._token = token
        self.client = discord.Client(
            intents=discord.Intents.none(), allowed_mentions=discord.AllowedMentions.none()
        )
        self.replies = Replies(self.client, delivery=delivery, every_job=every_job, on_lost=on_lost)

    async def open(self) -> None:
        """Log in over HTTP (raises `discord.LoginFailure` for a wrong token)."""
        await self.client.login(self._token)
        await self.replies.open()

    async def close(self) -> None:
        await self.replies.close()
        await self.client.close()
