"""Shared key budgets (aibot/cluster/budget.py) against a real redis-server.

The cross-process tests start worker processes (`python -c` running `_child`
below) that share one ring of keys through Redis and call the fake OpenAI
server of this test, which enforces each key's limit with real 429s. A worker
does what the bot's wiring will do: reserve a key, sleep the wait, call,
report a 429 (`cool`) or a 401 (`disable`) for every process.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as redis

from aibot.cluster.budget import SharedBudgets, pace
from aibot.sandbox import FakeProviders
from aibot.secrets import fingerprint, redact
from tests.cluster_processes import child_main, ready_then_start, run_together
from tests.fixtures.redis_server import RedisServer

_ROOT = Path(__file__).resolve().parents[1]
_PREFIX = "bot"
_RPM = 300.0  # per key, in the ring and at the fake
_WINDOW = 6.0  # seconds of the shared load
_CALLERS = 4  # concurrent callers per worker process


def _keys(count: int) -> list[str]:
    return [f"sk-cluster-budget-{n:02d}-{'x' * 24}" for n in range(count)]


def _client(url: str) -> redis.Redis:
    return redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(url))


@pytest.fixture
async def budgets(redis_server: RedisServer):
    client = _client(redis_server.url)
    yield SharedBudgets(client, _PREFIX)
    await client.aclose()


# -- one process ------------------------------------------------------------


def test_the_pace_leaves_room_for_the_burst_in_every_minute() -> None:
    assert pace(600, 1) == (599, 1)
    assert pace(600, 50) == (550, 50)
    assert pace(10, 9) == (5, 5)  # a burst over half the rpm is cut to half
    assert pace(5, 0) == (4, 1)  # at least one call may start
    assert pace(1, 1) == (0.5, 1)  # one a minute: one every two minutes
    with pytest.raises(ValueError):
        pace(0, 1)


async def test_a_fresh_ring_starts_each_key_at_once_then_paces_the_least_recently_used(
    budgets: SharedBudgets,
) -> None:
    ring = ["a" * 16, "b" * 16, "c" * 16]
    first = [await budgets.reserve(ring, rpm=60, max_wait=10) for _ in ring]
    assert sorted(r.fingerprint for r in first) == sorted(ring)
    assert all(r.wait == 0 for r in first)

    fourth = await budgets.reserve(ring, rpm=60, max_wait=10)
    assert fourth.fingerprint == first[0].fingerprint
    assert 0 < fourth.wait <= 60 / 59


async def test_no_60_second_window_holds_more_than_the_keys_rpm(budgets: SharedBudgets) -> None:
    slots = []
    for _ in range(130):
        reservation = await budgets.reserve(["a" * 16], rpm=60, max_wait=3600)
        slots.append(time.time() + reservation.wait)
    busiest = max(sum(start <= s <= start + 60 for s in slots) for start in slots)
    assert busiest == 60  # every minute full, none over


async def test_a_reservation_beyond_max_wait_is_refused_with_the_soonest_wait(
    budgets: SharedBudgets,
) -> None:
    assert (await budgets.reserve(["a" * 16], rpm=6, max_wait=0)).reserved
    refused = await budgets.reserve(["a" * 16], rpm=6, max_wait=1)
    assert not refused.reserved and not refused.all_disabled
    assert 1 < refused.wait <= 12


async def test_cooling_and_disabled_keys_are_skipped(budgets: SharedBudgets) -> None:
    cooling, disabled, ready = "c" * 16, "d" * 16, "r" * 16
    assert await budgets.cool(cooling, 120) == pytest.approx(120, abs=1)
    await budgets.disable(disabled, "invalid API key")
    for _ in range(3):
        reservation = await budgets.reserve([cooling, disabled, ready], rpm=6000, max_wait=5)
        assert reservation.fingerprint == ready

    states = await budgets.states([cooling, disabled, ready], rpm=6000)
    assert [s.state for s in states] == ["cooling", "disabled", "busy"]
    assert states[0].reason == "rate limited" and states[0].rate_limited == 1
    assert states[1].reason == "invalid API key"
    assert states[2].calls == 3


async def test_every_key_disabled_is_said_at_once(budgets: SharedBudgets) -> None:
    await budgets.disable("a" * 16, "out of quota")
    assert (await budgets.reserve(["a" * 16], rpm=60, max_wait=60)).all_disabled
    # Pinned (a video task it made is polled with it): reserved all the same.
    pinned = await budgets.reserve(["a" * 16], rpm=60, max_wait=60, pinned=True)
    assert pinned.reserved and pinned.fingerprint == "a" * 16
    await budgets.enable("a" * 16)
    assert (await budgets.reserve(["a" * 16], rpm=60, max_wait=60)).reserved


async def test_a_429_without_retry_after_backs_off_doubling(budgets: SharedBudgets) -> None:
    assert await budgets.cool("a" * 16, None) == pytest.approx(1, abs=0.1)
    assert await budgets.cool("a" * 16, None) == pytest.approx(2, abs=0.1)
    assert await budgets.cool("a" * 16, None) == pytest.approx(4, abs=0.1)


async def test_headers_saying_nothing_is_left_hold_the_key_until_the_reset(
    budgets: SharedBudgets,
) -> None:
    await budgets.tighten("a" * 16, remaining=0, reset_seconds=30)
    (state,) = await budgets.states(["a" * 16], rpm=60)
    assert state.state == "cooling" and state.reason == "provider budget low"
    assert state.rate_limited == 0
    assert not (await budgets.reserve(["a" * 16], rpm=60, max_wait=10)).reserved


# -- several processes ------------------------------------------------------


async def test_three_processes_sharing_a_ring_get_no_429_and_use_nearly_all_the_budget(
    redis_server: RedisServer,
) -> None:
    keys = _keys(3)
    with FakeProviders(rpm={"openai": _RPM, "minimax": None, "stability": None}) as fake:
        spec = _spec(redis_server, fake, keys, window=_WINDOW)
        results = await _run_together([spec] * 3)
        assert fake.counters.outcomes("rate_limited") == 0
        assert fake.counters.requests("openai") == sum(r["calls"] for r in results)
    assert sum(r["rate_limited"] for r in results) == 0
    in_window = sum(r["ok_in_window"] for r in results)
    allowed = len(keys) * (_RPM - 1) / 60 * _WINDOW
    assert in_window >= 0.9 * allowed
    assert all(r["ok_in_window"] > 0 for r in results)  # every process had its share
    await _assert_no_key_in_redis(redis_server, keys)


async def test_a_429_in_one_process_cools_the_key_for_the_others(
    redis_server: RedisServer,
) -> None:
    slow, fast = _keys(2)
    with FakeProviders(rpm={"openai": 600.0}, key_rpm={slow: 0.1}) as fake:
        # The first process believes `slow` allows 600/min: its second call is a 429
        # whose retry-after (20 min) cools the key in Redis.
        (first,) = await _run_together([_spec(redis_server, fake, [slow], calls=2)])
        assert first["rate_limited"] == 1
        (second,) = await _run_together([_spec(redis_server, fake, [slow, fast], calls=8)])
    assert second["by_key"] == {fingerprint(fast): 8}
    assert second["rate_limited"] == 0
    cooling = second["states"][fingerprint(slow)]
    assert cooling["state"] == "cooling" and cooling["cooling_for"] > 60
    await _assert_no_key_in_redis(redis_server, [slow, fast])


async def test_a_key_disabled_in_one_process_is_disabled_for_all(
    redis_server: RedisServer,
) -> None:
    bad, good = _keys(2)
    with FakeProviders(rpm={"openai": 600.0}, invalid_keys={bad}) as fake:
        (first,) = await _run_together([_spec(redis_server, fake, [bad], calls=1)])
        assert first["bad_key"] == 1
        both = _spec(redis_server, fake, [bad, good], calls=5)
        only_bad = _spec(redis_server, fake, [bad], calls=1)
        second, third = await _run_together([both, only_bad])
    assert second["by_key"] == {fingerprint(good): 5}
    assert second["states"][fingerprint(bad)]["state"] == "disabled"
    assert "Incorrect API key" in second["states"][fingerprint(bad)]["reason"]
    assert third["all_disabled"]
    await _assert_no_key_in_redis(redis_server, [bad, good])


def _spec(
    server: RedisServer,
    fake: FakeProviders,
    keys: list[str],
    *,
    window: float | None = None,
    calls: int = 0,
) -> dict[str, Any]:
    return {
        "redis": server.url,
        "base_url": fake.url("openai"),
        "keys": keys,
        "rpm": _RPM if window else 600.0,
        "window": window,
        "calls": calls,
    }


async def _run_together(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One worker process per spec, started together 0.3 s after all are ready."""
    return await run_together("tests.test_cluster_budget", specs, lead=0.3)


