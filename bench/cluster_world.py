"""What the shared-state cluster scenarios (`shared_budget`, `gate`) run in.

Their sizes (`Scale`), the worker processes that all start at the same moment
(`run_together`; each child is `python -m bench.cluster_world`, which reads
its spec on stdin and runs the spec's module's `work`), and Redis's own time
per script call (`RedisStats`).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import redis.asyncio as redis

__all__ = ["FULL", "QUICK", "RedisStats", "Scale", "merged", "run_together"]

_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Scale:
    """Sizes and durations of one run (`FULL`, `QUICK`, or tiny ones in tests)."""

    keys: int = 4
    rpm: float = 600.0
    demand: float = 2.0  # x the keys' summed rate
    warmup: float = 5.0
    window: float = 60.0
    max_wait: float = 2.0  # seconds a call may wait for a key before it is turned away
    processes: tuple[int, ...] = (1, 2, 4)
    reserves: int = 2000  # back to back per process, for `reserve_p50_ms`
    gate_processes: int = 3
    gate_burst: int = 200  # simultaneous takes per process and pool
    gate_takes: int = 2000  # back to back per process, for `take_p50_ms`
    turn: float = 1.5  # seconds each process has for its back-to-back calls


FULL = Scale()
QUICK = Scale(warmup=2.0, window=8.0, reserves=500, gate_takes=500, turn=0.5)


class RedisStats:
    """Redis's own time per script call (`INFO commandstats`) over a block:
    what one Redis core spends per reserve or take, whichever process asks."""

    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url)
        self.us_per_script = 0.0

    async def __aenter__(self) -> RedisStats:
        await self._client.config_resetstat()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stats = await self._client.info("commandstats")
        self.us_per_script = round(stats.get("cmdstat_evalsha", {}).get("usec_per_call", 0.0), 2)
        await self._client.aclose()


async def run_together(
    specs: Sequence[dict[str, Any]],
    before_start: Callable[[], Awaitable[None]] | None = None,
) -> list[dict[str, Any]]:
    """One worker process per spec (its `module`'s `work` runs there); once
    every one is connected (and `before_start` has run), all start at the same
    moment, 0.5 s on; their results in the order of `specs`."""
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.cluster_world",
            cwd=_ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in specs
    ]
    try:
        for child, spec in zip(children, specs, strict=True):
            await _say(child, spec)
        for child in children:
            assert child.stdout is not None
            if json.loads(await child.stdout.readline() or b"null") != {"ready": True}:
                raise RuntimeError("a benchmark worker did not start; see its stderr")
        if before_start is not None:
            await before_start()
        start = time.time() + 0.5
        for child in children:
            await _say(child, {"start": start})
        results = []
        for child in children:
            out, _ = await child.communicate()
            if child.returncode != 0:
                raise RuntimeError(f"a benchmark worker exited with {child.returncode}")
            results.append(json.loads(out))
        return results
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
                await child.wait()


async def _say(child: asyncio.subprocess.Process, message: dict[str, Any]) -> None:
    assert child.stdin is not None
    child.stdin.write(json.dumps(message).encode() + b"\n")
    await child.stdin.drain()


def merged(results: Sequence[dict[str, Any]], name: str) -> list[float]:
    """The samples named `name` of every worker's result, in one list."""
    return [sample for result in results for sample in result[name]]


# -- the child's side -----------------------------------------------------------


def _client(url: str) -> redis.Redis:
    return redis.Redis(
        connection_pool=redis.BlockingConnectionPool.from_url(url, max_connections=64)
    )


async def _child() -> dict[str, Any]:
    """Read a spec, connect, say ready, wait for the common start, work, report."""
    spec = json.loads(sys.stdin.readline())
    scale = Scale(**{**spec["scale"], "processes": tuple(spec["scale"]["processes"])})
    work = importlib.import_module(spec["module"]).work
    client = _client(spec["redis"])
    try:
        await client.ping()
        _answer({"ready": True})
        start = json.loads(await asyncio.to_thread(sys.stdin.readline))["start"]
        await asyncio.sleep(max(0.0, start - time.time()))
        result: dict[str, Any] = await work(client, spec, scale, start)
        return result
    finally:
        await client.aclose()


def _answer(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    _answer(asyncio.run(_child()))
