"""Cluster transport benchmark: jobs over Redis Streams between processes.

Three of `python -m bench.cluster`'s scenarios (it starts the `redis-server`,
no persistence, a free loopback port, and prints the lines). Starts its own
worker processes (`tests/cluster_worker.py`: the stream primitives of
`aibot.cluster.streams` with a worker loop like aibot's: take as many jobs as
there are free slots, reclaim first, renew leases every lease/3, claim the
delivery before answering, then acknowledge and delete). Everything runs on
this machine, so the figures are floors for a real deployment. Each scenario
returns its JSON line(s); details go to stderr.

- `transport`: 2 workers (64 slots each, jobs that do nothing) while this
  process offers 1,000 jobs/s, open loop, each `XADD` its own task. A job's
  start latency runs from its `submitted_at` (taken just before its `XADD`)
  to the moment a worker starts it (same machine, same clock). A warm-up
  (1 s) comes first and is not counted. `jobs_per_s` = jobs measured /
  (last finish - first submit).
- `reclaim`: 5 runs, each with two fresh workers (8 slots, 1 s jobs, 3 s
  lease renewed every 1 s, a new-job read that blocks 0.5 s) sharing a
  burst of jobs; once one worker holds a full load it is killed with
  SIGKILL. `lost`: jobs never answered (60 s bound); `answered_twice`:
  answers past the first; `reclaim_max_s`: the longest time from the kill to
  the survivor starting one of the killed worker's jobs again.
- `scaling`: 1, 2 and 4 workers (8 slots each) whose job takes 200 ms
  (`asyncio.sleep` standing for a provider); the same batch of jobs queued at
  once; `jobs_per_s` from the first `XADD` to the last finish; `speedup`
  against 1 worker.

`bench.cluster --quick` offers 3 s in `transport` and fewer jobs elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from aibot.cluster.streams import JobStream
from aibot.jobs import Job
from bench.world import percentile
from tests.cluster_processes import Process, spawn

__all__ = ["FULL", "QUICK", "SCENARIOS", "Bench", "Scale", "reclaim", "scaling", "transport"]

log = logging.getLogger("bench.cluster_transport")

RATE = 1000  # jobs/s offered in `transport`
_TICK = 0.001
_SENDERS = 16


@dataclass(frozen=True, slots=True)
class Scale:
    transport_seconds: float
    reclaim_runs: int
    reclaim_jobs: int
    scaling_rounds: int  # jobs = 4 workers x 8 slots x rounds


QUICK = Scale(transport_seconds=3.0, reclaim_runs=5, reclaim_jobs=16, scaling_rounds=5)
FULL = Scale(transport_seconds=10.0, reclaim_runs=5, reclaim_jobs=32, scaling_rounds=12)


@dataclass(frozen=True, slots=True)
class Bench:
    """The throwaway Redis and where the workers write their figures."""

    url: str
    redis: Redis
    folder: Path


def start_worker(bench: Bench, prefix: str, name: str, *options: str) -> Process:
    worker = spawn(
        "tests.cluster_worker", bench.url,
        "--consumer", name, "--prefix", prefix,
        "--stats", str(bench.folder / f"{prefix}-{name}.json"),
        *options,
    )  # fmt: skip
    worker.wait_line("ready")
    return worker


def stop_workers(bench: Bench, prefix: str, workers: dict[str, Process]) -> dict[str, Any]:
    """SIGTERM each worker; their start latencies and finish times, merged."""
    merged: dict[str, Any] = {"latencies": {}, "finished_at": [], "cpu_s": 0.0}
    for name, worker in workers.items():
        worker.stop()
        path = bench.folder / f"{prefix}-{name}.json"
        if path.exists():
            stats = json.loads(path.read_text())
            merged["latencies"].update(dict(stats["latencies"]))
            merged["finished_at"].extend(stats["finished_at"])
            merged["cpu_s"] += stats["cpu_s"]
    return merged


async def wait_drained(stream: JobStream, timeout: float) -> bool:
    """Until every entry has been finished (finished entries are deleted)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (await stream.load()).length == 0:
            return True
        await asyncio.sleep(0.01)
    return False


def job(n: int, **args: Any) -> Job:
    return Job("chat", {"n": n, **args}, user_id=n, channel_id=1, token="bench-token")


async def offer(stream: JobStream, rate: float, seconds: float, tag: str) -> list[str]:
    """Add jobs at `rate` a second for `seconds`, open loop; returns their ids.

    Each job is made (its `submitted_at` taken) when it is due, then added by
    one of `_SENDERS` tasks, as the concurrent commands of a gateway would be:
    a job waiting for a sender counts in its start latency. A fixed number of
    senders, not a task per job: hundreds of tasks waiting on the client's
    connection pool wake one another at every release and fall behind for good.
    """
    due_jobs: asyncio.Queue[Job | None] = asyncio.Queue()

    async def send() -> None:
        while (new := await due_jobs.get()) is not None:
            await stream.add(new)

    senders = [asyncio.create_task(send()) for _ in range(_SENDERS)]
    ids: list[str] = []
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        due = math.floor(elapsed * rate) + 1
        while len(ids) < due:
            new = job(len(ids), tag=tag)
            ids.append(new.id)
            due_jobs.put_nowait(new)
        await asyncio.sleep(_TICK)
    for _ in senders:
        due_jobs.put_nowait(None)
    await asyncio.gather(*senders)
    return ids


# -- scenarios ---------------------------------------------------------------


