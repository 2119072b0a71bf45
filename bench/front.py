"""Front benchmark: how fast the real bot defers, over a real socket.

`python -m bench.front [--quick] [--scenario front|capacity ...]`

Two scenarios, each printing one JSON line on stdout (details go to stderr). Without
`--scenario`, a run does both (`front` then `capacity`, about five minutes), and
`--quick` only `front` (about 10 s); `--quick --scenario capacity` searches more
coarsely (about two minutes).

- `front`: how fast one burst of 1,000 interactions in a second is deferred.
- `capacity`: how many interactions a second the bot can take, a figure that does
  not swing with the machine's noise as a p99 at one rate does.

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
stderr include `fake_late_send_ms`, how far behind schedule the fake sent.

`front` prints::

    {"scenario": "front", "sent", "answered", "defer_p50_ms", "defer_p99_ms",
     "floor_defer_p99_ms", "defer_p99_ratio", "peak_rss_mb"}

Each bot first answers a warm-up burst (its HTTP connections open, every code
path has run once, as in a bot that has been up a while, and the start-up heap
frozen as `python run.py` does); then `--quick` times one burst, a full run three
(a second apart) and reports the one with the median p99, since a shared 2-core
machine makes single bursts noisy. aibot runs with its default settings but for
fair use (no cooldown or daily quota) and room in its queues for every burst's
jobs, so that each burst is deferred, queued and worked on, not refused. An
unanswered interaction counts as infinitely late. `peak_rss_mb` is this
process's `ru_maxrss` right after aibot's run (aibot runs first, so the
floor's run does not count in it). Each burst's details go to stderr.

`capacity` prints::

    {"scenario": "capacity", "aibot_per_s", "floor_per_s", "capacity_ratio"}

A bot's capacity is the highest offered rate, between 250 and 4,000 interactions a
second, at which every interaction is answered and the defer p99 stays under 250 ms,
with the same mix as the burst sent for 2 s at each rate. The search starts at 250,
doubles the rate until one fails, then bisects between the last rate that held and
the first that failed until they are within 10% of each other (50% with `--quick`);
the figure is the last that held (0 if 250 failed; 4,000 means at least that). A
rate fails only when two tries in a row fail, so one hiccup of a shared machine does
not cut the search short. Each try starts from a bot with nothing to do: after a try
that held, the jobs left in aibot's pools are cancelled and the bot left to go idle;
after one that failed, the bot is closed and a new one started and warmed up as in
`front` (an overload leaves a backlog and thousands of connections behind, and the
next try, at a lower rate, would inherit them). The timed part still has the pools
working on that try's jobs, as in `front`. aibot's search runs first, then the
floor's; `capacity_ratio` is aibot's over the floor's. Past its capacity a bot answers some
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
import math
import os
import resource
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from aibot import create_bot
from aibot.app import freeze_startup_heap
from aibot.sandbox.fake_discord import FakeDiscordProcess, pointed_at

__all__ = [
    "SCENARIOS",
    "FloorBot",
    "capacity_of",
    "highest_rate",
    "main",
    "measure",
    "percentile",
    "run",
]

# (name, options, channel, share): chat-heavy, like a real server.
MIX_SHARES: tuple[tuple[str, dict[str, Any], str, int], ...] = (
    ("chat", {"prompt": "파이썬에서 리스트를 뒤집는 방법은?"}, "채팅방-1", 8),
    ("image", {"prompt": "a lighthouse at dawn, watercolor"}, "이미지생성-1", 4),
    ("video", {"prompt": "waves rolling onto a beach"}, "비디오생성-1", 2),
    ("ping", {}, "general", 3),
    ("status", {}, "general", 3),
)
COUNT = 1000
WARMUP = 200
# Seconds between bursts, for the previous burst's answers to go out.
SETTLE = 1.0
SHARDS = 2
GUILDS = 16
# Answers later than this are void on Discord ("the application did not respond").
ANSWER_WINDOW = 3.0
CLOSE_TIMEOUT = 60.0
# Room in every pool's queue for all the jobs of the warm-up and the timed bursts.
QUEUE = 4096
# A chat answer streams like a fast model's (about 50 chunks a second), not all at once.
CHUNK_DELAY = 0.02
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
SCENARIOS = ("front", "capacity")
_ROOT = Path(__file__).resolve().parents[1]


def mix() -> list[dict[str, Any]]:
    """The burst's commands in a repeating order (interleaved, not in blocks)."""
    entries = []
    for round_ in range(max(share for *_, share in MIX_SHARES)):
        for name, options, channel, share in MIX_SHARES:
            if round_ < share:
                entries.append({"name": name, "options": options, "channel": channel})
    return entries


