"""Pools: bounded, fair, isolated, and honest about what they could not finish.
Runs on a virtual clock: a job that "takes ten minutes" costs no real time."""

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from aibot.jobs import (
    AibotError,
    BadRequest,
    Cancelled,
    Job,
    Paused,
    QueueFull,
    Reply,
    Result,
    ShuttingDown,
)
from aibot.keys import KeyRing
from aibot.logs import current_log_context
from aibot.pools.base import Pool
from aibot.sandbox.replies import RecordingReply
from tests.fixtures.engine import make_job, on_virtual_clock, settle_until

Work = Callable[[Job, Reply], Awaitable[Result]]


def sleeper(seconds: float, ran: list[Job] | None = None) -> Work:
    """Work that takes `seconds` and then answers; records the order jobs started."""

    async def work(job: Job, reply: Reply) -> Result:
        if ran is not None:
            ran.append(job)
        await asyncio.sleep(seconds)
        return Result(text=f"done {job.id}")

    return work


def pool_workers() -> list[asyncio.Task]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("aibot.pool.")]


@on_virtual_clock
async def test_a_job_logs_with_its_pool_job_and_shard_tags() -> None:
    seen: list[dict[str, str]] = []

    async def work(job: Job, reply: Reply) -> Result:
        seen.append(current_log_context())
        return Result()

    pool = Pool("image", work, workers=1, queue_size=4)
    first, second = make_job(1), make_job(2)  # the second comes from a DM: no shard
    first.shard_id = 3
    replies = [RecordingReply(), RecordingReply()]
    pool.submit(first, replies[0])
    pool.submit(second, replies[1])  # queued: started by the end of the first job
    await settle_until(lambda: all(r.done for r in replies))
    assert seen == [
        {"pool": "image", "shard": "3", "job": first.id},
        {"pool": "image", "shard": "", "job": second.id},
    ]


@on_virtual_clock
async def test_a_job_runs_and_its_reply_finishes() -> None:
    outcomes: list[tuple[str, AibotError | None, float]] = []

    async def record(job: Job, result: Result | None, error: AibotError | None, seconds: float):
        outcomes.append((job.id, error, seconds))

    pool = Pool(
        "chat",
        sleeper(2),
        workers=2,
        queue_size=4,
        on_outcome=record,
    )
    reply, job = RecordingReply(), make_job(1)
    assert pool.submit(job, reply) == 1
    await settle_until(lambda: reply.done)
    await settle_until(lambda: bool(outcomes))
    assert reply.events == ["finish"] and reply.result == Result(text=f"done {job.id}")
    assert outcomes == [(job.id, None, pytest.approx(2))]
    snap = pool.snapshot()
    assert (snap.done, snap.failed, snap.queued, snap.workers_busy) == (1, 0, 0, 0)
    assert snap.p50_ms == pytest.approx(2000)


@on_virtual_clock
async def test_workers_start_on_demand_and_leave_when_the_queue_is_empty() -> None:
    running, most = 0, 0

    async def work(job: Job, reply: Reply) -> Result:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(1)
        running -= 1
        return Result()

    pool = Pool("image", work, workers=3, queue_size=20)
    assert pool_workers() == []
    replies = [RecordingReply() for _ in range(10)]
    for n, reply in enumerate(replies):
        pool.submit(make_job(n), reply)
    assert len(pool_workers()) == 3
    await settle_until(lambda: all(r.done for r in replies))
    await asyncio.sleep(0)
    assert most == 3
    assert pool_workers() == []


@on_virtual_clock
async def test_members_take_turns_so_nobody_is_starved() -> None:
    ran: list[Job] = []
    pool = Pool("image", sleeper(1, ran), workers=1, queue_size=100)
    busy, patient, newcomer = 1, 2, 3
    jobs = (
        [make_job(busy) for _ in range(50)]
        + [make_job(patient)]
        + [make_job(newcomer), make_job(newcomer)]
    )
    replies = [RecordingReply() for _ in jobs]
    for job, reply in zip(jobs, replies, strict=True):
        pool.submit(job, reply)
    promised = [job for job, _ in pool.jobs()]
    await settle_until(lambda: all(r.done for r in replies))
    users = [job.user_id for job in ran]
    # busy's first job started at once; then every member in line gets a turn.
    assert users[:7] == [busy, busy, patient, newcomer, busy, newcomer, busy]
    assert users[7:] == [busy] * 46
    assert ran == promised


