"""What one job costs Redis: commands, Redis CPU, network bytes and memory.

    python -m bench.cluster_footprint [--jobs N]

The figures `docs/scale.md` works from. Starts its own `redis-server` (no
persistence, a free loopback port) and, in this one process, runs each step
of a job's life N times (default 5,000), one after another, reading Redis's
own counters around each step (`CONFIG RESETSTAT`, then `INFO commandstats`
and `INFO stats`):

- `add`: the gateway appends a job (`JobStream.add`);
- `take`: a worker takes it, one job per take (`JobStream.take(consumer, 1)`:
  a lightly loaded worker's case, the dearest per job; a busy worker takes
  several per call);
- `claim`: the worker claims the job's delivery before answering
  (`JobStream.claim_delivery`);
- `finish`: acknowledges and deletes it (`JobStream.finish`);
- `gate`: the gateway's take of a member's cooldown and quota
  (`SharedGate.take`, a new member each time);
- `reserve`: a key of a ring of 4 reserved for one provider call
  (`SharedBudgets.reserve`);
- `renew`: one lease renewal of 64 jobs held by one worker (per call; a
  worker renews every lease/3);
- `heartbeat`: one process's beat (`Heartbeat.beat`, per call; every second).

One JSON line per step: `commands` (Redis commands per call, a Lua script
counting one plus the commands it runs), `redis_us` (the Redis process's CPU
per call, user + system from `INFO cpu`: commands, scripts, network and
event loop, what bounds one Redis core), `net_in_bytes` / `net_out_bytes` (bytes
Redis received and sent per call), `client_p50_ms` (the round trip seen by
this process). Then one `memory` line: the job entry's size as sent
(`job_entry_bytes`), Redis's memory per queued job (`queued_job_bytes`, from
`used_memory` before and after N jobs wait in a stream) and per heartbeat,
delivery claim and gate record (`MEMORY USAGE`). The job is a /chat with a
200-character prompt and a 200-character interaction token, the size of
Discord's. Everything on this machine: Redis's time per command is the
figure that carries over; the round trips are loopback floors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from aibot.cluster.budget import SharedBudgets
from aibot.cluster.connection import connect
from aibot.cluster.gate import SharedGate
from aibot.cluster.heartbeat import Heartbeat, NodeInfo
from aibot.cluster.streams import Delivery, JobStream
from aibot.jobs import Job
from aibot.sandbox.redis_server import start_redis
from aibot.settings import Settings
from aibot.store.days import Calendar
from bench.world import percentile

__all__ = ["footprint", "main", "sample_job"]

PREFIX = "footprint"
_PROMPT = "파이썬에서 리스트를 뒤집는 방법은? " * 10  # 200 characters
_TOKEN = "t" * 200  # an interaction token is about this long
_UNPACED = 1e9


def sample_job(n: int) -> Job:
    """A /chat job the size of a real one."""
    return Job(
        "chat",
        {"prompt": _PROMPT[:200]},
        user_id=100_000_000_000_000_000 + n,
        channel_id=200_000_000_000_000_000,
        guild_id=300_000_000_000_000_000,
        shard_id=0,
        interaction_id=400_000_000_000_000_000 + n,
        application_id=500_000_000_000_000_000,
        token=_TOKEN,
        token_expires_at=time.time() + 900,
        pool="chat",
    )


async def _step(
    redis: Redis, name: str, calls: int, one: Callable[[int], Awaitable[object]]
) -> dict[str, Any]:
    """Run `one(n)` for n in range(calls); Redis's counters per call."""
    await redis.config_resetstat()
    cpu_before = _redis_cpu(await redis.info("cpu"))
    samples = []
    for n in range(calls):
        began = time.perf_counter()
        await one(n)
        samples.append((time.perf_counter() - began) * 1000)
    cpu = _redis_cpu(await redis.info("cpu")) - cpu_before
    commands = await redis.info("commandstats")
    stats = await redis.info("stats")
    # What the measuring itself sent (CONFIG RESETSTAT, INFO) is left out.
    ours = ("cmdstat_config", "cmdstat_info")
    counted = {k: v for k, v in commands.items() if not k.startswith(ours)}
    return {
        "step": name,
        "calls": calls,
        "commands": round(sum(v["calls"] for v in counted.values()) / calls, 3),
        "redis_us": round(cpu * 1e6 / calls, 2),
        "net_in_bytes": round(stats["total_net_input_bytes"] / calls, 1),
        "net_out_bytes": round(stats["total_net_output_bytes"] / calls, 1),
        "client_p50_ms": round(percentile(samples, 0.5), 3),
        "commands_seen": sorted(k.removeprefix("cmdstat_") for k in counted),
    }


