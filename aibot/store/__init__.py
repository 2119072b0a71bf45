"""The store: one embedded SQLite file holding fair use, accounting, memory and
durable jobs.

`store = await Store.open(path, settings)` opens (or creates) the file, checks
it and migrates it, loads today's gate counters, and offers:

- `store.gate`: cooldowns, daily quotas and budgets (`take`, `refund`), in memory;
- `store.ledger`: usage and admin rows, costs, `/stats` figures;
- `store.memory`: /chat conversations (the chat pool's `memory`);
- `store.journal`: durable video jobs (the video pool's `journal`).

`await store.close()` writes what is queued and closes the file. A file that is
corrupt, unwritable or from a newer aibot raises `StoreError` naming it.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from aibot.settings import Settings

from .days import Calendar, Clock
from .db import Database, StoreError, Turn, transaction
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
from .memory import Memory, Recall, estimate_tokens

__all__ = [
    "DEFAULT_PRICES",
    "AdminAction",
    "Calendar",
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
    "Store",
    "StoreError",
    "estimate_tokens",
]

_DAY = 86_400.0


class Store:
    """The open database and the four things built on it."""

    def __init__(
        self,
        db: Database,
        calendar: Calendar,
        gate: Gate,
        ledger: Ledger,
        memory: Memory,
        journal: Journal,
    ) -> None:
        self._db = db
        self.calendar = calendar
        self.gate = gate
        self.ledger = ledger
        self.memory = memory
        self.journal = journal

    @property
    def path(self) -> Path:
        return self._db.path

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str] | None,
        settings: Settings,
        *,
        clock: Clock = time.time,
        prices: PriceTable | None = None,
        keep_days: int | None = None,
        turn: Turn | None = None,
    ) -> Store:
        """Open the store at `path` (None: `settings.data_dir / "aibot.db"`).

        `clock` gives unix seconds for days and cooldowns; `keep_days` is how
        long ledger rows, admin actions and finished jobs are kept. Both default
        to the settings (`AIBOT_PRICE_*`, `AIBOT_LEDGER_DAYS`). With `turn`, the
        writes behind wait for the background's turn (`aibot.store.db`)."""
        prices = settings.prices if prices is None else prices
        keep_days = settings.ledger_days if keep_days is None else keep_days
        db = await Database.open(
            Path(path) if path is not None else settings.data_dir / "aibot.db", turn=turn
        )
        try:
            calendar = Calendar(settings.timezone, clock)
            now = calendar.now()
            before = now - keep_days * _DAY
            first_kept = calendar.day(before)
            await db.run(lambda conn: _prune(conn, first_kept, before))
            used, overrides = await db.run(lambda conn: Gate.load(conn, calendar.day(now)))
        except BaseException:
            await db.close()
            raise
        return cls(
            db,
            calendar,
            Gate(db, settings, calendar, used=used, overrides=overrides),
            Ledger(db, calendar, prices),
            Memory(db, calendar, settings.chat_history_tokens),
            Journal(db, calendar),
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


def _prune(conn: sqlite3.Connection, first_day: str, before: float) -> None:
    with transaction(conn):
        conn.execute("DELETE FROM usage WHERE day < ?", (first_day,))
        conn.execute("DELETE FROM admin_actions WHERE at < ?", (before,))
        conn.execute("DELETE FROM jobs WHERE COALESCE(finished_at, delivered_at) < ?", (before,))
