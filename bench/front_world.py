"""The world `bench.front` measures in: the fake Discord and fake providers in
processes of their own (on CPUs apart from the bot's), the real aibot and the bare
floor bot, the command mix, and a timed burst with its summary. See bench/front.py."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import os
import resource
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from aibot import create_bot
from aibot.app import tune_gc_for_serving
from aibot.sandbox.fake_discord import FakeDiscordProcess

__all__ = [
    "ANSWER_WINDOW",
    "CHUNK_DELAY",
    "CLOSE_TIMEOUT",
    "COUNT",
    "GUILDS",
    "MIX_SHARES",
    "QUEUE",
    "SETTLE",
    "SHARDS",
    "WARMUP",
    "FloorBot",
    "aibot_builder",
    "aibot_env",
    "cpus_apart",
    "fake_providers",
    "log",
    "logged",
    "measure",
    "mix",
    "on_cpus",
    "peak_rss_mb",
    "percentile",
    "started",
    "summary",
    "timed_burst",
    "typical",
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
    fake: FakeDiscordProcess,
    bot: commands.AutoShardedBot,
    *,
    rounds: int,
    count: int = COUNT,
    warmup: int = WARMUP,
) -> list[dict[str, Any]]:
    """Start `bot` against the fake, warm it up (`warmup` interactions), time
    `rounds` bursts of `count` in a second, close it."""
    async with started(fake, bot, warmup=warmup) as run_task:
        return [
            summary(await timed_burst(fake, run_task, count, duration=1.0)) for _ in range(rounds)
        ]


@contextlib.asynccontextmanager
async def started(
    fake: FakeDiscordProcess, bot: commands.AutoShardedBot, *, warmup: int = WARMUP
) -> AsyncIterator[asyncio.Task[None]]:
    """`bot` connected to the fake and warmed up by a burst of `warmup` interactions
    (its task); closed on the way out."""
    await fake.reset()
    bot.before_identify_hook = _no_identify_wait  # type: ignore[method-assign]
    run_task = asyncio.create_task(bot.start(fake.token))
    try:
        await asyncio.wait_for(fake.wait_ready(timeout=60), 70)
        # Opens the HTTP connections and runs every code path once, as a bot
        # that has been up for a while would have.
        await _burst_and_wait(fake, warmup, run_task, duration=warmup / COUNT)
        tune_gc_for_serving()  # as `python run.py` does once the bot is up
        yield run_task
    finally:
        await asyncio.wait_for(bot.close(), CLOSE_TIMEOUT)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(run_task, CLOSE_TIMEOUT)


async def timed_burst(
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
        "slowest": results.get("slowest", []),
    }


def _finite(value: float) -> float | None:
    return None if math.isinf(value) else round(value, 2)


def peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux.
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


@contextlib.asynccontextmanager
async def aibot_builder(
    token: str, base_urls: Mapping[str, str]
) -> AsyncIterator[Callable[[], commands.AutoShardedBot]]:
    """Builds the real aibot, pointed at the fake providers and a data folder of its own."""
    with tempfile.TemporaryDirectory(prefix="aibot-bench-") as data_dir:
        env = aibot_env(token, base_urls, data_dir)
        yield lambda: create_bot(env)


def cpus_apart() -> tuple[set[int], set[int]]:
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
def on_cpus(cpus: set[int]) -> Iterator[None]:
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
async def fake_providers() -> AsyncIterator[dict[str, str]]:
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


def aibot_env(token: str, base_urls: Mapping[str, str], data_dir: str) -> dict[str, str]:
    """aibot's settings in the benchmark: the fakes' URLs, its own data folder, no
    HTTP server, fair use off and room in every queue (see below), two keys per
    provider and pool."""
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


def logged(name: str, rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for i, result in enumerate(rounds, 1):
        log(f"{name} burst {i}/{len(rounds)}: {json.dumps(result)}")
    return rounds


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
