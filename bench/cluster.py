"""Cluster benchmark: every cluster-mode scenario against one throwaway Redis.

    python -m bench.cluster [--quick] [--scenario NAME ...]

Starts one `redis-server` of its own (no persistence, a free loopback port,
stopped by its PID at the end) and runs, in this order:

- `transport`, `reclaim`, `scaling` (`bench.cluster_transport`): jobs over
  Redis Streams between worker processes: start latency at 1,000 jobs/s
  offered, `kill -9` of a worker in 5 runs, throughput with 1, 2 and 4
  workers whose jobs take 200 ms;
- `shared_budget`, `gate` (`bench.cluster_shared`): one key budget shared by
  1, 2 and 4 processes against each process pacing alone, and the gate's
  cooldown and quota under simultaneous takes from several processes.

Each module's docstring says exactly what its figures mean. Prints one JSON
line per scenario (per process or worker count) on stdout, as each ends;
progress goes to stderr. Everything runs on this machine, Redis included, so
the figures are floors for a real deployment. `--quick` (under 90 s on two
idle cores) shortens every scenario's windows, never the number of runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from aibot.cluster.connection import connect
from aibot.sandbox.redis_server import start_redis
from bench import cluster_transport, cluster_world
from bench.cluster_budget import shared_budget
from bench.cluster_gate import gate

__all__ = ["FULL", "QUICK", "SCENARIOS", "Scale", "main", "run"]

log = logging.getLogger("bench.cluster")

Lines = dict[str, Any] | list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Scale:
    """The sizes of both halves: the transport's and the shared state's."""

    transport: cluster_transport.Scale
    shared: cluster_world.Scale


FULL = Scale(cluster_transport.FULL, cluster_world.FULL)
# The shared half's windows shortened further than `bench.cluster_shared
# --quick`, so that the five scenarios together stay under 90 s.
QUICK = Scale(
    cluster_transport.QUICK,
    replace(cluster_world.QUICK, warmup=1.0, window=5.0, max_wait=1.5, reserves=300),
)


@dataclass(frozen=True, slots=True)
class _Run:
    """What a scenario gets: the transport bench's handle and the scale."""

    bench: cluster_transport.Bench
    scale: Scale


async def _transport_scenario(name: str, run: _Run) -> Lines:
    return await cluster_transport.SCENARIOS[name](run.bench, run.scale.transport)


async def _shared_budget(run: _Run) -> Lines:
    return await shared_budget(run.bench.url, run.scale.shared)


async def _gate(run: _Run) -> Lines:
    return await gate(run.bench.url, run.scale.shared.gate_processes, run.scale.shared)


SCENARIOS: dict[str, Callable[[_Run], Awaitable[Lines]]] = {
    **{name: partial(_transport_scenario, name) for name in cluster_transport.SCENARIOS},
    "shared_budget": _shared_budget,
    "gate": _gate,
}


async def run(scale: Scale, names: Sequence[str]) -> list[dict[str, Any]]:
    """Run the named scenarios against one throwaway redis-server, printing
    each JSON line as it comes; returns them all."""
    lines: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="aibot-bench-cluster-") as folder:
        server = start_redis(Path(folder))
        redis = connect(server.url)
        try:
            scenario_run = _Run(cluster_transport.Bench(server.url, redis, Path(folder)), scale)
            for name in names:
                started = time.perf_counter()
                result = await SCENARIOS[name](scenario_run)
                for line in result if isinstance(result, list) else [result]:
                    print(json.dumps(line), flush=True)
                    lines.append(line)
                log.info("%s: done in %.1f s", name, time.perf_counter() - started)
        finally:
            await redis.aclose()
            server.stop()
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter windows (under 90 s)")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS, help="only these")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")
    for name in ("bench.cluster", "bench.cluster_transport", "bench.cluster_shared"):
        logging.getLogger(name).setLevel(logging.INFO)
    started = time.perf_counter()
    asyncio.run(run(QUICK if args.quick else FULL, args.scenario or list(SCENARIOS)))
    log.info("all done in %.1f s", time.perf_counter() - started)


if __name__ == "__main__":
    main()