@on_virtual_clock
async def test_the_place_in_line_follows_the_turns() -> None:
    pool = Pool("video", sleeper(60), workers=2, queue_size=20)
    a1, a2, a3, b1, a4, c1 = (make_job(u) for u in (1, 1, 1, 2, 1, 3))
    places = [pool.submit(job, RecordingReply()) for job in (a1, a2, a3, b1, a4, c1)]
    # a1 and a2 start at once (place 1); c1 arrives last but goes before a4.
    assert places == [1, 1, 2, 3, 4, 4]
    await asyncio.sleep(1)
    assert [(j.id, s) for j, s in pool.jobs()] == [
        (a1.id, "running"),
        (a2.id, "running"),
        (a3.id, "queued"),
        (b1.id, "queued"),
        (c1.id, "queued"),
        (a4.id, "queued"),
    ]


@on_virtual_clock
async def test_the_place_submit_tells_is_the_place_the_job_is_taken_in() -> None:
    # Members with one job and with several, coming back after others: each place
    # `submit` tells is the job's place in the order the pool then lists (and takes).
    pool = Pool("video", sleeper(60), workers=1, queue_size=100)
    pool.submit(make_job(0), RecordingReply())  # runs: every later job waits
    for user in (1, 2, 1, 3, 4, 2, 2, 5, 1, 6, 3, 7, 7, 8):
        job = make_job(user)
        place = pool.submit(job, RecordingReply())
        waiting = [other.id for other, state in pool.jobs() if state == "queued"]
        assert place == waiting.index(job.id) + 2  # 1 is the running job's


@on_virtual_clock
async def test_a_full_queue_refuses_with_an_estimated_wait() -> None:
    pool = Pool("video", sleeper(40), workers=2, queue_size=2, service_estimate=30)
    for n in range(4):
        pool.submit(make_job(n), RecordingReply())
    await asyncio.sleep(0)
    assert pool.load().full
    with pytest.raises(QueueFull) as before_any_finished:
        pool.submit(make_job(9), RecordingReply())
    assert before_any_finished.value.retry_after == pytest.approx(30 * 2 / 2)
    await asyncio.sleep(45)  # two finished after 40 s; the other two now run
    pool.submit(make_job(7), RecordingReply())
    pool.submit(make_job(8), RecordingReply())
    with pytest.raises(QueueFull) as after:
        pool.submit(make_job(9), RecordingReply())
    assert after.value.retry_after == pytest.approx(40 * 2 / 2)


@on_virtual_clock
async def test_a_saturated_pool_does_not_delay_another() -> None:
    video = Pool("video", sleeper(600), workers=2, queue_size=8)
    chat = Pool("chat", sleeper(0.5), workers=2, queue_size=8)
    video_replies = [RecordingReply() for _ in range(10)]
    for n, reply in enumerate(video_replies[:10]):
        try:
            video.submit(make_job(n, "video"), reply)
        except QueueFull:
            break
    assert video.load().full
    answer, answer_job = RecordingReply(), make_job(99)
    chat.submit(answer_job, answer)
    assert await answer.wait(timeout=60) == Result(text=f"done {answer_job.id}")
    assert not any(r.done for r in video_replies)
    assert video.snapshot().queued == 8


@on_virtual_clock
async def test_errors_fail_the_reply_and_unexpected_ones_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def work(job: Job, reply: Reply) -> Result:
        if job.args.get("bad"):
            raise BadRequest("prompt too long")
        raise RuntimeError(f"surprise while answering {job.token}")

    outcomes: list[AibotError | None] = []

    async def on_outcome(
        job: Job, result: Result | None, error: AibotError | None, seconds: float
    ) -> None:
        outcomes.append(error)

    pool = Pool("chat", work, workers=1, queue_size=4, on_outcome=on_outcome)
    refused, crashed = RecordingReply(), RecordingReply()
    crashing_job = make_job(2)
    pool.submit(make_job(1, bad=True), refused)
    pool.submit(crashing_job, crashed)
    await settle_until(lambda: refused.done and crashed.done and len(outcomes) == 2)
    assert isinstance(refused.error, BadRequest)
    assert crashed.error is not None and crashed.error.kind == "internal"
    assert [type(e) for e in outcomes] == [BadRequest, AibotError]
    assert pool.snapshot().failed == 2
    logged = [r for r in caplog.records if r.name == "aibot.pool.chat"]
    assert any(crashing_job.id in r.getMessage() for r in logged)
    assert all(crashing_job.token not in r.getMessage() for r in caplog.records)


