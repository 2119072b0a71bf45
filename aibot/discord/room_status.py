"""The status room: one message per server that the bot keeps edited with what
`/status` shows.

Every `INTERVAL` seconds the room builds the status embed of each server's
status channel and edits the kept message, only when the embed changed. The
message's ids are kept (`Rooms.records`: the store, or in cluster mode Redis), so
after a restart, or another gateway's takeover, the bot edits the same message
instead of posting another; a deleted message (or a
status channel changed in the settings) is posted anew.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import discord

from aibot.catalogue import POOLS
from aibot.discord.embeds import status_embed
from aibot.discord.i18n import language, text
from aibot.discord.rooms import room_channel
from aibot.room_settings import ChannelChoice

if TYPE_CHECKING:
    from discord.types.embed import Embed as EmbedData

    from aibot.discord.rooms import Rooms

__all__ = ["INTERVAL", "ROOM", "StatusRoom"]

log = logging.getLogger("aibot.discord.rooms")

ROOM = "status"
INTERVAL = 30.0  # seconds: at most one edit per server this often


class StatusRoom:
    """Keeps each server's status message up to date (module docstring)."""

    def __init__(self, rooms: Rooms, choice: ChannelChoice) -> None:
        self._rooms = rooms
        self._choice = choice
        self._shown: dict[int, EmbedData] = {}  # per server: the embed last shown
        self._kept: dict[int, tuple[int, int]] = {}  # per server: (channel, message)

    async def run(self) -> None:
        await self._rooms.ready()
        self._rooms.bot.add_listener(self._deleted, "on_raw_message_delete")
        self._rooms.bot.add_listener(self._deleted_in_bulk, "on_raw_bulk_message_delete")
        while True:
            try:
                await self.refresh()
            except Exception:  # tried again at the next interval
                log.exception("the status room could not refresh")
            await asyncio.sleep(INTERVAL)

    async def refresh(self) -> None:
        """Edit (or post) each server's status message whose content changed."""
        for guild in self._rooms.bot.guilds:
            channel = room_channel(guild, self._choice)
            if channel is None:
                continue
            embed = self._embed(language(guild.preferred_locale))
            shown = embed.to_dict()
            if self._shown.get(guild.id) == shown:
                continue
            try:
                await self._show(guild.id, channel, embed)
            except discord.HTTPException as failure:
                log.warning(
                    "status not shown in %s/#%s: HTTP %s", guild.id, channel, failure.status
                )
                continue
            self._shown[guild.id] = shown

    def _embed(self, lang: str) -> discord.Embed:
        queue = self._rooms.bot.queue
        here = queue.pools()
        embed = status_embed(queue.snapshots(), [p for p in POOLS if p not in here], lang)
        embed.set_footer(text=text(lang, "room_status_footer"))
        return embed

    async def _show(
        self, guild_id: int, channel: discord.TextChannel, embed: discord.Embed
    ) -> None:
        records = self._rooms.records
        kept = self._kept.get(guild_id) or await records.message(ROOM, guild_id)
        if kept is not None and kept[0] == channel.id:
            try:
                # Discord shows the edit's time; the embed carries none of its own,
                # so that an unchanged status is an unchanged embed.
                await channel.get_partial_message(kept[1]).edit(content=None, embed=embed)
                self._kept[guild_id] = kept
                return
            except discord.NotFound:
                log.info(
                    "the status message in %s/#%s was deleted: posting anew", guild_id, channel
                )
        message = await channel.send(embed=embed)
        await records.keep_message(ROOM, guild_id, channel.id, message.id)
        self._kept[guild_id] = (channel.id, message.id)

    async def _deleted(self, event: discord.RawMessageDeleteEvent) -> None:
        """The kept message was deleted: post it again at the next refresh."""
        self._forget({event.message_id})

    async def _deleted_in_bulk(self, event: discord.RawBulkMessageDeleteEvent) -> None:
        """The same, for a moderator's purge (a bot's or a client's)."""
        self._forget(event.message_ids)

    def _forget(self, message_ids: set[int]) -> None:
        for guild_id, (_channel, message_id) in list(self._kept.items()):
            if message_id in message_ids:
                del self._kept[guild_id]
                self._shown.pop(guild_id, None)
