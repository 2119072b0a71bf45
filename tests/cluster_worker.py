"""A worker process for the cluster tests and benchmarks: takes jobs from a pool's
stream and "answers" them, the way aibot's worker processes do.

`python -m tests.cluster_worker REDIS_URL --consumer NAME [options]`

Each job sleeps `--job-seconds` (standing for a provider call) while the lease
of every job held is renewed every lease/3; a job whose lease was lost is
dropped. Then the worker claims the job's delivery and, only if it won, sends
its answer: an `RPUSH` of the job id onto `{prefix}:test:answers` (with
`--record`), and finishes the entry. With `--record` it also writes what
happened onto lists under `{prefix}:test:` (started, dropped, dead), each item
a JSON object; without it, nothing but the stream work touches Redis (the
benchmarks). `--stats PATH` writes the start latencies ([job id, seconds from
the job's `submitted_at` to its start]), the finish times and the CPU seconds
spent once ready to PATH when the worker gets SIGTERM. `--crash-on-start`
exits at once (`os._exit`) after recording its first start: a job that kills
its worker; `--crash-after-answer` exits after its first answer, before
finishing the entry. `--heartbeat` keeps a heartbeat for the node named `--consumer`,
serving `--pool`.

It prints `ready` on stdout once its consumer group exists and it is about
to take jobs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from aibot.cluster.connection import connect
from aibot.cluster.heartbeat import Heartbeat, NodeInfo
from aibot.cluster.streams import Delivery, JobStream

__all__ = ["main"]

T = TypeVar("T")

# A stall (SIGSTOP) wakes to TimeoutError; Redis away gives ConnectionError.
_TRANSIENT = (RedisTimeoutError, RedisConnectionError, TimeoutError, ConnectionError)


class Worker:
    """Runs up to `slots` jobs of one stream at once, renewing their leases."""

    def __init__(self, stream: JobStream, consumer: str, args: argparse.Namespace) -> None:
        self.stream = stream
        self.consumer = consumer
        self.args = args
        self.running: dict[str, tuple[Delivery, asyncio.Task[None]]] = {}
        self.slot_freed = asyncio.Event()
        self.latencies: list[tuple[str, float]] = []
        self.finished_at: list[float] = []
        self.cpu_at_ready = 0.0
        self.committed: set[str] = set()  # entries whose delivery this worker claimed

    async def record(self, what: str, **fields: object) -> None:
        """Note what happened for the test (retried: a stall may cost the first
        try its reply, so a note can come twice; answers are never retried)."""
        if self.args.record:
            item = json.dumps({"consumer": self.consumer, "at": time.time(), **fields})
            key = f"{self.args.prefix}:test:{what}"
            await self.retrying(lambda: self.stream.redis.rpush(key, item))

    async def run(self) -> None:
        await self.stream.ensure_group()
        self.cpu_at_ready = time.process_time()
        print("ready", flush=True)
        renewing = asyncio.create_task(self.renew_forever())
        backoff = 0.05
        try:
            while True:
                free = self.args.slots - len(self.running)
                if free <= 0:
                    self.slot_freed.clear()
                    await self.slot_freed.wait()
                    continue
                try:
                    deliveries = await self.stream.take(self.consumer, free)
                except _TRANSIENT:
                    # Redis away: each try that times out may still run when it is back.
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 1.0)
                    continue
                backoff = 0.05
                for delivery in deliveries:
                    await self.start(delivery)
        finally:
            renewing.cancel()

    async def start(self, delivery: Delivery) -> None:
        if delivery.dead:
            await self.record("dead", job=delivery.job.id, deliveries=delivery.deliveries)
            return
        if delivery.answered:
            await self.record("skipped", job=delivery.job.id, deliveries=delivery.deliveries)
            return
        if delivery.entry_id in self.running:
            return  # its own job, reclaimed after a stall: it is still running here
        self.latencies.append((delivery.job.id, time.time() - delivery.job.submitted_at))
        await self.record("started", job=delivery.job.id, deliveries=delivery.deliveries)
        if self.args.crash_on_start:
            os._exit(3)
        task = asyncio.create_task(self.work(delivery))
        self.running[delivery.entry_id] = (delivery, task)
        task.add_done_callback(lambda _: self.done(delivery.entry_id))

    def done(self, entry_id: str) -> None:
        self.running.pop(entry_id, None)
        self.committed.discard(entry_id)
        self.slot_freed.set()

    async def work(self, delivery: Delivery) -> None:
        if self.args.job_seconds:
            await asyncio.sleep(self.args.job_seconds)
        # Claiming again for the same delivery answers the same: safe to retry.
        if not await self.retrying(lambda: self.stream.claim_delivery(delivery)):
            await self.record("dropped", job=delivery.job.id, why="claim")
            return
        self.committed.add(delivery.entry_id)  # sending now: no lease loss stops it
        if self.args.record:
            # The answer itself is sent once: a retry could send it twice.
            with contextlib.suppress(*_TRANSIENT):
                await self.stream.redis.rpush(f"{self.args.prefix}:test:answers", delivery.job.id)
            # Sent: a reclaimer after a crash here finishes the entry, not answers again.
            await self.retrying(lambda: self.stream.mark_sent(delivery))
        if self.args.crash_after_answer:
            os._exit(4)
        await self.retrying(lambda: self.stream.finish(delivery.entry_id))
        self.finished_at.append(time.time())

    async def retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """`call()` again while Redis is away or this process was stalled."""
        while True:
            try:
                return await call()
            except _TRANSIENT:
                await asyncio.sleep(0.05)

    async def renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.stream.lease / 3)
            held = dict(self.running)
            try:
                owned = await self.stream.renew(self.consumer, held)
            except _TRANSIENT:
                continue
            for entry_id, (delivery, task) in held.items():
                if entry_id not in owned and entry_id not in self.committed and not task.done():
                    task.cancel()
                    await self.record("dropped", job=delivery.job.id, why="lease")

    def write_stats(self) -> None:
        if self.args.stats:
            stats = {
                "latencies": self.latencies,
                "finished_at": self.finished_at,
                "cpu_s": time.process_time() - self.cpu_at_ready,
            }
            Path(self.args.stats).write_text(json.dumps(stats))


async def run(args: argparse.Namespace) -> None:
    redis = connect(args.url)
    stream = JobStream(redis, args.pool, prefix=args.prefix, lease=args.lease, block=args.block)
    worker = Worker(stream, args.consumer, args)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    info = NodeInfo(args.consumer, (args.pool,), started_at=time.time())
    heartbeat = Heartbeat(redis, lambda: info, prefix=args.prefix, interval=0.2, ttl=1.0)
    if args.heartbeat:
        await heartbeat.start()
    working = asyncio.create_task(worker.run())
    await asyncio.wait([working, asyncio.create_task(stop.wait())], return_when="FIRST_COMPLETED")
    working.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await working
    worker.write_stats()
    if args.heartbeat:
        await heartbeat.stop()
    await redis.aclose()


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster_worker")
    parser.add_argument("url")
    parser.add_argument("--consumer", required=True)
    parser.add_argument("--pool", default="chat")
    parser.add_argument("--prefix", default="aibot")
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--job-seconds", type=float, default=0.0)
    parser.add_argument("--lease", type=float, default=3.0)
    parser.add_argument("--block", type=float, default=0.5)
    parser.add_argument("--record", action="store_true")
    parser.add_argument("--stats")
    parser.add_argument("--crash-on-start", action="store_true")
    parser.add_argument("--crash-after-answer", action="store_true")
    parser.add_argument("--heartbeat", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    asyncio.run(run(parse(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    main()
