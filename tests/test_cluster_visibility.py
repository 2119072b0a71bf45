"""Cluster mode's health across processes: every live process (node) is visible.

An operator asks `/instances`, `/status` or `/ping`, or reads the gateway's
`/health` and `/metrics`, and sees each live process with its pools and free
slots, not only the gateway's own. A worker-only process answers `/health`
and `/metrics` of its own: 200 while Redis answers, 503 while it does not,
200 again when it is back. The set-up is `tests.test_cluster_e2e`'s: the gateway
in this process, worker processes stopped by their PID.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aibot import create_bot
from aibot.app_worker import create_worker
from aibot.cluster.budget import SharedBudgets
from aibot.cluster.ring import SharedKeyRing
from aibot.discord.embeds import instances_embed, status_embed
from aibot.discord.i18n import text
from aibot.sandbox.fake_discord import FakeDiscord, pointed_at
from aibot.snapshots import NodeSnapshot
from tests.cluster_processes import eventually
from tests.fixtures.discord import DISCORD_ENV
from tests.fixtures.redis_server import RedisServer
from tests.test_cluster_e2e import PREFIX, WAIT, Cluster, Node, _restarted, _true, cluster

__all__ = ["cluster"]

CHANNEL = "general"
SECRETS = [value for name, value in DISCORD_ENV.items() if "KEY" in name or "TOKEN" in name]


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def _health(url: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(url + "/health") as response:
        return response.status, await response.json()


async def _metrics(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body = await _get(url + "/metrics")
    assert status == 200
    assert not any(secret in body for secret in SECRETS), "no key in /metrics"
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


async def _live(world: Cluster, *names: str) -> None:
    """Until the gateway sees each of `names` live."""
    queue = world.bot.queue
    await eventually(
        lambda: _true(set(names) <= {node.name for node in queue.nodes()}),
        timeout=WAIT,
        what=f"nodes {names} live: {world.logs()}",
    )


async def _embed(world: Cluster, command: str) -> dict[str, Any]:
    sent = await world.fake.send_interaction(command, {}, channel=CHANNEL)
    [callback] = await world.fake.wait_for("callback", interaction_id=sent.id, timeout=WAIT)
    [embed] = callback.body["data"]["embeds"]
    return embed


async def _served_at(node: Node) -> str:
    """The URL a worker process says its /health is on."""
    found: list[str] = []

    async def said() -> bool:
        match = re.search(r"/health and /metrics on (http://\S+)", node.log.read_text())
        found[:] = [match.group(1)] if match else []
        return bool(found)

    await eventually(said, timeout=WAIT, what=f"{node.name} serving /health")
    return found[0]


@pytest.mark.slow
async def test_instances_status_ping_and_health_show_every_live_node(cluster: Cluster) -> None:
    cluster.worker("w1", pools="chat,image")
    cluster.worker("w2", pools="video,admin")
    await _live(cluster, "gateway", "w1", "w2")

    instances = await _embed(cluster, "instances")
    fields = {field["name"]: field["value"] for field in instances["fields"]}
    assert "🖥 gateway (this process)" in fields
    assert "chat (" in fields["🖥 w1"] and "image (" in fields["🖥 w1"]
    assert "video (" in fields["🖥 w2"] and "admin (" in fields["🖥 w2"]
    assert "version 0.1.0" in fields["🖥 w1"]
    assert "runs: w1" in fields["chat"] and "runs: w2" in fields["video"]

    status = await _embed(cluster, "status")
    assert {"🖥 w1", "🖥 w2", "🖥 gateway (this process)"} <= {f["name"] for f in status["fields"]}

    ping = await cluster.fake.send_interaction("ping", {}, channel=CHANNEL)
    [callback] = await cluster.fake.wait_for("callback", interaction_id=ping.id, timeout=WAIT)
    content = callback.body["data"]["content"]
    assert "Nodes live: 3" in content and re.search(r"Redis round trip: [\d.]+ ms", content)

    assert cluster.bot.http_server is not None
    url = cluster.bot.http_server.url
    code, body = await _health(url)
    assert code == 200, body
    nodes = {node["node"]: node for node in body["nodes"]}
    assert set(nodes) == {"gateway", "w1", "w2"}
    assert nodes["w1"]["pools"] == ["chat", "image"] and nodes["w1"]["free_slots"]["chat"] > 0
    metrics = await _metrics(url)
    assert metrics["aibot_node_up", (("node", "w2"), ("version", "0.1.0"))] == 1
    assert metrics["aibot_node_free_slots", (("node", "w2"), ("pool", "video"))] > 0


@pytest.mark.slow
async def test_a_worker_answers_health_of_its_own_and_503_while_redis_is_down(
    cluster: Cluster,
) -> None:
    cluster.env = {**cluster.env, "AIBOT_HTTP": "127.0.0.1:0"}
    worker = cluster.worker("w1", pools="chat")
    url = await _served_at(worker)

    code, raw = await _get(url + "/health")
    assert not any(secret in raw for secret in SECRETS), "no key in /health"
    code, body = await _health(url)
    assert code == 200, body
    assert body["name"] == "w1" and body["gateway"] == "none" and body["redis"] == "reachable"
    [node] = body["nodes"]
    assert node["node"] == "w1" and node["pools"] == ["chat"] and node["free_slots"]["chat"] > 0
    assert set(body["pools"]) == {"chat"}
    metrics = await _metrics(url)
    assert metrics["aibot_redis_up", ()] == 1
    assert metrics["aibot_node_free_slots", (("node", "w1"), ("pool", "chat"))] > 0
    assert ("aibot_gateway_up", ()) not in metrics, "a worker holds no gateway"

    cluster.server.stop()
    code, body = await _health(url)
    assert code == 503 and "redis unreachable" in body["problems"]
    assert body["redis"] == "unreachable"
    assert (await _metrics(url))["aibot_redis_up", ()] == 0

    with _restarted(cluster):

        async def healthy() -> bool:
            return (await _health(url))[0] == 200

        await eventually(healthy, timeout=WAIT, what="the worker healthy again")


@pytest.mark.slow
async def test_a_worker_shows_a_key_another_process_disabled(cluster: Cluster) -> None:
    cluster.env = {**cluster.env, "AIBOT_HTTP": "127.0.0.1:0"}
    url = await _served_at(cluster.worker("w1", pools="chat"))
    # Another process meets a 401 on the chat pool's OpenAI key and disables it for
    # every process; w1 has no job to learn it from.
    elsewhere = SharedKeyRing(
        "chat",
        "openai",
        [cluster.env["OPENAI_API_KEY_1"]],
        rpm=60,
        concurrency=1,
        budgets=SharedBudgets(cluster.redis, PREFIX),
    )
    (await elsewhere.acquire(timeout=WAIT)).bad_key("401 invalid key")
    await elsewhere.flush()

    async def shown_disabled() -> bool:
        _status, body = await _health(url)
        return body["pools"]["chat"]["rings"]["openai"] == [0, 1]

    await eventually(shown_disabled, timeout=WAIT, what=f"w1 showing the key off: {cluster.logs()}")


# ------------------------------------------------------ the embeds, from plain data


def _nodes(now: float) -> list[NodeSnapshot]:
    return [
        NodeSnapshot("gw", shards=(0, 1), version="0.1.0", started_at=now - 7200, here=True),
        NodeSnapshot("w-chat", ("chat",), {"chat": 5}, version="0.1.0", started_at=now - 90),
        NodeSnapshot("w-video", ("video", "admin"), {"video": 0, "admin": 8}, started_at=now),
    ]


def test_instances_embed_names_the_nodes_running_each_pool_in_korean_too() -> None:
    routes = [("chat", ["채팅방-*"], ["chat"]), ("image", ["이미지생성-*"], ["image"])]
    nodes = _nodes(time.time())

    embed = instances_embed(routes, ("chat", "video", "admin"), "ko", nodes=nodes)

    fields = {field.name: field.value for field in embed.fields}
    assert "위치: w-chat" in fields["chat"]
    assert f"위치: {text('ko', 'nowhere')}" in fields["image"]
    assert list(fields)[2] == "🖥 gw (이 프로세스)", "this process first"
    assert "샤드: 0, 1" in fields["🖥 gw (이 프로세스)"]
    assert "chat (빈자리 5)" in fields["🖥 w-chat"]


def test_embedded_mode_embeds_have_no_node_fields() -> None:
    routes = [("chat", ["채팅방-*"], ["chat"])]
    embed = instances_embed(routes, ("chat",), "en")
    assert [field.name for field in embed.fields] == ["chat"]
    assert "runs: this process" in embed.fields[0].value
    status = status_embed([], ["image"], "en")
    assert [field.value for field in status.fields] == [text("en", "status_missing")]


def test_status_embed_in_cluster_mode_says_no_live_node_runs_a_missing_pool() -> None:
    embed = status_embed([], ["image"], "en", nodes=_nodes(time.time()))
    fields = {field.name: field.value for field in embed.fields}
    assert fields["image"] == text("en", "status_nowhere")
    assert "video (0 free), admin (8 free)" in fields["🖥 w-video"]
    assert "version ?" in fields["🖥 w-video"], "a node that did not say its version"


# ------------------------------------------------- a worker process, in this process


@pytest.fixture
async def worker_env(
    aibot_env: dict[str, str], redis_server: RedisServer
) -> AsyncIterator[dict[str, str]]:
    """A worker's settings, with discord.py pointed at a fake Discord meanwhile."""
    fake = FakeDiscord(shard_count=1, guilds=1, token=aibot_env["DISCORD_TOKEN"])
    async with fake.running():
        with pointed_at(fake):
            yield {
                **aibot_env,
                "AIBOT_REDIS_URL": redis_server.url,
                "AIBOT_GATEWAY": "off",
                "AIBOT_NODE": "w-here",
                "AIBOT_POOLS": "chat",
            }


