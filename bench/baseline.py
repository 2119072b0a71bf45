"""The reference design's way of spending a provider budget, for comparison.

The reference design runs one copy of the bot per role, each with one fixed
key and no rate limiter: every command calls the provider at once, and a 429
is retried with tenacity, exponential backoff with jitter. The retry is the
one the OpenAI Cookbook recommends ("How to handle rate limits") and such bots
copy: `wait_random_exponential(min=1, max=60)`, `stop_after_attempt(6)`,
retrying `openai.RateLimitError`. The SDK's own retries are off so that every
429 goes through that policy (with them on, each tenacity attempt would hide
up to two more 429s).

`measure_apart(...)` runs the instances in a process of their own
(`python -m bench.baseline`, as the reference design runs its copies apart):
once its keys are refused, the design retries hard, and that storm of 429s
would otherwise take the CPU that the engine under test runs on.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import openai
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_random_exponential

from bench.world import Tally, paced

__all__ = ["SYSTEM_PROMPT", "ReferenceInstance", "measure", "measure_apart"]

SYSTEM_PROMPT = "You are a helpful assistant in a Discord server. Answer concisely."
_ROOT = Path(__file__).resolve().parents[1]


class ReferenceInstance:
    """One copy of the reference bot's chat role: one key, no limiter."""

    def __init__(
        self,
        base_url: str,
        key: str,
        model: str = "gpt-5-mini",
        *,
        attempts: int = 6,
        max_wait: float = 60.0,
    ) -> None:
        self.model = model
        self.attempts = attempts
        self.max_wait = max_wait
        self._client = openai.AsyncOpenAI(api_key=key, base_url=base_url, max_retries=0)

    async def chat(self, prompt: str) -> str:
        """The streamed answer to `prompt`, retried on 429 as the reference bot does."""
        retrying = AsyncRetrying(
            wait=wait_random_exponential(min=1, max=self.max_wait),
            stop=stop_after_attempt(self.attempts),
            retry=retry_if_exception_type(openai.RateLimitError),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._once(prompt)
        raise AssertionError("tenacity ended without an outcome")  # pragma: no cover

    async def _once(self, prompt: str) -> str:
        stream = await self._client.chat.completions.create(
            model=self.model,
            messages=[
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": prompt},
            ],
            stream=True,
        )
        parts = []
        async with stream:
            async for chunk in stream:
                for choice in chunk.choices:
                    parts.append(choice.delta.content or "" if choice.delta else "")
        return "".join(parts)

    async def aclose(self) -> None:
        await self._client.close()


class _Reference:
    """The instances, one per key, with arrivals dealt round-robin."""

    def __init__(self, base_url: str, keys: Sequence[str], prompt: str) -> None:
        self.instances = [ReferenceInstance(base_url, key) for key in keys]
        self.prompt = prompt
        self.tally = Tally()
        self._tasks: set[asyncio.Task[None]] = set()

    def arrive(self, n: int) -> None:
        instance = self.instances[n % len(self.instances)]
        task = asyncio.get_running_loop().create_task(self._one(instance))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _one(self, instance: ReferenceInstance) -> None:
        try:
            await instance.chat(self.prompt)
        except openai.RateLimitError:
            self.tally.failures["rate_limited"] += 1  # gave up after its attempts
        except openai.OpenAIError as error:
            self.tally.failures[type(error).__name__] += 1
        else:
            self.tally.finished.append(time.perf_counter())

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for instance in self.instances:
            await instance.aclose()


async def measure(
    base_url: str,
    keys: Sequence[str],
    *,
    rate: float,
    warmup: float,
    window: float,
    prompt: str,
) -> dict[str, Any]:
    """Chat arrivals at `rate` per second for `warmup + window` seconds.
    Returns `ok`: answers finished inside the window, and `failures` by kind."""
    reference = _Reference(base_url, keys, prompt)
    start = time.perf_counter()
    await paced(rate, warmup + window, reference.arrive)
    await reference.aclose()
    tally = reference.tally
    ok = tally.ok_between(start + warmup, start + warmup + window)
    return {"ok": ok, "finished": len(tally.finished), "failures": dict(tally.failures)}


async def measure_apart(base_url: str, keys: Sequence[str], **options: Any) -> dict[str, Any]:
    """`measure(...)` in a child process (`python -m bench.baseline`); the
    arguments travel on stdin (they hold keys)."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.baseline",
        cwd=_ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    request = json.dumps({"base_url": base_url, "keys": list(keys), **options}).encode()
    output, _ = await child.communicate(request + b"\n")
    if child.returncode != 0 or not output:
        raise RuntimeError(f"the baseline process failed ({child.returncode}); see its stderr")
    return json.loads(output)


def _main() -> None:
    request = json.loads(sys.stdin.readline())
    base_url, keys = request.pop("base_url"), request.pop("keys")
    result = asyncio.run(measure(base_url, keys, **request))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    _main()
