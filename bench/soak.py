"""Soak benchmark: hours of a busy day in minutes, with faults, looking for leaks.

    python -m bench.soak [--minutes N | --quick]

Mixed commands (/chat, /image, /video from 50 members) arrive open loop at 80% of
each pool's key budget (keys x RPM) for N minutes (`--quick`: 2), while one
provider fault (429, 5xx, a cut stream, a broken event, a body that is no image,
a refusal, a failed video task) is injected every `FAULT_EVERY` seconds. The
engine is the one the bot runs (`aibot.worker.Worker` with its pools, key rings,
provider clients, and the SQLite store's gate, ledger, memory and journal), in
this process; the fake providers run in a child process (`bench/fakes.py`).
Each job's reply is an in-memory `Reply` standing in for Discord's, which counts
how often the job was answered (finished or failed).

Prints one JSON line::

    {"scenario": "soak", "minutes", "commands", "answered_once", "lost",
     "refused", "rss_start_mb", "rss_end_mb", "open_fds_start", "open_fds_end",
     "tasks_start", "tasks_end"}

`commands` counts every command sent; `refused` those a pool turned away at once
(the front tells the member privately); `answered_once` the accepted ones answered
exactly once; `lost` the accepted ones never answered (or answered twice) once
the load stops and the pools had `SETTLE` seconds to finish. `rss_start_mb`,
`open_fds_start` and `tasks_start` are taken after the first minute (warm:
connections open, caches full, and every member's conversation filled to the
history budget before the load starts, as on a bot up for days); the `_end` ones
after the load stopped and the jobs settled. Target: 0 lost, RSS growth <= 10%, fds and tasks flat.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

from aibot.jobs import AibotError, Job, Progress, Result
from aibot.sandbox.config import FakeConfig
from aibot.settings import Settings
from aibot.store import Store
from aibot.store.memory import Memory
from aibot.worker import Worker
from bench.fakes import FakeProcess
from bench.world import bench_keys, engine_env

__all__ = ["main", "soak"]

MEMBERS = 50
LOAD = 0.8  # of each pool's key budget
FAULT_EVERY = 1.0  # seconds between two injected faults
WARM = 60.0  # seconds before the start figures are taken
SETTLE = 120.0  # seconds the pools get to finish once the load stops
# Per pool: (command, provider, keys, rpm per key, provider calls per job); its budget
# is keys x rpm / 60 calls a second (a video: create, two polls, the file's details).
POOLS = (
    ("chat", "openai", 4, 300, 1),
    ("image", "minimax", 2, 120, 1),
    ("video", "minimax", 2, 60, 4),
)
# Faults the fakes inject, round-robin: (provider, fault, endpoint).
FAULTS = (
    ("openai", "rate_limit", "chat"),
    ("openai", "500", "chat"),
    ("openai", "cut_stream", "chat"),
    ("openai", "bad_event", "chat"),
    ("minimax", "image_json", "image"),
    ("minimax", "500", "image"),
    ("minimax", "reject", "image"),
    ("minimax", "video_fail", "video"),
)
PROMPTS = {
    "chat": "파이썬에서 리스트를 뒤집는 방법은?",
    "image": "a lighthouse at dawn, watercolor",
    "video": "waves rolling onto a beach",
}


class Tally:
    """Answers counted as they happen, with nothing kept per job: a soak that kept
    an object per job would itself grow (and pin the allocator's pages) as it ran."""

    def __init__(self) -> None:
        self.accepted = 0
        self.answered = 0  # jobs answered at least once
        self.twice = 0  # jobs answered more than once
        self.outcomes: dict[str, int] = {}

    def settled(self) -> bool:
        return self.answered >= self.accepted


class CountingReply:
    """A job's reply that counts its answers (finish or fail) into the `Tally`."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.answers = 0

    async def progress(self, update: Progress) -> None:
        return None

    async def stream(self, text: str) -> None:
        return None

    async def finish(self, result: Result) -> None:
        self._answered("ok")

    async def fail(self, error: AibotError) -> None:
        self._answered(error.kind)

    def _answered(self, outcome: str) -> None:
        self.answers += 1
        tally = self.tally
        tally.outcomes[outcome] = tally.outcomes.get(outcome, 0) + 1
        if self.answers == 1:
            tally.answered += 1
        elif self.answers == 2:
            tally.twice += 1


class CountingReplies:
    """The reply factory: a `CountingReply` per job, held only by the worker."""

    def __init__(self) -> None:
        self.tally = Tally()

    def make(self, job: Job) -> CountingReply:
        return CountingReply(self.tally)


def member_job(command: str, user: int, number: int) -> Job:
    """The job of a member's `number`th command (each member chats in one channel)."""
    return Job(
        command=command,
        args={"prompt": PROMPTS[command]},
        user_id=user,
        channel_id=100 + user % 7,
        guild_id=1,
        token=f"soak-token-{number}",
        token_expires_at=time.time() + 900,
        pool=command,
    )


async def fill_conversations(memory: Memory) -> None:
    """Every member's conversation filled to the history budget, as on a bot that
    has been up for days. Left empty, they would grow for the first minutes, and
    with them each chat's request and the memory it takes: RSS growth that is the
    load warming up, not a leak (seen: +18% between minutes 1 and 4, flat after)."""
    answer = FakeConfig().reply_for(PROMPTS["chat"])
    for user in range(1, MEMBERS + 1):
        job = member_job("chat", user, 0)
        while not await memory.remember(job, PROMPTS["chat"], answer):
            pass  # until the oldest turn is forgotten to fit: the budget is full


def soak_env(fake_env: Mapping[str, str], data_dir: str) -> dict[str, str]:
    """Settings: each pool's keys and RPM, no member limits, queues deep enough."""
    variables: dict[str, object] = {"AIBOT_DATA_DIR": data_dir, "AIBOT_VIDEO_POLL_SECONDS": 2}
    for pool, provider, keys, rpm, _ in POOLS:
        up = pool.upper()
        variables[f"AIBOT_{up}_PROVIDERS"] = provider
        variables[f"AIBOT_{up}_RPM_{provider.upper()}"] = rpm
        variables[f"AIBOT_{up}_COOLDOWN"] = 0
        variables[f"AIBOT_{up}_DAILY_QUOTA"] = 0
        variables[f"AIBOT_{up}_QUEUE"] = 256
        number = {"chat": 1, "image": 2, "video": 3}[pool]
        variables[f"{provider.upper()}_API_KEY_{number}"] = ",".join(
            bench_keys(f"soak-{pool}", keys)
        )
    variables["AIBOT_POOLS"] = "chat,image,video"
    return engine_env(fake_env, **variables)


def rates() -> dict[str, float]:
    """Commands a second per pool: `LOAD` of its keys' budget."""
    return {pool: LOAD * keys * rpm / 60 / calls for pool, _, keys, rpm, calls in POOLS}


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def tasks() -> int:
    """Tasks alive besides this benchmark's own."""
    return len(asyncio.all_tasks()) - 1


class Soak:
    """One run: the worker, its store, the arrivals and the figures."""

    def __init__(self, worker: Worker, replies: CountingReplies, fake: FakeProcess) -> None:
        self.worker = worker
        self.replies = replies
        self.fake = fake
        self.commands = 0
        self.refused = 0
        self._pending: set[asyncio.Task[None]] = set()
        self._users = itertools.cycle(range(1, MEMBERS + 1))

    def arrive(self, command: str) -> None:
        """One member's command, handed to the worker as the front would."""
        self.commands += 1
        job = member_job(command, next(self._users), self.commands)
        task = asyncio.get_running_loop().create_task(self._submit(job))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _submit(self, job: Job) -> None:
        try:
            await self.worker.submit(job)
        except AibotError:
            self.refused += 1
            return
        self.replies.tally.accepted += 1

    async def load(self, seconds: float) -> None:
        """Arrivals at `rates()` and a fault every `FAULT_EVERY` s, for `seconds`."""
        per_second = rates()
        due = dict.fromkeys(per_second, 0.0)
        faults = itertools.cycle(FAULTS)
        start = time.perf_counter()
        next_fault = 0.0
        while (elapsed := time.perf_counter() - start) < seconds:
            for command, rate in per_second.items():
                while due[command] <= elapsed * rate:
                    due[command] += 1
                    self.arrive(command)
            if elapsed >= next_fault:
                provider, fault, endpoint = next(faults)
                await self.fake.inject(provider, fault, 1, endpoint)
                next_fault += FAULT_EVERY
            await asyncio.sleep(0.05)

    async def settle(self, timeout: float) -> None:
        """Until every accepted job is answered (or `timeout` s)."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if not self._pending and self.replies.tally.settled():
                return
            await asyncio.sleep(0.5)

    def counted(self) -> tuple[int, int]:
        """(answered exactly once, lost: never answered or answered more than once)."""
        tally = self.replies.tally
        once = tally.answered - tally.twice
        return once, tally.accepted - once


async def soak(minutes: float) -> dict[str, Any]:
    """Run the soak for `minutes`; the JSON line's fields."""
    seconds = minutes * 60
    async with FakeProcess({"chunk_delay": 0.02, "video_polls": 2}) as fake:
        with tempfile.TemporaryDirectory(prefix="aibot-soak-") as data_dir:
            settings = Settings.from_env(soak_env(fake.env, data_dir))
            store = Store(settings)
            await store.start()
            await fill_conversations(store.memory)
            replies = CountingReplies()
            worker = Worker(
                settings,
                replies=replies,
                gate=store.gate,
                ledger=store.ledger,
                journal=store.journal,
                memory=store.memory,
            )
            run = Soak(worker, replies, fake)
            try:
                await run.load(min(WARM, seconds))
                start = rss_mb(), open_fds(), tasks()
                _log(f"warm after {min(WARM, seconds):.0f} s: {start}, {run.commands} commands")
                await run.load(max(0.0, seconds - WARM))
                await run.settle(SETTLE)
                end = rss_mb(), open_fds(), tasks()
                unfinished = len(await store.journal.unfinished())
            finally:
                await worker.drain(5)
                await worker.aclose()
                await store.close()
    once, lost = run.counted()
    _log(f"outcomes: {replies.tally.outcomes}; journal entries left unfinished: {unfinished}")
    return {
        "scenario": "soak",
        "minutes": minutes,
        "commands": run.commands,
        "answered_once": once,
        "lost": lost,
        "refused": run.refused,
        "rss_start_mb": start[0],
        "rss_end_mb": end[0],
        "open_fds_start": start[1],
        "open_fds_end": end[1],
        "tasks_start": start[2],
        "tasks_end": end[2],
    }


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n")[0]
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--minutes", type=float, default=10.0, help="how long (default 10)")
    group.add_argument("--quick", action="store_true", help="2 minutes")
    args = parser.parse_args(argv)
    # The faults are the point: their warnings (keys cooling, retries) would flood stderr.
    logging.basicConfig(level=logging.ERROR)
    with contextlib.suppress(KeyboardInterrupt):
        line = asyncio.run(soak(2.0 if args.quick else args.minutes))
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
