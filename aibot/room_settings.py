"""Settings of the admin rooms: the alert, status and statistics channels, backups.

Read by `aibot.settings` (which collects every bad variable in one error):

- `AIBOT_ALERT_CHANNEL`, `AIBOT_STATUS_CHANNEL`, `AIBOT_STATS_CHANNEL`: a channel
  id (that one channel), or comma-separated name patterns (`*` and `?`; the first
  matching text channel of each server that the bot may post in), or `off`.
  Defaults: `*알림-채널,*bot-alert*`, `*봇-상태,*bot-status*`,
  `*전체-통계,*bot-stats*` (the leading `*` lets a name start with an emoji, as the
  reference design's `🚨-알림-채널` does; `bot-` keeps a community's own
  `#alerts` or `#server-stats` out of it).
- `AIBOT_BACKUP_DIR`: where the daily backups go; default `backups` beside
  `AIBOT_DATA_DIR` (so `./backups` with the default `./data`).
- `AIBOT_BACKUP_KEEP`: how many backups are kept (default 7).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import translate
from pathlib import Path
from typing import Protocol, TypeVar

__all__ = ["DEFAULT_ROOMS", "ChannelChoice", "RoomSettings", "read_room_settings"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ChannelChoice:
    """Which channel of a server a room writes to: one channel by id, or the first
    text channel whose name matches a pattern. `off` when neither."""

    channel_id: int | None = None
    patterns: tuple[str, ...] = ()

    @property
    def off(self) -> bool:
        return self.channel_id is None and not self.patterns

    def matches(self, name: str) -> bool:
        """The name fits a pattern (case-insensitive)."""
        lowered = name.lower()
        return any(re.match(translate(p.lower()), lowered) for p in self.patterns)


@dataclass(frozen=True, slots=True)
class RoomSettings:
    alert_channel: ChannelChoice = ChannelChoice(patterns=("*알림-채널", "*bot-alert*"))
    status_channel: ChannelChoice = ChannelChoice(patterns=("*봇-상태", "*bot-status*"))
    stats_channel: ChannelChoice = ChannelChoice(patterns=("*전체-통계", "*bot-stats*"))
    backup_dir: Path = Path("backups")
    backup_keep: int = 7


DEFAULT_ROOMS = RoomSettings()


class _Reader(Protocol):
    def raw(self, name: str) -> str | None: ...

    def get(self, name: str, default: T, parse: Callable[[str], T], why: str) -> T: ...


_CHANNEL = "a channel id, comma-separated channel name patterns, or off"


def read_room_settings(reader: _Reader, data_dir: Path) -> RoomSettings:
    """The rooms' settings from the variables the reader holds."""
    default = DEFAULT_ROOMS
    backup_dir = reader.raw("AIBOT_BACKUP_DIR")
    return RoomSettings(
        alert_channel=reader.get(
            "AIBOT_ALERT_CHANNEL", default.alert_channel, _channel_choice, _CHANNEL
        ),
        status_channel=reader.get(
            "AIBOT_STATUS_CHANNEL", default.status_channel, _channel_choice, _CHANNEL
        ),
        stats_channel=reader.get(
            "AIBOT_STATS_CHANNEL", default.stats_channel, _channel_choice, _CHANNEL
        ),
        backup_dir=Path(backup_dir) if backup_dir else data_dir.parent / "backups",
        backup_keep=reader.get(
            "AIBOT_BACKUP_KEEP", default.backup_keep, _keep, "a whole number above 0"
        ),
    )


def _channel_choice(value: str) -> ChannelChoice:
    if value.lower() == "off":
        return ChannelChoice()
    if value.isdigit():
        return ChannelChoice(channel_id=int(value))
    patterns = tuple(p.strip() for p in value.split(",") if p.strip())
    if not patterns:
        raise ValueError
    return ChannelChoice(patterns=patterns)


def _keep(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError
    return number