def _redis_cpu(info: dict[str, Any]) -> float:
    """CPU seconds the Redis process has used (all its threads)."""
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def footprint(redis: Redis, jobs: int) -> list[dict[str, Any]]:
    """Every step's line, then the memory line."""
    stream = JobStream(redis, "chat", prefix=PREFIX)
    await stream.ensure_group()
    before = (await redis.info("memory"))["used_memory"]
    lines = [await _step(redis, "add", jobs, lambda n: stream.add(sample_job(n)))]
    queued = (await redis.info("memory"))["used_memory"] - before
    taken: list[Delivery] = []

    async def take(_: int) -> None:
        taken.extend(await stream.take("worker-1", 1))

    lines.append(await _step(redis, "take", jobs, take))
    lines.append(await _step(redis, "claim", jobs, lambda n: stream.claim_delivery(taken[n])))
    claim_key = f"{PREFIX}:delivered:{taken[0].job.id}"
    claim_bytes = await redis.memory_usage(claim_key)
    held = [d.entry_id for d in taken[:64]]
    lines.append(await _step(redis, "renew", jobs // 10, lambda n: stream.renew("worker-1", held)))
    lines.append(await _step(redis, "finish", jobs, lambda n: stream.finish(taken[n].entry_id)))
    settings = Settings.from_env({"AIBOT_CHAT_DAILY_QUOTA": "10", "AIBOT_CHAT_COOLDOWN": "5"})
    gate = SharedGate(redis, PREFIX, settings, Calendar(settings.timezone))
    lines.append(await _step(redis, "gate", jobs, lambda n: gate.take(sample_job(n))))
    gate_keys = [k async for k in redis.scan_iter(f"{PREFIX}:gate:*", count=1000)]
    budgets = SharedBudgets(redis, PREFIX)
    ring = [f"fingerprint-{n}" for n in range(4)]
    lines.append(await _step(redis, "reserve", jobs, lambda n: budgets.reserve(ring, rpm=_UNPACED)))
    info = NodeInfo("video-1", ("video",), {"video": 4}, "1.0.0", (), time.time())
    heartbeat = Heartbeat(redis, lambda: info, prefix=PREFIX)
    lines.append(await _step(redis, "heartbeat", jobs // 10, lambda n: heartbeat.beat()))
    entry = {"id": taken[0].job.id, "job": json.dumps(taken[0].job.to_dict())}
    gate_bytes = [await redis.memory_usage(k) or 0 for k in gate_keys[:200]]
    lines.append(
        {
            "step": "memory",
            "job_entry_bytes": sum(len(k) + len(v.encode()) for k, v in entry.items()),
            "queued_job_bytes": round(queued / jobs, 1),
            "delivery_claim_bytes": claim_bytes,
            "heartbeat_bytes": await redis.memory_usage(f"{PREFIX}:node:video-1"),
            "gate_key_bytes_mean": round(sum(gate_bytes) / max(len(gate_bytes), 1), 1),
            "gate_keys_per_member": round(len(gate_keys) / jobs, 2),
        }
    )
    return lines


async def _run(jobs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="aibot-bench-footprint-") as folder:
        server = start_redis(Path(folder))
        redis = connect(server.url)
        try:
            for line in await footprint(redis, jobs):
                print(json.dumps(line, ensure_ascii=False), flush=True)
        finally:
            await redis.aclose()
            server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster_footprint", description=__doc__)
    parser.add_argument("--jobs", type=int, default=5000, help="calls of each step")
    asyncio.run(_run(parser.parse_args(argv).jobs))


if __name__ == "__main__":
    main()
