"""Engine scenario `budget`: aibot's key ring against the reference design's
fixed keys, on equal demand, both against a fake enforcing the keys' RPM
(`bench.engine`'s docstring says what the figures mean)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from aibot.jobs import QueueFull
from aibot.pools import build_pools
from aibot.settings import Settings
from bench.baseline import measure_apart
from bench.engine_parts import PROMPT, Scale, failures
from bench.fakes import FakeProcess
from bench.world import Tally, TimedReply, bench_job, bench_keys, close_pools, engine_env, paced

__all__ = ["budget"]

log = logging.getLogger("bench.engine")


async def budget(scale: Scale) -> dict[str, Any]:
    """aibot's ring vs the reference design's fixed keys, on equal demand."""
    n, rpm = scale.budget_keys, scale.budget_rpm
    rate = scale.budget_demand * n * rpm / 60
    config = {"rpm": {"openai": rpm, "minimax": None, "stability": None}}
    async with FakeProcess(config) as ours, FakeProcess(config) as theirs:
        log.info("budget: %d keys x %.0f rpm, demand %.0f/s", n, rpm, rate)
        reference = asyncio.get_running_loop().create_task(
            measure_apart(
                theirs.env["OPENAI_BASE_URL"],
                bench_keys("reference", n),
                rate=rate,
                warmup=scale.budget_warmup,
                window=scale.budget_window,
                prompt=PROMPT,
            )
        )
        aibot = _AibotChat(ours.env, bench_keys("aibot", n), rpm)
        start = time.perf_counter()
        await paced(rate, scale.budget_warmup + scale.budget_window, aibot.arrive)
        window = (start + scale.budget_warmup, start + scale.budget_warmup + scale.budget_window)
        await aibot.close()
        theirs_result = await reference
        ours_429 = _rate_limited(await ours.counters())
        theirs_429 = _rate_limited(await theirs.counters())
    limit = n * rpm / 60 * scale.budget_window
    log.info("budget: aibot %s; reference %s", failures(aibot.tally), theirs_result)
    return {
        "scenario": "budget",
        "achieved_ratio": round(aibot.tally.ok_between(*window) / limit, 4),
        "rate_limited": ours_429,
        "baseline_achieved_ratio": round(theirs_result["ok"] / limit, 4),
        "baseline_rate_limited": theirs_429,
        "keys": n,
        "rpm_per_key": rpm,
        "window_s": scale.budget_window,
    }


class _AibotChat:
    """One chat pool whose ring holds every key, built from settings."""

    def __init__(self, fake_env: Mapping[str, str], keys: Sequence[str], rpm: float) -> None:
        env = engine_env(
            fake_env,
            AIBOT_POOLS="chat",
            OPENAI_API_KEY_1=",".join(keys),
            AIBOT_CHAT_PROVIDERS="openai",
            AIBOT_CHAT_RPM_OPENAI=rpm,
        )
        self.pools = build_pools(Settings.from_env(env))
        self.pool = self.pools["chat"]
        self.tally = Tally()

    def arrive(self, n: int) -> None:
        try:
            self.pool.submit(bench_job("chat", n % 500, prompt=PROMPT), TimedReply(self.tally))
        except QueueFull:
            self.tally.failures["busy"] += 1  # told at once to come back later

    async def close(self) -> None:
        await close_pools(self.pools)


def _rate_limited(counters: Mapping[str, Any]) -> int:
    return sum(n for name, n in counters["outcomes"].items() if name.endswith("/rate_limited"))