class FloorBot(commands.AutoShardedBot):
    """The same command names and options, and nothing but a defer."""

    def __init__(self) -> None:
        super().__init__(command_prefix=commands.when_mentioned, intents=discord.Intents.default())
        for name in ("chat", "image", "video"):
            self.tree.add_command(_prompt_command(name))
        for name in ("ping", "status"):
            self.tree.add_command(_bare_command(name))


def _prompt_command(name: str) -> app_commands.Command[Any, Any, Any]:
    async def deferred(interaction: discord.Interaction, prompt: str) -> None:
        await interaction.response.defer()

    return app_commands.Command(name=name, description=name, callback=deferred)


def _bare_command(name: str) -> app_commands.Command[Any, Any, Any]:
    async def deferred(interaction: discord.Interaction) -> None:
        await interaction.response.defer()

    return app_commands.Command(name=name, description=name, callback=deferred)


async def _no_identify_wait(shard_id: int | None, *, initial: bool = False) -> None:
    # Real Discord spaces IDENTIFYs 5 s apart; the fake does not need it.
    return None


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted `values` (inf counts as not answered)."""
    if not values:
        return math.inf
    rank = max(1, math.ceil(q / 100.0 * len(values)))
    return values[rank - 1]


async def measure(
    fake: FakeDiscordProcess, bot: commands.AutoShardedBot, *, rounds: int
) -> list[dict[str, Any]]:
    """Start `bot` against the fake, warm it up, time `rounds` bursts, close it."""
    async with _started(fake, bot) as run_task:
        return [
            summary(await _timed_burst(fake, run_task, COUNT, duration=1.0)) for _ in range(rounds)
        ]


@contextlib.asynccontextmanager
async def _started(
    fake: FakeDiscordProcess, bot: commands.AutoShardedBot
) -> AsyncIterator[asyncio.Task[None]]:
    """`bot` connected to the fake and warmed up (its task); closed on the way out."""
    await fake.reset()
    bot.before_identify_hook = _no_identify_wait  # type: ignore[method-assign]
    run_task = asyncio.create_task(bot.start(fake.token))
    try:
        await asyncio.wait_for(fake.wait_ready(timeout=60), 70)
        # Opens the HTTP connections and runs every code path once, as a bot
        # that has been up for a while would have.
        await _burst_and_wait(fake, WARMUP, run_task, duration=WARMUP / COUNT)
        freeze_startup_heap()  # as `python run.py` does once the bot is up
        yield run_task
    finally:
        await asyncio.wait_for(bot.close(), CLOSE_TIMEOUT)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(run_task, CLOSE_TIMEOUT)


async def _timed_burst(
    fake: FakeDiscordProcess, run_task: asyncio.Task[None], count: int, *, duration: float
) -> dict[str, Any]:
    """One measured burst, after a pause for the previous one's answers to go out."""
    await asyncio.sleep(SETTLE)
    await fake.reset()
    gc.collect()
    return await _burst_and_wait(fake, count, run_task, duration=duration)


