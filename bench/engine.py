"""Engine benchmark: budgets, isolation and overhead of the pools, against the fakes.

    python -m bench.engine [--quick] [--scenario budget|isolation|overhead ...]
                           [--overhead-call image|chat]

Prints one JSON line per scenario on stdout (progress goes to stderr). The
fake providers (`aibot.sandbox.FakeProviders`) run in child processes
(`bench/fakes.py`), so their CPU is not this process's and their clock is
real time. The engine runs in this process, built from settings the way the
bot builds it (`build_pools`), every pool on this process's one loop.

- `budget`: N keys (4) at a scaled RPM (600 each); the fake enforces the same
  RPM per key as a token bucket (10 s worth of burst; a refused request
  spends a token too, as OpenAI counts failed requests) and answers 429s
  beyond it. Chat demand arrives at twice the keys' sum, open loop, for a
  warm-up (10 s: the buckets start full, and what is left of that first
  burst would flatter whoever spends it) then a measured window. aibot: one
  chat pool whose ring holds the N keys (Pool, KeyRing, OpenAIChat,
  stream_with_keys), in this process. The baseline (`bench/baseline.py`):
  the reference design's N instances, each with one fixed key, no limiter,
  tenacity retry on 429, the same demand split across them, at the same
  time in a process of their own (their storm of retries would otherwise
  take this process's CPU), with their own keys and fake process, so the
  buckets and counters do not mix. `achieved_ratio` = chat answers finished
  inside the window / (N x rpm / 60 x window); `rate_limited` = the 429s the
  fake answered those keys over the whole run.
- `isolation`: chat jobs at a steady rate (50/s) through the chat pool,
  submit -> finish, alone and then while the image and video pools are
  saturated (their queues kept full; image answers held `image_delay` s by
  the fake, video tasks never finish and are polled every `video_poll` s).
  Conditions alternate in short rounds (garbage collected in between) so
  drift on a shared machine hits both. `p99_ratio` = loaded p99 / alone p99;
  `chat_jobs` = chat answers timed, `chat_failed` = chat jobs that failed.
- `overhead`: CPU time of this process (`time.process_time`) per job through
  the whole engine path: `router.decide` (with every pool's load), `Job`,
  `pool.submit`, the pool's task, the role's work, `with_keys` (retry policy,
  `KeyRing` lease), the provider client's HTTP call to an instantly answering
  fake, the reply (`RecordingReply`) and the pool's outcome hook (where the
  bot records the ledger; here it submits the next job, a closed loop). The
  floor is the same client making the same call directly in a loop (no
  router, pool, ring or retry policy). Both keep 8 calls in flight (the image
  pool's default workers) and alternate in rounds. The call is MiniMax
  image-01 (`MiniMaxImages.generate`: one aiohttp JSON POST, a base64 PNG
  answer), the image pool's first provider. It is the cheapest real call
  aibot makes, so it is the harshest floor for the ratio; `--overhead-call
  chat` measures a streamed OpenAI chat instead (a floor about ten times
  higher, as the answer streams in many chunks, so an easier ratio).
  `jobs_per_s` = 1000 / `ms_per_job`: what one core sustains.

Each scenario lives in a module of its own (`bench.engine_budget`,
`bench.engine_isolation`, `bench.engine_overhead`); what they share (`Scale`,
the prompt) in `bench.engine_parts`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

from bench.engine_budget import budget
from bench.engine_isolation import isolation
from bench.engine_overhead import overhead
from bench.engine_parts import FULL, QUICK, Scale

__all__ = ["FULL", "QUICK", "SCENARIOS", "Scale", "budget", "isolation", "main", "overhead", "run"]

log = logging.getLogger("bench.engine")


# -- command line ----------------------------------------------------------

SCENARIOS: dict[str, Callable[[Scale], Awaitable[dict[str, Any]]]] = {
    "budget": budget,
    "isolation": isolation,
    "overhead": overhead,
}


async def run(scale: Scale, names: Sequence[str]) -> None:
    """Run the named scenarios in order, printing each one's JSON line."""
    for name in names:
        started = time.perf_counter()
        log.info("%s: running", name)
        line = await SCENARIOS[name](scale)
        print(json.dumps(line, ensure_ascii=False), flush=True)
        log.info("%s: done in %.1fs", name, time.perf_counter() - started)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.engine", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter runs (under a minute)")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS, help="only these")
    parser.add_argument("--overhead-call", choices=("image", "chat"), default="image")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")
    log.setLevel(logging.INFO)
    scale = replace(QUICK if args.quick else FULL, overhead_call=args.overhead_call)
    asyncio.run(run(scale, args.scenario or list(SCENARIOS)))


if __name__ == "__main__":
    main()
