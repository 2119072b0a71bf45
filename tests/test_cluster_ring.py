"""A key ring shared through Redis (aibot/cluster/ring.py), on the real call path.

Worker processes (`python -c` running `_child` below) each build a
`SharedKeyRing` over the same keys and make images the way the image pool
does: `aibot.providers.retry.with_keys` and the real `OpenAIImages` client
against this test's fake OpenAI server, which enforces each key's limit with
real 429s.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from aibot.cluster.budget import SharedBudgets
from aibot.cluster.connection import connect
from aibot.cluster.ring import SharedKeyRing, shared_rings
from aibot.jobs import AibotError
from aibot.pools import build_context
from aibot.providers.base import ImageRequest
from aibot.providers.openai_images import OpenAIImages
from aibot.providers.retry import with_keys
from aibot.sandbox import FakeProviders
from aibot.sandbox.redis_server import start_redis
from aibot.secrets import fingerprint
from aibot.settings import Settings
from tests.cluster_processes import child_main, ready_then_start, run_together
from tests.fixtures.redis_server import RedisServer
from tests.test_alerts import watched
from tests.test_cluster_budget import _assert_no_key_in_redis

_ROOT = Path(__file__).resolve().parents[1]
_PREFIX = "bot"
_RPM = 300.0  # per key, in the ring and at the fake
_WINDOW = 6.0  # seconds of the shared load
_CALLERS = 4  # concurrent callers per worker process


def _keys(count: int) -> list[str]:
    return [f"sk-cluster-ring-{n:02d}-{'x' * 24}" for n in range(count)]


async def test_three_processes_on_the_provider_call_path_get_no_429_and_nearly_all_the_budget(
    redis_server: RedisServer,
) -> None:
    keys = _keys(3)
    with FakeProviders(rpm={"openai": _RPM, "minimax": None, "stability": None}) as fake:
        spec = _spec(redis_server, fake, keys, rpm=_RPM, window=_WINDOW)
        results = await _run_together([spec] * 3)
        assert fake.counters.outcomes("rate_limited") == 0
    assert sum(r["rate_limited"] for r in results) == 0
    in_window = sum(r["ok_in_window"] for r in results)
    allowed = len(keys) * (_RPM - 1) / 60 * _WINDOW
    assert in_window >= 0.9 * allowed
    assert all(r["ok_in_window"] > 0 for r in results)  # every process had its share
    await _assert_no_key_in_redis(redis_server, keys)


async def test_a_429_in_one_process_cools_the_key_for_another(redis_server: RedisServer) -> None:
    slow, fast = _keys(2)
    with FakeProviders(rpm={"openai": 600.0}, key_rpm={slow: 0.1}) as fake:
        await _spend_the_only_call(fake, slow)
        # The first process believes `slow` allows 600 a minute: its call is a
        # 429 whose retry-after (20 minutes) cools the key in Redis.
        (first,) = await _run_together([_spec(redis_server, fake, [slow], calls=1)])
        assert first["rate_limited"] == 1 and first["errors"] == {"no_key": 1}, first
        (second,) = await _run_together([_spec(redis_server, fake, [slow, fast], calls=8)])
    assert second["by_key"] == {fingerprint(fast): 8}
    assert second["rate_limited"] == 0
    cooling = second["states"][fingerprint(slow)]
    assert cooling["state"] == "cooling" and cooling["cooling_for"] > 60
    assert cooling["reason"] == "rate limited"
    await _assert_no_key_in_redis(redis_server, [slow, fast])


async def test_headers_saying_nothing_is_left_hold_the_key_for_another_process(
    redis_server: RedisServer,
) -> None:
    slow, fast = _keys(2)
    with FakeProviders(rpm={"openai": 600.0}, key_rpm={slow: 0.1}) as fake:
        # The fake's one call a key holds passes; its headers say none is left.
        (first,) = await _run_together([_spec(redis_server, fake, [slow], calls=2)])
        assert first["requests"] == 1 and first["errors"] == {"no_key": 1}, first
        (second,) = await _run_together([_spec(redis_server, fake, [slow, fast], calls=8)])
        assert fake.counters.outcomes("rate_limited") == 0
    assert second["by_key"] == {fingerprint(fast): 8}
    held = second["states"][fingerprint(slow)]
    assert held["state"] == "cooling" and held["reason"] == "provider budget low"


async def test_a_key_refused_in_one_process_is_disabled_for_another_with_its_reason(
    redis_server: RedisServer,
) -> None:
    bad, good = _keys(2)
    with FakeProviders(rpm={"openai": 600.0}, invalid_keys={bad}) as fake:
        (first,) = await _run_together([_spec(redis_server, fake, [bad], calls=1)])
        assert first["bad_key"] == 1 and first["all_down"]
        second, third = await _run_together(
            [
                _spec(redis_server, fake, [bad, good], calls=5),
                _spec(redis_server, fake, [bad], calls=1),
            ]
        )
    assert second["by_key"] == {fingerprint(good): 5}
    assert second["states"][fingerprint(bad)]["state"] == "disabled"
    assert "invalid_api_key" in second["states"][fingerprint(bad)]["reason"]
    assert third["errors"] == {"no_key": 1} and third["all_down"]
    assert third["requests"] == 0  # learned from Redis, not from the provider
    await _assert_no_key_in_redis(redis_server, [bad, good])


async def test_the_pools_build_shared_rings_when_given_the_factory(
    redis_server: RedisServer,
) -> None:
    client = connect(redis_server.url)
    settings = Settings.from_env({"OPENAI_API_KEY_2": ",".join(_keys(2))})
    context = build_context(settings, "image", ring=shared_rings(SharedBudgets(client, _PREFIX)))
    ring = context.rings["openai"]
    assert isinstance(ring, SharedKeyRing) and ring.load() == (2, 2)
    async with await ring.acquire(timeout=1) as lease:
        assert lease.fingerprint in {fingerprint(k) for k in _keys(2)}
    assert ring.try_acquire() is None  # every start is a reservation in Redis
    await context.aclose()
    await client.aclose()


async def test_a_key_a_worker_process_disables_is_alerted_there_redacted(
    redis_server: RedisServer,
) -> None:
    """As in one process (`tests/test_alerts.py`): the operators hear of each key
    the provider refused, and then of the pool left with none."""
    client = connect(redis_server.url)
    secrets = _keys(2)
    ring = SharedKeyRing(
        "chat", "openai", secrets, rpm=600, concurrency=1, budgets=SharedBudgets(client, _PREFIX)
    )
    alerts = watched(ring)
    for _ in secrets:
        async with await ring.acquire(timeout=5) as lease:
            lease.bad_key(f"401 invalid key {lease.key}")
    await ring.flush()  # the reports reached Redis: nothing left to send with the key
    await client.aclose()

    assert alerts.kinds() == ["key_disabled", "key_disabled", "no_keys"]
    assert {a.detail["key_id"] for a in alerts.alerts[:2]} == {"sk-...xxxx"}
    assert not any(secret in str(alerts.alerts) for secret in secrets)


async def test_a_key_disabled_while_redis_was_away_stays_disabled_when_it_is_back(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Redis never heard of it (the report given up after its retries): the beat's
    refresh reads the key healthy there, and must not enable a key the provider
    refused, to be refused and alerted about again at every beat."""
    client = connect(redis_server.url)
    ring = SharedKeyRing(
        "chat", "openai", _keys(1), rpm=600, concurrency=1, budgets=SharedBudgets(client, _PREFIX)
    )
    alerts = watched(ring)
    async with await ring.acquire(timeout=5) as lease:
        redis_server.stop()
        lease.bad_key("401 invalid key")
    await ring.flush()
    assert ring.reports_dropped >= 1, "the report was given up"
    again = start_redis(tmp_path, port=redis_server.port)  # empty: no persistence
    try:
        await ring.refresh()
        assert ring.load() == (0, 1) and ring.all_down
        assert alerts.kinds() == ["key_disabled", "no_keys"], "said once"
    finally:
        await client.aclose()
        again.stop()


