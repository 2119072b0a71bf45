"""The `capacity` scenario of `bench.front`: the highest offered rate a bot keeps up
with (see bench/front.py's docstring for the method)."""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from discord.ext import commands

from aibot.sandbox.fake_discord import FakeDiscordProcess
from bench.front_world import log, started, summary, timed_burst

__all__ = [
    "CAPACITY_PRECISION",
    "QUICK_PRECISION",
    "Try",
    "capacities",
    "highest_rate",
    "searched_in_turns",
]

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

# One try of a search: `count` interactions offered over `CAPACITY_SECONDS`; their
# summary (bench.front_world.summary).
Try = Callable[[int], Awaitable[dict[str, Any]]]


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


async def capacities(
    fake: FakeDiscordProcess,
    builds: Mapping[str, Callable[[], commands.AutoShardedBot]],
    *,
    precision: float,
) -> dict[str, float]:
    """The capacity of each bot `builds` makes (by name), searched in turns (see
    `searched_in_turns`): the highest offered rate, for `CAPACITY_SECONDS` at each
    rate, with every interaction answered and the defer p99 under `CAPACITY_P99_MS`.
    Each try has a bot of its own, started and warmed up anew: one bot at a time is
    connected to the fake."""
    tries = {name: functools.partial(_try, fake, build) for name, build in builds.items()}
    return await searched_in_turns(tries, precision=precision)


async def searched_in_turns(tries: Mapping[str, Try], *, precision: float) -> dict[str, float]:
    """Each named search's highest rate (`highest_rate`), where a rate holds when one
    of two tries in a row holds: one hiccup of a shared machine does not cut a search
    short. The searches take turns, try by try, so that a slow spell of the machine
    falls on every bot alike rather than on whichever one's search ran then.
    `tries[name](count)` offers `count` interactions over `CAPACITY_SECONDS`."""
    # asyncio's lock is first come, first served: with every search waiting, they
    # take turns.
    turn = asyncio.Lock()

    async def search(name: str, offer: Try) -> float:
        async def holds(rate: float) -> bool:
            count = round(rate * CAPACITY_SECONDS)
            for attempt in (1, 2):
                async with turn:
                    result = await offer(count)
                ok = _within_capacity(result, count)
                verdict = "holds" if ok else "fails"
                log(f"{name} at {rate:.0f}/s, try {attempt}: {verdict}: {json.dumps(result)}")
                if ok:
                    return True
            return False

        return await highest_rate(holds, CAPACITY_LOW, CAPACITY_HIGH, precision)

    found = await asyncio.gather(*(search(name, offer) for name, offer in tries.items()))
    return dict(zip(tries, found, strict=True))


def _within_capacity(result: Mapping[str, Any], count: int) -> bool:
    """Every one of `count` interactions answered, the defer p99 under the limit."""
    p99 = result["p99_ms"]
    return (
        result["sent"] == result["answered"] == count and p99 is not None and p99 < CAPACITY_P99_MS
    )


async def _try(
    fake: FakeDiscordProcess, build: Callable[[], commands.AutoShardedBot], count: int
) -> dict[str, Any]:
    """One try: a new bot, started and warmed up, sent `count` interactions over
    `CAPACITY_SECONDS`; its summary. Once the defers are timed, the jobs left in
    aibot's pools are cancelled (the floor has none) so that the bot closes at once."""
    bot = build()
    try:
        async with started(fake, bot) as run_task:
            burst = await timed_burst(fake, run_task, count, duration=CAPACITY_SECONDS)
            queue = getattr(bot, "queue", None)  # aibot's job transport
            for _pool, job, _state in queue.jobs() if queue is not None else ():
                await queue.cancel(job.id)
            return summary(burst)
    finally:
        # Let go of the closed bot: `tune_gc_for_serving` kept what it held.
        gc.unfreeze()
        gc.collect()
