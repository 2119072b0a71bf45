"""The gate: cooldowns, daily quotas and daily budgets, answered from memory.

Checked for every job before the defer, so `take` never waits: no I/O, a few
dictionary lookups. It is a coroutine only to fit the `aibot.ports.Gate` port
(a networked gate must wait); it awaits nothing, which is also what makes it
exact under concurrency: on one event loop no other take can run between the
check and the count, so 100 simultaneous takes against a quota of 10 let exactly
10 through. The database is the record: today's counters and the members' last
takes (their cooldowns) are loaded when the store opens, and every change is
written behind as an absolute value.

What is counted, per pool (the command's role, so an overflowed /chat still
spends the member's chat quota) and per local day:
- a member's uses in a guild: `daily_quota` (0 = unlimited), and the time of
  their last use: `cooldown` seconds;
- all uses in a guild: the guild's `daily_budget` (0 = unlimited);
- all uses everywhere: the pool's `daily_budget` from settings, which protects
  the bill; a guild may set a lower budget for itself, never a higher one.
Guild overrides are stored field by field; a field left unset follows settings.

A use comes back two ways: `refund` (the job ran and failed through no fault of
the member's: the use, not the cooldown) and `undo` (the job never ran: its defer
failed, or the queue refused it after the defer: the use and the cooldown).
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass, replace

from aibot.catalogue import COMMAND_POOL
from aibot.jobs import Job, LimitReached
from aibot.ports import Limits, limits_given
from aibot.settings import Settings

from .days import Calendar
from .db import Database, transaction
from .journal import UNFINISHED

__all__ = ["Gate", "Limits", "StoreLimits"]

_EVERY_MEMBER = 0
_EVERY_GUILD = -1
# Jobs remembered for a refund; a day's worth at most, and never more than this.
_REFUNDABLE = 100_000

Key = tuple[str, int, int]  # (pool, guild id, user id)

_UPSERT = (
    "INSERT INTO gate_counts (day, pool, guild_id, user_id, used) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (day, pool, guild_id, user_id) DO UPDATE SET used = excluded.used"
)
_TAKEN_AT = (
    "INSERT INTO gate_takes (pool, guild_id, user_id, at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (pool, guild_id, user_id) DO UPDATE SET at = excluded.at"
)
_FORGET_TAKE = "DELETE FROM gate_takes WHERE pool = ? AND guild_id = ? AND user_id = ?"


@dataclass(frozen=True, slots=True)
class _Override:
    cooldown: float | None = None
    daily_quota: int | None = None
    daily_budget: int | None = None


Overrides = dict[tuple[int, str], _Override]


def _counted(pool: str, guild: int, user: int) -> tuple[Key, Key, Key]:
    """The counters one use adds to: the member's, the guild's, the whole pool's."""
    return (pool, guild, user), (pool, guild, _EVERY_MEMBER), (pool, _EVERY_GUILD, _EVERY_MEMBER)


def pool_of(job: Job) -> str:
    """The pool whose limits a job spends: its command's role."""
    return COMMAND_POOL.get(job.command) or job.pool or "admin"