async def test_redis_down_while_reserving_is_a_transient_failure(
    redis_server: RedisServer,
) -> None:
    client = connect(redis_server.url)
    ring = SharedKeyRing(
        "image", "openai", _keys(1), rpm=60, concurrency=1, budgets=SharedBudgets(client, _PREFIX)
    )
    redis_server.stop()
    with pytest.raises(AibotError) as raised:
        await ring.acquire(timeout=1)
    assert raised.value.kind == "unavailable"
    await client.aclose()


# -- helpers ------------------------------------------------------------------


async def _spend_the_only_call(fake: FakeProviders, key: str) -> None:
    """One call with `key` straight to the fake, leaving its bucket empty."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{fake.url('openai')}/images/generations",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": "gpt-image-1", "prompt": "a cat"},
        ) as response,
    ):
        assert response.status == 200


def _spec(
    server: RedisServer,
    fake: FakeProviders,
    keys: list[str],
    *,
    rpm: float = 600.0,
    window: float | None = None,
    calls: int = 0,
) -> dict[str, Any]:
    return {
        "redis": server.url,
        "base_url": fake.url("openai"),
        "keys": keys,
        "rpm": rpm,
        "window": window,
        "calls": calls,
    }


async def _run_together(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One worker process per spec, started together 0.3 s after all are ready."""
    return await run_together("tests.test_cluster_ring", specs, lead=0.3)