async def test_a_drained_worker_says_503_no_pool_loop_running(worker_env: dict[str, str]) -> None:
    process = create_worker({**worker_env, "AIBOT_HTTP": "127.0.0.1:0"})
    await process.start()
    try:
        assert process.http_server is not None
        url = process.http_server.url
        code, body = await _health(url)
        assert code == 200, body
        await process.drain(0)
        code, body = await _health(url)
        assert code == 503 and "no pool loop running" in body["problems"]
    finally:
        await process.aclose()


async def test_a_worker_whose_port_is_taken_runs_without_health(
    worker_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = create_worker({**worker_env, "AIBOT_HTTP": f"127.0.0.1:{port}"})
        await process.start()
        try:
            assert process.http_server is None
            assert process.runner.taking() == ("chat",), "its pool runs all the same"
            assert "give this worker its own AIBOT_HTTP" in caplog.text
        finally:
            await process.drain(0)
            await process.aclose()


async def test_in_embedded_mode_the_queue_is_one_node_and_the_views_show_none(
    aibot_env: dict[str, str],
) -> None:
    bot = create_bot(aibot_env)
    [node] = bot.queue.nodes()
    assert node.here and node.pools == ("chat", "image", "video", "admin")
    assert node.free_slots["chat"] > 0 and node.shards == ()
    assert bot.status_source().nodes() == [], "embedded views: no node rows"
