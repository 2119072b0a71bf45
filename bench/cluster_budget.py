"""Cluster scenario `shared_budget`: one key budget in Redis vs each process
pacing its keys alone, over 1, 2 and 4 processes (see `bench.cluster_shared`
for what it measures). The parent's side starts the fakes and the workers;
`work` is a worker's side, run in a process of its own by `bench.cluster_world`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import aiohttp
import redis.asyncio as redis

from aibot.cluster.budget import SharedBudgets
from aibot.jobs import NoKeyAvailable
from aibot.keys import KeyRing
from aibot.secrets import fingerprint
from bench.cluster_world import RedisStats, Scale, merged, run_together
from bench.fakes import FakeProcess

__all__ = ["shared_budget", "work"]

log = logging.getLogger("bench.cluster_shared")

_CHAT_BODY = {"model": "gpt-5-mini", "messages": [{"role": "user", "content": "hi"}]}
_UNPACED = 1e9  # rpm of the keys `reserve_p50_ms` is measured on: never a wait


# -- the parent's side ----------------------------------------------------------


async def shared_budget(redis_url: str, scale: Scale) -> list[dict[str, Any]]:
    """One budget in Redis vs each process alone, for each of `scale.processes`:
    one result each. Both sides run at once, each against its own fake."""
    config = {"rpm": {"openai": scale.rpm, "minimax": None, "stability": None}}
    async with FakeProcess(config) as shared_fake, FakeProcess(config) as alone_fake:
        fakes = {"shared": shared_fake, "alone": alone_fake}
        return [await _shared_budget(redis_url, n, scale, fakes) for n in scale.processes]


async def _shared_budget(
    redis_url: str, processes: int, scale: Scale, fakes: dict[str, FakeProcess]
) -> dict[str, Any]:
    from bench.world import bench_keys, percentile  # the workers do without (openai)

    rate = scale.demand * scale.keys * scale.rpm / 60
    log.info("shared_budget: %d processes, %.0f calls/s over them", processes, rate)
    before = {side: _rate_limited(await fake.counters()) for side, fake in fakes.items()}
    specs = []
    for side, fake in fakes.items():
        keys = bench_keys(f"cluster-{side}-{processes}", scale.keys)
        specs += [
            {
                "module": __name__,
                "role": side,
                "redis": redis_url,
                "prefix": f"bench-{processes}",
                "base_url": fake.env["OPENAI_BASE_URL"],
                "keys": keys,
                "rate": rate / processes,
                "scale": asdict(scale),
                "process": n,
            }
            for n in range(processes)
        ]

    async def empty_buckets() -> None:
        for spec in specs[::processes]:  # one spec per side
            await _empty_buckets(spec["base_url"], spec["keys"], scale.rpm)

    async with RedisStats(redis_url) as stats:
        results = await run_together(specs, before_start=empty_buckets if processes > 1 else None)
    limited = {
        side: _rate_limited(await fake.counters()) - before[side] for side, fake in fakes.items()
    }
    shared, alone = results[:processes], results[processes:]
    limit = scale.keys * scale.rpm / 60 * scale.window
    calls = sum(r["calls"] for r in shared)
    return {
        "scenario": "shared_budget",
        "processes": processes,
        "achieved_ratio": round(sum(r["ok_in_window"] for r in shared) / limit, 4),
        "rate_limited": limited["shared"],
        "reserve_p50_ms": round(percentile(merged(shared, "reserve_ms"), 0.5), 3),
        "alone_achieved_ratio": round(sum(r["ok_in_window"] for r in alone) / limit, 4),
        "alone_rate_limited": limited["alone"],
        "reserve_in_run_p50_ms": round(percentile(merged(shared, "in_run_ms"), 0.5), 3),
        "round_trips_per_call": round(sum(r["round_trips"] for r in shared) / max(calls, 1), 3),
        "redis_us_per_reserve": stats.us_per_script,
        "turned_away": sum(r["turned_away"] for r in shared),
        "keys": scale.keys,
        "rpm_per_key": scale.rpm,
        "window_s": scale.window,
    }


async def _empty_buckets(base_url: str, keys: Sequence[str], rpm: float) -> None:
    """Spend each key's burst at the fake (10 s worth: calls that all pass)."""
    burst = math.floor(max(1.0, rpm / 6))
    async with aiohttp.ClientSession() as http:
        for key in keys:
            for _ in range(burst):
                async with http.post(
                    f"{base_url}/chat/completions",
                    headers={"Authorization": f"Bearer {key}"},
                    json=_CHAT_BODY,
                ) as response:
                    await response.read()


def _rate_limited(counters: dict[str, Any]) -> int:
    return sum(n for name, n in counters["outcomes"].items() if name.endswith("/rate_limited"))


# -- the workers' side ----------------------------------------------------------


