"""The admin role's rooms in each server: alerts, the live status, the daily
summary, and the backups behind them.

`Rooms` is built by `aibot.app.create_bot` with the bot, the process's
`AlertHub` and its `RoomRecords` (the store's; in cluster mode, Redis's, which the
gateways share); the bot's `setup_hook` calls `start()` once the jobs of an
earlier run are resumed, and `release()` calls `aclose()`. It runs:

- `AlertRoom` (`room_alerts.py`): posts each alert into the alert channel;
- `StatusRoom` (`room_status.py`): keeps one status message edited;
- `DailyRoom` (`room_daily.py`): once a day, the backup and yesterday's summary.

Which channel of a server each room writes to is `AIBOT_ALERT_CHANNEL`,
`AIBOT_STATUS_CHANNEL`, `AIBOT_STATS_CHANNEL` (`aibot.room_settings`); a server
without such a channel simply has no such room.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import discord

from aibot.alerts import Alert, AlertHub
from aibot.ports import RoomRecords
from aibot.room_settings import ChannelChoice
from aibot.store import Backup, StoreError

if TYPE_CHECKING:
    from aibot.discord.bot import AibotBot

__all__ = ["READY_POLL", "Rooms", "room_channel"]

log = logging.getLogger("aibot.discord.rooms")

READY_POLL = 1.0  # seconds between looks at whether the gateway is ready


def room_channel(
    guild: discord.Guild, choice: ChannelChoice, *, embeds: bool = True
) -> discord.TextChannel | None:
    """The channel of `guild` a room writes to: the configured id, or the first
    text channel (in the server's order) whose name matches, of those the bot may
    post in (see it, send messages, and with `embeds` embed links); None: no room
    here. A channel the bot may not post in is passed over rather than written to:
    Discord would refuse every post, again at each try, and counts the refusals
    against the bot."""
    if choice.off:
        return None
    if choice.channel_id is not None:
        channel = guild.get_channel(choice.channel_id)
        named = [channel] if isinstance(channel, discord.TextChannel) else []
    else:
        named = [c for c in guild.text_channels if choice.matches(c.name)]
    return next((c for c in named if _may_post(c, embeds=embeds)), None)


def _may_post(channel: discord.TextChannel, *, embeds: bool) -> bool:
    me = channel.guild.me
    if me is None:  # the bot's own member is not known yet: Discord will say
        return True
    may = channel.permissions_for(me)
    return may.view_channel and may.send_messages and (may.embed_links or not embeds)


class Rooms:
    """Runs the rooms of this process (module docstring)."""

    def __init__(self, bot: AibotBot, alerts: AlertHub, records: RoomRecords) -> None:
        # The room modules import this one for `room_channel`: import them here.
        from aibot.discord.room_alerts import AlertRoom
        from aibot.discord.room_daily import DailyRoom
        from aibot.discord.room_status import StatusRoom

        self.bot = bot
        self.alerts = alerts
        # The status message and the summaries' claims: the store's, or (cluster
        # mode) the ones every gateway shares. The backup's claim is always the
        # store's: each gateway backs up its own file.
        self.records = records
        rooms = bot.settings.rooms
        self.alert_room = AlertRoom(self, rooms.alert_channel)
        self.status_room = StatusRoom(self, rooms.status_channel)
        self.daily_room = DailyRoom(self, rooms.stats_channel)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started = False

    def start(self) -> None:
        """Begin: tell the operators about jobs resumed from an earlier run, start
        the rooms' loops. Called once the jobs are resumed, before the gateway."""
        if self._started:
            return
        self._started = True
        resumed = len(self.bot.queue.jobs())
        if resumed:
            self.alerts.alert(Alert("restarted", detail={"jobs": str(resumed)}))
        self.alert_room.start()
        if not self.bot.settings.rooms.status_channel.off:
            self.spawn(self.status_room.run())
        self.spawn(self.daily_room.run())

    def spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `work` as one of the rooms' tasks (cancelled by `aclose`)."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a room stopped", exc_info=task.exception())

    async def aclose(self) -> None:
        """Stop every room (their next post would find the gateway closing)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def ready(self) -> None:
        """Wait until the gateway is ready: the rooms need the servers' channels."""
        while not self.bot.is_ready():
            await asyncio.sleep(READY_POLL)

    async def back_up(self, *, by_hand: bool = False) -> Backup:
        """Back the store up now (checked); a failure is logged, alerted, raised.
        `by_hand`: an admin asked (`/admin backup`); kept apart from the daily ones."""
        rooms = self.bot.settings.rooms
        try:
            made = await self.bot.store.backup(rooms.backup_dir, rooms.backup_keep, by_hand=by_hand)
        except StoreError as failure:
            log.error("backup failed: %s", failure)
            self.alerts.alert(Alert("backup_failed", detail={"reason": str(failure)}))
            raise
        log.info(
            "backup %s made and checked: %d bytes in %.1f s", made.path, made.size, made.seconds
        )
        return made
