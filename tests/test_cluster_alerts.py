"""Alerts from worker processes to the gateways (aibot/cluster/alerts.py), against
a real redis-server: a key a worker-only process disables reaches the alert hub."""

from __future__ import annotations

import asyncio

from aibot.alerts import Alert
from aibot.cluster.alerts import AlertFollower, AlertPublisher, alerts_stream
from aibot.cluster.budget import SharedBudgets
from aibot.cluster.connection import connect
from aibot.cluster.ring import SharedKeyRing
from tests.fixtures.redis_server import RedisServer
from tests.test_alerts import Recorded, watch_one

_PREFIX = "bot"
_SECRETS = ["sk-worker-key-one-00000000000000001", "sk-worker-key-two-00000000000000002"]


async def test_keys_a_worker_disables_are_alerted_by_every_gateway(
    redis_server: RedisServer,
) -> None:
    worker, gateway = connect(redis_server.url), connect(redis_server.url)
    heard, heard_too = Recorded(), Recorded()
    followers = [AlertFollower(gateway, _PREFIX, hub) for hub in (heard, heard_too)]
    for follower in followers:
        assert await follower.step(block=False) == 0  # started: from now on

    ring = SharedKeyRing(
        "video", "minimax", _SECRETS, rpm=600, concurrency=1, budgets=SharedBudgets(worker, _PREFIX)
    )
    publisher = AlertPublisher(worker, _PREFIX)
    watch_one(ring, publisher)  # a worker-only process's video pool
    for _ in _SECRETS:
        async with await ring.acquire(timeout=5) as lease:
            lease.bad_key(f"401 invalid key {lease.key}")
    await publisher.flush()
    await ring.flush()

    for follower in followers:
        assert await follower.step(block=False) == 3
    assert heard.kinds() == heard_too.kinds() == ["key_disabled", "key_disabled", "no_keys"]
    assert {a.detail["key_id"] for a in heard.alerts[:2]} == {"sk-...0001", "sk-...0002"}
    assert all(a.pool == "video" and a.guild_id is None for a in heard.alerts)
    raw = str(await gateway.xrange(alerts_stream(_PREFIX)))
    assert not any(secret in raw or secret in str(heard.alerts) for secret in _SECRETS)
    await worker.aclose()
    await gateway.aclose()


async def test_a_following_gateway_hears_alerts_as_they_come_and_skips_unreadable_ones(
    redis_server: RedisServer,
) -> None:
    client = connect(redis_server.url)
    publisher = AlertPublisher(client, _PREFIX)
    publisher.alert(Alert("backup_failed", detail={"reason": "before the gateway"}))
    await publisher.flush()
    heard = Recorded()
    follower = AlertFollower(client, _PREFIX, heard, block=0.1)
    assert await follower.step(block=False) == 0  # started: past the alert before it
    follower.start()
    try:
        await client.xadd(alerts_stream(_PREFIX), {"kind": "from another version"})
        publisher.alert(Alert("budget", "chat", guild_id=8, detail={"used": "9", "budget": "10"}))
        await publisher.flush()
        async with asyncio.timeout(5):
            while not heard.alerts:
                await asyncio.sleep(0.05)
    finally:
        await follower.stop()
        await client.aclose()
    assert heard.alerts == [
        Alert("budget", "chat", guild_id=8, detail={"used": "9", "budget": "10"})
    ]
