"""The database schema as forward migrations.

`MIGRATIONS[n]` takes a database from `PRAGMA user_version` n to n + 1. A
migration is never edited once released: a change is a new entry at the end.
Guild id 0 stands for direct messages; in gate counters user id 0 means
"every member of the guild" and guild id -1 "every guild", so every key
column is NOT NULL and indexable.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS"]

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        # Gate counters of the current day: one row per member, per guild, per pool.
        """CREATE TABLE gate_counts (
            day TEXT NOT NULL, pool TEXT NOT NULL, guild_id INTEGER NOT NULL,
            user_id INTEGER NOT NULL, used INTEGER NOT NULL,
            PRIMARY KEY (day, pool, guild_id, user_id)
        ) WITHOUT ROWID""",
        """CREATE TABLE guild_limits (
            guild_id INTEGER NOT NULL, pool TEXT NOT NULL,
            cooldown REAL, daily_quota INTEGER, daily_budget INTEGER,
            updated_at REAL NOT NULL,
            PRIMARY KEY (guild_id, pool)
        )""",
        """CREATE TABLE usage (
            id INTEGER PRIMARY KEY, at REAL NOT NULL, day TEXT NOT NULL,
            job_id TEXT NOT NULL, guild_id INTEGER NOT NULL, user_id INTEGER NOT NULL,
            pool TEXT NOT NULL, command TEXT NOT NULL, provider TEXT NOT NULL,
            key_id TEXT NOT NULL, outcome TEXT NOT NULL, latency REAL NOT NULL,
            tokens_in INTEGER NOT NULL, tokens_out INTEGER NOT NULL, images INTEGER NOT NULL,
            video_seconds REAL NOT NULL, cost REAL NOT NULL
        )""",
        "CREATE INDEX usage_guild_day ON usage (guild_id, day)",
        "CREATE INDEX usage_day ON usage (day)",
        """CREATE TABLE admin_actions (
            id INTEGER PRIMARY KEY, at REAL NOT NULL, guild_id INTEGER NOT NULL,
            user_id INTEGER NOT NULL, action TEXT NOT NULL, detail TEXT NOT NULL
        )""",
        "CREATE INDEX admin_actions_guild ON admin_actions (guild_id, id)",
        # One row per remembered exchange; `dropped` counts turns forgotten
        # since the member was last told.
        """CREATE TABLE turns (
            id INTEGER PRIMARY KEY, channel_id INTEGER NOT NULL, user_id INTEGER NOT NULL,
            at REAL NOT NULL, prompt TEXT NOT NULL, answer TEXT NOT NULL,
            tokens INTEGER NOT NULL
        )""",
        "CREATE INDEX turns_conversation ON turns (channel_id, user_id, id)",
        """CREATE TABLE conversations (
            channel_id INTEGER NOT NULL, user_id INTEGER NOT NULL,
            dropped INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (channel_id, user_id)
        )""",
        # Durable long jobs (video): the job as JSON, including its interaction
        # token, until it is finished.
        """CREATE TABLE jobs (
            id TEXT PRIMARY KEY, job TEXT NOT NULL, state TEXT NOT NULL,
            task_id TEXT, key_fingerprint TEXT,
            created_at REAL NOT NULL, updated_at REAL NOT NULL,
            finished_at REAL, outcome TEXT, delivered_at REAL
        )""",
        """CREATE INDEX jobs_open ON jobs (created_at)
            WHERE finished_at IS NULL AND delivered_at IS NULL""",
    ),
    (
        # The admin rooms (aibot/discord/rooms.py): the one message a room keeps
        # edited in each server (the live status), and what was posted or done
        # once a day (the daily summary per server, the daily backup as server 0).
        """CREATE TABLE room_messages (
            room TEXT NOT NULL, guild_id INTEGER NOT NULL,
            channel_id INTEGER NOT NULL, message_id INTEGER NOT NULL,
            PRIMARY KEY (room, guild_id)
        )""",
        """CREATE TABLE room_posts (
            room TEXT NOT NULL, guild_id INTEGER NOT NULL, day TEXT NOT NULL,
            at REAL NOT NULL,
            PRIMARY KEY (room, guild_id, day)
        )""",
    ),
    (
        # A job is counted once (cluster mode: a reclaimed job may report its outcome
        # twice, and the gateway's follower may record a row again after a crash):
        # rows are inserted OR IGNOREd on this index. A file from before kept at most
        # one row per job anyway; should it hold more, the first is kept.
        "DELETE FROM usage WHERE id NOT IN (SELECT MIN(id) FROM usage GROUP BY job_id)",
        "CREATE UNIQUE INDEX usage_job ON usage (job_id)",
    ),
    (
        # How many times /reset forgot a conversation: an answer recalled before a
        # reset is not remembered after it.
        "ALTER TABLE conversations ADD COLUMN resets INTEGER NOT NULL DEFAULT 0",
    ),
    (
        # When each member last took a use of a pool (wall clock): their cooldown
        # runs from it across restarts.
        """CREATE TABLE gate_takes (
            pool TEXT NOT NULL, guild_id INTEGER NOT NULL, user_id INTEGER NOT NULL,
            at REAL NOT NULL,
            PRIMARY KEY (pool, guild_id, user_id)
        ) WITHOUT ROWID""",
    ),
)
