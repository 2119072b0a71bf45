"""The job transport: the one port between the front and the worker.

The front (the gateway's intake and its admin commands) hands a routed `Job` to a
`JobQueue` and gets back its place in line, or a typed refusal (`QueueFull`,
`Paused`, `ShuttingDown`); it reads the pools only as plain loads and snapshots.
It never sees a pool, a key ring or a provider.

`LocalQueue`, the embedded default, runs the worker in this process. It is also
where members go first (`aibot.foreground`): a job handed over while members'
commands are being answered waits for their turn before it starts, so a burst
of commands is deferred before any of the pools' work runs.
"""

from __future__ import annotations

import importlib.metadata
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Protocol

from aibot.jobs import Job
from aibot.router import PoolLoad
from aibot.snapshots import NodeSnapshot, PoolSnapshot
from aibot.worker import Worker

__all__ = ["JobQueue", "LocalQueue", "free_slots"]


class JobQueue(Protocol):
    """What the front may ask of the pools, wherever they run."""

    def pools(self) -> tuple[str, ...]:
        """The pools that run (somewhere) and take jobs."""

    def loads(self) -> Mapping[str, PoolLoad]:
        """Each pool's load, for routing and refusals before the defer: no I/O."""

    def wait_estimate(self, pool: str) -> float:
        """Seconds until a place frees up in `pool`."""

    async def submit(self, job: Job) -> int:
        """Hand over a routed job; its place in line, or a typed refusal."""

    def snapshots(self) -> list[PoolSnapshot]:
        """Plain data of every pool, for status views."""

    def jobs(self) -> list[tuple[str, Job, str]]:
        """(pool, job, running or queued) of every job held."""

    async def list_jobs(self, guild_id: int) -> list[tuple[str, Job, str]]:
        """The same for one server's jobs, wherever they run: what `/admin jobs`
        lists (cluster mode reads it from Redis)."""

    def nodes(self) -> list[NodeSnapshot]:
        """Every live process with its pools, free slots and shards, for status
        views: this process alone in embedded mode. No I/O."""

    def round_trip(self) -> float | None:
        """Seconds one call to the shared store (Redis) took when last measured
        (about a second ago at most), `math.inf` when it did not answer; None when
        there is none (embedded mode). No I/O."""

    async def cancel(self, job_id: str) -> bool: ...

    async def pause(self, pool: str) -> None: ...

    async def unpause(self, pool: str) -> None: ...

    async def start(self) -> None:
        """Begin serving: jobs an earlier run left unfinished are resumed."""

    async def drain(self, timeout: float) -> None:
        """Stop taking jobs; let running ones finish within `timeout` seconds."""

    async def aclose(self) -> None:
        """Let go of connections and clients (after `drain`)."""


class LocalQueue:
    """The embedded transport: the worker runs in this process, on this loop (the
    intake hands jobs over on the background's turn: see `aibot.foreground`)."""

    def __init__(self, worker: Worker):
        self.worker = worker
        self._node = NodeSnapshot(
            name=f"{socket.gethostname()}-{os.getpid()}",
            version=_version(),
            started_at=time.time(),
            here=True,
        )

    def pools(self) -> tuple[str, ...]:
        return tuple(self.worker.pools)

    def loads(self) -> Mapping[str, PoolLoad]:
        return self.worker.loads()

    def wait_estimate(self, pool: str) -> float:
        return self.worker.wait_estimate(pool)

    async def submit(self, job: Job) -> int:
        return await self.worker.submit(job)

    def snapshots(self) -> list[PoolSnapshot]:
        return self.worker.snapshots()

    def jobs(self) -> list[tuple[str, Job, str]]:
        return self.worker.jobs()

    async def list_jobs(self, guild_id: int) -> list[tuple[str, Job, str]]:
        return [held for held in self.worker.jobs() if held[1].guild_id == guild_id]

    def nodes(self) -> list[NodeSnapshot]:
        free = {snap.name: free_slots(snap) for snap in self.worker.snapshots()}
        return [replace(self._node, pools=tuple(free), free_slots=free)]

    def round_trip(self) -> float | None:
        return None

    async def cancel(self, job_id: str) -> bool:
        return self.worker.cancel(job_id)

    async def pause(self, pool: str) -> None:
        self.worker.pause(pool)

    async def unpause(self, pool: str) -> None:
        self.worker.unpause(pool)

    async def start(self) -> None:
        await self.worker.resume()

    async def drain(self, timeout: float) -> None:
        await self.worker.drain(timeout)

    async def aclose(self) -> None:
        await self.worker.aclose()


def free_slots(snapshot: PoolSnapshot) -> int:
    """Jobs a pool could start at once: none unless it is running."""
    if snapshot.state != "running":
        return 0
    return max(0, snapshot.workers_total - snapshot.workers_busy - snapshot.queued)


def _version() -> str:
    """aibot's installed version ("" when it runs from a tree not installed)."""
    try:
        return importlib.metadata.version("aibot")
    except importlib.metadata.PackageNotFoundError:
        return ""