# -- the worker process ---------------------------------------------------------


def _child() -> None:
    """A worker process: read a spec, say ready, wait for the start, work, report."""
    child_main(_work)


async def _work(spec: dict[str, Any]) -> dict[str, Any]:
    client = connect(spec["redis"])
    budgets = SharedBudgets(client, _PREFIX)
    ring = SharedKeyRing(
        "image", "openai", spec["keys"], rpm=spec["rpm"], concurrency=_CALLERS, budgets=budgets
    )
    images = OpenAIImages(spec["base_url"], "gpt-image-1", timeout=10)
    await client.ping()
    start = await ready_then_start()
    caller = _Caller(ring, images)
    if spec["window"]:
        end = start + spec["window"]
        await asyncio.gather(*(caller.until(start, end) for _ in range(_CALLERS)))
    else:
        for _ in range(spec["calls"]):
            await caller.once()
    await ring.flush()  # the reports reach Redis before the process ends
    await ring.refresh()
    snapshot = ring.snapshot()
    await images.aclose()
    await client.aclose()
    tally = caller.tally
    return {
        "ok_in_window": tally["ok_in_window"],
        "requests": tally["requests"],
        "rate_limited": sum(key.rate_limited for key in snapshot.keys),
        "bad_key": sum(key.state == "disabled" and key.calls > 0 for key in snapshot.keys),
        "all_down": ring.all_down,
        "errors": dict(caller.errors),
        "by_key": dict(caller.by_key),
        "states": {
            fingerprint(secret): {
                "state": k.state,
                "cooling_for": k.cooling_for,
                "reason": k.reason,
            }
            for secret, k in zip(dict.fromkeys(spec["keys"]), snapshot.keys, strict=True)
        },
    }


class _Caller:
    """Makes images the way the image pool does, and counts what happened."""

    def __init__(self, ring: SharedKeyRing, images: OpenAIImages) -> None:
        self.ring, self.images = ring, images
        self.tally: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.by_key: Counter[str] = Counter()

    async def once(self) -> float | None:
        """One image; the time its provider call began, or None if it failed."""
        began: list[tuple[float, str]] = []

        def call(lease: Any) -> Any:
            began.append((time.time(), lease.fingerprint))
            self.tally["requests"] += 1
            return self.images.generate(lease, ImageRequest("a lighthouse at dusk"))

        try:
            await with_keys(self.ring, call, timeout=3.0)  # type: ignore[arg-type]
        except AibotError as error:
            self.errors[error.kind] += 1
            return None
        at, key = began[-1]
        self.by_key[key] += 1
        return at

    async def until(self, start: float, end: float) -> None:
        while time.time() < end:
            began = await self.once()
            if began is not None and start <= began < end:
                self.tally["ok_in_window"] += 1
