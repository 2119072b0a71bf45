"""The store's SQLite file: writes behind, gathered in a burst, at once after a quiet spell."""

from __future__ import annotations

import asyncio
import logging
import sqlite3

from aibot.store.db import Database

# Longer than any test here runs: a writer waiting it out would hang the test.
LONG_LINGER = 60.0


async def _opened(tmp_path, *, linger: float) -> tuple[Database, list[str]]:
    """A database with a table `t` of its own, and the COMMITs it runs from now on."""
    db = Database(tmp_path / "aibot.db", linger=linger)
    await db.connect()
    commits: list[str] = []

    def watch(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE t (n INTEGER)")
        conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)

    await db.run(watch)
    return db, commits


def _rows(tmp_path) -> list[int]:
    """What the file holds, read over a connection of its own."""
    with sqlite3.connect(tmp_path / "aibot.db") as conn:
        return [n for (n,) in conn.execute("SELECT n FROM t ORDER BY n")]


async def test_writes_that_keep_coming_share_a_transaction(tmp_path):
    db, commits = await _opened(tmp_path, linger=LONG_LINGER)
    for n in range(20):
        db.later("INSERT INTO t (n) VALUES (?)", (n,))
        await asyncio.sleep(0.005)  # one a turn of the loop, as a burst's commands come
    async with asyncio.timeout(10):  # a flush does not wait out the linger
        await db.flush()
    assert _rows(tmp_path) == list(range(20))
    # The first write went at once (with any that came before the thread took it);
    # all the others waited for the flush together. Without the linger: about 20.
    assert 1 <= len(commits) <= 2
    await db.close()


async def test_a_write_after_a_quiet_spell_reaches_the_file_at_once(tmp_path):
    db, _commits = await _opened(tmp_path, linger=LONG_LINGER)
    db.later("INSERT INTO t (n) VALUES (?)", (7,))
    async with asyncio.timeout(10):  # far less than the linger
        while not _rows(tmp_path):
            await asyncio.sleep(0.01)
    assert _rows(tmp_path) == [7]
    await db.close()


async def test_a_close_writes_what_waits_out_the_linger(tmp_path):
    db, _commits = await _opened(tmp_path, linger=LONG_LINGER)
    db.later("INSERT INTO t (n) VALUES (?)", (1,))
    await db.flush()
    db.later("INSERT INTO t (n) VALUES (?)", (2,))  # within the linger of the first
    async with asyncio.timeout(10):
        await db.close()
    assert _rows(tmp_path) == [1, 2]


async def test_an_urgent_write_does_not_wait_out_the_linger(tmp_path):
    db, _commits = await _opened(tmp_path, linger=LONG_LINGER)
    db.later("INSERT INTO t (n) VALUES (?)", (1,))
    await db.flush()
    db.later("INSERT INTO t (n) VALUES (?)", (2,))  # would wait out the linger
    db.later("INSERT INTO t (n) VALUES (?)", (3,), urgent=True)  # a job accepted
    async with asyncio.timeout(10):  # far less than the linger
        while len(_rows(tmp_path)) < 3:
            await asyncio.sleep(0.01)
    assert _rows(tmp_path) == [1, 2, 3]
    await db.close()


async def test_a_write_after_the_close_is_dropped_and_said_so(tmp_path, caplog):
    db, _commits = await _opened(tmp_path, linger=LONG_LINGER)
    await db.close()
    with caplog.at_level(logging.WARNING, logger="aibot.store"):
        db.later("INSERT INTO t (n) VALUES (?)", (4,))
    assert [r.getMessage() for r in caplog.records] == [
        "store closed, a write was dropped: INSERT INTO t (n) VALUES (?)"
    ]
    assert _rows(tmp_path) == []
