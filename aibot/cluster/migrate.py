"""Moving a bot from the embedded store to cluster mode: `migrate_to_redis`.

`python run.py --migrate-to-redis` calls it once, with `AIBOT_REDIS_URL` set,
before the cluster processes start. It reads the SQLite file (read-only; the
file is left as it was) and writes into Redis, in the layouts the cluster
parts read:

- today's gate counts (members', guilds', the pool's) into `SharedGate`'s
  `gate:used:<day>:<pool>` hashes, and every guild override (`/admin
  quota`) through `SharedGate.set_limits` (a server budget above the bot's,
  which an earlier version saved and never applied, is left out). Cooldowns
  are not copied: at most one cooldown period is forgiven.
- every conversation (its turns and the count of forgotten turns not yet
  told) through `SharedMemory.restore`.
- every unfinished durable job (a video not finished, its answer not out) onto its
  pool's job stream, oldest first, where a worker takes it up as it would a
  new one: a video whose provider task exists polls that task (no second
  one is paid for), and the answer reaches the member like any resumed job's.
  `<prefix>:migrated:<job id>` marks each job moved.

Running it twice is safe: a count becomes the larger of the two; a
conversation already in Redis, or a job moved before, is left alone.
"""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as redis

from aibot.cluster.connection import connect
from aibot.cluster.gate import SharedGate
from aibot.cluster.memory import SharedMemory, Turn
from aibot.cluster.sender import FAILURES
from aibot.cluster.streams import JobStream
from aibot.jobs import Job
from aibot.pools.video import resume
from aibot.settings import Settings, SettingsError
from aibot.settings_file import SettingsFile, load_env
from aibot.store.days import Calendar, Clock
from aibot.store.journal import UNFINISHED

__all__ = ["Migrated", "main", "migrate_to_redis"]

# How long after its day ends a day's counts stay readable (as `SharedGate`).
_USED_KEPT = 86_400
_EVERY_MEMBER, _EVERY_GUILD = 0, -1  # the embedded gate's markers

# KEYS: a day's counts. ARGV: field, count, lifetime (s). The larger count stays.
_AT_LEAST = """
local now = tonumber(redis.call('HGET', KEYS[1], ARGV[1])) or 0
if tonumber(ARGV[2]) > now then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
"""


@dataclass(frozen=True, slots=True)
class Migrated:
    """What was copied: gate counters, guild overrides, conversations (and
    their turns), unfinished video jobs; and what was already there."""

    gate_counts: int = 0
    overrides: int = 0
    conversations: int = 0
    turns: int = 0
    videos: int = 0
    skipped: int = 0


async def migrate_to_redis(
    settings: Settings,
    client: redis.Redis,
    *,
    path: Path | None = None,
    clock: Clock = time.time,
) -> Migrated:
    """Copy the SQLite store at `path` (default: the settings' data folder)
    into Redis under `settings.cluster.prefix`; see the module docstring."""
    if settings.cluster is None:
        raise ValueError("set AIBOT_REDIS_URL to say which Redis to migrate to")
    prefix = settings.cluster.prefix
    path = path or settings.data_dir / "aibot.db"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no store to migrate")
    calendar = Calendar(settings.timezone, clock)
    day, _, end = calendar.span(calendar.now())
    found = await asyncio.to_thread(_read, path, day)
    gate = SharedGate(client, prefix, settings, calendar)
    memory = SharedMemory(client, prefix, settings.chat_history_tokens)
    counts = await _copy_counts(client, prefix, day, math.ceil(end - clock()), found.counts)
    for guild, pool, cooldown, quota, budget in found.overrides:
        if pool not in settings.pools:
            continue
        bot_budget = settings.pools[pool].daily_budget
        if budget is not None and bot_budget and budget > bot_budget:
            budget = None  # never in force: the bot's budget counts every server together
        await gate.set_limits(
            guild, pool, cooldown=cooldown, daily_quota=quota, daily_budget=budget
        )
    conversations = turns = skipped = 0
    for (channel, user), (stored, dropped) in found.conversations.items():
        if await client.exists(*memory.keys(channel, user)):
            skipped += 1
            continue
        await memory.restore(channel, user, stored, dropped)
        conversations, turns = conversations + 1, turns + len(stored)
    videos = 0
    for row in found.jobs:
        if await _enqueue(client, prefix, row):
            videos += 1
        else:
            skipped += 1
    return Migrated(counts, len(found.overrides), conversations, turns, videos, skipped)