async def transport(bench: Bench, scale: Scale) -> dict[str, Any]:
    prefix = "transport"
    stream = JobStream(bench.redis, "chat", prefix=prefix)
    await stream.ensure_group()
    options = ("--slots", "64", "--lease", "3")
    workers = {name: start_worker(bench, prefix, name, *options) for name in ("w1", "w2")}
    try:
        await offer(stream, RATE, 1.0, "warm-up")
        await wait_drained(stream, 30)
        await asyncio.sleep(0.2)
        first_submit = time.time()
        measured = await offer(stream, RATE, scale.transport_seconds, "measured")
        drained = await wait_drained(stream, 60)
    finally:
        stats = stop_workers(bench, prefix, workers)
    latencies = [stats["latencies"][i] * 1000 for i in measured if i in stats["latencies"]]
    last_finish = max(stats["finished_at"], default=first_submit)
    log.info(
        "transport: %d offered, %d started, drained=%s; worker CPU %.3f ms a job (warm-up too)",
        len(measured),
        len(latencies),
        drained,
        stats["cpu_s"] * 1000 / max(len(stats["latencies"]), 1),
    )
    return {
        "scenario": "transport",
        "jobs_per_s": round(len(latencies) / max(last_finish - first_submit, 1e-9), 1),
        "start_p50_ms": round(percentile(latencies, 0.50), 2),
        "start_p99_ms": round(percentile(latencies, 0.99), 2),
    }


async def events(redis: Redis, prefix: str, what: str) -> list[dict[str, Any]]:
    return [json.loads(item) for item in await redis.lrange(f"{prefix}:test:{what}", 0, -1)]


async def reclaim_run(bench: Bench, run: int, jobs: int) -> tuple[int, int, float]:
    """One kill -9: (lost, answered twice, seconds from the kill to the last
    of the killed worker's jobs starting again). A job of the killed worker
    that never started again is counted lost, as it is never answered."""
    prefix = f"reclaim{run}"
    stream = JobStream(bench.redis, "chat", prefix=prefix)
    await stream.ensure_group()
    options = ("--slots", "8", "--job-seconds", "1", "--lease", "3", "--record")
    workers = {name: start_worker(bench, prefix, name, *options) for name in ("doomed", "other")}
    try:
        ids = []
        for n in range(jobs):
            new = job(n)
            ids.append(new.id)
            await stream.add(new)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            started = await events(bench.redis, prefix, "started")
            if sum(e["consumer"] == "doomed" for e in started) >= 8:
                break
            await asyncio.sleep(0.01)
        workers["doomed"].kill()
        killed_at = time.time()
        started = await events(bench.redis, prefix, "started")
        held = {e["job"] for e in started if e["consumer"] == "doomed"}
        await wait_drained(stream, 60)
        answers = Counter(await bench.redis.lrange(f"{prefix}:test:answers", 0, -1))
        again = [
            e["at"] - killed_at
            for e in await events(bench.redis, prefix, "started")
            if e["consumer"] == "other" and e["deliveries"] > 1 and e["job"] in held
        ]
    finally:
        stop_workers(bench, prefix, workers)
    lost = sum(1 for i in ids if answers[i] == 0)
    twice = sum(max(0, count - 1) for count in answers.values())
    log.info("reclaim run %d: %d reclaimed, lost %d, twice %d", run, len(again), lost, twice)
    return lost, twice, max(again, default=0.0)


async def reclaim(bench: Bench, scale: Scale) -> dict[str, Any]:
    results = [
        await reclaim_run(bench, run, scale.reclaim_jobs) for run in range(scale.reclaim_runs)
    ]
    return {
        "scenario": "reclaim",
        "runs": len(results),
        "lost": sum(r[0] for r in results),
        "answered_twice": sum(r[1] for r in results),
        "reclaim_max_s": round(max(r[2] for r in results), 2),
    }


async def scaling_run(bench: Bench, workers: int, jobs: int) -> float:
    """Jobs a second through `workers` processes of 8 slots, 200 ms jobs."""
    prefix = f"scaling{workers}"
    stream = JobStream(bench.redis, "chat", prefix=prefix)
    await stream.ensure_group()
    options = ("--slots", "8", "--job-seconds", "0.2", "--lease", "3")
    running = {f"w{n}": start_worker(bench, prefix, f"w{n}", *options) for n in range(workers)}
    try:
        start = time.time()
        await asyncio.gather(*(stream.add(job(n)) for n in range(jobs)))
        await wait_drained(stream, 120)
    finally:
        stats = stop_workers(bench, prefix, running)
    rate = len(stats["finished_at"]) / (max(stats["finished_at"]) - start)
    log.info("scaling: %d workers, %.1f jobs/s", workers, rate)
    return rate


async def scaling(bench: Bench, scale: Scale) -> list[dict[str, Any]]:
    jobs = 4 * 8 * scale.scaling_rounds
    rates = {n: await scaling_run(bench, n, jobs) for n in (1, 2, 4)}
    return [
        {
            "scenario": "scaling",
            "workers": n,
            "jobs_per_s": round(rate, 1),
            "speedup": round(rate / rates[1], 2),
        }
        for n, rate in rates.items()
    ]


# -- command line --------------------------------------------------------------

SCENARIOS: dict[str, Callable[[Bench, Scale], Awaitable[dict[str, Any] | list[dict[str, Any]]]]] = {
    "transport": transport,
    "reclaim": reclaim,
    "scaling": scaling,
}
