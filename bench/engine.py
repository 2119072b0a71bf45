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
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from aibot.jobs import AibotError, Job, QueueFull, Result
from aibot.pools import build_pools
from aibot.pools.base import Pool
from aibot.providers.base import ImageRequest
from aibot.providers.minimax import MiniMaxImages
from aibot.providers.openai_chat import OpenAIChat
from aibot.router import Router
from aibot.sandbox import RecordingReply
from aibot.secrets import fingerprint, redact
from aibot.settings import Settings
from bench.baseline import measure_apart
from bench.fakes import FakeProcess
from bench.world import (
    Tally,
    TimedReply,
    bench_job,
    bench_keys,
    close_pools,
    engine_env,
    paced,
    percentile,
)

__all__ = ["FULL", "QUICK", "SCENARIOS", "Scale", "budget", "isolation", "main", "overhead"]

log = logging.getLogger("bench.engine")

PROMPT = "파이썬에서 리스트를 뒤집는 방법은?"
_GUILD_CHANNELS = ("채팅방-1", "이미지생성-1", "비디오생성-1", "general")
_UNLIMITED = 1e9  # rpm that never makes a ring wait


@dataclass(frozen=True)
class Scale:
    """Sizes and durations of one run (`FULL`, `QUICK`, or tiny ones in tests)."""

    budget_keys: int = 4
    budget_rpm: float = 600.0
    budget_demand: float = 2.0  # x the keys' summed rate
    budget_warmup: float = 10.0
    budget_window: float = 60.0
    chat_rate: float = 50.0  # chat jobs per second in `isolation`
    isolation_seconds: float = 30.0  # per condition, over all rounds
    isolation_round: float = 1.0  # seconds of one condition before switching
    image_delay: float = 1.0
    video_poll: float = 0.5
    overhead_jobs: int = 20_000  # per side (engine, floor)
    overhead_rounds: int = 5
    overhead_concurrency: int = 8  # the image pool's default workers
    overhead_call: str = "image"


FULL = Scale()
QUICK = Scale(
    budget_window=10.0,
    isolation_seconds=8.0,
    overhead_jobs=6_000,
    overhead_rounds=3,
)


# -- budget ----------------------------------------------------------------


async def budget(scale: Scale) -> dict[str, Any]:
    """aibot's ring vs the reference design's fixed keys, on equal demand."""
    n, rpm = scale.budget_keys, scale.budget_rpm
    rate = scale.budget_demand * n * rpm / 60
    config = {"rpm": {"openai": rpm, "minimax": None, "stability": None}}
    async with FakeProcess(config) as ours, FakeProcess(config) as theirs:
        log.info("budget: %d keys x %.0f rpm, demand %.0f/s", n, rpm, rate)
        reference = asyncio.get_running_loop().create_task(
            measure_apart(
                theirs.env["OPENAI_BASE_URL"],
                bench_keys("reference", n),
                rate=rate,
                warmup=scale.budget_warmup,
                window=scale.budget_window,
                prompt=PROMPT,
            )
        )
        aibot = _AibotChat(ours.env, bench_keys("aibot", n), rpm)
        start = time.perf_counter()
        await paced(rate, scale.budget_warmup + scale.budget_window, aibot.arrive)
        window = (start + scale.budget_warmup, start + scale.budget_warmup + scale.budget_window)
        await aibot.close()
        theirs_result = await reference
        ours_429 = _rate_limited(await ours.counters())
        theirs_429 = _rate_limited(await theirs.counters())
    limit = n * rpm / 60 * scale.budget_window
    log.info("budget: aibot %s; reference %s", _failures(aibot.tally), theirs_result)
    return {
        "scenario": "budget",
        "achieved_ratio": round(aibot.tally.ok_between(*window) / limit, 4),
        "rate_limited": ours_429,
        "baseline_achieved_ratio": round(theirs_result["ok"] / limit, 4),
        "baseline_rate_limited": theirs_429,
        "keys": n,
        "rpm_per_key": rpm,
        "window_s": scale.budget_window,
    }