def main(settings_file: SettingsFile) -> int:
    """`--migrate-to-redis`: the migration with the settings of `settings_file`
    over the environment; the exit status (0 done, 1 failed, 2 settings)."""
    try:
        settings = Settings.from_env(load_env(settings_file.path))
    except SettingsError as error:
        print(error, file=sys.stderr)
        return 2
    if settings.cluster is None:
        print("aibot: set AIBOT_REDIS_URL to the Redis to migrate to.", file=sys.stderr)
        return 2
    try:
        done = asyncio.run(_migrate(settings))
    except FileNotFoundError as error:
        print(f"aibot: {error}.", file=sys.stderr)
        return 2
    except FAILURES as error:
        # The type only: the URL may hold a password.
        print(f"aibot: Redis failed ({type(error).__name__}); nothing is lost, try again.")
        return 1
    print(
        f"Migrated to Redis: {done.gate_counts} gate counters, {done.overrides} guild "
        f"overrides, {done.conversations} conversations ({done.turns} turns), "
        f"{done.videos} unfinished videos; {done.skipped} already there."
    )
    return 0


async def _migrate(settings: Settings) -> Migrated:
    client = connect(settings.cluster.redis_url)  # type: ignore[union-attr]
    try:
        return await migrate_to_redis(settings, client)
    finally:
        await client.aclose()


@dataclass(slots=True)
class _Found:
    counts: list[tuple[str, int, int, int]]  # (pool, guild, user, used) of today
    overrides: list[tuple[int, str, float | None, int | None, int | None]]
    conversations: dict[tuple[int, int], tuple[list[Turn], int]]
    jobs: list[tuple[str, str, str | None, str | None]]  # (id, job, task id, key)


def _read(path: Path, day: str) -> _Found:
    """Everything to copy, read from the file without changing it."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        counts = conn.execute(
            "SELECT pool, guild_id, user_id, used FROM gate_counts WHERE day = ? AND used > 0",
            (day,),
        ).fetchall()
        overrides = conn.execute(
            "SELECT guild_id, pool, cooldown, daily_quota, daily_budget FROM guild_limits"
        ).fetchall()
        conversations: dict[tuple[int, int], tuple[list[Turn], int]] = {}
        for channel, user, prompt, answer, tokens in conn.execute(
            "SELECT channel_id, user_id, prompt, answer, tokens FROM turns ORDER BY id"
        ):
            conversations.setdefault((channel, user), ([], 0))[0].append((prompt, answer, tokens))
        for channel, user, dropped in conn.execute(
            "SELECT channel_id, user_id, dropped FROM conversations WHERE dropped > 0"
        ):
            stored = conversations.get((channel, user), ([], 0))[0]
            conversations[channel, user] = (stored, dropped)
        jobs = conn.execute(
            f"SELECT id, job, task_id, key_fingerprint FROM jobs WHERE {UNFINISHED} "
            "ORDER BY created_at"
        ).fetchall()
    finally:
        conn.close()
    return _Found(counts, overrides, conversations, jobs)


async def _copy_counts(
    client: redis.Redis, prefix: str, day: str, left: int, counts: list[tuple[str, int, int, int]]
) -> int:
    at_least = client.register_script(_AT_LEAST)
    for pool, guild, user, used in counts:
        if guild == _EVERY_GUILD:
            name = "all"
        elif user == _EVERY_MEMBER:
            name = f"g:{guild}"
        else:
            name = f"m:{guild}:{user}"
        await at_least(
            keys=[f"{prefix}:gate:used:{day}:{pool}"], args=[name, used, left + _USED_KEPT]
        )
    return len(counts)


async def _enqueue(
    client: redis.Redis, prefix: str, row: tuple[str, str, str | None, str | None]
) -> bool:
    """One unfinished job onto its pool's stream (with its provider task, if it
    has one, to poll); False when it was moved before."""
    job_id, data, task_id, key = row
    if not await client.set(f"{prefix}:migrated:{job_id}", "1", nx=True):
        return False
    job = Job.from_dict(json.loads(data))
    if task_id and key:
        job = resume(job, task_id, key)
    await JobStream(client, job.pool or "video", prefix=prefix).add(job)
    return True