async def _assert_no_key_in_redis(server: RedisServer, keys: list[str]) -> None:
    """Scan every Redis key and every value: no secret, not even in part."""
    client = redis.Redis.from_url(server.url)
    seen = []
    async for name in client.scan_iter(count=1000):
        seen.append(name)
        kind = (await client.type(name)).decode()
        if kind == "hash":
            seen.extend(b for pair in (await client.hgetall(name)).items() for b in pair)
        elif kind == "string":
            seen.append(await client.get(name))
        else:
            seen.append(await client.dump(name))
    await client.aclose()
    assert seen, "the test left nothing in Redis to check"
    blob = b"\n".join(seen)
    for key in keys:
        assert key.encode() not in blob
        assert key[:-4].encode() not in blob  # not even without its last characters


# -- the worker process -------------------------------------------------------


def _child() -> None:
    """A worker process: read a spec, say ready, wait for the start, work, report."""
    child_main(_work)


async def _work(spec: dict[str, Any]) -> dict[str, Any]:
    client = _client(spec["redis"])
    budgets = SharedBudgets(client, _PREFIX)
    by_fingerprint = {fingerprint(key): key for key in spec["keys"]}
    await client.ping()
    start = await ready_then_start()
    tally: dict[str, Any] = Counter()
    async with aiohttp.ClientSession() as http:
        worker = _Worker(spec, budgets, by_fingerprint, http, tally)
        if spec["window"]:
            end = start + spec["window"]
            await asyncio.gather(*(worker.until(start, end) for _ in range(_CALLERS)))
        else:
            await worker.calls(spec["calls"])
    states = await budgets.states(list(by_fingerprint), rpm=spec["rpm"])
    await client.aclose()
    report: dict[str, Any] = {"calls": 0, "ok_in_window": 0, "rate_limited": 0, "bad_key": 0}
    report.update((name, n) for name, n in tally.items() if not name.startswith("key:"))
    report["by_key"] = {name[4:]: n for name, n in tally.items() if name.startswith("key:")}
    report["states"] = {
        s.fingerprint: {"state": s.state, "cooling_for": s.cooling_for, "reason": s.reason}
        for s in states
    }
    return report


