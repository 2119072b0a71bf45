"""Redis named through Sentinel (`AIBOT_REDIS_URL=redis+sentinel://...`): the URL's
form, `--check`, the client on the primary, and a failover under a running cluster.

The failover tests use real servers (`sentinel_redis`: a primary, its replica and a
Sentinel, each `redis-server`, stopped by PID); the primary is killed with SIGKILL
and the Sentinel promotes the replica.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from aibot.cluster.connection import connect
from aibot.cluster.urls import SentinelURL, parse_sentinel_url, url_problem
from aibot.sandbox import FakeProviders
from tests.cluster_processes import eventually
from tests.fixtures.redis_server import Sentinelled
from tests.test_cluster_e2e import WAIT, _answered_once, _final, _true, cluster_on
from tests.test_cluster_modes import check

SERVICE = "aibot"


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("redis+sentinel://10.0.0.1/aibot", SentinelURL((("10.0.0.1", 26379),), "aibot")),
        (
            "redis+sentinel://:p%40ss@s1:26380,s2,[::1]:26381/main/2?sentinel_password=x%3Dy",
            SentinelURL(
                (("s1", 26380), ("s2", 26379), ("::1", 26381)),
                "main",
                db=2,
                password="p@ss",
                sentinel_password="x=y",
            ),
        ),
        ("redis+sentinel://bot:pw@s1:1/main", SentinelURL((("s1", 1),), "main", 0, "bot", "pw")),
        ("redis+sentinel://pw@s1/main", SentinelURL((("s1", 26379),), "main", password="pw")),
    ],
)
def test_a_sentinel_url_names_the_sentinels_the_service_and_the_secrets(
    url: str, parsed: SentinelURL
) -> None:
    assert parse_sentinel_url(url) == parsed
    assert parsed.password is None or parsed.password not in repr(parsed)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("redis+sentinel://:hunter2@s1:26379", "names the service"),
        ("redis+sentinel://:hunter2@s1:26379/", "names the service"),
        ("redis+sentinel://:hunter2@/aibot", "at least one Sentinel host"),
        ("redis+sentinel://:hunter2@s1,/aibot", "at least one Sentinel host"),
        ("redis+sentinel://:hunter2@s1:port/aibot", "port is a number"),
        ("redis+sentinel://:hunter2@s1:70000/aibot", "port is a number"),
        ("redis+sentinel://:hunter2@[::1/aibot", "in brackets"),
        ("redis+sentinel://:hunter2@s1/aibot/zero", "database after the service"),
        ("redis+sentinel://:hunter2@s1/aibot?password=hunter2", "takes one option"),
        # An unencoded & in the Sentinels' password: its rest reads as an option.
        ("redis+sentinel://s1/aibot?sentinel_password=Xk9&hunter2", "percent-encode &"),
        ("http://:hunter2@s1/aibot", "redis+sentinel://"),
        # A redis:// password holding # ? or / unencoded: said, never echoed.
        ("redis://aibot:hunter2#x@127.0.0.1:6379/0", "percent-encode"),
        ("redis://:hunter2?x@127.0.0.1:6379/0", "percent-encode"),
        ("redis://:hunter2/x@127.0.0.1:6379/0", "percent-encode"),
        # ... or a / that leaves the user name as the host, the password's start as a port.
        ("redis://aibot:/hunter2@127.0.0.1:6379/0", "percent-encode"),
        ("redis://aibot:2024/hunter2@127.0.0.1:6379/0", "percent-encode"),
    ],
)
def test_a_wrong_redis_url_is_told_by_its_part_never_with_the_password(
    url: str, words: str
) -> None:
    problem = url_problem(url)
    assert problem is not None and words in problem
    assert "hunter2" not in problem


def test_check_validates_a_sentinel_url_before_asking_anyone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "redis+sentinel://:hunter2@127.0.0.1:1"
    status, out = check(tmp_path, f"AIBOT_HTTP=off\nAIBOT_REDIS_URL={url}\n", monkeypatch)
    assert status == 2
    assert "AIBOT_REDIS_URL: a Sentinel URL names the service" in out
    assert "hunter2" not in out


def test_check_says_when_no_sentinel_knows_the_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sentinel_redis: Sentinelled
) -> None:
    url = f"redis+sentinel://127.0.0.1:{sentinel_redis.sentinel.port}/not-{SERVICE}"
    status, out = check(tmp_path, f"AIBOT_HTTP=off\nAIBOT_REDIS_URL={url}\n", monkeypatch)
    assert status == 2
    assert "no Sentinel named there knows a primary for the service" in out


def test_check_passes_with_the_sentinels_primary_answering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sentinel_redis: Sentinelled
) -> None:
    text_ = f"AIBOT_HTTP=off\nAIBOT_REDIS_URL={sentinel_redis.url}\nAIBOT_GATEWAY=off\n"
    status, out = check(tmp_path, text_, monkeypatch)
    assert status == 0, out


async def _failover_ready(world: Sentinelled) -> None:
    """Until the replica holds a copy and the Sentinel knows of it: a failover can
    then promote it."""
    replica = Redis(port=world.replica.port, decode_responses=True)
    sentinel = Redis(port=world.sentinel.port, decode_responses=True)
    try:

        async def ready() -> bool:
            link = (await replica.info("replication")).get("master_link_status")
            return link == "up" and bool(await sentinel.sentinel_slaves(SERVICE))

        await eventually(ready, timeout=WAIT, what="the replica in sync and known")
    finally:
        await replica.aclose()
        await sentinel.aclose()


async def _failed_over(world: Sentinelled) -> None:
    """Kill the primary; until the Sentinel names the replica in its place."""
    os.kill(world.primary.pid, signal.SIGKILL)
    sentinel = Redis(port=world.sentinel.port, decode_responses=True)
    try:

        async def promoted() -> bool:
            address = await sentinel.sentinel_get_master_addr_by_name(SERVICE)
            return address is not None and int(address[1]) == world.replica.port

        await eventually(promoted, timeout=WAIT, what="the replica promoted")
    finally:
        await sentinel.aclose()


async def test_the_client_waits_for_a_connection_and_follows_a_failover(
    sentinel_redis: Sentinelled,
) -> None:
    redis = connect(sentinel_redis.url, max_connections=1)
    try:
        # One connection, five callers: each waits its turn (a plain Sentinel pool
        # would raise "Too many connections").
        assert await asyncio.gather(*(redis.incr("n") for _ in range(5))) == [1, 2, 3, 4, 5]
        await _failover_ready(sentinel_redis)

        await _failed_over(sentinel_redis)

        async def written() -> bool:
            try:
                return await redis.incr("n") == 6
            except RedisConnectionError:  # the old primary's connection, dropped once
                return False

        await eventually(written, timeout=WAIT, what="a write on the new primary")
        assert (await redis.execute_command("ROLE"))[0] == "master"
    finally:
        await redis.aclose()


async def test_closing_the_client_closes_its_connections_to_the_sentinels(
    sentinel_redis: Sentinelled,
) -> None:
    watcher = Redis(port=sentinel_redis.sentinel.port, decode_responses=True)
    try:
        before = len(await watcher.client_list())
        redis = connect(sentinel_redis.url)
        await redis.ping()
        assert len(await watcher.client_list()) > before
        await redis.aclose()
        await eventually(
            lambda: _count_is(watcher, before), timeout=WAIT, what="the Sentinel's clients"
        )
    finally:
        await watcher.aclose()


async def _count_is(watcher: Redis, count: int) -> bool:
    return len(await watcher.client_list()) == count


@pytest.mark.slow
async def test_a_cluster_on_sentinel_answers_before_and_after_a_failover_by_itself(
    aibot_env: dict[str, str],
    sentinel_redis: Sentinelled,
    fake_providers: FakeProviders,
    tmp_path: Path,
) -> None:
    server = sentinel_redis.primary
    async with cluster_on(
        sentinel_redis.url, server, aibot_env, fake_providers, tmp_path
    ) as cluster:
        cluster.providers.chat_reply = "before"
        cluster.worker("w1", pools="chat")
        await cluster.serving("chat")
        before = await cluster.fake.send_interaction("chat", {"prompt": "hi"}, channel="채팅방-1")
        await _answered_once(cluster, before, _final(before, "before"))
        await _failover_ready(sentinel_redis)
        queue = cluster.bot.queue

        await _failed_over(sentinel_redis)

        await eventually(lambda: _true(queue.reachable), timeout=WAIT, what="Redis reachable")
        await cluster.serving("chat")
        cluster.providers.chat_reply = "after"
        after = await cluster.fake.send_interaction("chat", {"prompt": "hi"}, channel="채팅방-1")
        await _answered_once(cluster, after, _final(after, "after"))
