"""The fake providers in a process of their own, steered by the benchmark.

The engine benchmark measures this process's CPU time and event-loop latency,
so the fakes (`aibot.sandbox.FakeProviders`) must not run in it. `FakeProcess`
starts `python -m bench.fakes`, which serves the same `FakeProviders` that
`python -m aibot.sandbox` serves, and adds a line-based control channel on its
stdin/stdout, which that command line does not offer: per-phase counters,
`reset`, fault injection and changing any `FakeConfig` field while it runs.

Protocol (one JSON object per line): the parent writes the config (keyword
arguments of `FakeProviders`, plus `inject`: a list of `[provider, fault,
times, endpoint]`); the child answers `{"env": {...}}`. Then each command
`{"op": "counters" | "reset" | "set" | "inject" | "stop", ...}` gets one
answer line. The config travels on stdin, not argv, since it may hold keys.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["FakeProcess"]

_ROOT = Path(__file__).resolve().parents[1]
_STREAM_LIMIT = 16 * 1024 * 1024  # counters snapshots hold one entry per key


class FakeProcess:
    """`async with FakeProcess(config) as fake:` the fakes, served by a child process.

    `fake.env` points settings at them; `await fake.counters()` is the
    sandbox's `Counters.snapshot()` plus `cpu_seconds`, the child's CPU time.
    """

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = dict(config or {})
        self.env: dict[str, str] = {}
        self._child: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> FakeProcess:
        self._child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.fakes",
            cwd=_ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=_STREAM_LIMIT,
        )
        answer = await self._send(self.config)
        self.env = answer["env"]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        try:
            if child.returncode is None and child.stdin is not None:
                child.stdin.write(b'{"op": "stop"}\n')
                await child.stdin.drain()
                child.stdin.close()
            await asyncio.wait_for(child.wait(), 10)
        except (OSError, TimeoutError):
            child.kill()
            await child.wait()

    async def counters(self) -> dict[str, Any]:
        return (await self._send({"op": "counters"}))["counters"]

    async def reset(self) -> None:
        await self._send({"op": "reset"})

    async def set(self, **fields: Any) -> None:
        """Change `FakeConfig` fields (`rpm`, `chunk_delay`, ...) in the child."""
        await self._send({"op": "set", "fields": fields})

    async def inject(
        self, provider: str, fault: str, times: int = 1, endpoint: str | None = None
    ) -> None:
        await self._send({"op": "inject", "args": [provider, fault, times, endpoint]})

    async def _send(self, message: dict[str, Any]) -> dict[str, Any]:
        child = self._child
        if child is None or child.stdin is None or child.stdout is None:
            raise RuntimeError("the fake process is not running")
        child.stdin.write(json.dumps(message).encode() + b"\n")
        await child.stdin.drain()
        line = await child.stdout.readline()
        if not line:
            raise RuntimeError("the fake process ended; see its stderr")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"the fake process refused {message.get('op')}: {answer['error']}")
        return answer


def _serve() -> None:
    """The child's side: serve the fakes, answer commands until `stop` or EOF."""
    from aibot.sandbox import FakeProviders

    _remember_images()
    config = json.loads(sys.stdin.readline())
    injections = config.pop("inject", [])
    fake = FakeProviders(**config)
    for provider, fault, times, endpoint in injections:
        fake.inject(provider, fault, times, endpoint=endpoint)
    with fake:
        _answer({"env": fake.env()})
        for line in sys.stdin:
            command = json.loads(line)
            if command["op"] == "stop":
                break
            try:
                _answer(_command(fake, command))
            except (ValueError, TypeError, KeyError) as error:
                _answer({"error": str(error)})


def _remember_images() -> None:
    """The fakes draw every PNG pixel by pixel in Python (~2.5 ms for image-01's
    64 x 64); that would make the fake, not the engine, the slow side of a
    run. The same arguments give the same bytes, so this process keeps them."""
    from aibot.sandbox import media, minimax, openai, stability

    remembered = functools.lru_cache(maxsize=1024)(media.png)
    for module in (minimax, openai, stability):
        module.png = remembered  # type: ignore[attr-defined]


def _command(fake: Any, command: dict[str, Any]) -> dict[str, Any]:
    op = command["op"]
    if op == "counters":
        snapshot = fake.counters.snapshot()
        snapshot["cpu_seconds"] = time.process_time()
        return {"counters": snapshot}
    if op == "reset":
        fake.reset()
    elif op == "set":
        for name, value in command["fields"].items():
            if not hasattr(fake, name):
                raise KeyError(name)
            setattr(fake, name, value)
    elif op == "inject":
        provider, fault, times, endpoint = command["args"]
        fake.inject(provider, fault, times, endpoint=endpoint)
    else:
        raise ValueError(f"unknown op {op!r}")
    return {"ok": True}


def _answer(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    _serve()
