"""The SQLite file behind the store: one connection, one thread, writes behind.

Why a thread of our own and not aiosqlite: every database call runs on one
worker thread (a single-thread executor) that owns the sqlite3 connection, so
the event loop never touches the file, it only awaits the thread's futures.
SQLite lets one writer in at a time anyway, so more threads would only queue
on the file lock. A whole transaction (a batch of queued writes, a
read-trim-write of a conversation) is one function run in one hop to that
thread; aiosqlite makes a hop per statement and has no public way to run a
function on its thread. Requests run in the order they were made.

Writes behind: `later(sql, params)` queues a statement and returns at once;
the first one queued while no writer is waiting hands the database thread a
writer, which writes everything queued by the time it runs, in one transaction,
and hands over the next writer if more came meanwhile. One transaction each
`linger` seconds at most (default 20 ms): a write after a quiet spell goes at
once, while in a burst (every command counts in the gate) a writer waits out the
rest of the `linger` and takes what came meanwhile, in one transaction, not one
each. A transaction and a hand-over to the thread cost more than the rows in
them: measured, the CPU the writes of one gated command cost fell from about
0.12 ms to 0.05.
`flush()` waits until it is written, without waiting out a writer's `linger`. A
crash loses at most the last `linger`'s queued writes (counters, ledger rows):
the price of a gate that answers in microseconds. An `urgent` write (the journal's:
a job accepted, a job ended) does not wait out the `linger`, so a crash loses it
only in the same instant as before.

A `Database` is made closed (`Database(path)`) and opened by `await connect()`,
so the bot can be built before anything runs; writes queued before that wait
for it.

Threads: `run`, `later` and `flush` may be called from any thread (the panel's,
a test's): the queue is guarded by a lock, and the database thread takes work in
the order it was handed over.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from .schema import MIGRATIONS

__all__ = ["Database", "StoreError", "transaction"]

log = logging.getLogger("aibot.store")

T = TypeVar("T")
Statement = tuple[str, Sequence[Any]]

# Seconds between two transactions of writes behind, at least (see the docstring).
LINGER = 0.02


class StoreError(RuntimeError):
    """The database cannot be used. The message names the file and says why."""


class Database:
    """One SQLite file (WAL) and the one thread that talks to it."""

    def __init__(self, path: Path, *, linger: float = LINGER) -> None:
        self.path = path
        self.linger = linger
        self._conn: sqlite3.Connection | None = None  # once connected
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aibot-store")
        self._pending: list[Statement] = []
        self._writing = False  # a writer is handed over: it will take `_pending`
        self._lock = threading.Lock()  # guards the two above and `_closed`
        self._closed = False
        self._last_write = -math.inf  # time.monotonic() of the last transaction
        self._hurry = threading.Event()  # set: a writer waiting out `linger` writes now

    @classmethod
    async def open(cls, path: Path) -> Database:
        """A connected database (see `connect`)."""
        db = cls(path)
        await db.connect()
        return db

    async def connect(self) -> None:
        """Open (or create) the file, check it, and migrate it to the current schema;
        then write what was queued meanwhile."""
        loop = asyncio.get_running_loop()
        try:
            self._conn = await loop.run_in_executor(self._executor, _connect, self.path)
        except BaseException:
            self._closed = True
            self._executor.shutdown(wait=False)
            raise
        with self._lock:
            if not self._pending:
                return
            self._writing = True
        self._executor.submit(self._write_pending)

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work(connection)` on the database thread and return its result."""
        if self._closed or self._conn is None:
            state = "closed" if self._closed else "not open"
            raise StoreError(f"{self.path}: the store is {state}")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._guarded, work)

    def _guarded(self, work: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return work(self._conn)  # type: ignore[arg-type]
        except sqlite3.Error as err:
            raise StoreError(f"{self.path}: {err}") from err

    def later(self, sql: str, params: Sequence[Any], *, urgent: bool = False) -> None:
        """Queue a write; it reaches the file shortly, in one batch with its neighbours.
        `urgent`: a record a crash must not lose (a job accepted): a writer waiting
        out its `linger` writes now. Once the store is closed there is nowhere to
        write: the row is dropped, and the log says so."""
        with self._lock:
            if self._closed:
                # The statement only: its values may be a member's words.
                log.warning("store closed, a write was dropped: %s", sql)
                return
            self._pending.append((sql, params))
            if urgent:
                self._hurry.set()
            if self._writing or self._conn is None:
                return
            self._writing = True
        self._executor.submit(self._write_pending)

    def _write_pending(self) -> None:
        """On the database thread: once `linger` has passed since the last transaction
        (or someone flushes), write what is queued, in one transaction; another
        writer follows if more is queued meanwhile (behind other work)."""
        self._hurry.wait(self._last_write + self.linger - time.monotonic())
        self._write_now()
        with self._lock:
            self._writing = bool(self._pending)
            if self._writing:
                self._executor.submit(self._write_pending)

    def _write_now(self) -> None:
        self._hurry.clear()
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            _write_batch(batch, self._conn)  # type: ignore[arg-type]
        except sqlite3.Error:
            log.exception("lost %d queued writes to %s", len(batch), self.path)
        self._last_write = time.monotonic()

    async def flush(self) -> None:
        """Wait until every write queued so far is in the file."""
        if self._closed or self._conn is None:
            return
        # The thread takes work in order: by this turn, earlier writers have run (one
        # waiting out its `linger` is told to hurry), and what they left is written now.
        self._hurry.set()
        write = asyncio.get_running_loop().run_in_executor(self._executor, self._write_now)
        # Shielded: a caller giving up must not cancel other callers' writes.
        await asyncio.shield(write)

    async def close(self) -> None:
        """Write what is queued, then close the file. Safe to call twice."""
        if self._closed:
            return
        if self._conn is None:  # never opened
            self._closed = True
            self._executor.shutdown(wait=False)
            return
        await self.flush()
        with self._lock:
            self._closed = True  # from now on `later` drops its row
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close_now)
        self._executor.shutdown(wait=False)

    def _close_now(self) -> None:
        self._write_now()  # queued between the flush and the close
        self._conn.close()  # type: ignore[union-attr]


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _write_batch(batch: list[Statement], conn: sqlite3.Connection) -> None:
    # Same statements go together through executemany; order within each is kept,
    # which is all that matters (counters are written as absolute values).
    grouped: dict[str, list[Sequence[Any]]] = {}
    for sql, params in batch:
        grouped.setdefault(sql, []).append(params)
    with transaction(conn):
        for sql, rows in grouped.items():
            conn.executemany(sql, rows)