class _Worker:
    """Reserve, wait, call the fake, report the outcome for every process."""

    def __init__(
        self,
        spec: dict[str, Any],
        budgets: SharedBudgets,
        keys: dict[str, str],
        http: aiohttp.ClientSession,
        tally: Counter[str],
    ) -> None:
        self.spec, self.budgets, self.keys, self.http, self.tally = spec, budgets, keys, http, tally

    async def until(self, start: float, end: float) -> None:
        while time.time() < end:
            reservation = await self.budgets.reserve(
                list(self.keys), rpm=self.spec["rpm"], max_wait=3.0
            )
            if not reservation.reserved:
                await asyncio.sleep(min(reservation.wait, 0.1))
                continue
            slot = time.time() + reservation.wait
            await asyncio.sleep(reservation.wait)
            if await self.call(reservation.fingerprint) and start <= slot < end:
                self.tally["ok_in_window"] += 1

    async def calls(self, count: int) -> None:
        for _ in range(count):
            reservation = await self.budgets.reserve(
                list(self.keys), rpm=self.spec["rpm"], max_wait=5.0
            )
            if reservation.all_disabled:
                self.tally["all_disabled"] = True
                return
            assert reservation.fingerprint is not None
            await asyncio.sleep(reservation.wait)
            await self.call(reservation.fingerprint)

    async def call(self, fp: str | None) -> bool:
        assert fp is not None
        key = self.keys[fp]
        self.tally["calls"] += 1
        self.tally[f"key:{fp}"] += 1
        async with self.http.post(
            f"{self.spec['base_url']}/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        ) as response:
            body = await response.json()
            if response.status == 429:
                self.tally["rate_limited"] += 1
                retry_after = response.headers.get("retry-after")
                await self.budgets.cool(fp, float(retry_after) if retry_after else None)
            elif response.status in (401, 403):
                self.tally["bad_key"] += 1
                reason = body["error"]["message"].replace(key, redact(key))
                await self.budgets.disable(fp, reason)
            return response.status == 200
