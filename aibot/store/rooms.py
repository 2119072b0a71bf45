"""What the admin rooms keep across restarts, and the day summary they post.

- The one message a room keeps edited per server (the live status): its channel
  and message ids, so a restarted bot edits the same message.
- What is done once a day (the summary per server, the backup): claimed before
  it is done, so it is done once even across restarts; given back when it failed.
- A day's summary: jobs, failures and cost per pool and provider, and the
  busiest hour, from the usage ledger.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

from .days import Calendar
from .db import Database, transaction
from .ledger import DayUsage

__all__ = ["DaySummary", "RoomRecords"]


@dataclass(frozen=True, slots=True)
class DaySummary:
    """One local day of one server (or of every server: `guild_id` None).
    `busiest_hour` is the local hour (0-23) with the most jobs, and its count."""

    day: str
    guild_id: int | None
    rows: tuple[DayUsage, ...]
    busiest_hour: tuple[int, int] | None

    @property
    def jobs(self) -> int:
        return sum(row.jobs for row in self.rows)

    @property
    def failed(self) -> int:
        return sum(row.failed for row in self.rows)

    @property
    def cost(self) -> float:
        return sum(row.cost for row in self.rows)


class RoomRecords:
    """The rooms' rows in the store (module docstring)."""

    def __init__(self, db: Database, calendar: Calendar) -> None:
        self._db = db
        self._calendar = calendar

    async def message(self, room: str, guild_id: int) -> tuple[int, int] | None:
        """(channel id, message id) of the message `room` keeps in a server, if any."""
        row = await self._db.run(
            lambda conn: conn.execute(
                "SELECT channel_id, message_id FROM room_messages WHERE room = ? AND guild_id = ?",
                (room, guild_id),
            ).fetchone()
        )
        return (row[0], row[1]) if row else None

    async def keep_message(
        self, room: str, guild_id: int, channel_id: int, message_id: int
    ) -> None:
        """Remember the message `room` keeps in a server (replacing an earlier one)."""
        await self._db.run(
            lambda conn: _write(
                conn,
                "INSERT INTO room_messages (room, guild_id, channel_id, message_id) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (room, guild_id) DO UPDATE SET "
                "channel_id = excluded.channel_id, message_id = excluded.message_id",
                (room, guild_id, channel_id, message_id),
            )
        )

    async def claim(self, room: str, guild_id: int, day: str) -> bool:
        """True only for the first claim of (room, server, day): do it then."""
        now = self._calendar.now()
        return await self._db.run(
            lambda conn: _write(
                conn,
                "INSERT OR IGNORE INTO room_posts (room, guild_id, day, at) VALUES (?, ?, ?, ?)",
                (room, guild_id, day, now),
            )
        )

    async def unclaim(self, room: str, guild_id: int, day: str) -> None:
        """Give a claim back: what it was for failed, and may be tried again."""
        await self._db.run(
            lambda conn: _write(
                conn,
                "DELETE FROM room_posts WHERE room = ? AND guild_id = ? AND day = ?",
                (room, guild_id, day),
            )
        )

    async def day_summary(self, day: str, guild_id: int | None) -> DaySummary:
        """The summary of a local day (`YYYY-MM-DD`) in one server, or everywhere."""
        await self._db.flush()
        start = _day_start(day, self._calendar)
        rows, hours = await self._db.run(lambda conn: _summary(conn, day, guild_id, start))
        busiest = None
        if hours:
            offset, count = hours[0]
            local = datetime.fromtimestamp(start + offset * 3600, self._calendar.timezone)
            busiest = (local.hour, count)
        return DaySummary(day, guild_id, tuple(DayUsage(*row) for row in rows), busiest)


def _write(conn: sqlite3.Connection, sql: str, params: tuple) -> bool:
    with transaction(conn):
        return conn.execute(sql, params).rowcount > 0


def _day_start(day: str, calendar: Calendar) -> float:
    local = datetime.fromisoformat(day).replace(tzinfo=calendar.timezone)
    return local.timestamp()


def _summary(
    conn: sqlite3.Connection, day: str, guild_id: int | None, start: float
) -> tuple[list[tuple], list[tuple[int, int]]]:
    clause, params = ("AND guild_id = ?", (guild_id,)) if guild_id is not None else ("", ())
    rows = conn.execute(
        "SELECT day, pool, provider, COUNT(*), SUM(outcome != 'ok'), SUM(tokens_in), "
        "SUM(tokens_out), SUM(images), SUM(video_seconds), SUM(cost) FROM usage "
        f"WHERE day = ? {clause} GROUP BY pool, provider ORDER BY pool, provider",
        (day, *params),
    ).fetchall()
    # Whole hours since the local midnight: right on days when clocks change too.
    hours = conn.execute(
        "SELECT CAST((at - ?) / 3600 AS INTEGER) AS hour, COUNT(*) AS jobs FROM usage "
        f"WHERE day = ? {clause} GROUP BY hour ORDER BY jobs DESC, hour LIMIT 1",
        (start, day, *params),
    ).fetchall()
    return rows, hours
