"""Cluster benchmark: shared key budgets and the gate in Redis, over several processes.

    python -m bench.cluster_shared [--quick]

Prints one JSON line per scenario on stdout (progress goes to stderr). It
starts its own redis-server (`tests.fixtures.redis_server.start_redis`);
`python -m bench.cluster` calls `shared_budget` and `gate` the same way.
Every worker is a process of its own (`python -m bench.cluster_shared
--worker`), and all start at the same moment once every one is connected.

- `shared_budget`, for 1, 2 and 4 processes: 4 keys at 600 rpm each; the fake
  OpenAI server (`bench.fakes.FakeProcess`, a process of its own) enforces
  the same rpm per key as a token bucket (10 s worth of burst) with real
  429s. With more than one process, each key's bucket is emptied first (its
  10 s of burst spent in calls that all pass): processes pacing alone overrun
  it and empty it within 10 s, so the run starts where they end up, and the
  shared side starts from empty buckets too, the harder start. One process
  never overruns a bucket, so it starts full, as it stays. Chat calls arrive
  at twice the keys' summed rate, open loop, split evenly over the processes,
  for a warm-up and a measured window; a call not started within `max_wait`
  (2 s) is turned away; after a 429 the call is reported and tried again, on
  whichever key, until then. Shared: every
  process reserves through `SharedBudgets` (one Redis, one budget per key).
  Alone: the same workload at the same time against a fake process and keys
  of its own, each process pacing the keys with its own `aibot.keys.KeyRing`
  (several processes without Redis). Neither side reads rate-limit headers,
  as with MiniMax or Stability, which send none.
  `achieved_ratio` = calls answered inside the window / (keys x rpm / 60 x
  window); `rate_limited` = the 429s the fake answered over the whole run;
  `round_trips_per_call` = Redis calls (reserve, cool) per provider call;
  `turned_away`: calls given up after `max_wait` (one round trip each).
  `reserve_p50_ms`: the median `reserve` round trip, each process in turn
  reserving back to back after the run (on keys that never wait), so that
  the figure is the round trip's, not two cores shared by four busy loops.
  `reserve_in_run_p50_ms`: the median during the run itself, where a reserve
  finds the worker and Redis idle for ~10 ms before it, so it mostly measures
  how fast this machine wakes an idle process (a virtual machine with two
  shared cores: 0.5 ms and more), plus, with several processes, the other
  workers' CPU. `redis_us_per_reserve`: Redis's own time per script call
  (`INFO commandstats`), what bounds how many one Redis core serves.
- `gate`, over 3 processes: each fires 200 simultaneous /chat takes from one
  member (quota 10) and 200 /image takes from another (cooldown 60 s);
  `exact` when exactly 10 and exactly 1 passed. Then each process in turn
  takes back to back for distinct members: `take_p50_ms` is the median
  `SharedGate.take` round trip; `redis_us_per_take` Redis's own time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import redis.asyncio as redis

from aibot.cluster.budget import SharedBudgets
from aibot.cluster.gate import SharedGate
from aibot.jobs import Job, LimitReached, NoKeyAvailable
from aibot.keys import KeyRing
from aibot.secrets import fingerprint
from aibot.settings import Settings
from aibot.store.days import Calendar
from bench.fakes import FakeProcess

__all__ = ["FULL", "QUICK", "Scale", "gate", "main", "run", "shared_budget"]

log = logging.getLogger("bench.cluster_shared")

_ROOT = Path(__file__).resolve().parents[1]
_GATE_ENV = {
    "AIBOT_CHAT_DAILY_QUOTA": "10",
    "AIBOT_CHAT_COOLDOWN": "0",
    "AIBOT_IMAGE_DAILY_QUOTA": "0",
    "AIBOT_IMAGE_COOLDOWN": "60",
}
_CHAT_BODY = {"model": "gpt-5-mini", "messages": [{"role": "user", "content": "hi"}]}
_UNPACED = 1e9  # rpm of the keys `reserve_p50_ms` is measured on: never a wait


@dataclass(frozen=True)
class Scale:
    """Sizes and durations of one run (`FULL`, `QUICK`, or tiny ones in tests)."""

    keys: int = 4
    rpm: float = 600.0
    demand: float = 2.0  # x the keys' summed rate
    warmup: float = 5.0
    window: float = 60.0
    max_wait: float = 2.0  # seconds a call may wait for a key before it is turned away
    processes: tuple[int, ...] = (1, 2, 4)
    reserves: int = 2000  # back to back per process, for `reserve_p50_ms`
    gate_processes: int = 3
    gate_burst: int = 200  # simultaneous takes per process and pool
    gate_takes: int = 2000  # back to back per process, for `take_p50_ms`
    turn: float = 1.5  # seconds each process has for its back-to-back calls


FULL = Scale()
QUICK = Scale(warmup=2.0, window=8.0, reserves=500, gate_takes=500, turn=0.5)


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

    async with _RedisStats(redis_url) as stats:
        results = await _run_together(specs, before_start=empty_buckets if processes > 1 else None)
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
        "reserve_p50_ms": round(percentile(_merged(shared, "reserve_ms"), 0.5), 3),
        "alone_achieved_ratio": round(sum(r["ok_in_window"] for r in alone) / limit, 4),
        "alone_rate_limited": limited["alone"],
        "reserve_in_run_p50_ms": round(percentile(_merged(shared, "in_run_ms"), 0.5), 3),
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


async def gate(redis_url: str, processes: int, scale: Scale) -> dict[str, Any]:
    """Simultaneous takes through several processes: exact? and how long is a take?"""
    from bench.world import percentile

    log.info("gate: %d processes", processes)
    spec = {"role": "gate", "redis": redis_url, "prefix": "bench-gate", "scale": asdict(scale)}
    async with _RedisStats(redis_url) as stats:
        results = await _run_together([{**spec, "process": n} for n in range(processes)])
    chats = sum(r["chat_taken"] for r in results)
    images = sum(r["image_taken"] for r in results)
    return {
        "scenario": "gate",
        "processes": processes,
        "exact": chats == 10 and images == 1,
        "take_p50_ms": round(percentile(_merged(results, "take_ms"), 0.5), 3),
        "redis_us_per_take": stats.us_per_script,
        "simultaneous_takes": 2 * scale.gate_burst * processes,
        "chat_taken": chats,
        "image_taken": images,
    }


async def run(scale: Scale) -> list[dict[str, Any]]:
    """Every scenario of this module against a redis-server of its own."""
    from tests.fixtures.redis_server import start_redis

    with tempfile.TemporaryDirectory(prefix="aibot-bench-redis-") as folder:
        server = start_redis(Path(folder))
        try:
            results = await shared_budget(server.url, scale)
            results.append(await gate(server.url, scale.gate_processes, scale))
        finally:
            server.stop()
    return results


class _RedisStats:
    """Redis's own time per script call (`INFO commandstats`) over a block:
    what one Redis core spends per reserve or take, whichever process asks."""

    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url)
        self.us_per_script = 0.0

    async def __aenter__(self) -> _RedisStats:
        await self._client.config_resetstat()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stats = await self._client.info("commandstats")
        self.us_per_script = round(stats.get("cmdstat_evalsha", {}).get("usec_per_call", 0.0), 2)
        await self._client.aclose()


async def _run_together(
    specs: Sequence[dict[str, Any]],
    before_start: Callable[[], Awaitable[None]] | None = None,
) -> list[dict[str, Any]]:
    """One worker process per spec; once every one is connected (and
    `before_start` has run), all start at the same moment, 0.5 s on; their
    results in the order of `specs`."""
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.cluster_shared",
            "--worker",
            cwd=_ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in specs
    ]
    try:
        for child, spec in zip(children, specs, strict=True):
            await _say(child, spec)
        for child in children:
            assert child.stdout is not None
            if json.loads(await child.stdout.readline() or b"null") != {"ready": True}:
                raise RuntimeError("a benchmark worker did not start; see its stderr")
        if before_start is not None:
            await before_start()
        start = time.time() + 0.5
        for child in children:
            await _say(child, {"start": start})
        results = []
        for child in children:
            out, _ = await child.communicate()
            if child.returncode != 0:
                raise RuntimeError(f"a benchmark worker exited with {child.returncode}")
            results.append(json.loads(out))
        return results
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
                await child.wait()


async def _say(child: asyncio.subprocess.Process, message: dict[str, Any]) -> None:
    assert child.stdin is not None
    child.stdin.write(json.dumps(message).encode() + b"\n")
    await child.stdin.drain()


def _merged(results: Sequence[dict[str, Any]], name: str) -> list[float]:
    return [sample for result in results for sample in result[name]]


def _rate_limited(counters: dict[str, Any]) -> int:
    return sum(n for name, n in counters["outcomes"].items() if name.endswith("/rate_limited"))


# -- the workers' side ----------------------------------------------------------


def _client(url: str) -> redis.Redis:
    return redis.Redis(
        connection_pool=redis.BlockingConnectionPool.from_url(url, max_connections=64)
    )


async def _worker() -> dict[str, Any]:
    """Read a spec, connect, say ready, wait for the common start, work, report."""
    spec = json.loads(sys.stdin.readline())
    scale = Scale(**{**spec["scale"], "processes": tuple(spec["scale"]["processes"])})
    client = _client(spec["redis"])
    try:
        await client.ping()
        _answer({"ready": True})
        start = json.loads(await asyncio.to_thread(sys.stdin.readline))["start"]
        await asyncio.sleep(max(0.0, start - time.time()))
        if spec["role"] == "gate":
            return await _gate_worker(client, spec, scale, start)
        return await _budget_worker(client, spec, scale, start)
    finally:
        await client.aclose()


async def _budget_worker(
    client: redis.Redis, spec: dict[str, Any], scale: Scale, start: float
) -> dict[str, Any]:
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


async def _gate_worker(
    client: redis.Redis, spec: dict[str, Any], scale: Scale, start: float
) -> dict[str, Any]:
    settings = Settings.from_env(_GATE_ENV)
    shared = SharedGate(client, spec["prefix"], settings, Calendar(settings.timezone))
    chats = [_job("chat", 1) for _ in range(scale.gate_burst)]
    images = [_job("image", 2) for _ in range(scale.gate_burst)]
    taken = await asyncio.gather(*(_taken(shared, job) for job in chats + images))
    take_ms = []
    await asyncio.sleep(start + 1.0 + spec["process"] * scale.turn - time.time())
    first_member = 1_000_000 * (spec["process"] + 1)
    for n in range(scale.gate_takes):
        job = _job("chat", first_member + n)
        began = time.perf_counter()
        await shared.take(job)
        take_ms.append((time.perf_counter() - began) * 1000)
    return {
        "chat_taken": sum(taken[: len(chats)]),
        "image_taken": sum(taken[len(chats) :]),
        "take_ms": take_ms,
    }


def _job(command: str, user: int) -> Job:
    return Job(command=command, args={}, user_id=user, channel_id=5, guild_id=1, pool=command)


async def _taken(shared: SharedGate, job: Job) -> bool:
    try:
        await shared.take(job)
    except LimitReached:
        return False
    return True


def _answer(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster_shared", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short windows (under a minute)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _answer(asyncio.run(_worker()))
        return
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    for result in asyncio.run(run(QUICK if args.quick else FULL)):
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