def typical(rounds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median p99 (an unanswered burst sorts last)."""
    ordered = sorted(rounds, key=lambda r: math.inf if r["p99_ms"] is None else r["p99_ms"])
    return ordered[(len(ordered) - 1) // 2]


async def _burst_and_wait(
    fake: FakeDiscordProcess, count: int, run_task: asyncio.Task[None], *, duration: float
) -> dict[str, Any]:
    fake_cpu, bot_cpu = (await fake.results())["cpu_seconds"], time.process_time()
    seconds = await fake.burst(mix(), count=count, duration=duration)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ANSWER_WINDOW + 0.5
    results = await fake.results()
    while results["answered"] < results["sent"] and loop.time() < deadline:
        if run_task.done():
            raise RuntimeError("the bot stopped during the burst") from run_task.exception()
        await asyncio.sleep(0.25)
        results = await fake.results()
    results["send_seconds"] = seconds
    # CPU seconds from the first interaction sent until the answers are in: the bot's
    # (this process) and the fake Discord's, to tell a busy bot from a busy machine.
    results["bot_cpu_s"] = time.process_time() - bot_cpu
    results["fake_cpu_s"] = results["cpu_seconds"] - fake_cpu
    return results


def summary(results: Mapping[str, Any]) -> dict[str, Any]:
    """p50/p99 over every sent interaction; an unanswered one counts as infinitely late."""
    latencies = list(results["latencies_ms"])
    latencies += [math.inf] * (results["sent"] - len(latencies))
    return {
        "sent": results["sent"],
        "answered": results["answered"],
        "p50_ms": _finite(percentile(latencies, 50)),
        "p99_ms": _finite(percentile(latencies, 99)),
        "max_ms": _finite(percentile(latencies, 100)),
        "callback_types": results["callback_types"],
        "send_seconds": round(results["send_seconds"], 3),
        "callback_connections": results["callback_connections"],
        "fake_late_send_ms": results["late_send_ms"],
        "bot_cpu_s": round(results["bot_cpu_s"], 2),
        "fake_cpu_s": round(results["fake_cpu_s"], 2),
    }


# -- capacity ---------------------------------------------------------------


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
                _log(f"{name} at {rate:.0f}/s, try {attempt}: {verdict}: {json.dumps(result)}")
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
            self._running = bot, await self._stack.enter_async_context(_started(self.fake, bot))
        bot, run_task = self._running
        count = round(rate * CAPACITY_SECONDS)
        result = summary(await _timed_burst(self.fake, run_task, count, duration=CAPACITY_SECONDS))
        if _within_capacity(result, count):
            await _quiet(bot)
        else:
            await self.close()
        return result

    async def close(self) -> None:
        self._running = None
        await self._stack.aclose()
        # Let go of the closed bot: `freeze_startup_heap` kept what it held.
        gc.unfreeze()
        gc.collect()


async def _quiet(bot: commands.AutoShardedBot, timeout: float = 60.0) -> None:
    """Until `bot` is idle again after a capacity step: the jobs left in aibot's pools
    cancelled (the floor has none; once the defers are timed, the rest of a step's work
    is not the next step's load), and past an overload's backlog, this process using
    under a tenth of a CPU over half a second."""
    pools = getattr(bot, "pools", {})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        for pool in pools.values():
            for job, _state in pool.jobs():
                pool.cancel(job.id)
        cpu = time.process_time()
        await asyncio.sleep(QUIET_SECONDS)
        if time.process_time() - cpu < QUIET_SECONDS / 10 and not any(
            pool.jobs() for pool in pools.values()
        ):
            return
    _log(f"the bot was still busy {timeout:.0f} s after a capacity step")


def _finite(value: float) -> float | None:
    return None if math.isinf(value) else round(value, 2)


def _peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux.
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


@contextlib.asynccontextmanager
async def _aibot(
    token: str, base_urls: Mapping[str, str]
) -> AsyncIterator[Callable[[], commands.AutoShardedBot]]:
    """Builds the real aibot, pointed at the fake providers and a data folder of its own."""
    with tempfile.TemporaryDirectory(prefix="aibot-bench-") as data_dir:
        env = _aibot_env(token, base_urls, data_dir)
        yield lambda: create_bot(env)


def _cpus_apart() -> tuple[set[int], set[int]]:
    """(the bots' CPUs, the fakes' CPUs): the first CPU for the bot, the others for
    the fakes, which stand in for Discord's and the providers' own machines; all
    of them for both when there is only one (or no way to tell)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return set(), set()
    if len(cpus) < 2:
        return set(cpus), set(cpus)
    return {cpus[0]}, set(cpus[1:])


@contextlib.contextmanager
def _on_cpus(cpus: set[int]) -> Iterator[None]:
    """This process (and what it starts meanwhile) runs on `cpus` only."""
    if not cpus:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@contextlib.asynccontextmanager
async def _fake_providers() -> AsyncIterator[dict[str, str]]:
    """`python -m aibot.sandbox` in a process of its own: its work is not the bot's."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aibot.sandbox",
        "--chunk-delay",
        str(CHUNK_DELAY),
        stdout=asyncio.subprocess.PIPE,
        cwd=_ROOT,
    )
    with contextlib.suppress(OSError, AttributeError):
        # Sharing a CPU with the fake Discord, it yields: Discord's answers are timed.
        os.sched_setscheduler(process.pid, os.SCHED_IDLE, os.sched_param(0))
    try:
        assert process.stdout is not None
        base_urls: dict[str, str] = {}
        while len(base_urls) < 3:
            line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
            if not line:
                raise RuntimeError("the fake providers exited before they were ready")
            name, _, value = line.strip().partition("=")
            if name.endswith("_BASE_URL"):
                base_urls[name] = value
        yield base_urls
    finally:
        if process.returncode is None:
            process.terminate()
            await asyncio.wait_for(process.communicate(), 10)


def _aibot_env(token: str, base_urls: Mapping[str, str], data_dir: str) -> dict[str, str]:
    env = {
        "DISCORD_TOKEN": token,
        "AIBOT_DATA_DIR": data_dir,
        "AIBOT_HTTP": "off",
        # Jobs still running when the burst is measured are cut short at close.
        "AIBOT_DRAIN_SECONDS": "3",
        **base_urls,
    }
    for pool in ("CHAT", "IMAGE", "VIDEO", "ADMIN"):
        # Every burst does the real work (defer, queue, stream), not a cheaper refusal:
        # no cooldown or daily quota answers instead, and the queues hold every job
        # of all the bursts (the pools, busy with the first burst's jobs, would refuse
        # most of the next bursts as "busy" otherwise).
        env[f"AIBOT_{pool}_COOLDOWN"] = "0"
        env[f"AIBOT_{pool}_DAILY_QUOTA"] = "0"
        env[f"AIBOT_{pool}_QUEUE"] = str(QUEUE)
    for provider in ("OPENAI", "MINIMAX", "STABILITY"):
        for pool in range(1, 5):
            keys = (f"bench-{provider.lower()}-{pool}-{k:02d}-{'0' * 24}" for k in range(2))
            env[f"{provider}_API_KEY_{pool}"] = ",".join(keys)
    return env


async def run(
    *, quick: bool, scenarios: Sequence[str] = ("front",)
) -> AsyncIterator[dict[str, Any]]:
    """The named scenarios (`SCENARIOS`), in that order, against one fake Discord
    process and one fake providers process; yields each one's JSON line's fields."""
    bot_cpus, fake_cpus = _cpus_apart()
    async with contextlib.AsyncExitStack() as fakes:
        with _on_cpus(fake_cpus):  # the fakes' processes start there
            fake = await fakes.enter_async_context(
                FakeDiscordProcess.spawn(shard_count=SHARDS, guilds=GUILDS)
            )
            base_urls = await fakes.enter_async_context(_fake_providers())
        for scenario in scenarios:
            with _on_cpus(bot_cpus), pointed_at(fake):
                if scenario == "front":
                    yield await _front(fake, base_urls, rounds=1 if quick else 3)
                else:
                    precision = QUICK_PRECISION if quick else CAPACITY_PRECISION
                    yield await _capacity(fake, base_urls, precision=precision)


async def _front(
    fake: FakeDiscordProcess, base_urls: Mapping[str, str], *, rounds: int
) -> dict[str, Any]:
    """The `front` scenario: one burst of `COUNT` in a second, aibot then the floor."""
    async with _aibot(fake.token, base_urls) as build:
        aibot = typical(_logged("aibot", await measure(fake, build(), rounds=rounds)))
    rss = _peak_rss_mb()
    gc.collect()
    floor = typical(_logged("floor", await measure(fake, FloorBot(), rounds=rounds)))
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
    """The `capacity` scenario: aibot's capacity, then the floor's. Well past its
    capacity a bot answers late, after Discord's 3 s, and logs each refusal it then
    gets; those logs are muted here (they come only at rates that fail anyway)."""
    logging.disable(logging.ERROR)
    try:
        async with _aibot(fake.token, base_urls) as build:
            aibot = await capacity_of(fake, build, "aibot", precision=precision)
        floor = await capacity_of(fake, FloorBot, "floor", precision=precision)
    finally:
        logging.disable(logging.NOTSET)
    return {
        "scenario": "capacity",
        "aibot_per_s": round(aibot),
        "floor_per_s": round(floor),
        "capacity_ratio": round(aibot / floor, 2) if floor else None,
    }


def _logged(name: str, rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for i, result in enumerate(rounds, 1):
        _log(f"{name} burst {i}/{len(rounds)}: {json.dumps(result)}")
    return rounds


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


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
    args = parser.parse_args(argv)
    scenarios = args.scenario or (["front"] if args.quick else list(SCENARIOS))
    asyncio.run(_print_lines(quick=args.quick, scenarios=scenarios))


async def _print_lines(*, quick: bool, scenarios: Sequence[str]) -> None:
    async for line in run(quick=quick, scenarios=scenarios):
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
