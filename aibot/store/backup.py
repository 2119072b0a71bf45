"""Online backups of the store file, checked, and the newest few kept.

A live SQLite file is never copied as a file: a copy taken while the database
thread writes (or with part of the data still in the WAL file) may be torn. The
backup goes through SQLite's own backup API (`sqlite3.Connection.backup`) from a
read connection of its own, on a thread of its own: in WAL mode the readers do
not block the store's writer, and the copy is one consistent snapshot. It is
written under a temporary name, checked (`PRAGMA integrity_check`) and only
then renamed to `aibot-YYYYMMDD-HHMMSS.db` (local time; `...-by-hand.db` for one
an admin asked for); the oldest backups of the same kind beyond `keep` are removed,
so backups made by hand never push the daily ones out.

To restore: stop the bot, move `aibot.db` (and any `aibot.db-wal`,
`aibot.db-shm`) out of `AIBOT_DATA_DIR`, copy the backup there as `aibot.db`,
start the bot (README, "Backups").
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from .db import StoreError

__all__ = ["BACKUP_GLOB", "Backup", "back_up", "integrity"]

BACKUP_GLOB = "aibot-*.db"
# In the name of a backup an admin asked for (`/admin backup`).
BY_HAND = "-by-hand"


@dataclass(frozen=True, slots=True)
class Backup:
    """A backup made and checked: where, how big (bytes), how long it took (s)."""

    path: Path
    size: int
    seconds: float


async def back_up(
    source: Path, folder: Path, *, keep: int, at: float, timezone: ZoneInfo, by_hand: bool = False
) -> Backup:
    """Back `source` up into `folder` (made if missing), check it, keep the newest
    `keep` of its kind (`by_hand`, or daily). Raises `StoreError` saying what
    failed; a failed backup leaves no file. One at a time per folder (the caller's
    to ensure: two in the same second would take one name)."""
    return await asyncio.to_thread(_back_up, source, folder, keep, at, timezone, by_hand)


def integrity(path: Path) -> str:
    """`PRAGMA integrity_check` of a database file: "ok", or what is wrong."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()
    return "; ".join(str(row[0]) for row in rows) or "no answer"


def _back_up(
    source: Path, folder: Path, keep: int, at: float, timezone: ZoneInfo, by_hand: bool
) -> Backup:
    began = time.perf_counter()
    stamp = datetime.fromtimestamp(at, timezone).strftime("%Y%m%d-%H%M%S")
    if by_hand:
        stamp += BY_HAND
    try:
        folder.mkdir(parents=True, exist_ok=True)
        final = _free_name(folder, stamp)
        partial = final.with_name(final.name + ".partial")
        _copy(source, partial)
        check = integrity(partial)
        if check != "ok":
            partial.unlink(missing_ok=True)
            raise StoreError(f"{final}: the backup failed its integrity check ({check})")
        partial.replace(final)
    except (OSError, sqlite3.Error) as err:
        raise StoreError(f"backup of {source} into {folder} failed: {err}") from err
    size = final.stat().st_size
    _prune(folder, keep, made=final, by_hand=by_hand)
    return Backup(final, size, time.perf_counter() - began)


def _copy(source: Path, target: Path) -> None:
    if not source.is_file():
        raise StoreError(f"{source}: no database to back up")
    reader = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=5.0)
    try:
        writer = sqlite3.connect(target)
        try:
            # One step: one read transaction, so the copy is one consistent snapshot.
            reader.backup(writer, pages=-1)
            # A copy of a WAL database is in WAL mode too: one self-contained file
            # instead (the store turns WAL on again when it opens a restored one).
            writer.execute("PRAGMA journal_mode=DELETE")
        finally:
            writer.close()
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    finally:
        reader.close()


def _free_name(folder: Path, stamp: str) -> Path:
    """`aibot-{stamp}.db`, or numbered past the highest number taken: the numbers
    order the backups of one second, so a name freed by pruning is not used again."""
    name = re.compile(rf"aibot-{re.escape(stamp)}(?:-(\d+))?\.db")
    taken = [int(m[1] or 1) for p in folder.iterdir() if (m := name.fullmatch(p.name))]
    n = max(taken, default=0) + 1
    return folder / (f"aibot-{stamp}.db" if n == 1 else f"aibot-{stamp}-{n}.db")


def _prune(folder: Path, keep: int, *, made: Path, by_hand: bool) -> None:
    """Keep the `keep` newest backups of the kind just `made` (by hand, or daily),
    that one always among them (a clock set back, or another bot's backups in the
    folder, must not take it)."""
    # The names sort by time: aibot-YYYYMMDD-HHMMSS[-by-hand][-n].db
    kind = [p for p in folder.glob(BACKUP_GLOB) if (BY_HAND in p.stem) == by_hand]
    others = [p for p in kind if p != made]
    others.sort(key=lambda p: (p.stem[:21], len(p.stem), p.stem))
    for old in others[: max(0, len(others) - (keep - 1))]:
        old.unlink(missing_ok=True)
