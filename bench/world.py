"""What the engine benchmark's scenarios share: keys, settings, jobs, timed
replies and an open-loop load generator.

Times here are `time.perf_counter()` values: the benchmark runs on a plain
event loop, and the fakes (in their own process) keep real time too.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from aibot.jobs import AibotError, Job, Progress, Result
from aibot.pools import Pools

__all__ = [
    "Tally",
    "TimedReply",
    "bench_job",
    "bench_keys",
    "close_pools",
    "engine_env",
    "paced",
    "percentile",
]

# Arrivals are released in small batches this often (an open loop, not a pacer).
_TICK = 0.01


def bench_keys(label: str, count: int) -> list[str]:
    """`count` distinct fake keys; a label per use keeps the fakes' buckets apart."""
    return [f"sk-bench-{label}-{n:04d}-{'0' * 24}" for n in range(1, count + 1)]


def engine_env(fake_env: Mapping[str, str], **variables: object) -> dict[str, str]:
    """Settings variables for an engine pointed at the fakes: `fake_env` (base
    URLs) and `variables` (`AIBOT_POOLS="chat"`, ...)."""
    env = {"AIBOT_HTTP": "off", **fake_env}
    env.update({name: str(value) for name, value in variables.items()})
    return env


async def close_pools(pools: Pools) -> None:
    """Drain every pool at once (cancelling what runs), close their clients."""
    for pool in pools.values():
        await pool.drain(0)
    await pools.aclose()


def bench_job(command: str, user: int, **args: object) -> Job:
    """A job as the Discord front would build it (with a secret token)."""
    return Job(
        command=command,
        args=dict(args),
        user_id=user,
        channel_id=100 + user % 7,
        guild_id=1,
        token=f"bench-interaction-token-{user}",
        pool=command,
    )


class Tally:
    """How the jobs of one run ended: finish times and latencies of the
    successes, failure kinds of the rest."""

    def __init__(self) -> None:
        self.finished: list[float] = []  # perf_counter at finish
        self.latencies: list[float] = []  # seconds from submit to finish
        self.failures: Counter[str] = Counter()

    def ok_between(self, start: float, end: float) -> int:
        """Successes that finished inside [start, end)."""
        return sum(start <= t < end for t in self.finished)


class TimedReply:
    """A `Reply` that reports to a `Tally` when and how its job ended."""

    __slots__ = ("_tally", "submitted")

    def __init__(self, tally: Tally) -> None:
        self._tally = tally
        self.submitted = time.perf_counter()

    async def progress(self, update: Progress) -> None:
        pass

    async def stream(self, text: str) -> None:
        pass

    async def finish(self, result: Result) -> None:
        now = time.perf_counter()
        self._tally.finished.append(now)
        self._tally.latencies.append(now - self.submitted)

    async def fail(self, error: AibotError) -> None:
        self._tally.failures[error.kind] += 1


async def paced(rate: float, seconds: float, arrive: Callable[[int], None]) -> int:
    """Calls `arrive(n)` for arrivals 0, 1, 2, ... at `rate` per second for
    `seconds`, whatever happens to them (an open loop). Returns how many."""
    start = time.perf_counter()
    sent = 0
    while (elapsed := time.perf_counter() - start) < seconds:
        due = math.floor(elapsed * rate) + 1
        while sent < due:
            arrive(sent)
            sent += 1
        await asyncio.sleep(_TICK)
    return sent


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of `values`; 0 when there are none."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]