def _connect(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StoreError(f"{path}: cannot create its folder ({err.strerror or err})") from err
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
    except sqlite3.Error as err:
        raise _open_error(path, err) from err
    try:
        _prepare(conn, path)
        _migrate(conn, path)
    except sqlite3.Error as err:
        conn.close()
        raise _open_error(path, err) from err
    except BaseException:
        conn.close()
        raise
    return conn


def _prepare(conn: sqlite3.Connection, path: Path) -> None:
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(f"{path}: cannot switch to WAL journal mode (got {mode})")
    # NORMAL is safe from corruption in WAL mode; a power cut may lose the last commits.
    conn.execute("PRAGMA synchronous=NORMAL")
    check = conn.execute("PRAGMA quick_check").fetchone()[0]
    if check != "ok":
        raise StoreError(f"{path}: the database is damaged ({check}); {_MOVE_ASIDE}")


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise StoreError(
            f"{path}: schema version {version} is newer than this aibot knows "
            f"({len(MIGRATIONS)}); run a newer aibot"
        )
    with transaction(conn):
        for statements in MIGRATIONS[version:]:
            for sql in statements:
                conn.execute(sql)
        # Written even with nothing to migrate: it proves at start-up that the file is writable.
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
    if version < len(MIGRATIONS):
        log.info("migrated %s from schema %d to %d", path, version, len(MIGRATIONS))


_MOVE_ASIDE = "move the file aside (keep it for recovery) and start again to begin a new one"


def _open_error(path: Path, err: sqlite3.Error) -> StoreError:
    if isinstance(err, sqlite3.OperationalError):
        return StoreError(
            f"{path}: cannot open or write the database ({err}); "
            "check that this user may write the file and its folder"
        )
    return StoreError(f"{path}: not a usable SQLite database ({err}); {_MOVE_ASIDE}")
