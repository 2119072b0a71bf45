"""`python -m bench.front --cluster`: the `front` burst against a gateway-only process.

The same burst as `front` (1,000 interactions of the same mix within one second,
over a real socket from the fake Discord in its own process, each timed from the
INTERACTION_CREATE frame leaving to its first callback arriving) against aibot in
cluster mode: the gateway is `create_bot(env)` with `AIBOT_REDIS_URL` and
`AIBOT_POOLS=none`, in this process, on the bots' CPU. It routes, takes the gate
(one script call to Redis), defers, and appends each job to its pool's stream; a
worker process (`python -m tests.cluster_node`, `AIBOT_GATEWAY=off`, every pool)
takes the jobs from Redis and answers them against the fake providers, replying
to the same fake Discord over HTTP. The bare bot is the floor, in the same run,
as in `front`.

Redis (a throwaway `redis-server` on a free loopback port, no persistence,
stopped by its PID) and the worker stand for other machines: they run on the
fakes' CPUs, the worker at a lower priority (nice 10, not idle: a worker starved
past its heartbeat's expiry would make the gateway refuse its pools' jobs, a
cheaper path than the one measured). The worker is stopped before the floor runs.

Prints::

    {"scenario": "front_cluster", "interactions", "answered", "deferred",
     "jobs_over_redis", "defer_p50_ms", "defer_p99_ms", "floor_defer_p99_ms",
     "defer_p99_ratio", "peak_rss_mb"}

`deferred`: interactions answered by a defer (the job commands; /ping and /status
are answered at once); `jobs_over_redis`: entries added to the pools' streams in
that burst, one per deferred job. As in `front`, each bot is warmed up first,
`--quick` times one burst and a full run three, reporting the one with the median
p99; each burst's details go to stderr. Needs `redis-server` on the PATH.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from aibot import create_bot
from aibot.catalogue import POOLS
from aibot.cluster.connection import connect
from aibot.cluster.heartbeat import live_nodes
from aibot.sandbox.fake_discord import FakeDiscordProcess, pointed_at
from aibot.sandbox.redis_server import start_redis
from bench.front_world import (
    COUNT,
    GUILDS,
    SHARDS,
    WARMUP,
    FloorBot,
    aibot_env,
    cpus_apart,
    fake_providers,
    log,
    logged,
    measure,
    on_cpus,
    peak_rss_mb,
    started,
    summary,
    timed_burst,
    typical,
)

__all__ = ["FULL", "MISSING_REDIS", "QUICK", "Size", "front_cluster", "redis_missing"]

MISSING_REDIS = (
    "bench.front --cluster needs redis-server on the PATH "
    "(Debian/Ubuntu: apt-get install redis-server)"
)
PREFIX = "aibot-bench"
WORKER_NICE = 10
# Seconds to wait for the worker's heartbeat, and for a burst's last jobs to reach Redis.
READY_TIMEOUT = 60.0
ENQUEUED_TIMEOUT = 5.0
_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True, slots=True)
class Size:
    """A run's size: `rounds` timed bursts of `count` in a second, after a warm-up
    burst of `warmup`."""

    count: int = COUNT
    warmup: int = WARMUP
    rounds: int = 3


FULL = Size()
QUICK = Size(rounds=1)


def redis_missing() -> bool:
    """True when there is no `redis-server` to start."""
    return shutil.which("redis-server") is None


async def front_cluster(size: Size = FULL) -> dict[str, Any]:
    """The `front_cluster` scenario (see the module docstring); its JSON line's fields.
    `FileNotFoundError` when `redis-server` is missing."""
    bot_cpus, fake_cpus = cpus_apart()
    with tempfile.TemporaryDirectory(prefix="aibot-bench-cluster-") as folder:
        async with contextlib.AsyncExitStack() as stack:
            with on_cpus(fake_cpus):  # Redis and the fakes' processes start there
                server = start_redis(Path(folder))
                stack.callback(server.stop)
                fake = await stack.enter_async_context(
                    FakeDiscordProcess.spawn(shard_count=SHARDS, guilds=GUILDS)
                )
                base_urls = await stack.enter_async_context(fake_providers())
            env = {
                **aibot_env(fake.token, base_urls, folder),
                "AIBOT_REDIS_URL": server.url,
                "AIBOT_REDIS_PREFIX": PREFIX,
            }
            with on_cpus(bot_cpus), pointed_at(fake):
                rounds = await _gateway_rounds(fake, env, Path(folder), fake_cpus, size)
                gateway = typical(logged("gateway", rounds))
                rss = peak_rss_mb()
                gc.collect()
                floor_rounds = await measure(
                    fake, FloorBot(), rounds=size.rounds, count=size.count, warmup=size.warmup
                )
                floor = typical(logged("floor", floor_rounds))
    return _line(gateway, floor, rss)


def _line(gateway: Mapping[str, Any], floor: Mapping[str, Any], rss: float) -> dict[str, Any]:
    ratio = None
    if gateway["p99_ms"] is not None and floor["p99_ms"]:
        ratio = round(gateway["p99_ms"] / floor["p99_ms"], 2)
    return {
        "scenario": "front_cluster",
        "interactions": gateway["sent"],
        "answered": gateway["answered"],
        "deferred": gateway["callback_types"].get("5", 0),
        "jobs_over_redis": gateway["jobs_over_redis"],
        "defer_p50_ms": gateway["p50_ms"],
        "defer_p99_ms": gateway["p99_ms"],
        "floor_defer_p99_ms": floor["p99_ms"],
        "defer_p99_ratio": ratio,
        "peak_rss_mb": rss,
    }


async def _gateway_rounds(
    fake: FakeDiscordProcess,
    env: Mapping[str, str],
    folder: Path,
    worker_cpus: set[int],
    size: Size,
) -> list[dict[str, Any]]:
    """The worker started and serving every pool, then the gateway started, warmed
    up and timed over `size.rounds` bursts; both stopped on the way out."""
    redis = connect(env["AIBOT_REDIS_URL"])
    try:
        with on_cpus(worker_cpus):
            worker = _Worker.start(fake, env, folder)
        try:
            await worker.serving(redis)
            (folder / "gateway").mkdir()
            gateway_env = {
                **env,
                "AIBOT_NODE": "gateway",
                "AIBOT_POOLS": "none",
                "AIBOT_DATA_DIR": str(folder / "gateway"),
            }
            bot = create_bot(gateway_env)
            async with started(fake, bot, warmup=size.warmup) as run_task:
                rounds = []
                for _ in range(size.rounds):
                    before = await _entries_added(redis)
                    result = summary(await timed_burst(fake, run_task, size.count, duration=1.0))
                    result["jobs_over_redis"] = await _enqueued_since(
                        redis, before, result["callback_types"].get("5", 0)
                    )
                    rounds.append(result)
                return rounds
        finally:
            worker.stop()
    finally:
        await redis.aclose()


async def _entries_added(redis: Redis) -> int:
    """Entries ever added to the pools' job streams (a stream not made yet: 0)."""
    async with redis.pipeline(transaction=False) as pipe:
        for pool in POOLS:
            pipe.xinfo_stream(f"{PREFIX}:jobs:{pool}")
        replies = await pipe.execute(raise_on_error=False)
    return sum(int(r["entries-added"]) for r in replies if not isinstance(r, Exception))