class _AibotChat:
    """One chat pool whose ring holds every key, built from settings."""

    def __init__(self, fake_env: Mapping[str, str], keys: Sequence[str], rpm: float) -> None:
        env = engine_env(
            fake_env,
            AIBOT_POOLS="chat",
            OPENAI_API_KEY_1=",".join(keys),
            AIBOT_CHAT_PROVIDERS="openai",
            AIBOT_CHAT_RPM_OPENAI=rpm,
        )
        self.pools = build_pools(Settings.from_env(env))
        self.pool = self.pools["chat"]
        self.tally = Tally()

    def arrive(self, n: int) -> None:
        try:
            self.pool.submit(bench_job("chat", n % 500, prompt=PROMPT), TimedReply(self.tally))
        except QueueFull:
            self.tally.failures["busy"] += 1  # told at once to come back later

    async def close(self) -> None:
        await close_pools(self.pools)


def _rate_limited(counters: Mapping[str, Any]) -> int:
    return sum(n for name, n in counters["outcomes"].items() if name.endswith("/rate_limited"))


def _failures(tally: Tally) -> str:
    return f"{len(tally.finished)} ok, failures {dict(tally.failures)}"


# -- isolation -------------------------------------------------------------


async def isolation(scale: Scale) -> dict[str, Any]:
    """Chat p99 with the image and video pools saturated, over chat p99 alone."""
    config = {
        "rpm": None,
        "timeout_delay": scale.image_delay,  # the "timeout" fault holds a request this long
        "inject": [["minimax", "timeout", 10**9, "image"]],
        "video_seconds": 24 * 3600.0,
        "video_polls": 10**9,
    }
    async with FakeProcess(config) as fake:
        pools = build_pools(Settings.from_env(_isolation_env(fake.env, scale)))
        alone, loaded = Tally(), Tally()
        rounds = max(1, round(scale.isolation_seconds / scale.isolation_round))
        seconds = scale.isolation_seconds / rounds
        await _chat_load(pools["chat"], scale.chat_rate, min(1.0, seconds), Tally())  # warm up
        for round_ in range(rounds):
            # A L, L A, A L, ...: drift on a shared machine falls on both conditions.
            for condition in (alone, loaded) if round_ % 2 == 0 else (loaded, alone):
                # What the previous phase left to collect is not this phase's cost.
                gc.collect()
                if condition is alone:
                    await _chat_load(pools["chat"], scale.chat_rate, seconds, alone)
                    continue
                saturation = _Saturation(pools)
                await saturation.start()
                await _chat_load(pools["chat"], scale.chat_rate, seconds, loaded)
                await saturation.stop()
        await close_pools(pools)
    p99_alone = percentile(alone.latencies, 0.99) * 1000
    p99_loaded = percentile(loaded.latencies, 0.99) * 1000
    for name, tally in (("alone", alone), ("loaded", loaded)):
        p50, p95 = (percentile(tally.latencies, q) * 1000 for q in (0.5, 0.95))
        log.info("isolation: %s: %s; p50 %.1f ms, p95 %.1f ms", name, _failures(tally), p50, p95)
    return {
        "scenario": "isolation",
        "p99_ratio": round(p99_loaded / p99_alone, 3) if p99_alone else 0.0,
        "chat_p99_ms_alone": round(p99_alone, 2),
        "chat_p99_ms_loaded": round(p99_loaded, 2),
        "chat_jobs": len(alone.latencies) + len(loaded.latencies),
        "chat_failed": sum(alone.failures.values()) + sum(loaded.failures.values()),
        "chat_rate": scale.chat_rate,
    }


def _isolation_env(fake_env: Mapping[str, str], scale: Scale) -> dict[str, str]:
    """Chat on OpenAI, image and video on MiniMax; rates high enough that the
    provider's slowness, not the rings, is what saturates image and video."""
    chat, image, video = (bench_keys(label, 1)[0] for label in ("chat", "image", "video"))
    return engine_env(
        fake_env,
        AIBOT_POOLS="chat,image,video",
        OPENAI_API_KEY_1=chat,
        MINIMAX_API_KEY_2=image,
        MINIMAX_API_KEY_3=video,
        AIBOT_CHAT_PROVIDERS="openai",
        AIBOT_CHAT_RPM_OPENAI=_UNLIMITED,
        AIBOT_IMAGE_RPM_MINIMAX=_UNLIMITED,
        AIBOT_VIDEO_RPM_MINIMAX=_UNLIMITED,
        AIBOT_VIDEO_POLL_SECONDS=scale.video_poll,
    )


