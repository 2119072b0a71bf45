"""Engine scenario `overhead`: CPU per job through the whole engine path
against the same provider call made directly (`bench.engine`'s docstring
says what the figures mean)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from aibot.jobs import AibotError, Job, Result
from aibot.pools import build_pools
from aibot.providers.base import ImageRequest
from aibot.providers.minimax import MiniMaxImages
from aibot.providers.openai_chat import OpenAIChat
from aibot.router import Router
from aibot.sandbox import RecordingReply
from aibot.secrets import fingerprint, redact
from aibot.settings import Settings
from bench.engine_parts import PROMPT, UNLIMITED, Scale
from bench.fakes import FakeProcess
from bench.world import bench_job, bench_keys, close_pools, engine_env

__all__ = ["overhead"]

_GUILD_CHANNELS = ("채팅방-1", "이미지생성-1", "비디오생성-1", "general")


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
        AIBOT_CHAT_RPM_OPENAI=UNLIMITED,
        AIBOT_IMAGE_RPM_MINIMAX=UNLIMITED,
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
