"""Engine scenario `isolation`: chat latency alone and while the image and
video pools are saturated (`bench.engine`'s docstring says what the figures
mean)."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from aibot.pools import build_pools
from aibot.pools.base import Pool
from aibot.settings import Settings
from bench.engine_parts import PROMPT, UNLIMITED, Scale, failures
from bench.fakes import FakeProcess
from bench.world import (
    Tally,
    TimedReply,
    bench_job,
    bench_keys,
    close_pools,
    engine_env,
    paced,
    percentile,
)

__all__ = ["isolation"]

log = logging.getLogger("bench.engine")


async def isolation(scale: Scale) -> dict[str, Any]:
    """Chat p99 with the image and video pools saturated, over chat p99 alone."""
    config = {
        "rpm": None,
        "timeout_delay": scale.image_delay,  # the "timeout" fault holds a request this long
        "inject": [["minimax", "timeout", 10**9, "image"]],
        "video_seconds": 24 * 3600.0,
        "video_polls": 10**9,
    }
    async with FakeProcess(config) as fake:
        pools = build_pools(Settings.from_env(_isolation_env(fake.env, scale)))
        alone, loaded = Tally(), Tally()
        rounds = max(1, round(scale.isolation_seconds / scale.isolation_round))
        seconds = scale.isolation_seconds / rounds
        await _chat_load(pools["chat"], scale.chat_rate, min(1.0, seconds), Tally())  # warm up
        for round_ in range(rounds):
            # A L, L A, A L, ...: drift on a shared machine falls on both conditions.
            for condition in (alone, loaded) if round_ % 2 == 0 else (loaded, alone):
                # What the previous phase left to collect is not this phase's cost.
                gc.collect()
                if condition is alone:
                    await _chat_load(pools["chat"], scale.chat_rate, seconds, alone)
                    continue
                saturation = _Saturation(pools)
                await saturation.start()
                await _chat_load(pools["chat"], scale.chat_rate, seconds, loaded)
                await saturation.stop()
        await close_pools(pools)
    p99_alone = percentile(alone.latencies, 0.99) * 1000
    p99_loaded = percentile(loaded.latencies, 0.99) * 1000
    for name, tally in (("alone", alone), ("loaded", loaded)):
        p50, p95 = (percentile(tally.latencies, q) * 1000 for q in (0.5, 0.95))
        log.info("isolation: %s: %s; p50 %.1f ms, p95 %.1f ms", name, failures(tally), p50, p95)
    return {
        "scenario": "isolation",
        "p99_ratio": round(p99_loaded / p99_alone, 3) if p99_alone else 0.0,
        "chat_p99_ms_alone": round(p99_alone, 2),
        "chat_p99_ms_loaded": round(p99_loaded, 2),
        "chat_jobs": len(alone.latencies) + len(loaded.latencies),
        "chat_failed": sum(alone.failures.values()) + sum(loaded.failures.values()),
        "chat_rate": scale.chat_rate,
    }


def _isolation_env(fake_env: Mapping[str, str], scale: Scale) -> dict[str, str]:
    """Chat on OpenAI, image and video on MiniMax; rates high enough that the
    provider's slowness, not the rings, is what saturates image and video."""
    chat, image, video = (bench_keys(label, 1)[0] for label in ("chat", "image", "video"))
    return engine_env(
        fake_env,
        AIBOT_POOLS="chat,image,video",
        OPENAI_API_KEY_1=chat,
        MINIMAX_API_KEY_2=image,
        MINIMAX_API_KEY_3=video,
        AIBOT_CHAT_PROVIDERS="openai",
        AIBOT_CHAT_RPM_OPENAI=UNLIMITED,
        AIBOT_IMAGE_RPM_MINIMAX=UNLIMITED,
        AIBOT_VIDEO_RPM_MINIMAX=UNLIMITED,
        AIBOT_VIDEO_POLL_SECONDS=scale.video_poll,
    )


async def _chat_load(pool: Pool, rate: float, seconds: float, tally: Tally) -> None:
    """Chat jobs at `rate` per second for `seconds`; returns once all ended."""

    def arrive(n: int) -> None:
        pool.submit(bench_job("chat", n % 100, prompt=PROMPT), TimedReply(tally))

    before = len(tally.latencies) + sum(tally.failures.values())
    sent = await paced(rate, seconds, arrive)
    await _until(lambda: len(tally.latencies) + sum(tally.failures.values()) - before >= sent)


class _Saturation:
    """Keeps the image and video pools' queues full until `stop()`."""

    def __init__(self, pools: Mapping[str, Pool]) -> None:
        self.pools = [pools["image"], pools["video"]]
        self.tally = Tally()
        self._task: asyncio.Task[None] | None = None
        self._sent = 0

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._fill())
        await _until(lambda: all(pool.load().full for pool in self.pools))

    async def _fill(self) -> None:
        while True:
            for pool in self.pools:
                while not pool.load().full:
                    self._sent += 1
                    job = bench_job(pool.name, 1000 + self._sent % 50, prompt=PROMPT)
                    pool.submit(job, TimedReply(self.tally))
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        """Stop filling and cancel every image and video job, queued or running."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for pool in self.pools:
            for job, _state in pool.jobs():
                pool.cancel(job.id)
        await _until(lambda: not any(pool.jobs() for pool in self.pools))
        log.debug("isolation: saturating jobs: %s", failures(self.tally))


async def _until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            raise TimeoutError("the benchmark waited too long for its jobs")
        await asyncio.sleep(0.01)
