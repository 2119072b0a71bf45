"""Front benchmark: how fast the real bot defers, over a real socket.

`python -m bench.front [--quick] [--scenario front|capacity ...]`
`python -m bench.front --cluster [--quick]`

Two scenarios, each printing one JSON line on stdout (details go to stderr). Without
`--scenario`, a run does both (`front` then `capacity`, about five minutes), and
`--quick` only `front` (about 10 s); `--quick --scenario capacity` searches more
coarsely (about two minutes).

- `front`: how fast one burst of 1,000 interactions in a second is deferred.
- `capacity`: how many interactions a second the bot can take, a figure that does
  not swing with the machine's noise as a p99 at one rate does.
- `front_cluster` (`--cluster`, alone): the `front` burst against a gateway-only
  process in cluster mode, its jobs going over Redis to a worker process; see
  bench/front_cluster.py. It needs `redis-server` on the PATH.

The fake Discord (`aibot.sandbox.fake_discord`) runs in its own process; the
bot runs in this one. The fake sends 1,000 slash commands (a mix of /chat,
/image, /video, /ping, /status, each from its own member, spread over every
guild and so both shards) within one second, and times each one from the
INTERACTION_CREATE frame leaving to the first callback arriving, both taken
with `time.perf_counter` in the fake's process. The same burst then goes to a
bare discord.py bot whose commands only defer: the floor, what discord.py
itself costs. aibot's run talks to the fake providers (`python -m
aibot.sandbox`, a process of its own too), so its pools do real work
(streaming, images, videos) while the defers are measured.

The fakes stand in for Discord's and the providers' own machines: with two
CPUs or more, the bots run on the first and the fakes on the others, the fake
providers only in time the fake Discord leaves idle (SCHED_IDLE). Otherwise
their CPU time would be taken from the fake Discord (in aibot's run only: in
the floor's they have nothing to do), which would then send interactions in
batches and answer late, timed as aibot's latency. Each burst's details on
stderr include `fake_late_send_ms`, how far behind schedule the fake sent, and
the burst's ten `slowest` interactions as [command, ms after the first was
sent, latency ms].

`front` prints::

    {"scenario": "front", "sent", "answered", "defer_p50_ms", "defer_p99_ms",
     "floor_defer_p99_ms", "defer_p99_ratio", "peak_rss_mb"}

Each bot first answers a warm-up burst (its HTTP connections open, every code
path has run once, as in a bot that has been up a while, and the garbage
collector set for serving as `python run.py` does, `aibot.app.tune_gc_for_serving`:
both bots get it, so that the two differ only in their code); then `--quick` times
one burst, a full run three (a second apart) and reports the one with the median
p99, since a shared 2-core machine makes single bursts noisy. aibot runs with its
default settings but for fair use (no cooldown or daily quota) and room in its
queues for every burst's jobs, so that each burst is deferred, queued and worked
on, not refused. An unanswered interaction counts as infinitely late.
`peak_rss_mb` is this process's `ru_maxrss` right after aibot's run (aibot runs
first, so the floor's run does not count in it). Each burst's details go to stderr.

`capacity` prints::

    {"scenario": "capacity", "aibot_per_s", "floor_per_s", "capacity_ratio"}

A bot's capacity is the highest offered rate, between 250 and 4,000 interactions a
second, at which every interaction is answered and the defer p99 stays under 250 ms,
with the same mix as the burst sent for 2 s at each rate. The search starts at 250,
doubles the rate until one fails, then bisects between the last rate that held and
the first that failed until they are within 10% of each other (50% with `--quick`);
the figure is the last that held (0 if 250 failed; 4,000 means at least that). A
rate fails only when two tries in a row fail, so one hiccup of a shared machine does
not cut the search short. The two searches take turns, try by try (aibot's, then the
floor's, and so on), so that a slow spell of the shared machine falls on both bots
alike, not on whichever one's search ran then. Each try has a bot of its own,
started and warmed up as in `front` (a try must not inherit the backlog and the
thousands of connections an overload leaves behind), and closed once its defers are
timed, its jobs cancelled: only one bot is connected to the fake at a time. The
timed part still has the pools working on that try's jobs, as in `front`.
`capacity_ratio` is aibot's over the floor's. Past its capacity a bot answers some
interactions after Discord's 3 s: the fake refuses those (404) and the bot logs an
error for each, so logging is muted (below CRITICAL) while this scenario runs. Each
try's details go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from aibot.sandbox.fake_discord import FakeDiscordProcess, pointed_at
from bench import front_cluster
from bench.capacity import CAPACITY_PRECISION, QUICK_PRECISION, capacities
from bench.front_world import (
    GUILDS,
    SHARDS,
    FloorBot,
    aibot_builder,
    cpus_apart,
    fake_providers,
    logged,
    measure,
    on_cpus,
    peak_rss_mb,
    typical,
)

__all__ = ["SCENARIOS", "main", "run"]

SCENARIOS = ("front", "capacity")


async def run(
    *, quick: bool, scenarios: Sequence[str] = ("front",)
) -> AsyncIterator[dict[str, Any]]:
    """The named scenarios (`SCENARIOS`), in that order, against one fake Discord
    process and one fake providers process; yields each one's JSON line's fields."""
    bot_cpus, fake_cpus = cpus_apart()
    async with contextlib.AsyncExitStack() as fakes:
        with on_cpus(fake_cpus):  # the fakes' processes start there
            fake = await fakes.enter_async_context(
                FakeDiscordProcess.spawn(shard_count=SHARDS, guilds=GUILDS)
            )
            base_urls = await fakes.enter_async_context(fake_providers())
        for scenario in scenarios:
            with on_cpus(bot_cpus), pointed_at(fake):
                if scenario == "front":
                    yield await _front(fake, base_urls, rounds=1 if quick else 3)
                else:
                    precision = QUICK_PRECISION if quick else CAPACITY_PRECISION
                    yield await _capacity(fake, base_urls, precision=precision)


async def _front(
    fake: FakeDiscordProcess, base_urls: Mapping[str, str], *, rounds: int
) -> dict[str, Any]:
    """The `front` scenario: one burst of `COUNT` in a second, aibot then the floor."""
    async with aibot_builder(fake.token, base_urls) as build:
        aibot = typical(logged("aibot", await measure(fake, build(), rounds=rounds)))
    rss = peak_rss_mb()
    gc.collect()
    floor = typical(logged("floor", await measure(fake, FloorBot(), rounds=rounds)))
    ratio = None
    if aibot["p99_ms"] is not None and floor["p99_ms"]:
        ratio = round(aibot["p99_ms"] / floor["p99_ms"], 2)
    return {
        "scenario": "front",
        "sent": aibot["sent"],
        "answered": aibot["answered"],
        "defer_p50_ms": aibot["p50_ms"],
        "defer_p99_ms": aibot["p99_ms"],
        "floor_defer_p99_ms": floor["p99_ms"],
        "defer_p99_ratio": ratio,
        "peak_rss_mb": rss,
    }


async def _capacity(
    fake: FakeDiscordProcess, base_urls: Mapping[str, str], *, precision: float
) -> dict[str, Any]:
    """The `capacity` scenario: aibot's capacity and the floor's, their searches
    taking turns try by try. Well past its capacity a bot answers late, after
    Discord's 3 s, and logs each refusal it then gets; those logs are muted here
    (they come only at rates that fail anyway)."""
    logging.disable(logging.ERROR)
    try:
        async with aibot_builder(fake.token, base_urls) as build:
            found = await capacities(fake, {"aibot": build, "floor": FloorBot}, precision=precision)
    finally:
        logging.disable(logging.NOTSET)
    aibot, floor = found["aibot"], found["floor"]
    return {
        "scenario": "capacity",
        "aibot_per_s": round(aibot),
        "floor_per_s": round(floor),
        "capacity_ratio": round(aibot / floor, 2) if floor else None,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.front",
        description=__doc__.split("\n")[0],
        epilog="Without --scenario: both scenarios, or only `front` with --quick.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="front: one timed burst per bot instead of three (under a minute); "
        "capacity: the rate found to within 50%% instead of 10%% (fewer steps)",
    )
    parser.add_argument(
        "--scenario", action="append", choices=SCENARIOS, help="run only these (repeatable)"
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="only `front_cluster`: the burst against a gateway-only process whose jobs "
        "go over Redis to a worker process (needs redis-server)",
    )
    args = parser.parse_args(argv)
    if args.cluster:
        if args.scenario:
            parser.error("--cluster runs its own scenario; leave out --scenario")
        if front_cluster.redis_missing():
            sys.exit(front_cluster.MISSING_REDIS)
        size = front_cluster.QUICK if args.quick else front_cluster.FULL
        print(json.dumps(asyncio.run(front_cluster.front_cluster(size))), flush=True)
        return
    scenarios = args.scenario or (["front"] if args.quick else list(SCENARIOS))
    asyncio.run(_print_lines(quick=args.quick, scenarios=scenarios))


async def _print_lines(*, quick: bool, scenarios: Sequence[str]) -> None:
    async for line in run(quick=quick, scenarios=scenarios):
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
