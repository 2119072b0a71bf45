"""Every accepted job, journaled until it is answered; video jobs resumed after a
restart and delivered exactly once.

The life of a journaled job: `submitted` (accepted from the member, no provider
task yet) -> `accepted` (a video's provider task exists: its id and the
fingerprint of the key that made it, since only that key may poll it) ->
`progress` (stage codes) -> `finished`. A long answer's followups are added to
its job as they are posted (`posted`). After a restart, `unfinished` lists what
an earlier run left: a video with a task id resumes polling it (no new task, no
new charge), any other job runs again or is told the bot restarted. Whoever
delivers a video calls `mark_delivered` first and delivers only when it says True,
so a job resumed twice is still delivered once. A job is `finished` only once its
answer is out: a delivery claimed by a run that died before that (a crash while
the clip was uploading) is made again by the next run, which `unfinished` hands
the claim to. The member then sees the deferred message edited once more (a second
channel message only when the crash came after the upload and the token had
expired): a clip answered twice is better than one paid for and lost.

`submitted` and `finished` are written behind (`Database.later`): every job
passes through them, and a chat answered in a second must not wait for the
file twice. A crash loses at most the last instant's writes (such a job is
then not resumed, or runs again). Both are single statements that give the
right row whatever order a batch writes them in: a job finished before its
`submitted` row is written stays finished.

The job is stored as JSON with its interaction token, which a resumed job needs
to answer. Once finished, a video keeps its job without the token; any other job
keeps only its outcome. Nothing here logs a job.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from aibot.jobs import FOLLOWUPS, Job

from .days import Calendar
from .db import Database, transaction

__all__ = ["UNFINISHED", "Journal", "JournalEntry"]


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
        """Journal a job accepted from the member, before any provider task exists
        (written behind, without waiting for more writes to share its transaction: this
        returns at once)."""
        now = self._calendar.now()
        self._db.later(_SUBMITTED, (job.id, json.dumps(job.to_dict()), now, now), urgent=True)

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

    async def posted(self, job_id: str, message_ids: Sequence[int]) -> None:
        """The followups the job's answer posted so far: a run after a crash writes
        over them (see `aibot.jobs.FOLLOWUPS`)."""
        await self._db.flush()  # its `submitted` row first
        ids, now = json.dumps(list(message_ids)), self._calendar.now()
        await self._db.run(
            lambda conn: _update(conn, _POSTED, (f"$.args.{FOLLOWUPS}", ids, now, job_id))
        )

    async def finished(self, job_id: str, outcome: str = "done") -> None:
        """The job ended (done, or an error kind): it will not be resumed, and its
        interaction token is forgotten (written behind like `submitted`)."""
        now = self._calendar.now()
        self._db.later(_FINISHED, (job_id, now, now, now, outcome), urgent=True)

    async def unfinished(self) -> list[tuple[Job, str | None, str | None]]:
        """(job, provider task id or None, key fingerprint or None) of every job not
        finished, oldest first: what to resume after a restart. Their delivery
        claims (the earlier run's) pass to this run. Call it once, at start."""
        await self._db.flush()
        rows = await self._db.run(_take_up_unfinished)
        return [(Job.from_dict(json.loads(data)), task, key) for data, task, key in rows]

    async def mark_delivered(self, job_id: str) -> bool:
        """Claim the delivery of a job: True only the first time for that id."""
        now = self._calendar.now()
        return await self._db.run(lambda conn: _claim(conn, job_id, now))

    async def entry(self, job_id: str) -> JournalEntry | None:
        """The stored record of one job, or None if it was never journaled (or is
        a finished job other than a video, of which only the outcome is kept)."""
        await self._db.flush()
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
_POSTED = (
    "UPDATE jobs SET job = json_set(job, ?, json(?)), updated_at = ? "
    "WHERE id = ? AND finished_at IS NULL AND job != 'null'"
)
# `accepted` or `finished` may reach the file first (writes behind are batched by
# statement): then they win. A job journaled again before its task exists (a video
# whose picture was downloaded) replaces the job it stood for.
_SUBMITTED = (
    "INSERT INTO jobs (id, job, state, created_at, updated_at) VALUES (?, ?, 'submitted', ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET job = excluded.job, updated_at = excluded.updated_at "
    "WHERE finished_at IS NULL AND task_id IS NULL"
)
# A finished job: a video keeps its job without the token (its journal entry is
# looked at later); any other job only its outcome. Inserted when no row is there
# yet, so that a `submitted` written after it changes nothing.
_FINISHED = (
    "INSERT INTO jobs (id, job, state, created_at, updated_at, finished_at, outcome) "
    "VALUES (?, 'null', 'finished', ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
    "job = CASE WHEN json_extract(job, '$.command') = 'video' "
    "THEN json_set(job, '$.token', '') ELSE 'null' END, "
    "state = 'finished', finished_at = COALESCE(finished_at, excluded.finished_at), "
    "outcome = excluded.outcome, updated_at = excluded.updated_at"
)


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


# A job not finished, with the job itself (not a bare delivery record).
UNFINISHED = "finished_at IS NULL AND job != 'null'"


def _take_up_unfinished(conn: sqlite3.Connection) -> list[tuple[str, str | None, str | None]]:
    with transaction(conn):
        rows = conn.execute(
            f"SELECT job, task_id, key_fingerprint FROM jobs WHERE {UNFINISHED} ORDER BY created_at"
        ).fetchall()
        conn.execute(f"UPDATE jobs SET delivered_at = NULL WHERE {UNFINISHED}")
    return rows


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
