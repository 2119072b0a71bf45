"""Cluster scenario `gate`: simultaneous takes of one member's quota and
cooldown through several processes (see `bench.cluster_shared` for what it
measures). `gate` is the parent's side; `work` a worker's, run in a process of
its own by `bench.cluster_world`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict
from typing import Any

import redis.asyncio as redis

from aibot.cluster.gate import SharedGate
from aibot.jobs import Job, LimitReached
from aibot.settings import Settings
from aibot.store.days import Calendar
from bench.cluster_world import RedisStats, Scale, merged, run_together

__all__ = ["gate", "work"]

log = logging.getLogger("bench.cluster_shared")

_GATE_ENV = {
    "AIBOT_CHAT_DAILY_QUOTA": "10",
    "AIBOT_CHAT_COOLDOWN": "0",
    "AIBOT_IMAGE_DAILY_QUOTA": "0",
    "AIBOT_IMAGE_COOLDOWN": "60",
}


async def gate(redis_url: str, processes: int, scale: Scale) -> dict[str, Any]:
    """Simultaneous takes through several processes: exact? and how long is a take?"""
    from bench.world import percentile

    log.info("gate: %d processes", processes)
    spec = {
        "module": __name__,
        "role": "gate",
        "redis": redis_url,
        "prefix": "bench-gate",
        "scale": asdict(scale),
    }
    async with RedisStats(redis_url) as stats:
        results = await run_together([{**spec, "process": n} for n in range(processes)])
    chats = sum(r["chat_taken"] for r in results)
    images = sum(r["image_taken"] for r in results)
    return {
        "scenario": "gate",
        "processes": processes,
        "exact": chats == 10 and images == 1,
        "take_p50_ms": round(percentile(merged(results, "take_ms"), 0.5), 3),
        "redis_us_per_take": stats.us_per_script,
        "simultaneous_takes": 2 * scale.gate_burst * processes,
        "chat_taken": chats,
        "image_taken": images,
    }


async def work(
    client: redis.Redis, spec: dict[str, Any], scale: Scale, start: float
) -> dict[str, Any]:
    """One process's burst of takes, then its turn of back-to-back takes."""
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