async def _chat_load(pool: Pool, rate: float, seconds: float, tally: Tally) -> None:
    """Chat jobs at `rate` per second for `seconds`; returns once all ended."""

    def arrive(n: int) -> None:
        pool.submit(bench_job("chat", n % 100, prompt=PROMPT), TimedReply(tally))

    before = len(tally.latencies) + sum(tally.failures.values())
    sent = await paced(rate, seconds, arrive)
    await _until(lambda: len(tally.latencies) + sum(tally.failures.values()) - before >= sent)


class _Saturation:
    """Keeps the image and video pools' queues full until `stop()`."""

    def __init__(self, pools: Mapping[str, Pool]) -> None:
        self.pools = [pools["image"], pools["video"]]
        self.tally = Tally()
        self._task: asyncio.Task[None] | None = None
        self._sent = 0

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._fill())
        await _until(lambda: all(pool.load().full for pool in self.pools))

    async def _fill(self) -> None:
        while True:
            for pool in self.pools:
                while not pool.load().full:
                    self._sent += 1
                    job = bench_job(pool.name, 1000 + self._sent % 50, prompt=PROMPT)
                    pool.submit(job, TimedReply(self.tally))
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        """Stop filling and cancel every image and video job, queued or running."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for pool in self.pools:
            for job, _state in pool.jobs():
                pool.cancel(job.id)
        await _until(lambda: not any(pool.jobs() for pool in self.pools))
        log.debug("isolation: saturating jobs: %s", _failures(self.tally))


async def _until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            raise TimeoutError("the benchmark waited too long for its jobs")
        await asyncio.sleep(0.01)


# -- overhead --------------------------------------------------------------


async def overhead(scale: Scale) -> dict[str, Any]:
    """CPU per job through the engine vs the same provider call made directly."""
    concurrency = scale.overhead_concurrency
    async with FakeProcess({"rpm": None}) as fake:
        key = bench_keys("overhead", 1)[0]
        env = _overhead_env(fake.env, key, concurrency)
        settings = Settings.from_env(env)
        engine = _EnginePath(settings, scale.overhead_call)
        floor = _FloorPath(fake.env, settings, key, scale.overhead_call)
        per_round = max(concurrency, scale.overhead_jobs // scale.overhead_rounds)
        await engine.run(concurrency * 4, concurrency)  # connections, caches
        await floor.run(concurrency * 4, concurrency)
        cpu: dict[_EnginePath | _FloorPath, float] = {engine: 0.0, floor: 0.0}
        for round_ in range(scale.overhead_rounds):
            # E F, F E, ...: neither side always runs on a warmer machine.
            for path in (engine, floor) if round_ % 2 == 0 else (floor, engine):
                cpu[path] += await path.run(per_round, concurrency)
        await floor.aclose()
        await engine.aclose()
    ms_per_job = cpu[engine] / scale.overhead_rounds * 1000
    floor_ms = cpu[floor] / scale.overhead_rounds * 1000
    return {
        "scenario": "overhead",
        "ms_per_job": round(ms_per_job, 4),
        "jobs_per_s": round(1000 / ms_per_job) if ms_per_job else 0,
        "floor_ms_per_job": round(floor_ms, 4),
        "overhead_ratio": round(ms_per_job / floor_ms, 3) if floor_ms else 0.0,
        "call": engine.call,
        "jobs": per_round * scale.overhead_rounds,
    }


def _overhead_env(fake_env: Mapping[str, str], key: str, concurrency: int) -> dict[str, str]:
    """Image on MiniMax and chat on OpenAI, one key each, never waiting for budget."""
    room = {"WORKERS": concurrency, "KEY_CONCURRENCY": concurrency, "QUEUE": concurrency}
    return engine_env(
        fake_env,
        AIBOT_POOLS="chat,image",
        OPENAI_API_KEY_1=key,
        MINIMAX_API_KEY_2=key,
        AIBOT_CHAT_PROVIDERS="openai",
        AIBOT_IMAGE_PROVIDERS="minimax",
        AIBOT_CHAT_RPM_OPENAI=_UNLIMITED,
        AIBOT_IMAGE_RPM_MINIMAX=_UNLIMITED,
        **{f"AIBOT_{pool}_{name}": v for pool in ("CHAT", "IMAGE") for name, v in room.items()},
    )


class _EnginePath:
    """Members' commands as the front hands them to the engine (route, build
    the job, submit), `concurrency` at a time. The pools' outcome hook (where
    the bot records the ledger) hands in the next job once one ended: a closed
    loop, with no coroutine waiting per job."""

    def __init__(self, settings: Settings, call: str) -> None:
        self.router = Router(settings)
        self.pools = build_pools(settings, on_outcome=self._ended)
        self.command = "chat" if call == "chat" else "image"
        self.call = "openai chat (streamed)" if call == "chat" else "minimax image-01"
        self.channel = "채팅방-1" if call == "chat" else "이미지생성-1"
        self._left = self._open = 0
        self._failed = ""
        self._finished = asyncio.Event()

    async def run(self, calls: int, concurrency: int) -> float:
        """CPU seconds of this process (all its threads) per job, over `calls` jobs."""
        self._left, self._open, self._failed = calls, 0, ""
        self._finished.clear()
        start = time.process_time()
        for _ in range(min(concurrency, calls)):
            self._submit()
        await self._finished.wait()
        if self._failed:
            raise RuntimeError(f"an overhead job failed: {self._failed}")
        return (time.process_time() - start) / calls

    def _submit(self) -> None:
        if self._left <= 0 or self._failed:
            return
        self._left -= 1
        self._open += 1
        user = self._left % 50
        load = {name: pool.load() for name, pool in self.pools.items()}
        decision = self.router.decide(
            self.command,
            guild_id=1,
            channel_name=self.channel,
            guild_channels=_GUILD_CHANNELS,
            load=load,
        )
        job = bench_job(self.command, user, prompt=PROMPT)
        self.pools[decision.pool].submit(job, RecordingReply())

    async def _ended(
        self, job: Job, result: Result | None, error: AibotError | None, seconds: float
    ) -> None:
        self._open -= 1
        if error is not None and not self._failed:
            self._failed = error.kind
        if self._open == 0 and (self._left <= 0 or self._failed):
            self._finished.set()
        else:
            self._submit()

    async def aclose(self) -> None:
        await close_pools(self.pools)


class _FixedLease:
    """What a provider client reads from a lease, for one fixed key."""

    def __init__(self, key: str, provider: str) -> None:
        self.key = key
        self.fingerprint = fingerprint(key)
        self.key_id = redact(key)
        self.provider = provider


class _FloorPath:
    """The same provider call, made directly by one client in `concurrency` loops."""

    def __init__(self, fake_env: Mapping[str, str], settings: Settings, key: str, call: str):
        timeout = settings.request_timeout
        self.chat = call == "chat"
        if self.chat:
            self.client: Any = OpenAIChat(
                fake_env["OPENAI_BASE_URL"], settings.models.openai_chat, timeout=timeout
            )
            self.lease = _FixedLease(key, "openai")
        else:
            self.client = MiniMaxImages(
                fake_env["MINIMAX_BASE_URL"], settings.models.minimax_image, timeout=timeout
            )
            self.lease = _FixedLease(key, "minimax")
        self.messages = [
            {"role": "system", "content": settings.chat_system_prompt},
            {"role": "user", "content": PROMPT},
        ]
        self.max_tokens = settings.chat_max_tokens

    async def run(self, calls: int, concurrency: int) -> float:
        """CPU seconds of this process per call, over `calls` calls."""

        async def caller(first: int) -> None:
            for _ in range(first, calls, concurrency):
                await self.one()

        start = time.process_time()
        await asyncio.gather(*(caller(first) for first in range(concurrency)))
        return (time.process_time() - start) / calls

    async def one(self) -> None:
        if self.chat:
            text = ""
            stream = self.client.stream(self.lease, self.messages, max_tokens=self.max_tokens)
            async for delta in stream:
                text += delta
        else:
            await self.client.generate(self.lease, ImageRequest(PROMPT))

    async def aclose(self) -> None:
        await self.client.aclose()


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