async def work(
    client: redis.Redis, spec: dict[str, Any], scale: Scale, start: float
) -> dict[str, Any]:
    """One process's calls, from the common `start`: its counts and samples."""
    budgets = SharedBudgets(client, spec["prefix"])
    async with aiohttp.ClientSession() as http:
        if spec["role"] == "shared":
            caller: _Caller = _SharedCaller(http, spec, scale, budgets)
        else:
            caller = _AloneCaller(http, spec, scale)
        jobs = []
        # Open loop: arrival n at start + n / rate, whatever became of the others.
        for n in range(math.floor(spec["rate"] * (scale.warmup + scale.window))):
            await asyncio.sleep(start + n / spec["rate"] - time.time())
            jobs.append(asyncio.create_task(caller.job(time.time())))
        await asyncio.gather(*jobs)
    begin = start + scale.warmup
    reserve_ms = []
    if spec["role"] == "shared":
        # Once every job of both sides has ended (each within max_wait of its
        # arrival), each process in its turn.
        turn = begin + scale.window + scale.max_wait + 1.0 + spec["process"] * scale.turn
        await asyncio.sleep(turn - time.time())
        reserve_ms = await _back_to_back(budgets, scale)
    return {
        "ok_in_window": sum(begin <= t < begin + scale.window for t in caller.finished),
        "calls": caller.calls,
        "round_trips": caller.round_trips,
        "turned_away": caller.turned_away,
        "in_run_ms": caller.reserve_ms,
        "reserve_ms": reserve_ms,
    }


async def _back_to_back(budgets: SharedBudgets, scale: Scale) -> list[float]:
    """`reserve` round trips one after another, on keys that never wait."""
    ring = [f"unpaced-{n}" for n in range(scale.keys)]
    samples = []
    for _ in range(scale.reserves):
        began = time.perf_counter()
        await budgets.reserve(ring, rpm=_UNPACED)
        samples.append((time.perf_counter() - began) * 1000)
    return samples


class _Caller:
    """Makes one chat call per arrival with a key of the ring, tried again
    after a 429 until `max_wait` after its arrival."""

    def __init__(self, http: aiohttp.ClientSession, spec: dict[str, Any], scale: Scale) -> None:
        self.http = http
        self.url = f"{spec['base_url']}/chat/completions"
        self.keys = {fingerprint(key): key for key in spec["keys"]}
        self.scale = scale
        self.finished: list[float] = []
        self.reserve_ms: list[float] = []
        self.calls = 0
        self.round_trips = 0  # to Redis
        self.turned_away = 0

    async def job(self, arrived: float) -> None:
        raise NotImplementedError

    def done(self, status: int) -> None:
        if status == 200:
            self.finished.append(time.time())

    async def call(self, key: str) -> tuple[int, float | None]:
        """(status, retry-after seconds) of one chat call with `key`."""
        self.calls += 1
        async with self.http.post(
            self.url, headers={"Authorization": f"Bearer {key}"}, json=_CHAT_BODY
        ) as response:
            await response.read()
            retry_after = response.headers.get("retry-after")
            return response.status, float(retry_after) if retry_after else None


class _SharedCaller(_Caller):
    def __init__(
        self,
        http: aiohttp.ClientSession,
        spec: dict[str, Any],
        scale: Scale,
        budgets: SharedBudgets,
    ) -> None:
        super().__init__(http, spec, scale)
        self.budgets = budgets
        self.ring = list(self.keys)

    async def job(self, arrived: float) -> None:
        deadline = arrived + self.scale.max_wait
        while True:
            began = time.perf_counter()
            reservation = await self.budgets.reserve(
                self.ring, rpm=self.scale.rpm, max_wait=max(0.0, deadline - time.time())
            )
            self.reserve_ms.append((time.perf_counter() - began) * 1000)
            if reservation.fingerprint is None:
                self.turned_away += 1  # one round trip too, but no call
                return
            self.round_trips += 1
            await asyncio.sleep(reservation.wait)
            status, retry_after = await self.call(self.keys[reservation.fingerprint])
            if status != 429:
                self.done(status)
                return
            await self.budgets.cool(reservation.fingerprint, retry_after)
            self.round_trips += 1


class _AloneCaller(_Caller):
    def __init__(self, http: aiohttp.ClientSession, spec: dict[str, Any], scale: Scale) -> None:
        super().__init__(http, spec, scale)
        self.ring = KeyRing("chat", "openai", spec["keys"], rpm=scale.rpm, concurrency=16)

    async def job(self, arrived: float) -> None:
        deadline = arrived + self.scale.max_wait
        while True:
            try:
                lease = await self.ring.acquire(timeout=max(0.0, deadline - time.time()))
            except NoKeyAvailable:
                self.turned_away += 1
                return
            status, retry_after = await self.call(lease.key)
            if status != 429:
                lease.ok()
                self.done(status)
                return
            lease.rate_limited(retry_after)
