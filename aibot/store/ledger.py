"""The usage ledger: one row per job run and per admin action, with its cost.

Rows are written behind (`record` returns at once), so accounting never slows
an answer; `stats` and `top_members` flush first and then read. Costs are
estimates from a price table in US dollars: the defaults below are public list
prices at the time of writing, and every one is meant to be set from settings.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from aibot.jobs import Job
from aibot.prices import DEFAULT_PRICES, Price, PriceTable

from .days import Calendar
from .db import Database
from .gate import pool_of

__all__ = [
    "DEFAULT_PRICES",
    "AdminAction",
    "DayUsage",
    "Ledger",
    "MemberUsage",
    "Price",
    "PriceTable",
]


@dataclass(frozen=True, slots=True)
class DayUsage:
    """One day's use of one provider by one pool. `failed` counts outcomes other than ok."""

    day: str
    pool: str
    provider: str
    jobs: int
    failed: int
    tokens_in: int
    tokens_out: int
    images: int
    video_seconds: float
    cost: float


@dataclass(frozen=True, slots=True)
class MemberUsage:
    user_id: int
    jobs: int
    cost: float


@dataclass(frozen=True, slots=True)
class AdminAction:
    at: float
    guild_id: int
    user_id: int
    action: str
    detail: str


# OR IGNORE: a job is counted once (the unique index on job_id), however often
# its outcome arrives.
_INSERT_USAGE = (
    "INSERT OR IGNORE INTO usage (at, day, job_id, guild_id, user_id, pool, command, provider, "
    "key_id, outcome, latency, tokens_in, tokens_out, images, video_seconds, cost) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_ADMIN = (
    "INSERT INTO admin_actions (at, guild_id, user_id, action, detail) VALUES (?, ?, ?, ?, ?)"
)


class Ledger:
    """Records what every job used and cost; answers /stats."""

    def __init__(self, db: Database, calendar: Calendar, prices: PriceTable = DEFAULT_PRICES):
        self._db = db
        self._calendar = calendar
        self.prices = prices

    def record(
        self,
        job: Job,
        *,
        provider: str,
        key_id: str,
        outcome: str,
        latency: float,
        tokens_in: int = 0,
        tokens_out: int = 0,
        images: int = 0,
        video_seconds: float = 0.0,
        cost: float | None = None,
        at: float | None = None,
    ) -> float:
        """Queue one job's row; returns its cost (estimated from the price table
        unless given). `key_id` is the redacted key; `outcome` is "ok" or an
        error kind. `pool` is the pool that ran it (admin when it overflowed).
        `at` (unix seconds, default now) is when the job ended. A job already
        recorded is not counted again: the first row of a job id stands."""
        if cost is None:
            cost = self.prices.of(provider).cost(tokens_in, tokens_out, images, video_seconds)
        now = self._calendar.now() if at is None else at
        day = self._calendar.day(now)
        row: tuple[object, ...] = (now, day, job.id, job.guild_id or 0, job.user_id)
        row += (job.pool or pool_of(job), job.command, provider, _redacted(key_id), outcome)
        row += (latency, tokens_in, tokens_out, images, video_seconds, cost)
        self._db.later(_INSERT_USAGE, row)
        return cost

    async def flush(self) -> None:
        """Wait until every row queued so far is in the file."""
        await self._db.flush()

    def record_admin(self, guild_id: int | None, user_id: int, action: str, detail: str) -> None:
        """Queue an admin action (pause, quota change, cancel...). `detail` is shown
        to admins as is: pass no secrets."""
        row = (self._calendar.now(), guild_id or 0, user_id, action, detail)
        self._db.later(_INSERT_ADMIN, row)

    async def stats(self, guild_id: int | None, days: int = 7) -> list[DayUsage]:
        """Per day (newest first), pool and provider, over the last `days` local
        days including today. `guild_id` None: every guild and direct message."""
        await self._db.flush()
        first = self._calendar.first_day(days)
        rows = await self._db.run(lambda conn: _stats(conn, guild_id, first))
        return [DayUsage(*row) for row in rows]

    async def top_members(
        self, guild_id: int | None, days: int = 7, limit: int = 10
    ) -> list[MemberUsage]:
        """The members with the most jobs (then the highest cost) over the window."""
        await self._db.flush()
        first = self._calendar.first_day(days)
        rows = await self._db.run(lambda conn: _top(conn, guild_id, first, limit))
        return [MemberUsage(*row) for row in rows]

    async def admin_actions(self, guild_id: int | None, limit: int = 20) -> list[AdminAction]:
        """A guild's latest admin actions, newest first."""
        await self._db.flush()
        rows = await self._db.run(
            lambda conn: conn.execute(
                "SELECT at, guild_id, user_id, action, detail FROM admin_actions "
                "WHERE guild_id = ? ORDER BY id DESC LIMIT ?",
                (guild_id or 0, limit),
            ).fetchall()
        )
        return [AdminAction(*row) for row in rows]


def _where(guild_id: int | None) -> tuple[str, tuple[int, ...]]:
    return ("AND guild_id = ?", (guild_id,)) if guild_id is not None else ("", ())


def _stats(conn: sqlite3.Connection, guild_id: int | None, first: str) -> list[tuple]:
    clause, params = _where(guild_id)
    return conn.execute(
        "SELECT day, pool, provider, COUNT(*), SUM(outcome != 'ok'), SUM(tokens_in), "
        "SUM(tokens_out), SUM(images), SUM(video_seconds), SUM(cost) FROM usage "
        f"WHERE day >= ? {clause} GROUP BY day, pool, provider "
        "ORDER BY day DESC, pool, provider",
        (first, *params),
    ).fetchall()


def _top(conn: sqlite3.Connection, guild_id: int | None, first: str, limit: int) -> list[tuple]:
    clause, params = _where(guild_id)
    return conn.execute(
        f"SELECT user_id, COUNT(*) AS jobs, SUM(cost) AS cost FROM usage WHERE day >= ? {clause} "
        "GROUP BY user_id ORDER BY jobs DESC, cost DESC, user_id LIMIT ?",
        (first, *params, limit),
    ).fetchall()


def _redacted(key_id: str) -> str:
    # The ledger lives for months: should a caller pass a whole key by mistake,
    # only its last four characters are kept.
    if "..." in key_id or len(key_id) <= 8:
        return key_id
    return "..." + key_id[-4:]
