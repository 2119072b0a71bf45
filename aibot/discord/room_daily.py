"""The daily room: once each local day (`AIBOT_TIMEZONE`), at start and after
every midnight, the store's backup and yesterday's summary; after every midnight
the store's pruning too (`Store.prune`, which the store does itself as it opens: a
bot that runs for months keeps what one restarted daily keeps).

Each is claimed before it is done (the backup in the store, `store.rooms.claim`:
each gateway backs up its own file; a summary in `Rooms.records`, which in cluster
mode every gateway shares), so it happens once a day even across restarts and
takeovers; a failed one gives its claim back and is tried again at the next start
or midnight. A server gets the summary of its
own jobs in its statistics channel; a day without jobs posts nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from aibot.discord.embeds import summary_embed
from aibot.discord.i18n import language
from aibot.discord.reply import NO_MENTIONS
from aibot.discord.retries import describe
from aibot.discord.rooms import room_channel
from aibot.room_settings import ChannelChoice
from aibot.store import StoreError

if TYPE_CHECKING:
    from aibot.discord.rooms import Rooms

__all__ = ["DailyRoom"]

log = logging.getLogger("aibot.discord.rooms")

_BACKUP = "backup"
_SUMMARY = "summary"
_ALL_SERVERS = 0  # the backup is the bot's, not a server's
# The longest sleep toward midnight: a wall clock that jumps (suspend, NTP) is
# noticed within this time.
_LONGEST_SLEEP = 3600.0


class DailyRoom:
    """The backup and the summary, once a day (module docstring)."""

    def __init__(self, rooms: Rooms, choice: ChannelChoice) -> None:
        self._rooms = rooms
        self._choice = choice

    async def run(self) -> None:
        await self._rooms.ready()
        while True:
            try:
                await self.once_today()
            except Exception:  # what was not claimed is tried again at the next start
                log.exception("the daily room failed")
            await self._until_tomorrow()
            await self._prune()

    async def once_today(self) -> None:
        """Today's backup and yesterday's summaries, unless done already."""
        calendar = self._rooms.bot.store.calendar
        today, start, _end = calendar.span(calendar.now())
        await self._backup(today)
        await self._summaries(calendar.day(start - 1))

    async def _prune(self) -> None:
        try:
            await self._rooms.bot.store.prune()
        except StoreError as failure:  # the backup says more; pruning waits a day
            log.warning("old rows not pruned: %s", failure)

    async def _backup(self, today: str) -> None:
        records = self._rooms.bot.store.rooms
        if not await records.claim(_BACKUP, _ALL_SERVERS, today):
            return
        try:
            await self._rooms.back_up()
        except StoreError:
            await records.unclaim(_BACKUP, _ALL_SERVERS, today)

    async def _summaries(self, day: str) -> None:
        if self._choice.off:
            return
        records, ledger = self._rooms.records, self._rooms.bot.store.rooms
        for guild in self._rooms.bot.guilds:
            channel = room_channel(guild, self._choice)
            if channel is None or not await records.claim(_SUMMARY, guild.id, day):
                continue
            try:
                summary = await ledger.day_summary(day, guild.id)
                if summary.jobs:
                    embed = summary_embed(summary, language(guild.preferred_locale))
                    await channel.send(embed=embed, allowed_mentions=NO_MENTIONS)
            except Exception as failure:  # the next start tries again; the others go on
                log.warning("summary of %s not posted in %s: %s", day, guild.id, describe(failure))
                await records.unclaim(_SUMMARY, guild.id, day)

    async def _until_tomorrow(self) -> None:
        calendar = self._rooms.bot.store.calendar
        today, _start, end = calendar.span(calendar.now())
        while calendar.day() == today:
            wait = end - calendar.now()
            await asyncio.sleep(min(max(wait, 0.5), _LONGEST_SLEEP))
