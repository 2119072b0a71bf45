"""A pool on a thread of its own: jobs submitted from the gateway's loop (or any
thread) run on the pool's loop, and every control works from the outside.
Real threads and real time here; nothing asserts how long anything took."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from aibot.jobs import Cancelled, Job, Reply, Result
from aibot.keys import KeyRing
from aibot.pools.base import Pool
from aibot.pools.thread import LoopThread, run_on
from aibot.sandbox.replies import RecordingReply
from tests.fixtures.engine import make_job

WAIT = 10.0  # every wait is bounded: a broken pool fails the test, never hangs it

Work = Callable[[Job, Reply], Awaitable[None]]


@pytest.fixture
async def chat_thread() -> AsyncIterator[LoopThread]:
    thread = LoopThread("chat").start()
    yield thread
    thread.stop()


def on_thread(names: list[str], seconds: float = 0.0) -> Work:
    """Work that notes the thread it runs on, takes `seconds`, then answers."""

    async def work(job: Job, reply: Reply) -> None:
        names.append(threading.current_thread().name)
        await asyncio.sleep(seconds)
        await reply.finish(Result(text=f"done {job.id}"))

    return work


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT):
        while not condition():
            await asyncio.sleep(0.01)


async def tasks_left(pool: Pool) -> set[asyncio.Task[object]]:
    """The tasks still alive on the pool's loop (asked on that loop)."""
    assert pool.loop is not None

    async def others() -> set[asyncio.Task[object]]:
        return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]

    return await run_on(pool.loop, others())


# ------------------------------------------------------------------- LoopThread


async def test_a_loop_thread_runs_work_from_other_threads_on_its_own_loop() -> None:
    thread = LoopThread("video").start()
    try:

        async def where(value: int) -> tuple[str, int]:
            await asyncio.sleep(0)
            return threading.current_thread().name, value * 2

        assert thread.alive and thread.loop.is_running()
        assert await thread.run(where(21)) == ("aibot-pool-video", 42)
        assert thread.submit(where(1)).result(WAIT) == ("aibot-pool-video", 2)
        called = threading.Event()
        seen: list[str] = []
        thread.call(lambda: (seen.append(threading.current_thread().name), called.set()))
        assert called.wait(WAIT) and seen == ["aibot-pool-video"]
    finally:
        thread.stop()
    assert not thread.alive and thread.loop.is_closed()
    thread.stop()  # twice is fine


async def test_stopping_a_loop_thread_cancels_what_is_left_and_closes_the_loop() -> None:
    thread = LoopThread("image").start()
    forever = thread.submit(asyncio.sleep(3600))
    thread.stop()
    assert forever.cancelled()
    assert not thread.alive and thread.loop.is_closed()
    with pytest.raises(RuntimeError):
        await run_on(thread.loop, asyncio.sleep(0))


# ------------------------------------------------------------ a pool on a thread


async def test_a_job_submitted_from_the_gateway_loop_runs_on_the_pool_thread(
    chat_thread: LoopThread,
) -> None:
    names: list[str] = []
    outcomes: list[tuple[str, str]] = []
    pool = Pool(
        "chat",
        on_thread(names),
        workers=2,
        queue_size=4,
        loop=chat_thread.loop,
        on_outcome=lambda job, error, s: outcomes.append((job.id, threading.current_thread().name)),
    )
    reply, job = RecordingReply(), make_job(1)

    assert pool.submit(job, reply) == 1
    await until(lambda: bool(outcomes))

    assert names == ["aibot-pool-chat"]
    assert reply.result == Result(text=f"done {job.id}")
    assert outcomes == [(job.id, "aibot-pool-chat")]
    assert pool.snapshot().done == 1
    assert await tasks_left(pool) == set()


