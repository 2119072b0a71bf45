"""/health and /metrics: what monitors and Prometheus see."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aibot.discord.failures import explain
from aibot.http import CannotListen, Metrics, start_http
from aibot.jobs import Job, Unavailable
from aibot.snapshots import StatusSource
from tests.fixtures import status as fixtures


@asynccontextmanager
async def served(source: StatusSource, metrics: Metrics | None = None) -> AsyncIterator[str]:
    server = await start_http(source, "127.0.0.1", 0, metrics=metrics)
    try:
        yield server.url
    finally:
        await server.stop()


async def get_json(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.json()


async def get_metrics(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_health_is_ok_with_every_pools_figures() -> None:
    async with served(fixtures.source()) as url:
        status, body = await get_json(url + "/health")
    assert status == 200
    assert body["status"] == "ok" and body["problems"] == []
    assert body["gateway"] == "up" and body["uptime_s"] == 3725.0
    assert body["shards"] == [{"id": 0, "latency_ms": 45.2}, {"id": 1, "latency_ms": None}]
    assert set(body["pools"]) == {"chat", "image", "video", "admin"}
    chat = body["pools"]["chat"]
    assert (chat["queued"], chat["queue_size"]) == (3, 256)
    assert (chat["workers_busy"], chat["workers_total"]) == (12, 32)
    assert (chat["keys_healthy"], chat["keys_total"]) == (2, 3)
    assert chat["rings"] == {"openai": [2, 2], "minimax": [0, 1]}
    assert body["pools"]["image"]["state"] == "paused"


async def test_an_address_not_of_this_machine_is_a_setting_to_change() -> None:
    """Not "Discord cannot be reached" with exit 1 (systemd would retry it forever).
    192.0.2.1 is reserved for documentation (RFC 5737), on no machine: binding to it
    fails here at once and sends nothing anywhere."""
    with pytest.raises(CannotListen) as raised:
        await start_http(fixtures.source(), "192.0.2.1", 8001)
    sentence = str(raised.value.strerror)
    assert sentence.startswith("AIBOT_HTTP 192.0.2.1:8001 cannot be listened on (")
    assert sentence.endswith("give it another address of this machine (or AIBOT_HTTP=off)")
    failure = explain(raised.value)
    assert failure is not None and failure.config and failure.sentence == sentence


async def test_health_is_503_when_the_gateway_is_down() -> None:
    async with served(fixtures.source(gateway_up=False)) as url:
        status, body = await get_json(url + "/health")
    assert status == 503
    assert body["status"] == "degraded"
    assert body["problems"] == ["gateway down"]


async def test_health_is_503_when_a_pool_has_no_usable_key() -> None:
    async with served(fixtures.source(video_keys_down=True)) as url:
        status, body = await get_json(url + "/health")
    assert status == 503
    assert body["problems"] == ["pool video: no usable key"]
    assert body["pools"]["video"]["keys_healthy"] == 0


async def test_metrics_carry_the_pools_figures() -> None:
    async with served(fixtures.source()) as url:
        samples = await get_metrics(url)

    def value(name: str, **labels: str) -> float:
        return samples[name, tuple(sorted(labels.items()))]

    assert value("aibot_requests_done_total", pool="chat") == 12345
    assert value("aibot_requests_failed_total", pool="image") == 300
    assert value("aibot_queue_depth", pool="video") == 31
    assert value("aibot_queue_size", pool="video") == 32
    assert value("aibot_workers_busy", pool="chat") == 12
    assert value("aibot_request_latency_seconds", pool="chat", quantile="0.95") == 2.3
    assert value("aibot_pool_state", pool="image", state="paused") == 1
    assert value("aibot_pool_state", pool="image", state="running") == 0
    assert value("aibot_keys", pool="chat", provider="openai", state="cooling") == 1
    assert value("aibot_keys", pool="chat", provider="minimax", state="disabled") == 1
    assert value("aibot_key_budget_limit", pool="chat", provider="openai") == 116
    assert value("aibot_key_rate_limited_total", pool="chat", provider="openai") == 2
    assert value("aibot_gateway_up") == 1
    assert value("aibot_shard_latency_seconds", shard="0") == pytest.approx(0.0452)


async def test_metrics_histogram_counts_each_outcome() -> None:
    source = fixtures.source()
    metrics = Metrics(source)
    observe = metrics.observe
    job = Job(command="chat", args={"prompt": "hi"}, user_id=1, channel_id=2, pool="chat")
    observe(job, None, 1.5)
    observe(job, None, 0.2)
    observe(job, Unavailable("provider down"), 40.0)
    async with served(source, metrics) as url:
        samples = await get_metrics(url)
    ok = (("outcome", "ok"), ("pool", "chat"))
    assert samples["aibot_job_seconds_count", ok] == 2
    assert samples["aibot_job_seconds_bucket", (("le", "0.25"), *ok)] == 1
    failed = (("outcome", "unavailable"), ("pool", "chat"))
    assert samples["aibot_job_seconds_sum", failed] == 40.0


async def test_each_world_has_its_own_registry() -> None:
    first, second = Metrics(fixtures.source()), Metrics(fixtures.source(gateway_up=False))
    assert b"aibot_gateway_up 1.0" in first.text()
    assert b"aibot_gateway_up 0.0" in second.text()
