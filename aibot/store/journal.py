"""Durable long jobs (video): journaled when accepted, resumed after a restart,
delivered exactly once.

The life of a journaled job: `submitted` (accepted from the member, no provider
task yet) -> `accepted` (the provider task exists: its id and the fingerprint of
the key that made it, since only that key may poll it) -> `progress` (stage
codes) -> `finished`. After a restart, `unfinished` lists what to resume: a job
with a task id resumes polling it (no new task, no new charge), one without
starts it. Whoever delivers calls `mark_delivered` first and delivers only when
it says True, so a job resumed twice is still delivered once.

The job is stored as JSON with its interaction token, which a resumed job needs
to answer; the token is blanked once the job is finished. Nothing here logs a job.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from aibot.jobs import Job

from .days import Calendar
from .db import Database, transaction

__all__ = ["Journal", "JournalEntry"]


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """A journaled job as stored: its state, provider task and whether it is done."""

    job: Job
    state: str
    task_id: str | None
    key_fingerprint: str | None
    finished: bool
    outcome: str | None
    delivered: bool


class Journal:
    """Implements the video pool's `journal` protocol, plus resume and deliver-once."""

    def __init__(self, db: Database, calendar: Calendar) -> None:
        self._db = db
        self._calendar = calendar

    async def submitted(self, job: Job) -> None:
        """Journal a job accepted from the member, before any provider task exists."""
        data, now = json.dumps(job.to_dict()), self._calendar.now()
        await self._db.run(lambda conn: _upsert(conn, job.id, data, "submitted", None, None, now))

    async def accepted(self, job: Job, task_id: str, key_fingerprint: str) -> None:
        """The provider made a task for the job: keep its id and the key's fingerprint."""
        data, now = json.dumps(job.to_dict()), self._calendar.now()
        await self._db.run(
            lambda conn: _upsert(conn, job.id, data, "accepted", task_id, key_fingerprint, now)
        )

    async def progress(self, job_id: str, state: str) -> None:
        """The provider task moved on (a stage code such as processing)."""
        params = (state, self._calendar.now(), job_id)
        await self._db.run(lambda conn: _update(conn, _PROGRESS, params))

    async def finished(self, job_id: str, outcome: str = "done") -> None:
        """The job ended (done, or an error kind): it will not be resumed, and its
        interaction token is forgotten."""
        now = self._calendar.now()
        await self._db.run(lambda conn: _finish(conn, job_id, outcome, now))

    async def unfinished(self) -> list[tuple[Job, str | None, str | None]]:
        """(job, provider task id or None, key fingerprint or None) of every job
        neither finished nor delivered, oldest first: what to resume after a restart."""
        rows = await self._db.run(
            lambda conn: conn.execute(
                "SELECT job, task_id, key_fingerprint FROM jobs "
                "WHERE finished_at IS NULL AND delivered_at IS NULL ORDER BY created_at"
            ).fetchall()
        )
        return [(Job.from_dict(json.loads(data)), task, key) for data, task, key in rows]

    async def mark_delivered(self, job_id: str) -> bool:
        """Claim the delivery of a job: True only the first time for that id."""
        now = self._calendar.now()
        return await self._db.run(lambda conn: _claim(conn, job_id, now))

    async def entry(self, job_id: str) -> JournalEntry | None:
        """The stored record of one job, or None if it was never journaled."""
        row = await self._db.run(
            lambda conn: conn.execute(
                "SELECT job, state, task_id, key_fingerprint, finished_at, outcome, delivered_at "
                "FROM jobs WHERE id = ?",
                (job_id,),
            ).fetchone()
        )
        if row is None or row[0] == "null":
            return None
        data, state, task_id, key, finished_at, outcome, delivered_at = row
        job = Job.from_dict(json.loads(data))
        return JournalEntry(
            job, state, task_id, key, finished_at is not None, outcome, delivered_at is not None
        )


_PROGRESS = "UPDATE jobs SET state = ?, updated_at = ? WHERE id = ? AND finished_at IS NULL"


def _update(conn: sqlite3.Connection, sql: str, params: tuple) -> None:
    with transaction(conn):
        conn.execute(sql, params)


def _upsert(
    conn: sqlite3.Connection,
    job_id: str,
    data: str,
    state: str,
    task_id: str | None,
    key: str | None,
    now: float,
) -> None:
    _update(
        conn,
        "INSERT INTO jobs (id, job, state, task_id, key_fingerprint, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET job = excluded.job, "
        "state = excluded.state, task_id = COALESCE(excluded.task_id, task_id), "
        "key_fingerprint = COALESCE(excluded.key_fingerprint, key_fingerprint), "
        "updated_at = excluded.updated_at WHERE finished_at IS NULL",
        (job_id, data, state, task_id, key, now, now),
    )


def _finish(conn: sqlite3.Connection, job_id: str, outcome: str, now: float) -> None:
    with transaction(conn):
        row = conn.execute("SELECT job FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            return
        data = json.loads(row[0])
        if isinstance(data, dict):
            data["token"] = ""  # a finished job never needs to answer again
        conn.execute(
            "UPDATE jobs SET job = ?, state = 'finished', finished_at = COALESCE(finished_at, ?), "
            "outcome = ?, updated_at = ? WHERE id = ?",
            (json.dumps(data), now, outcome, now, job_id),
        )


def _claim(conn: sqlite3.Connection, job_id: str, now: float) -> bool:
    with transaction(conn):
        claimed = conn.execute(
            "UPDATE jobs SET delivered_at = ?, updated_at = ? "
            "WHERE id = ? AND delivered_at IS NULL",
            (now, now, job_id),
        ).rowcount
        if claimed:
            return True
        if conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone():
            return False
        # A job that was never journaled (an image, say) gets a bare record so
        # that the guard holds for it too.
        conn.execute(
            "INSERT INTO jobs (id, job, state, created_at, updated_at, delivered_at) "
            "VALUES (?, 'null', 'delivered', ?, ?, ?)",
            (job_id, now, now, now),
        )
    return True
