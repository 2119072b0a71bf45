"""Moving a bot from the embedded store into Redis (aibot/cluster/migrate.py): its
quotas used today, guild overrides, conversations and unfinished videos come along."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from aibot import cli
from aibot.cluster.connection import connect
from aibot.cluster.gate import SharedGate
from aibot.cluster.memory import SharedMemory
from aibot.cluster.migrate import migrate_to_redis
from aibot.cluster.streams import JobStream
from aibot.jobs import Job, LimitReached
from aibot.pools.video import RESUME_KEY, RESUME_TASK
from aibot.settings import Settings
from aibot.store.days import Calendar
from tests.fixtures.redis_server import RedisServer

GUILD, MEMBER, CHANNEL = 2001, 42, 700


def job(command: str, user: int = MEMBER) -> Job:
    return Job(
        command=command, args={}, user_id=user, channel_id=CHANNEL, guild_id=GUILD, pool=command
    )


async def test_quotas_memory_and_unfinished_videos_move_to_redis(
    redis_server: RedisServer, store_opener, store_clock, tmp_path
) -> None:
    env = {
        "AIBOT_REDIS_URL": redis_server.url,
        "AIBOT_REDIS_PREFIX": "bot",
        "AIBOT_CHAT_DAILY_QUOTA": "10",
        "AIBOT_CHAT_COOLDOWN": "0",
        "AIBOT_CHAT_HISTORY_TOKENS": "200",
    }
    store = await store_opener(env)
    for _ in range(3):
        await store.gate.take(job("chat"))
    await store.gate.take(job("chat", user=43))
    await store.gate.set_limits(GUILD, "image", daily_quota=5, cooldown=2.5)
    await store.memory.remember(job("chat"), "my name is Jiwoo", "Nice to meet you!")
    await store.memory.remember(job("chat"), "what is my name?", "Jiwoo.")
    expected_memory = await store.memory.history(job("chat"))
    video, done = job("video"), job("video")
    video.token = "interaction-token"
    await store.journal.submitted(video)
    await store.journal.accepted(video, "task-1", "fp-0123456789abcdef")
    await store.journal.submitted(done)
    await store.journal.finished(done.id)
    await store.close()

    settings = Settings.from_env({"AIBOT_DATA_DIR": str(tmp_path), **env})
    client = connect(redis_server.url)
    migrated = await migrate_to_redis(settings, client, path=store.path, clock=store_clock)
    assert (migrated.overrides, migrated.conversations, migrated.turns) == (1, 1, 2)
    assert migrated.videos == 1

    gate = SharedGate(client, "bot", settings, Calendar(settings.timezone, store_clock))
    assert await gate.usage(GUILD, MEMBER, "chat") == (3, 10)
    assert await gate.usage(GUILD, 43, "chat") == (1, 10)
    limits = await gate.limits(GUILD, "image")
    assert (limits.daily_quota, limits.cooldown) == (5, 2.5)
    for _ in range(7):
        await gate.take(job("chat"))
    with pytest.raises(LimitReached):
        await gate.take(job("chat"))  # 3 before the move + 7 after = the quota of 10

    memory = SharedMemory(client, "bot", settings.chat_history_tokens)
    assert await memory.history(job("chat")) == expected_memory

    # The unfinished video waits on its pool's stream for a worker, with its task to poll.
    [delivery] = await JobStream(client, "video", prefix="bot").take("worker-1", 10)
    resumed = delivery.job
    assert (resumed.id, resumed.token, resumed.command) == (video.id, "interaction-token", "video")
    assert resumed.args[RESUME_TASK] == "task-1"
    assert resumed.args[RESUME_KEY] == "fp-0123456789abcdef"

    again = await migrate_to_redis(settings, client, path=store.path, clock=store_clock)
    assert (again.conversations, again.videos, again.skipped) == (0, 0, 2)
    assert await gate.usage(GUILD, MEMBER, "chat") == (10, 10)  # counts never go down
    await client.aclose()


async def test_a_server_budget_saved_above_the_bots_is_left_out(
    redis_server: RedisServer, store_opener, store_clock, tmp_path
) -> None:
    """An earlier version saved it (and never applied it); the cluster's gate refuses
    it: the migration leaves it out and moves the rest."""
    env = {
        "AIBOT_REDIS_URL": redis_server.url,
        "AIBOT_REDIS_PREFIX": "bot",
        "AIBOT_IMAGE_DAILY_BUDGET": "3",
    }
    store = await store_opener(env)
    await store.close()
    with sqlite3.connect(store.path) as conn:
        conn.execute(
            "INSERT INTO guild_limits (guild_id, pool, cooldown, daily_quota, daily_budget, "
            "updated_at) VALUES (?, 'image', 2.5, NULL, 50, 0)",
            (GUILD,),
        )
    settings = Settings.from_env({"AIBOT_DATA_DIR": str(tmp_path), **env})
    client = connect(redis_server.url)
    migrated = await migrate_to_redis(settings, client, path=store.path, clock=store_clock)
    assert migrated.overrides == 1
    gate = SharedGate(client, "bot", settings, Calendar(settings.timezone, store_clock))
    limits = await gate.limits(GUILD, "image")
    assert (limits.cooldown, limits.daily_budget) == (2.5, 3)
    await client.aclose()


async def test_migrating_needs_a_redis_url_and_a_store(redis_server: RedisServer, tmp_path) -> None:
    client = connect(redis_server.url)
    with pytest.raises(ValueError, match="AIBOT_REDIS_URL"):
        await migrate_to_redis(Settings.from_env({"AIBOT_DATA_DIR": str(tmp_path)}), client)
    settings = Settings.from_env(
        {"AIBOT_DATA_DIR": str(tmp_path), "AIBOT_REDIS_URL": redis_server.url}
    )
    with pytest.raises(FileNotFoundError):
        await migrate_to_redis(settings, client)
    await client.aclose()


async def test_the_command_line_migrates_and_says_what_it_copied(
    redis_server: RedisServer, store_opener, tmp_path, capsys
) -> None:
    store = await store_opener()
    await store.memory.remember(job("chat"), "hello", "hi")
    await store.close()
    env_file = tmp_path / "cluster.env"
    env_file.write_text(f"AIBOT_DATA_DIR={tmp_path}\nAIBOT_REDIS_URL={redis_server.url}\n")

    status = await asyncio.to_thread(cli.run, ["--migrate-to-redis", "--env-file", str(env_file)])
    assert status == 0
    assert "1 conversations (1 turns)" in capsys.readouterr().out
