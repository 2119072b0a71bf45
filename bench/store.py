"""Benchmark: the gate's added latency per command, with a large ledger present.

    python -m bench.store [--quick] [--rows N] [--iterations N]

Fills the usage ledger with `--rows` rows (spread over the last 30 days), then
times, for each of many commands from many members, what the gate adds to
handling one: `gate.take(job)` and queuing the ledger row the job leads to.
The write-behind flusher runs meanwhile (the loop yields after every command),
so its thread's share of the interpreter is part of the figure. Prints one
JSON line: {"scenario": "gate", "ledger_rows", "p50_ms", "p99_ms", ...}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from aibot.jobs import Job, LimitReached
from aibot.settings import Settings
from aibot.store import Store

__all__ = ["main"]

_MEMBERS = 5_000
_GUILDS = 20


def _job(n: int) -> Job:
    member = n % _MEMBERS
    command = ("chat", "image", "video")[n % 3]
    return Job(
        command=command,
        args={},
        user_id=10_000 + member,
        channel_id=1,
        guild_id=1 + member % _GUILDS,
        pool=command,
    )


class _Clock:
    """Real time, shifted back while filling so the rows span the last 30 days."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


async def _fill(store: Store, clock: _Clock, rows: int) -> None:
    for n in range(rows):
        clock.offset = -(n % 30) * 86_400.0
        store.ledger.record(
            _job(n),
            provider="openai",
            key_id="sk-...abcd",
            outcome="ok",
            latency=1.0,
            tokens_in=500,
            tokens_out=300,
        )
    clock.offset = 0.0
    await store.flush()


async def _measure(store: Store, iterations: int) -> tuple[list[float], int]:
    samples: list[float] = []
    refused = 0
    jobs = [_job(n) for n in range(iterations)]
    for job in jobs:
        started = time.perf_counter()
        try:
            await store.gate.take(job)
            store.ledger.record(
                job,
                provider="openai",
                key_id="sk-...abcd",
                outcome="ok",
                latency=1.0,
                tokens_in=500,
                tokens_out=300,
            )
        except LimitReached:
            refused += 1
        samples.append(time.perf_counter() - started)
        await asyncio.sleep(0)  # the next command is another event; the flusher runs between
    await store.flush()
    return samples, refused


def _percentile(sorted_samples: list[float], fraction: float) -> float:
    index = min(len(sorted_samples) - 1, int(fraction * len(sorted_samples)))
    return sorted_samples[index]


async def run(rows: int, iterations: int, folder: Path) -> dict[str, object]:
    # No cooldown and no quota: every command is let in, so every one pays the
    # whole write path (three counters and a ledger row), the gate's worst case.
    env = {"AIBOT_DATA_DIR": str(folder)}
    for pool in ("CHAT", "IMAGE", "VIDEO"):
        env |= {f"AIBOT_{pool}_COOLDOWN": "0", f"AIBOT_{pool}_DAILY_QUOTA": "0"}
    settings = Settings.from_env(env)
    clock = _Clock()
    store = await Store.open(None, settings, clock=clock)
    try:
        await _fill(store, clock, rows)
        samples, refused = await _measure(store, iterations)
    finally:
        await store.close()
    samples.sort()
    return {
        "scenario": "gate",
        "ledger_rows": rows,
        "p50_ms": round(_percentile(samples, 0.50) * 1000, 4),
        "p99_ms": round(_percentile(samples, 0.99) * 1000, 4),
        "max_ms": round(samples[-1] * 1000, 4),
        "iterations": iterations,
        "refused": refused,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.store", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations (seconds)")
    parser.add_argument("--rows", type=int, default=100_000, help="ledger rows to fill first")
    parser.add_argument("--iterations", type=int, default=None, help="commands to time")
    args = parser.parse_args(argv)
    iterations = args.iterations or (20_000 if args.quick else 200_000)
    with tempfile.TemporaryDirectory(prefix="aibot-bench-") as folder:
        result = asyncio.run(run(args.rows, iterations, Path(folder)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