@on_virtual_clock
async def test_cancel_a_queued_or_running_job() -> None:
    ran: list[Job] = []
    pool = Pool("video", sleeper(100, ran), workers=1, queue_size=4)
    running, queued, last = make_job(1), make_job(2), make_job(3)
    replies = {job.id: RecordingReply() for job in (running, queued, last)}
    for job in (running, queued, last):
        pool.submit(job, replies[job.id])
    await asyncio.sleep(1)
    assert pool.cancel(queued.id) and pool.cancel(running.id)
    assert not pool.cancel("unknown")
    await settle_until(lambda: replies[last.id].done)
    assert isinstance(replies[queued.id].error, Cancelled)
    assert isinstance(replies[running.id].error, Cancelled)
    assert replies[last.id].events[-1] == "finish"
    assert ran == [running, last]


@on_virtual_clock
async def test_a_paused_pool_refuses_and_holds_its_queue() -> None:
    ran: list[Job] = []
    pool = Pool("image", sleeper(1, ran), workers=1, queue_size=4)
    first, second = make_job(1), make_job(2)
    pool.submit(first, RecordingReply())
    pool.submit(second, RecordingReply())
    await asyncio.sleep(0.5)
    pool.pause()
    assert pool.paused and pool.load().paused and pool.snapshot().state == "paused"
    with pytest.raises(Paused):
        pool.submit(make_job(3), RecordingReply())
    await asyncio.sleep(10)
    assert ran == [first]
    pool.resume()
    await settle_until(lambda: len(ran) == 2)
    assert ran == [first, second]


@on_virtual_clock
async def test_drain_returns_the_jobs_it_could_not_finish() -> None:
    pool = Pool("video", sleeper(100), workers=1, queue_size=4)
    slow, waiting_a, waiting_b = make_job(1), make_job(2), make_job(3)
    replies = [RecordingReply() for _ in range(3)]
    for job, reply in zip((slow, waiting_a, waiting_b), replies, strict=True):
        pool.submit(job, reply)
    await asyncio.sleep(1)
    left = await pool.drain(timeout=5)
    assert left == [slow, waiting_a, waiting_b]
    assert not any(r.events for r in replies)  # handed back, not failed
    assert pool.snapshot().state == "stopped"
    assert pool_workers() == []
    with pytest.raises(ShuttingDown):
        pool.submit(make_job(4), RecordingReply())


class UploadingReply(RecordingReply):
    """A reply whose answer takes `seconds` to go out, as a video's upload does."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    async def finish(self, result: Result) -> None:
        await asyncio.sleep(self.seconds)
        await super().finish(result)


@on_virtual_clock
async def test_an_answer_going_out_is_neither_cancelled_nor_cut_short_by_the_drain() -> None:
    # A finished video counts as delivered once its upload starts: cut short, it
    # would be neither shown nor made again after the restart.
    pool = Pool("video", sleeper(1), workers=2, queue_size=4)
    first, second = make_job(1), make_job(2)
    replies = {first.id: UploadingReply(60), second.id: UploadingReply(60)}
    for job in (first, second):
        pool.submit(job, replies[job.id])
    await asyncio.sleep(2)  # both done with their work, both uploading
    assert not pool.cancel(second.id)  # too late: its answer is going out
    assert await pool.drain(timeout=5) == []
    assert all(reply.result is not None and reply.error is None for reply in replies.values())
    assert pool.snapshot().done == 2


@on_virtual_clock
async def test_drain_lets_running_jobs_finish_in_time() -> None:
    pool = Pool("chat", sleeper(2), workers=2, queue_size=4)
    reply = RecordingReply()
    pool.submit(make_job(1), reply)
    await asyncio.sleep(0.1)
    assert await pool.drain(timeout=30) == []
    assert reply.events[-1] == "finish"
    assert pool.snapshot().done == 1


@on_virtual_clock
async def test_keys_down_shows_in_load_and_snapshot() -> None:
    ring = KeyRing("image", "minimax", ["mm-key-one-000000000001"], rpm=10, concurrency=2)
    pool = Pool("image", sleeper(1), workers=1, queue_size=4, rings=[ring])
    assert not pool.load().keys_down
    (await ring.acquire(timeout=1)).bad_key("401 unauthorized")
    assert pool.load().keys_down
    snap = pool.snapshot()
    assert (snap.keys_healthy, snap.keys_total) == (0, 1)
    assert snap.rings[0].keys[0].reason == "401 unauthorized"
    assert "mm-key-one-000000000001" not in repr(snap)
