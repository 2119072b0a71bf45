"""Helpers for the cluster tests: start the helper processes, wait for conditions.

Processes are started with this interpreter from the project's root and
stopped by their own PID (`Process.kill`, `.stop`, `.pause`, `.resume`).
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

__all__ = ["Process", "events", "eventually", "run_together", "spawn"]

ROOT = Path(__file__).resolve().parent.parent


class Process:
    """A helper process (`python -m tests.<module> ...`) of one test."""

    def __init__(self, module: str, args: Sequence[str]) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._seen = ""
        self.errors = ""  # its stderr, once stopped

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_line(self, expected: str = "ready", timeout: float = 60.0) -> str:
        """Read stdout until a line starting with `expected`; fail with the
        process's stderr if it exits or stays silent for `timeout` seconds."""
        deadline = time.monotonic() + timeout
        assert self.popen.stdout is not None
        fd = self.popen.stdout.fileno()
        while time.monotonic() < deadline:
            while "\n" in self._seen:
                line, self._seen = self._seen.split("\n", 1)
                if line.startswith(expected):
                    return line
            # Raw reads: a buffered readline could hold the next line where
            # select cannot see it.
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                self._seen += chunk.decode()
        raise AssertionError(f"{self.popen.args} printed no {expected!r}: {self.stderr()}")

    def stderr(self) -> str:
        if self.popen.poll() is None:
            return "(still running)"
        return self.popen.stderr.read() if self.popen.stderr else ""

    def finish(self, timeout: float = 60.0) -> tuple[int, str]:
        """Wait for the process to exit on its own: (exit code, stderr)."""
        _, err = self.popen.communicate(timeout=timeout)
        return self.popen.returncode, err

    def kill(self) -> None:
        """SIGKILL (kill -9): no clean-up of any kind."""
        self.popen.kill()
        self.popen.wait()

    def pause(self) -> None:
        self.popen.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.popen.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """SIGTERM (after SIGCONT, in case it is paused), SIGKILL if it lingers."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGCONT)
            self.popen.terminate()
            try:
                _, self.errors = self.popen.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


def spawn(module: str, *args: str) -> Process:
    return Process(module, args)


async def eventually(
    condition: Callable[[], Awaitable[bool]], *, timeout: float = 60.0, what: str = ""
) -> None:
    """Wait until `condition()` holds, checking every 50 ms; fail after `timeout`
    seconds (generous: the machine is shared)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what or condition}")


async def events(redis: Redis, prefix: str, what: str) -> list[dict[str, Any]]:
    """What the worker processes recorded under `{prefix}:test:{what}`."""
    return [json.loads(item) for item in await redis.lrange(f"{prefix}:test:{what}", 0, -1)]


def child_main(work: Callable[[dict[str, Any]], Awaitable[Any]]) -> None:
    """A `run_together` child: read its spec, run `work(spec)` (which calls
    `ready_then_start` once set up), print the result as JSON."""
    spec = json.loads(sys.stdin.readline())
    print(json.dumps(asyncio.run(work(spec))), flush=True)


async def ready_then_start() -> float:
    """In a `run_together` child: say ready, then wait for the common start (unix
    seconds, also returned)."""
    print(json.dumps({"ready": True}), flush=True)
    start = json.loads(await asyncio.to_thread(sys.stdin.readline))["start"]
    await asyncio.sleep(max(0.0, start - time.time()))
    return start


async def run_together(module: str, specs: Sequence[dict[str, Any]], *, lead: float) -> list[Any]:
    """One process per spec, running `module`'s `_child()`: each reads its spec,
    says ready, waits for the common start (`lead` seconds after all are ready),
    works and prints its result as JSON. Their results, in spec order."""
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            f"from {module} import _child; _child()",
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in specs
    ]
    for child, spec in zip(children, specs, strict=True):
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(json.dumps(spec).encode() + b"\n")
        await child.stdin.drain()
        assert json.loads(await child.stdout.readline()) == {"ready": True}
    start = time.time() + lead
    for child in children:
        assert child.stdin is not None
        child.stdin.write(json.dumps({"start": start}).encode() + b"\n")
        await child.stdin.drain()
    results = []
    for child in children:
        out, _ = await child.communicate()
        assert child.returncode == 0
        results.append(json.loads(out))
    return results
