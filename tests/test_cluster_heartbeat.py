"""Heartbeats on a real Redis: every live process visible with what it runs, a
killed one gone once its beat expires, and beating resumes after Redis comes back;
the gateway reads a newer version's beat, and outlives one it cannot read."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from aibot.cluster.connection import connect
from aibot.cluster.heartbeat import Heartbeat, NodeInfo, live_nodes, pool_served
from aibot.cluster.queue import RedisQueue
from aibot.cluster.views import snapshot_to_dict
from aibot.settings import Settings
from aibot.snapshots import PoolSnapshot
from tests.cluster_processes import eventually, spawn
from tests.fixtures import status
from tests.fixtures.redis_server import RedisServer, start_redis

PREFIX = "t"


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = connect(redis_server.url)
    yield client
    await client.aclose()


def video_worker() -> NodeInfo:
    return NodeInfo(
        "worker-1",
        pools=("video",),
        free_slots={"video": 2},
        version="0.1.0",
        started_at=1_700_000_000.0,
    )


async def test_a_live_process_is_seen_with_what_it_runs_and_gone_at_once_on_stop(
    redis: Redis,
) -> None:
    gateway = NodeInfo("gateway-1", shards=(0, 1), version="0.1.0", started_at=1.0)
    async with (
        Heartbeat(redis, video_worker, prefix=PREFIX),
        Heartbeat(redis, lambda: gateway, prefix=PREFIX) as beating,
    ):
        assert await live_nodes(redis, prefix=PREFIX) == [gateway, video_worker()]
        assert await pool_served(redis, "video", prefix=PREFIX)
        assert not await pool_served(redis, "image", prefix=PREFIX)
        await beating.stop()
        assert await live_nodes(redis, prefix=PREFIX) == [video_worker()]
    assert await live_nodes(redis, prefix=PREFIX) == []
    assert not await pool_served(redis, "video", prefix=PREFIX)


async def test_two_live_processes_of_one_name_are_told_about(
    redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    first = Heartbeat(redis, video_worker, prefix=PREFIX)
    await first.beat()
    await first.beat()  # its own beat there: nothing to say
    restarted = Heartbeat(redis, video_worker, prefix=PREFIX)
    await restarted.beat()  # the first one's beat there, as after a restart
    assert "also named" not in caplog.text
    await first.beat()  # ... but the first one beats on: two processes, one name
    [told] = [r for r in caplog.records if "also named worker-1 (AIBOT_NODE)" in r.getMessage()]
    assert told.levelno == logging.ERROR
    await restarted.beat()
    await first.beat()
    assert caplog.text.count("also named") == 2  # once by each, not at every beat
    assert await live_nodes(redis, prefix=PREFIX) == [video_worker()]


async def test_each_beat_carries_the_current_free_slots(redis: Redis) -> None:
    free = {"chat": 4}

    def info() -> NodeInfo:
        return NodeInfo("worker-1", pools=("chat",), free_slots=dict(free))

    async with Heartbeat(redis, info, prefix=PREFIX, interval=0.05, ttl=1.0):
        free["chat"] = 1

        async def updated() -> bool:
            [node] = await live_nodes(redis, prefix=PREFIX)
            return node.free_slots == {"chat": 1}

        await eventually(updated, what="the next beat saying 1 free slot")


async def test_a_killed_worker_disappears_when_its_beat_expires(
    redis: Redis, redis_server: RedisServer
) -> None:
    worker = spawn(
        "tests.cluster_worker", redis_server.url,
        "--consumer", "video-worker", "--pool", "video", "--prefix", PREFIX, "--heartbeat",
    )  # fmt: skip
    try:
        worker.wait_line("ready")
        assert [n.node for n in await live_nodes(redis, prefix=PREFIX)] == ["video-worker"]
        assert await pool_served(redis, "video", prefix=PREFIX)
        worker.kill()

        async def video_down() -> bool:
            return not await pool_served(redis, "video", prefix=PREFIX)

        await eventually(video_down, what="the killed worker's beat expiring")
        assert await live_nodes(redis, prefix=PREFIX) == []
        assert await redis.smembers(f"{PREFIX}:nodes") == set()
    finally:
        worker.stop()


async def test_beating_resumes_by_itself_when_redis_comes_back(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    beats = 0

    async def count_beat() -> None:
        nonlocal beats
        beats += 1

    client = connect(redis_server.url)
    heartbeat = Heartbeat(
        client, video_worker, prefix=PREFIX, interval=0.05, ttl=1.0, on_beat=[count_beat]
    )
    restarted = None
    try:
        await heartbeat.start()
        redis_server.stop()  # its data goes with it: no persistence
        folder = tmp_path / "again"
        folder.mkdir()
        restarted = start_redis(folder, port=redis_server.port)
        beats_then = beats

        async def seen_again() -> bool:
            with contextlib.suppress(Exception):
                return await live_nodes(client, prefix=PREFIX) == [video_worker()]
            return False

        await eventually(seen_again, what="the node back in the new server")
        assert beats > beats_then
    finally:
        await heartbeat.stop()
        await client.aclose()
        if restarted is not None:
            restarted.stop()


def test_the_expiry_must_outlast_the_interval() -> None:
    with pytest.raises(ValueError, match="must exceed"):
        Heartbeat(None, video_worker, interval=2.0, ttl=2.0)  # type: ignore[arg-type]


def newer(snapshot: PoolSnapshot) -> dict[str, Any]:
    """`snapshot` as a newer version would beat it: a field more in the pool and each key."""
    data = snapshot_to_dict(snapshot) | {"wait_p99_ms": 1.0}
    for ring in data["rings"]:
        ring["keys"] = [key | {"spent_today": 3} for key in ring["keys"]]
    return data


async def test_the_gateway_reads_a_newer_beat_and_outlives_one_it_cannot_read(
    redis_server: RedisServer, redis: Redis, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings.from_env(
        {
            "AIBOT_REDIS_URL": redis_server.url,
            "AIBOT_REDIS_PREFIX": PREFIX,
            "AIBOT_DATA_DIR": str(tmp_path),
        }
    )
    client = connect(redis_server.url)
    queue = RedisQueue(client, settings, refresh=0.05)
    unreadable = NodeInfo("worker-old", pools=("image",), snapshots=({"name": "image"},))
    chat = status.pools()[0]
    upgraded = NodeInfo("worker-new", pools=("chat",), snapshots=(newer(chat),))

    async def refresh_failed() -> bool:
        return "the cluster refresh failed" in caplog.text

    async def chat_seen() -> bool:
        return queue.pools() == ("chat",) and queue.snapshots()[0].rings == chat.rings

    await queue.start()
    try:
        with caplog.at_level(logging.ERROR, logger="aibot.cluster"):
            async with Heartbeat(redis, lambda: unreadable, prefix=PREFIX):
                await eventually(refresh_failed, what="the unreadable beat met")
        async with Heartbeat(redis, lambda: upgraded, prefix=PREFIX):
            await eventually(chat_seen, what="the newer beat read, the refresh still going")
    finally:
        await queue.aclose()
        await client.aclose()
