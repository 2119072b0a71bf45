"""The store: one embedded SQLite file holding fair use, accounting, memory and
durable jobs.

`store = Store(settings)` builds it closed; `await store.start()` opens (or
creates) the file, checks it and migrates it, and loads today's gate counters
(`await Store.open(path, settings)` does both). It offers:

- `store.gate`: cooldowns, daily quotas and budgets (`take`, `refund`), in memory;
- `store.ledger`: usage and admin rows, costs, `/stats` figures;
- `store.memory`: /chat conversations;
- `store.journal`: durable jobs;
- `store.rooms`: what the admin rooms keep (status message ids, daily posts);
- `await store.backup(folder, keep)`: an online backup, checked (`backup.py`).

The first four implement their ports in `aibot.ports`.

`await store.prune()` drops what is kept no longer: ledger rows, admin actions and
finished jobs older than `AIBOT_LEDGER_DAYS`, and conversations nobody added to for
`MEMORY_DAYS` (as Redis expires them in cluster mode). The store does it as it
opens; the daily room once a day after that, so a bot that runs for months keeps
no more than a bot restarted daily.

`await store.close()` writes what is queued and closes the file. A file that is
corrupt, unwritable or from a newer aibot raises `StoreError` naming it.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from pathlib import Path

from aibot.settings import Settings

from .backup import Backup, back_up
from .days import Calendar, Clock
from .db import Database, StoreError, transaction
from .gate import Gate, Limits
from .journal import Journal, JournalEntry
from .ledger import (
    DEFAULT_PRICES,
    AdminAction,
    DayUsage,
    Ledger,
    MemberUsage,
    Price,
    PriceTable,
)
from .memory import MEMORY_DAYS, Memory, Recall, estimate_tokens, forget_idle_conversations
from .rooms import DaySummary, RoomRecords

__all__ = [
    "DEFAULT_PRICES",
    "MEMORY_DAYS",
    "AdminAction",
    "Backup",
    "Calendar",
    "DaySummary",
    "DayUsage",
    "Gate",
    "Journal",
    "JournalEntry",
    "Ledger",
    "Limits",
    "MemberUsage",
    "Memory",
    "Price",
    "PriceTable",
    "Recall",
    "RoomRecords",
    "Store",
    "StoreError",
    "estimate_tokens",
]

_DAY = 86_400.0


class Store:
    """The database and the four things built on it. See the module docstring."""

    def __init__(
        self,
        settings: Settings,
        path: str | os.PathLike[str] | None = None,
        *,
        clock: Clock = time.time,
        prices: PriceTable | None = None,
        keep_days: int | None = None,
    ) -> None:
        """A closed store at `path` (None: `settings.data_dir / "aibot.db"`).

        `clock` gives unix seconds for days and cooldowns; `keep_days` is how
        long ledger rows, admin actions and finished jobs are kept. Both default
        to the settings (`AIBOT_PRICE_*`, `AIBOT_LEDGER_DAYS`)."""
        self._db = Database(Path(path) if path is not None else settings.data_dir / "aibot.db")
        self._keep_days = settings.ledger_days if keep_days is None else keep_days
        self.calendar = Calendar(settings.timezone, clock)
        self.gate = Gate(self._db, settings, self.calendar)
        self.ledger = Ledger(self._db, self.calendar, settings.prices if prices is None else prices)
        self.memory = Memory(self._db, self.calendar, settings.chat_history_tokens)
        self.journal = Journal(self._db, self.calendar)
        self.rooms = RoomRecords(self._db, self.calendar)
        # One backup at a time: two at once (the day's and an admin's) would race
        # for one file name.
        self._backing_up = asyncio.Lock()

    @property
    def path(self) -> Path:
        return self._db.path

    @classmethod
    async def open(
        cls, path: str | os.PathLike[str] | None, settings: Settings, **options: object
    ) -> Store:
        """A started store (see `__init__` for the options)."""
        store = cls(settings, path, **options)  # type: ignore[arg-type]
        await store.start()
        return store

    async def start(self) -> None:
        """Open the file, drop what is kept no longer (`prune`), load today's gate
        counts. A file that cannot be used raises `StoreError` naming it."""
        await self._db.connect()
        try:
            await self.prune()
            await self.gate.load()
        except BaseException:
            await self._db.close()
            raise

    async def prune(self) -> None:
        """Drop ledger rows, admin actions and finished jobs older than `keep_days`,
        and the conversations nobody added to in the last `MEMORY_DAYS`."""
        now = self.calendar.now()
        before = now - self._keep_days * _DAY
        first_kept = self.calendar.day(before)
        forget_before = now - MEMORY_DAYS * _DAY
        await self._db.run(lambda conn: _prune(conn, first_kept, before, forget_before))

    async def backup(self, folder: Path, keep: int, *, by_hand: bool = False) -> Backup:
        """An online backup of the open store into `folder`, checked, keeping the
        newest `keep` of its kind (made `by_hand`, or the daily ones). Writes queued
        behind go in first. Raises `StoreError`."""
        async with self._backing_up:
            await self._db.flush()
            now = self.calendar.now()
            zone = self.calendar.timezone
            return await back_up(
                self.path, folder, keep=keep, at=now, timezone=zone, by_hand=by_hand
            )

    async def flush(self) -> None:
        """Wait until every write queued behind (gate, ledger) is in the file."""
        await self._db.flush()

    async def close(self) -> None:
        """Write what is queued and close the file. Safe to call twice."""
        await self._db.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _prune(conn: sqlite3.Connection, first_day: str, before: float, forget_before: float) -> None:
    with transaction(conn):
        conn.execute("DELETE FROM usage WHERE day < ?", (first_day,))
        conn.execute("DELETE FROM admin_actions WHERE at < ?", (before,))
        conn.execute("DELETE FROM jobs WHERE COALESCE(finished_at, delivered_at) < ?", (before,))
        conn.execute("DELETE FROM room_posts WHERE at < ?", (before,))
        forget_idle_conversations(conn, forget_before)
