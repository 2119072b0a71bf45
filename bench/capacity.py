"""The `capacity` scenario of `bench.front`: the highest offered rate a bot keeps up
with (see bench/front.py's docstring for the method)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from discord.ext import commands

from aibot.sandbox.fake_discord import FakeDiscordProcess
from bench.front_world import log, started, summary, timed_burst

__all__ = ["CAPACITY_PRECISION", "QUICK_PRECISION", "capacity_of", "highest_rate"]

# The capacity search: offered rates (interactions a second) between these two,
# `CAPACITY_SECONDS` at each, to within `CAPACITY_PRECISION` (`QUICK_PRECISION` with
# --quick); a rate holds when every interaction is answered with the defer p99 under
# `CAPACITY_P99_MS`.
CAPACITY_LOW = 250.0
CAPACITY_HIGH = 4000.0
CAPACITY_SECONDS = 2.0
CAPACITY_P99_MS = 250.0
CAPACITY_PRECISION = 1.1
QUICK_PRECISION = 1.5
QUIET_SECONDS = 0.5


async def highest_rate(
    holds: Callable[[float], Awaitable[bool]], low: float, high: float, precision: float
) -> float:
    """The highest rate in [`low`, `high`] at which `holds(rate)`, to within a factor
    of `precision` (1.1: 10%), taking `holds` to be true up to some rate and false
    above it: from `low`, doubling until a rate fails, then bisecting (geometrically)
    between the last that held and the first that failed. 0 when `low` fails."""
    if not await holds(low):
        return 0.0
    held, failed = low, math.inf
    while failed == math.inf and held < high:
        rate = min(high, held * 2)
        if await holds(rate):
            held = rate
        else:
            failed = rate
    while failed != math.inf and failed / held > precision:
        rate = round(math.sqrt(held * failed))
        if await holds(rate):
            held = rate
        else:
            failed = rate
    return held


async def capacity_of(
    fake: FakeDiscordProcess,
    build: Callable[[], commands.AutoShardedBot],
    name: str,
    *,
    precision: float,
) -> float:
    """The capacity of the bots `build` makes: the highest offered rate (interactions
    a second, for `CAPACITY_SECONDS` at each rate) with every interaction answered
    and the defer p99 under `CAPACITY_P99_MS`. A rate fails only when two tries in a
    row fail, so that one hiccup of a shared machine does not cut the figure short."""
    bot = _Fresh(fake, build)
    try:

        async def holds(rate: float) -> bool:
            for attempt in (1, 2):
                result = await bot.offer(rate)
                ok = _within_capacity(result, round(rate * CAPACITY_SECONDS))
                verdict = "holds" if ok else "fails"
                log(f"{name} at {rate:.0f}/s, try {attempt}: {verdict}: {json.dumps(result)}")
                if ok:
                    return True
            return False

        return await highest_rate(holds, CAPACITY_LOW, CAPACITY_HIGH, precision)
    finally:
        await bot.close()


def _within_capacity(result: Mapping[str, Any], count: int) -> bool:
    """Every one of `count` interactions answered, the defer p99 under the limit."""
    p99 = result["p99_ms"]
    return (
        result["sent"] == result["answered"] == count and p99 is not None and p99 < CAPACITY_P99_MS
    )


class _Fresh:
    """The bot under a capacity search, started (and warmed up) anew after a try that
    failed: an overload leaves a bot with a backlog and thousands of connections,
    which the next try, at a lower rate, should not inherit."""

    def __init__(
        self, fake: FakeDiscordProcess, build: Callable[[], commands.AutoShardedBot]
    ) -> None:
        self.fake = fake
        self.build = build
        self._running: tuple[commands.AutoShardedBot, asyncio.Task[None]] | None = None
        self._stack = contextlib.AsyncExitStack()

    async def offer(self, rate: float) -> dict[str, Any]:
        """One try: `rate` interactions a second for `CAPACITY_SECONDS`; its summary."""
        if self._running is None:
            bot = self.build()
            self._running = bot, await self._stack.enter_async_context(started(self.fake, bot))
        bot, run_task = self._running
        count = round(rate * CAPACITY_SECONDS)
        result = summary(await timed_burst(self.fake, run_task, count, duration=CAPACITY_SECONDS))
        if _within_capacity(result, count):
            await _quiet(bot)
        else:
            await self.close()
        return result

    async def close(self) -> None:
        self._running = None
        await self._stack.aclose()
        # Let go of the closed bot: `tune_gc_for_serving` kept what it held.
        gc.unfreeze()
        gc.collect()


async def _quiet(bot: commands.AutoShardedBot, timeout: float = 60.0) -> None:
    """Until `bot` is idle again after a capacity step: the jobs left in aibot's pools
    cancelled (the floor has none; once the defers are timed, the rest of a step's work
    is not the next step's load), and past an overload's backlog, this process using
    under a tenth of a CPU over half a second."""
    queue = getattr(bot, "queue", None)  # aibot's job transport; the floor has none
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        held = queue.jobs() if queue is not None else []
        for _pool, job, _state in held:
            await queue.cancel(job.id)
        cpu = time.process_time()
        await asyncio.sleep(QUIET_SECONDS)
        if time.process_time() - cpu < QUIET_SECONDS / 10 and not (queue and queue.jobs()):
            return
    log(f"the bot was still busy {timeout:.0f} s after a capacity step")