class Gate:
    """Cooldowns, quotas and budgets; see the module docstring for what counts."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        calendar: Calendar,
        *,
        used: dict[Key, int] | None = None,
        overrides: Overrides | None = None,
    ) -> None:
        self._db = db
        self._calendar = calendar
        self._defaults = {
            name: Limits(pool.cooldown, pool.daily_quota, pool.daily_budget)
            for name, pool in settings.pools.items()
        }
        self._overrides = overrides or {}
        self._day, self._start, self._end = calendar.span(calendar.now())
        self._used = used or {}
        # When each member last took a use of a pool: their cooldown runs from it, by
        # the limit in force when they ask next (lowered or reset, at once shorter).
        self._last_take: dict[Key, float] = {}
        # By job id: the day, member and time of each take today, for its refund or
        # undo (the time unknown, -inf, for a take an earlier run made).
        self._taken: dict[str, tuple[str, Key, float]] = {}

    async def load(self) -> None:
        """Take up today's counters and every guild override from the file (at start),
        and today's takes of the journaled jobs a restart left unfinished, which may
        still be given back (a job the restart cut short: its member asks again)."""
        self._day, self._start, self._end = self._calendar.span(self._calendar.now())
        day, start = self._day, self._start
        (self._used, self._overrides), open_jobs, self._last_take = await self._db.run(
            lambda conn: (Gate.read(conn, day), _open_jobs(conn, start), _last_takes(conn))
        )
        self._forget_cooled(self._calendar.now())
        for job in open_jobs:
            member = (pool_of(job), job.guild_id or 0, job.user_id)
            self._remember_take(job.id, member, -math.inf)

    @staticmethod
    def read(conn: sqlite3.Connection, day: str) -> tuple[dict[Key, int], Overrides]:
        """Today's counters and every guild override (database thread). Earlier days'
        counters go: the ledger, not the gate, keeps history."""
        conn.execute("DELETE FROM gate_counts WHERE day < ?", (day,))
        used = {
            (pool, guild, user): count
            for pool, guild, user, count in conn.execute(
                "SELECT pool, guild_id, user_id, used FROM gate_counts WHERE day = ?", (day,)
            )
        }
        overrides = {
            (guild, pool): _Override(cooldown, quota, budget)
            for guild, pool, cooldown, quota, budget in conn.execute(
                "SELECT guild_id, pool, cooldown, daily_quota, daily_budget FROM guild_limits"
            )
        }
        return used, overrides

    def limits(self, guild_id: int | None, pool: str) -> Limits:
        """The limits that apply to `pool` in a guild (None or 0: direct messages)."""
        default = self._defaults[pool]
        override = self._overrides.get((guild_id or 0, pool))
        if override is None:
            return default
        return default.overridden(override.cooldown, override.daily_quota, override.daily_budget)

    async def take(self, job: Job) -> None:
        """Count one use, or raise `LimitReached(scope, retry_after=seconds)`.

        Scopes: cooldown (this member, this pool), quota (this member's day),
        budget (the guild's or the pool's day). A refusal counts nothing."""
        now = self._calendar.now()
        self._roll(now)
        pool = pool_of(job)
        member, guild, everyone = keys = _counted(pool, job.guild_id or 0, job.user_id)
        limits = self.limits(job.guild_id, pool)
        wait = self._last_take.get(member, -math.inf) + limits.cooldown - now
        if wait > 0:
            raise LimitReached("cooldown", retry_after=wait)
        checks = (
            (member, limits.daily_quota, "quota"),
            (guild, limits.daily_budget, "budget"),
            (everyone, self._defaults[pool].daily_budget, "budget"),
        )
        for key, limit, scope in checks:
            if limit and self._used.get(key, 0) >= limit:
                raise LimitReached(scope, retry_after=self._end - now)
        for key in keys:
            self._count(key, 1)
        self._last_take[member] = now
        self._db.later(_TAKEN_AT, (*member, now))
        self._remember_take(job.id, member, now)

    async def refund(self, job: Job) -> bool:
        """Give back the quota and budget a job took (the provider failed it).
        The cooldown stays. False when there is nothing to give back: the job
        was never taken, was already refunded, or was taken on an earlier day."""
        self._roll(self._calendar.now())
        taken = self._taken.pop(job.id, None)
        if taken is None or taken[0] != self._day:
            return False
        for key in _counted(*taken[1]):
            self._count(key, -1)
        return True

    async def undo(self, job: Job) -> bool:
        """Take back a take whose job never ran: the use, and the cooldown it started
        (unless the member took another since). False when there is nothing to take
        back (see `refund`)."""
        taken = self._taken.get(job.id)
        if taken is None or not await self.refund(job):
            return False
        _day, member, at = taken
        if self._last_take.get(member) == at:
            del self._last_take[member]
            self._db.later(_FORGET_TAKE, member)
        return True

    def usage(self, guild_id: int | None, user_id: int, pool: str) -> tuple[int, int]:
        """(used today, daily quota) of a member in a pool; quota 0 is unlimited."""
        self._roll(self._calendar.now())
        used = self._used.get((pool, guild_id or 0, user_id), 0)
        return used, self.limits(guild_id, pool).daily_quota

    def spent(self, pool: str, guild_id: int | None = None) -> tuple[int, int]:
        """(used today, daily budget) of a server in a pool, or of the whole pool
        everywhere (`guild_id` None); budget 0 is unlimited."""
        self._roll(self._calendar.now())
        if guild_id is None:
            return self._used.get((pool, _EVERY_GUILD, _EVERY_MEMBER), 0), self._defaults[
                pool
            ].daily_budget
        used = self._used.get((pool, guild_id, _EVERY_MEMBER), 0)
        return used, self.limits(guild_id, pool).daily_budget

    async def set_limits(
        self,
        guild_id: int,
        pool: str,
        *,
        cooldown: float | None = None,
        daily_quota: int | None = None,
        daily_budget: int | None = None,
    ) -> Limits:
        """Override some of a guild's limits for a pool (None: leave as it is).
        Stored first, then in force for the next take. Returns the new limits."""
        given = limits_given(pool, self._defaults, cooldown, daily_quota, daily_budget)
        new = replace(self._overrides.get((guild_id, pool), _Override()), **given)
        now = self._calendar.now()
        await self._db.run(lambda conn: _save_override(conn, guild_id, pool, new, now))
        self._overrides[(guild_id, pool)] = new
        return self.limits(guild_id, pool)

    async def clear_limits(self, guild_id: int, pool: str) -> Limits:
        """Drop a guild's overrides for a pool: settings apply again."""
        await self._db.run(lambda conn: _delete_override(conn, guild_id, pool))
        self._overrides.pop((guild_id, pool), None)
        return self.limits(guild_id, pool)

    def _roll(self, now: float) -> None:
        """Start a new day's counts when `now` is past the current day. A clock set
        back stays in the current day: a count is never undone."""
        if now < self._end:
            return
        day, self._start, self._end = self._calendar.span(now)
        if day == self._day:
            return
        self._day = day
        self._used.clear()
        self._taken.clear()
        self._forget_cooled(now)
        self._db.later("DELETE FROM gate_counts WHERE day < ?", (day,))

    def _forget_cooled(self, now: float) -> None:
        """Forget the last takes whose longest cooldown has run out."""
        longest = max(limits.cooldown for limits in self._defaults.values())
        longest = max([longest, *(o.cooldown or 0.0 for o in self._overrides.values())])
        self._last_take = {k: t for k, t in self._last_take.items() if t + longest > now}
        self._db.later("DELETE FROM gate_takes WHERE at <= ?", (now - longest,))

    def _count(self, key: Key, delta: int) -> None:
        used = max(0, self._used.get(key, 0) + delta)
        self._used[key] = used
        self._db.later(_UPSERT, (self._day, *key, used))

    def _remember_take(self, job_id: str, member: Key, at: float) -> None:
        self._taken[job_id] = (self._day, member, at)
        if len(self._taken) > _REFUNDABLE:
            del self._taken[next(iter(self._taken))]


def _last_takes(conn: sqlite3.Connection) -> dict[Key, float]:
    rows = conn.execute("SELECT pool, guild_id, user_id, at FROM gate_takes")
    return {(pool, guild, user): at for pool, guild, user, at in rows}


def _open_jobs(conn: sqlite3.Connection, since: float) -> list[Job]:
    """The journaled jobs not finished (what a restart resumes), accepted since `since`."""
    rows = conn.execute(f"SELECT job FROM jobs WHERE {UNFINISHED} AND created_at >= ?", (since,))
    return [Job.from_dict(json.loads(data)) for (data,) in rows]


def _save_override(
    conn: sqlite3.Connection, guild_id: int, pool: str, new: _Override, now: float
) -> None:
    with transaction(conn):
        conn.execute(
            "INSERT INTO guild_limits (guild_id, pool, cooldown, daily_quota, daily_budget, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (guild_id, pool) DO UPDATE SET "
            "cooldown = excluded.cooldown, daily_quota = excluded.daily_quota, "
            "daily_budget = excluded.daily_budget, updated_at = excluded.updated_at",
            (guild_id, pool, new.cooldown, new.daily_quota, new.daily_budget, now),
        )


def _delete_override(conn: sqlite3.Connection, guild_id: int, pool: str) -> None:
    with transaction(conn):
        conn.execute("DELETE FROM guild_limits WHERE guild_id = ? AND pool = ?", (guild_id, pool))


class StoreLimits:
    """The store's gate as `QuotaLimits` (its `limits` answers from memory)."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    async def limits(self, guild_id: int | None, pool: str) -> Limits:
        return self.gate.limits(guild_id, pool)

    async def set_limits(
        self,
        guild_id: int,
        pool: str,
        *,
        cooldown: float | None = None,
        daily_quota: int | None = None,
        daily_budget: int | None = None,
    ) -> Limits:
        return await self.gate.set_limits(
            guild_id, pool, cooldown=cooldown, daily_quota=daily_quota, daily_budget=daily_budget
        )

    async def clear_limits(self, guild_id: int, pool: str) -> Limits:
        return await self.gate.clear_limits(guild_id, pool)