async def test_jobs_from_many_threads_all_run_and_never_more_than_the_workers(
    chat_thread: LoopThread,
) -> None:
    running, most = 0, 0

    async def work(job: Job, reply: Reply) -> None:
        nonlocal running, most
        running += 1  # only the pool's thread touches these
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1
        await reply.finish(Result(text="ok"))

    pool = Pool("chat", work, workers=3, queue_size=100, loop=chat_thread.loop)
    replies = [RecordingReply() for _ in range(60)]

    def submit_share(first: int) -> list[int]:
        return [pool.submit(make_job(i % 7), replies[i]) for i in range(first, 60, 5)]

    with ThreadPoolExecutor(5) as submitters:  # plain threads, no event loop at all
        places = [p for share in submitters.map(submit_share, range(5)) for p in share]

    await until(lambda: all(reply.done for reply in replies))
    assert len(places) == 60 and min(places) == 1
    assert most <= 3
    snap = pool.snapshot()
    assert (snap.done, snap.failed, snap.queued, snap.workers_busy) == (60, 0, 0, 0)
    assert [reply.events for reply in replies] == [["finish"]] * 60


async def test_snapshots_and_the_job_list_are_safe_while_jobs_run(
    chat_thread: LoopThread,
) -> None:
    ring = KeyRing(
        "chat", "openai", ["sk-a-0000000000000000", "sk-b-0000000000000000"], rpm=600, concurrency=2
    )

    async def work(job: Job, reply: Reply) -> None:
        async with await ring.acquire(timeout=WAIT) as lease:
            await asyncio.sleep(0.005)
            lease.ok()
        await reply.finish(Result(text="ok"))

    pool = Pool("chat", work, workers=4, queue_size=200, rings=[ring], loop=chat_thread.loop)
    ring.snapshot()  # read from this loop first: the ring must still work on the pool's
    replies = [RecordingReply() for _ in range(40)]
    for i, reply in enumerate(replies):
        pool.submit(make_job(i % 5), reply)
    seen = []
    while not all(reply.done for reply in replies):
        snap = pool.snapshot()
        assert snap.workers_busy <= 4 and snap.queued + snap.workers_busy <= 40
        assert len(pool.jobs()) <= 40
        seen.append(snap.done)
        await asyncio.sleep(0.001)
    assert seen == sorted(seen)  # done only grows
    snap = pool.snapshot()
    assert snap.done == 40 and snap.p50_ms > 0 and snap.p99_ms >= snap.p50_ms
    assert sum(key.calls for key in snap.rings[0].keys) == 40


async def test_cancel_pause_and_resume_from_the_gateway_loop(chat_thread: LoopThread) -> None:
    started: list[str] = []

    async def work(job: Job, reply: Reply) -> None:
        started.append(job.id)
        await asyncio.sleep(3600)

    pool = Pool("video", work, workers=1, queue_size=4, loop=chat_thread.loop)
    running, waiting, later = (make_job(i, "video") for i in (1, 2, 3))
    replies = {job.id: RecordingReply() for job in (running, waiting, later)}
    for job in (running, waiting):
        pool.submit(job, replies[job.id])
    await until(lambda: started == [running.id])

    pool.pause()
    assert pool.cancel(waiting.id) and pool.cancel(running.id)
    await until(lambda: replies[waiting.id].done and replies[running.id].done)
    assert isinstance(replies[waiting.id].error, Cancelled)
    assert isinstance(replies[running.id].error, Cancelled)
    assert pool.snapshot().state == "paused"

    pool.resume()
    assert pool.submit(later, replies[later.id]) == 1
    await until(lambda: later.id in started)
    assert await pool.drain(0.01) == [later]
    assert await tasks_left(pool) == set()


async def test_drain_from_another_loop_hands_back_what_did_not_finish(
    chat_thread: LoopThread,
) -> None:
    names: list[str] = []
    pool = Pool("video", on_thread(names, 3600), workers=2, queue_size=8, loop=chat_thread.loop)
    jobs = [make_job(i, "video") for i in range(5)]
    replies = [RecordingReply() for _ in jobs]
    for job, reply in zip(jobs, replies, strict=True):
        pool.submit(job, reply)
    await until(lambda: len(names) == 2)

    left = await pool.drain(0.05)

    assert left == jobs  # in the order they were submitted
    assert not any(reply.done for reply in replies)  # left for the bot to explain
    assert pool.snapshot().state == "stopped"
    assert await tasks_left(pool) == set()
