"""The alert room: each alert the `AlertHub` hands out becomes one short message in
the alert channel of every server (or of the one server it is about).

No idle wait: the hub tells the room when there is something to take, and the
room runs a task only then, and while a folded count is pending (it sleeps until
the count falls due; a new alert meanwhile wakes it at once).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import discord

from aibot.alerts import FOLD_WINDOW, Alert
from aibot.discord.i18n import language, text
from aibot.discord.reply import NO_MENTIONS
from aibot.discord.rooms import room_channel
from aibot.room_settings import ChannelChoice
from aibot.secrets import scrub

if TYPE_CHECKING:
    from aibot.discord.rooms import Rooms

__all__ = ["AlertRoom", "alert_text"]

log = logging.getLogger("aibot.discord.rooms")

_MESSAGE_LIMIT = 2000


def alert_text(alert: Alert, lang: str) -> str:
    """An alert's words: one short message, the folded count first if any."""
    key = f"alert_{alert.kind}"
    if alert.kind == "budget":
        key = "alert_budget_server" if alert.guild_id else "alert_budget_bot"
    # Provider text could carry anything key-shaped; the key itself is already redacted.
    detail = {k: v if k == "key_id" else scrub(v) for k, v in alert.detail.items()}
    words = text(lang, key, pool=alert.pool, **detail)
    if alert.folded:
        minutes = round(FOLD_WINDOW / 60)
        words = text(lang, "alert_folded", count=alert.folded, minutes=minutes) + "\n" + words
    return words[:_MESSAGE_LIMIT]


class AlertRoom:
    """Posts alerts (module docstring)."""

    def __init__(self, rooms: Rooms, choice: ChannelChoice) -> None:
        self._rooms = rooms
        self._choice = choice
        self._task: asyncio.Task[Any] | None = None
        self._sleeping = False

    def start(self) -> None:
        """Listen to the hub, and post what was raised before the start."""
        if self._choice.off:
            return
        self._rooms.alerts.listen(self._wake)
        self._wake()

    def _wake(self) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # raised outside the bot's loop: taken at the next wake
            return
        task = self._task
        if task is not None and not task.done():
            if not self._sleeping:
                return  # it takes what is new before it sleeps
            task.cancel()
        self._task = self._rooms.spawn(self._run())

    async def _run(self) -> None:
        hub = self._rooms.alerts
        await self._rooms.ready()
        while True:
            taken = hub.take()
            for alert in taken:
                try:
                    await self._post(alert)
                except Exception:  # one alert gone wrong must not silence the others
                    log.exception("alert %s not posted", alert.kind)
            if taken:
                continue  # raised while these were posted: `_wake` left them to this loop
            due = hub.next_due()
            if due is None:
                return
            self._sleeping = True
            try:
                await asyncio.sleep(max(0.0, due - hub.now()))
            finally:
                self._sleeping = False

    async def _post(self, alert: Alert) -> None:
        bot = self._rooms.bot
        guilds = bot.guilds if alert.guild_id is None else [bot.get_guild(alert.guild_id)]
        for guild in guilds:
            if guild is None:
                continue
            channel = room_channel(guild, self._choice, embeds=False)
            if channel is None:
                continue
            words = alert_text(alert, language(guild.preferred_locale))
            try:
                await channel.send(words, allowed_mentions=NO_MENTIONS)
            except discord.HTTPException as failure:
                log.warning(
                    "alert %s not posted in %s/#%s: HTTP %s",
                    alert.kind,
                    guild.id,
                    channel.name,
                    failure.status,
                )