async def _enqueued_since(redis: Redis, before: int, expected: int) -> int:
    """Entries added since `before`, once `expected` are there (each deferred job is
    appended just after its defer) or `ENQUEUED_TIMEOUT` seconds have passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ENQUEUED_TIMEOUT
    added = await _entries_added(redis) - before
    while added < expected and loop.time() < deadline:
        await asyncio.sleep(0.1)
        added = await _entries_added(redis) - before
    return added


class _Worker:
    """The worker process (`python -m tests.cluster_node`, `AIBOT_GATEWAY=off`,
    every pool), its output in a file, stopped by its PID."""

    def __init__(self, popen: subprocess.Popen[bytes], log_path: Path) -> None:
        self.popen = popen
        self.log_path = log_path

    @classmethod
    def start(cls, fake: FakeDiscordProcess, env: Mapping[str, str], folder: Path) -> _Worker:
        worker_env = {
            **os.environ,
            **env,
            "AIBOT_GATEWAY": "off",
            "AIBOT_NODE": "worker",
            "AIBOT_POOLS": ",".join(POOLS),
            "AIBOT_DATA_DIR": str(folder / "worker"),
        }
        (folder / "worker").mkdir()
        log_path = folder / "worker.log"
        with log_path.open("wb") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", "tests.cluster_node", fake.base_url, fake.ws_url],
                cwd=_ROOT,
                env=worker_env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        with contextlib.suppress(OSError):
            # Another machine's work: it yields to the fake Discord, which is timing.
            os.setpriority(os.PRIO_PROCESS, popen.pid, WORKER_NICE)
        return cls(popen, log_path)

    async def serving(self, redis: Redis) -> None:
        """Until the worker's heartbeat says it runs every pool."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT
        while loop.time() < deadline:
            if self.popen.poll() is not None:
                code = self.popen.returncode
                raise RuntimeError(f"the worker exited with {code}:\n{self.tail()}")
            nodes = await live_nodes(redis, prefix=PREFIX)
            if any(set(POOLS) <= set(node.pools) for node in nodes):
                log("worker serving every pool")
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"the worker did not serve within {READY_TIMEOUT:.0f} s:\n{self.tail()}")

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        """SIGTERM (it drains), SIGKILL if it lingers."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
