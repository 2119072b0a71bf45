"""Gateway shards over several processes, on a real Redis: the count pinned, ids
claimed once, a clash refused naming the holder, a standby taking over, and
IDENTIFYs of one bucket never closer than the window, across processes."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path

import discord
import pytest
from redis.asyncio import Redis

from aibot.cluster.connection import connect
from aibot.cluster.shards import IdentifyLock, ShardClaims, ShardConflict, shard_words
from aibot.sandbox.fake_discord import FakeDiscord
from aibot.settings import Settings, SettingsError
from tests.cluster_processes import Process, eventually, spawn
from tests.fixtures.redis_server import RedisServer
from tests.test_cluster_modes import check

PREFIX = "t"


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = connect(redis_server.url)
    yield client
    await client.aclose()


def claims(redis: Redis, node: str, ids: list[int], count: int = 4, **kw: object) -> ShardClaims:
    return ShardClaims(redis, node, ids, count, prefix=PREFIX, **kw)  # type: ignore[arg-type]


async def test_overlapping_shards_are_refused_naming_the_holder(redis: Redis) -> None:
    await claims(redis, "gateway-a", [0, 1]).claim()
    with pytest.raises(ShardConflict, match="shard 1 held by gateway-a") as refused:
        await claims(redis, "gateway-b", [1, 2]).claim()
    assert refused.value.holder == "gateway-a"
    # Nothing half-claimed: shard 2 is still free.
    await claims(redis, "gateway-c", [2, 3]).claim()


async def test_another_shard_count_is_refused_with_both_counts(redis: Redis) -> None:
    await claims(redis, "gateway-a", [0, 1], count=4).claim()
    with pytest.raises(ShardConflict, match=r"run 4 shards.*AIBOT_SHARD_COUNT=8"):
        await claims(redis, "gateway-b", [4, 5], count=8).claim()


async def test_released_shards_can_be_claimed_at_once(redis: Redis) -> None:
    first = claims(redis, "gateway-a", [0, 1])
    await first.claim()
    await first.release()
    await claims(redis, "gateway-b", [0, 1]).claim()
    await first.release()  # releases only what it still holds
    with pytest.raises(ShardConflict, match="gateway-b"):
        await claims(redis, "gateway-c", [1]).claim()


async def test_a_gateway_that_stalled_past_its_claims_learns_it_lost_them(redis: Redis) -> None:
    lost: list[tuple[int, ...]] = []
    stalled = claims(redis, "gateway-a", [0, 1], ttl=0.2, on_lost=lost.append)
    await stalled.claim()

    async def expired() -> bool:
        return await redis.exists(f"{PREFIX}:shard:0") == 0

    await eventually(expired, what="the claims expiring")
    await claims(redis, "standby", [1]).claim()
    assert await stalled.renew() == (1,)
    assert lost == [(1,)]
    assert await redis.get(f"{PREFIX}:shard:0") == "gateway-a"  # taken back, nobody had it


def whole(redis: Redis, node: str, **kw: object) -> ShardClaims:
    """The claims of a gateway without AIBOT_SHARD_IDS: the whole bot."""
    return ShardClaims(redis, node, None, None, prefix=PREFIX, **kw)  # type: ignore[arg-type]


async def test_a_second_gateway_without_shard_ids_is_refused_naming_the_first(
    redis: Redis,
) -> None:
    await whole(redis, "gateway-a").claim()
    with pytest.raises(ShardConflict, match="every shard held by gateway-a") as refused:
        await whole(redis, "gateway-b").claim()
    assert refused.value.holder == "gateway-a"
    assert "other AIBOT_SHARD_IDS" not in str(refused.value), "ids would clash on the count"


async def test_gateways_with_shard_ids_and_one_without_never_run_side_by_side(
    redis: Redis,
) -> None:
    first = whole(redis, "gateway-a")
    await first.claim()
    with pytest.raises(ShardConflict, match="without AIBOT_SHARD_IDS runs every shard"):
        await claims(redis, "gateway-b", [0, 1]).claim()
    await first.release()
    await claims(redis, "gateway-b", [0, 1], count=4).claim()
    with pytest.raises(ShardConflict, match=r"run 4 shards.*AIBOT_SHARD_COUNT=4"):
        await whole(redis, "gateway-c").claim()


async def test_a_whole_bot_standby_takes_over_and_the_stalled_gateway_learns_it(
    redis: Redis,
) -> None:
    lost: list[tuple[int, ...]] = []
    stalled = whole(redis, "gateway-a", ttl=0.2, on_lost=lost.append)
    await stalled.claim()
    assert await stalled.renew() is None, "nothing lost yet"
    standby = whole(redis, "gateway-b")
    await asyncio.wait_for(standby.claim(wait=True, poll=0.05), 10)  # once the claim expired

    assert await stalled.renew() == ()
    assert lost == [()]
    assert shard_words(lost[0]) == "every shard"
    assert await redis.get(f"{PREFIX}:shard:every") == "gateway-b"


def test_shard_ids_must_be_below_the_count() -> None:
    with pytest.raises(ValueError, match=r"outside 0\.\.3"):
        ShardClaims(None, "gateway-a", [3, 4], 4)  # type: ignore[arg-type]


async def test_the_lock_is_what_discord_py_calls_before_each_identify(redis: Redis) -> None:
    client = discord.AutoShardedClient(intents=discord.Intents.none(), shard_count=2)
    lock = IdentifyLock(redis, prefix=PREFIX, window=0.2, holder="gateway-a")
    client.before_identify_hook = lock  # type: ignore[method-assign]
    await client.before_identify_hook(0, initial=True)
    assert await redis.get(f"{PREFIX}:identify:0") == "gateway-a:0"
    assert 0 < await redis.pttl(f"{PREFIX}:identify:0") <= 200


# Across real processes: tests/cluster_gateway.py is the gateway.


def gateway(redis_server: RedisServer, node: str, shards: str, *options: str) -> Process:
    return spawn(
        "tests.cluster_gateway", redis_server.url,
        "--node", node, "--shards", shards, "--prefix", PREFIX, *options,
    )  # fmt: skip


async def test_a_second_gateway_with_overlapping_shards_refuses_naming_the_first(
    redis_server: RedisServer,
) -> None:
    first = gateway(redis_server, "gateway-a", "0,1", "--count", "4", "--window", "0.1")
    try:
        first.wait_line("ready")
        second = gateway(redis_server, "gateway-b", "1,2", "--count", "4")
        code, err = second.finish()
        assert code == 2
        assert "shard 1 held by gateway-a" in err
    finally:
        first.stop()


async def test_a_standby_takes_over_when_the_killed_gateways_claims_expire(
    redis: Redis, redis_server: RedisServer
) -> None:
    options = ("--count", "2", "--ttl", "1", "--window", "0.1")
    active = gateway(redis_server, "active", "0,1", *options)
    standby = None
    try:
        active.wait_line("identified")
        standby = gateway(redis_server, "standby", "0,1", "--standby", *options)
        standby.wait_line("standing by")
        assert await redis.mget(f"{PREFIX}:shard:0", f"{PREFIX}:shard:1") == ["active"] * 2
        assert standby.popen.poll() is None  # waiting, not refused
        active.kill()
        standby.wait_line("ready")
        assert await redis.mget(f"{PREFIX}:shard:0", f"{PREFIX}:shard:1") == ["standby"] * 2
    finally:
        active.stop()
        if standby is not None:
            standby.stop()


async def test_a_gateway_stopped_cleanly_frees_its_shards_for_the_next_at_once(
    redis: Redis, redis_server: RedisServer
) -> None:
    options = ("--count", "2", "--window", "0.1")  # claims that would last 15 s
    first = gateway(redis_server, "first", "0,1", *options)
    try:
        first.wait_line("ready")
        first.stop()
        assert await redis.exists(f"{PREFIX}:shard:0", f"{PREFIX}:shard:1") == 0
        second = gateway(redis_server, "second", "0,1", *options)
        second.wait_line("ready")
        second.stop()
    finally:
        first.stop()


async def identifies(redis: Redis) -> list[dict[str, object]]:
    return [json.loads(item) for item in await redis.lrange(f"{PREFIX}:test:identify", 0, -1)]


def gaps(records: list[dict[str, object]]) -> list[float]:
    times = sorted(float(r["at"]) for r in records)  # type: ignore[arg-type]
    return [later - earlier for earlier, later in itertools.pairwise(times)]


@pytest.mark.parametrize("max_concurrency", [1, 2])
async def test_identifies_of_one_bucket_are_a_window_apart_across_processes(
    redis: Redis, redis_server: RedisServer, max_concurrency: int
) -> None:
    window = 0.4
    options = ("--count", "6", "--window", str(window), "--max-concurrency", str(max_concurrency))
    gateways = [
        gateway(redis_server, f"gateway-{n}", shards, *options)
        for n, shards in enumerate(["0,1", "2,3", "4,5"])
    ]
    try:
        for process in gateways:
            process.wait_line("identified")
        records = await identifies(redis)
        assert sorted(r["shard"] for r in records) == list(range(6))
        for bucket in range(max_concurrency):
            in_bucket = [r for r in records if r["bucket"] == bucket]
            assert len(in_bucket) == 6 // max_concurrency
            # Redis keeps expiries in whole milliseconds: allow for the rounding.
            assert min(gaps(in_bucket)) >= window - 0.002, gaps(in_bucket)
    finally:
        for process in gateways:
            process.stop()


async def test_real_discord_py_gateways_identify_through_the_lock_a_window_apart(
    redis: Redis, redis_server: RedisServer
) -> None:
    window = 0.4
    async with FakeDiscord(shard_count=4).running() as fake:
        urls = f"{fake.base_url},{fake.ws_url}"
        options = ("--count", "4", "--window", str(window), "--discord", urls)
        gateways = [
            gateway(redis_server, f"gateway-{n}", shards, *options)
            for n, shards in enumerate(["0,1", "2,3"])
        ]
        try:
            for process in gateways:
                # Off the loop: the fake Discord runs on it.
                await asyncio.to_thread(process.wait_line, "identified")
            assert fake.ready_shards == [0, 1, 2, 3]
            assert sorted(shard for shard, _ in fake.identified) == [0, 1, 2, 3]
            records = await identifies(redis)
            assert sorted(r["shard"] for r in records) == [0, 1, 2, 3]
            assert min(gaps(records)) >= window - 0.002, gaps(records)
        finally:
            for process in gateways:
                await asyncio.to_thread(process.stop)


async def test_a_standby_is_told_at_every_try_and_claims_once_the_holder_releases(
    redis: Redis,
) -> None:
    holder = claims(redis, "gateway-a", [0, 1])
    await holder.claim()
    tries: list[str] = []
    standby = claims(redis, "gateway-b", [0, 1])
    waiting = asyncio.create_task(
        standby.claim(wait=True, poll=0.05, waiting=lambda c: tries.append(str(c)))
    )

    async def told_twice() -> bool:
        return len(tries) >= 2

    await eventually(told_twice, what="the standby trying")
    assert not waiting.done()
    assert "shards 0, 1 held by gateway-a" in tries[0]
    await holder.release()
    await asyncio.wait_for(waiting, 10)
    assert await redis.mget(f"{PREFIX}:shard:0", f"{PREFIX}:shard:1") == ["gateway-b"] * 2


async def test_a_standby_with_another_shard_count_is_refused_not_kept_waiting(
    redis: Redis,
) -> None:
    await claims(redis, "gateway-a", [0, 1], count=4).claim()
    with pytest.raises(ShardConflict, match="AIBOT_SHARD_COUNT=2"):
        await claims(redis, "gateway-b", [0, 1], count=2).claim(wait=True, poll=0.05)


# The setting: AIBOT_GATEWAY=standby, checked by --check.


def test_check_accepts_a_standby_gateway_and_says_which_shards_it_waits_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer
) -> None:
    status, out = check(
        tmp_path,
        f"AIBOT_HTTP=off\nAIBOT_REDIS_URL={redis_server.url}\nAIBOT_GATEWAY=standby\n"
        "AIBOT_SHARD_IDS=0,1\nAIBOT_SHARD_COUNT=4\nAIBOT_NODE=gateway-b\n",
        monkeypatch,
    )
    assert status == 0, out
    assert "standby gateway for shards 0, 1" in out


def test_check_accepts_a_standby_for_the_whole_bot_and_refuses_unknown_roles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer
) -> None:
    settings = f"AIBOT_HTTP=off\nAIBOT_REDIS_URL={redis_server.url}\n"
    status, out = check(tmp_path, f"{settings}AIBOT_GATEWAY=standby\n", monkeypatch)
    assert status == 0, out
    assert "standby gateway for every shard" in out
    status, out = check(tmp_path, f"{settings}AIBOT_GATEWAY=maybe\n", monkeypatch)
    assert status == 2
    assert "AIBOT_GATEWAY: on, off or standby (got 'maybe')" in out


def test_a_standby_needs_redis() -> None:
    with pytest.raises(SettingsError, match="AIBOT_GATEWAY: standby needs AIBOT_REDIS_URL"):
        Settings.from_env(
            {"AIBOT_GATEWAY": "standby", "AIBOT_SHARD_IDS": "0", "AIBOT_SHARD_COUNT": "1"}
        )
