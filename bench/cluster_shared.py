"""Cluster benchmark: shared key budgets and the gate in Redis, over several processes.

    python -m bench.cluster_shared [--quick]

Prints one JSON line per scenario on stdout (progress goes to stderr). It
starts its own redis-server (`aibot.sandbox.redis_server.start_redis`);
`python -m bench.cluster` calls `shared_budget` and `gate` the same way.
Every worker is a process of its own (`python -m bench.cluster_world`), and
all start at the same moment once every one is connected. The scenarios live
in `bench.cluster_budget` and `bench.cluster_gate`, what they share in
`bench.cluster_world`.

- `shared_budget`, for 1, 2 and 4 processes: 4 keys at 600 rpm each; the fake
  OpenAI server (`bench.fakes.FakeProcess`, a process of its own) enforces
  the same rpm per key as a token bucket (10 s worth of burst) with real
  429s. With more than one process, each key's bucket is emptied first (its
  10 s of burst spent in calls that all pass): processes pacing alone overrun
  it and empty it within 10 s, so the run starts where they end up, and the
  shared side starts from empty buckets too, the harder start. One process
  never overruns a bucket, so it starts full, as it stays. Chat calls arrive
  at twice the keys' summed rate, open loop, split evenly over the processes,
  for a warm-up and a measured window; a call not started within `max_wait`
  (2 s) is turned away; after a 429 the call is reported and tried again, on
  whichever key, until then. Shared: every
  process reserves through `SharedBudgets` (one Redis, one budget per key).
  Alone: the same workload at the same time against a fake process and keys
  of its own, each process pacing the keys with its own `aibot.keys.KeyRing`
  (several processes without Redis). Neither side reads rate-limit headers,
  as with MiniMax or Stability, which send none.
  `achieved_ratio` = calls answered inside the window / (keys x rpm / 60 x
  window); `rate_limited` = the 429s the fake answered over the whole run;
  `round_trips_per_call` = Redis calls (reserve, cool) per provider call;
  `turned_away`: calls given up after `max_wait` (one round trip each).
  `reserve_p50_ms`: the median `reserve` round trip, each process in turn
  reserving back to back after the run (on keys that never wait), so that
  the figure is the round trip's, not two cores shared by four busy loops.
  `reserve_in_run_p50_ms`: the median during the run itself, where a reserve
  finds the worker and Redis idle for ~10 ms before it, so it mostly measures
  how fast this machine wakes an idle process (a virtual machine with two
  shared cores: 0.5 ms and more), plus, with several processes, the other
  workers' CPU. `redis_us_per_reserve`: Redis's own time per script call
  (`INFO commandstats`), what bounds how many one Redis core serves.
- `gate`, over 3 processes: each fires 200 simultaneous /chat takes from one
  member (quota 10) and 200 /image takes from another (cooldown 60 s);
  `exact` when exactly 10 and exactly 1 passed. Then each process in turn
  takes back to back for distinct members: `take_p50_ms` is the median
  `SharedGate.take` round trip; `redis_us_per_take` Redis's own time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.cluster_budget import shared_budget
from bench.cluster_gate import gate
from bench.cluster_world import FULL, QUICK, Scale

__all__ = ["FULL", "QUICK", "Scale", "gate", "main", "run", "shared_budget"]


async def run(scale: Scale) -> list[dict[str, Any]]:
    """Every scenario of this module against a redis-server of its own."""
    from aibot.sandbox.redis_server import start_redis

    with tempfile.TemporaryDirectory(prefix="aibot-bench-redis-") as folder:
        server = start_redis(Path(folder))
        try:
            results = await shared_budget(server.url, scale)
            results.append(await gate(server.url, scale.gate_processes, scale))
        finally:
            server.stop()
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster_shared", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short windows (under a minute)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    for result in asyncio.run(run(QUICK if args.quick else FULL)):
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
