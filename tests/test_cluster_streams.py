"""A pool's job stream on a real Redis: taken, reclaimed, renewed, dead-lettered,
answered once, including across worker processes killed or stopped mid-job."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from aibot.cluster.connection import connect
from aibot.cluster.streams import GROUP, JobStream, stream_loads
from aibot.jobs import Job
from tests.cluster_processes import Process, events, eventually, spawn
from tests.fixtures.redis_server import RedisServer

PREFIX = "t"


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = connect(redis_server.url)
    yield client
    await client.aclose()


def chat_job(n: int = 0) -> Job:
    return Job(
        "chat", {"prompt": f"question {n}"}, user_id=100 + n, channel_id=7, token="tok-secret"
    )


def stream(redis: Redis, **options: float) -> JobStream:
    """The chat stream, scanning for idle entries at every take."""
    return JobStream(redis, "chat", prefix=PREFIX, block=0.05, reclaim_every=0, **options)


async def idle_at_least(redis: Redis, seconds: float) -> None:
    """Wait until every pending entry of the chat stream has been idle `seconds`."""

    async def idle() -> bool:
        rows = await redis.xpending_range(f"{PREFIX}:jobs:chat", GROUP, "-", "+", 1000)
        return all(row["time_since_delivered"] >= seconds * 1000 for row in rows)

    await eventually(idle, what=f"entries idle {seconds} s")


async def test_a_job_goes_in_and_comes_out_whole_then_finish_removes_it(redis: Redis) -> None:
    jobs = stream(redis)
    job = chat_job()
    entry_id = await jobs.add(job)
    [delivery] = await jobs.take("worker-a", 4)
    assert (delivery.entry_id, delivery.job, delivery.deliveries) == (entry_id, job, 1)
    assert delivery.job.token == "tok-secret" and not delivery.dead
    assert (await jobs.load()).pending == 1
    await jobs.finish(entry_id)
    await jobs.finish(entry_id)  # idempotent: a worker may retry it after an error
    load = await jobs.load()
    assert (load.length, load.pending, load.waiting) == (0, 0, 0)


async def test_take_reclaims_an_idle_entry_before_reading_new_ones(redis: Redis) -> None:
    jobs = stream(redis, lease=0.2)
    first = await jobs.add(chat_job(1))
    await jobs.take("dead-worker", 1)
    await jobs.add(chat_job(2))
    await idle_at_least(redis, 0.2)
    [delivery] = await jobs.take("survivor", 1)
    assert (delivery.entry_id, delivery.deliveries, delivery.consumer) == (first, 2, "survivor")
    assert len(await jobs.take("survivor", 1)) == 1  # then the new one


async def test_the_reclaim_scan_runs_at_most_every_reclaim_every_seconds(redis: Redis) -> None:
    seldom = JobStream(redis, "chat", prefix=PREFIX, block=0.05, lease=0.1, reclaim_every=60)
    await seldom.add(chat_job())
    [first] = await seldom.take("worker-a", 1)  # this take scanned
    await idle_at_least(redis, 0.1)
    assert await seldom.take("worker-b", 1) == []  # no scan due yet
    [again] = await stream(redis, lease=0.1).take("worker-b", 1)
    assert (again.entry_id, again.deliveries) == (first.entry_id, 2)


async def test_reclaim_follows_the_cursor_past_entries_that_are_still_leased(
    redis: Redis,
) -> None:
    # XAUTOCLAIM scans at most 10 x COUNT entries a call: with 40 live leases
    # ahead of the idle ones, one call with COUNT 1 would find nothing.
    jobs = stream(redis, lease=0.3)
    for n in range(50):
        await jobs.add(chat_job(n))
    held = await jobs.take("stalled", 50)
    await idle_at_least(redis, 0.3)
    assert await jobs.renew("stalled", [d.entry_id for d in held[:40]])
    [delivery] = await jobs.take("survivor", 1)
    assert delivery.entry_id in {d.entry_id for d in held[40:]}
    assert delivery.deliveries == 2


async def test_renew_keeps_only_the_leases_still_owned(redis: Redis) -> None:
    jobs = stream(redis, lease=1.0)
    for n in range(2):
        await jobs.add(chat_job(n))
    first, second = await jobs.take("worker-a", 2)
    await idle_at_least(redis, 1.0)
    assert await jobs.renew("worker-a", [first.entry_id]) == {first.entry_id}
    # The renewed entry is not idle any more; the other one is taken over.
    [taken] = await jobs.take("worker-b", 2)
    assert taken.entry_id == second.entry_id
    assert await jobs.renew("worker-a", [first.entry_id, second.entry_id]) == {first.entry_id}
    await jobs.finish(first.entry_id)
    assert await jobs.renew("worker-a", [first.entry_id]) == set()


async def test_a_job_delivered_more_than_three_times_is_dead_lettered(redis: Redis) -> None:
    jobs = stream(redis, lease=0.1)
    job = chat_job()
    entry_id = await jobs.add(job)
    for attempt in (1, 2, 3):
        [delivery] = await jobs.take(f"crashing-{attempt}", 1)
        assert (delivery.deliveries, delivery.dead) == (attempt, False)
        await idle_at_least(redis, 0.1)
    [delivery] = await jobs.take("survivor", 1)
    assert (delivery.entry_id, delivery.job, delivery.deliveries, delivery.dead) == (
        entry_id,
        job,
        4,
        True,
    )
    load = await jobs.load()
    assert (load.length, load.pending) == (0, 0)
    [(_, letter)] = await jobs.dead_letters()
    assert (letter["entry"], letter["deliveries"]) == (entry_id, "4")
    assert Job.from_dict(json.loads(letter["job"])) == job


async def test_the_first_delivery_to_claim_sends_and_takes_the_lease(redis: Redis) -> None:
    jobs = stream(redis, lease=0.1)
    await jobs.add(chat_job())
    [stalled] = await jobs.take("worker-a", 1)
    await idle_at_least(redis, 0.1)
    [reclaimed] = await jobs.take("worker-b", 1)
    assert await jobs.claim_delivery(reclaimed)
    assert await jobs.claim_delivery(reclaimed)  # the same delivery may ask again
    assert not await jobs.claim_delivery(stalled)
    assert await jobs.renew("worker-b", [reclaimed.entry_id]) == {reclaimed.entry_id}


async def test_a_stalled_worker_that_claims_first_sends_and_the_other_copy_drops(
    redis: Redis,
) -> None:
    jobs = stream(redis, lease=0.1)
    await jobs.add(chat_job())
    [first] = await jobs.take("worker-a", 1)
    await idle_at_least(redis, 0.1)
    [second] = await jobs.take("worker-b", 1)
    assert await jobs.claim_delivery(first)
    assert not await jobs.claim_delivery(second)
    # ...and winning moved the lease back to it: the other copy is dropped.
    assert await jobs.renew("worker-b", [second.entry_id]) == set()
    assert await jobs.renew("worker-a", [first.entry_id]) == {first.entry_id}


async def test_a_reclaimed_job_whose_answer_was_sent_is_finished_not_run_again(
    redis: Redis,
) -> None:
    jobs = stream(redis, lease=0.1)
    job = chat_job()
    await jobs.add(job)
    [answering] = await jobs.take("worker-a", 1)
    assert await jobs.claim_delivery(answering)
    assert await jobs.mark_sent(answering)  # then it dies before finishing
    await idle_at_least(redis, 0.1)
    [again] = await jobs.take("worker-b", 1)
    assert (again.job, again.deliveries, again.answered, again.dead) == (job, 2, True, False)
    load = await jobs.load()
    assert (load.length, load.pending) == (0, 0)
    assert await jobs.dead_letters() == []


async def test_a_job_whose_worker_died_while_answering_is_answered_by_the_reclaimer(
    redis: Redis,
) -> None:
    jobs = stream(redis, lease=0.1)
    job = chat_job()
    await jobs.add(job)
    [answering] = await jobs.take("worker-a", 1)
    assert await jobs.claim_delivery(answering)  # then it dies before it has sent
    await idle_at_least(redis, 0.1)
    [again] = await jobs.take("worker-b", 1)
    assert (again.job, again.deliveries, again.answered, again.dead) == (job, 2, False, False)
    assert await jobs.claim_delivery(again), "the claim passed to the reclaimer"
    assert not await jobs.claim_delivery(answering)
    assert not await jobs.mark_sent(answering)
    assert await jobs.mark_sent(again)


async def test_a_late_finish_of_the_first_sender_keeps_the_reclaimer_from_sending(
    redis: Redis,
) -> None:
    jobs = stream(redis, lease=0.1)
    job = chat_job()
    await jobs.add(job)
    [answering] = await jobs.take("worker-a", 1)
    assert await jobs.claim_delivery(answering)  # it sends, and Redis goes away
    await idle_at_least(redis, 0.1)
    [again] = await jobs.take("worker-b", 1)
    await jobs.finish(answering.entry_id, sent=job.id)  # Redis back: its finish lands
    assert not await jobs.claim_delivery(again)
    load = await jobs.load()
    assert (load.length, load.pending) == (0, 0)


async def test_a_consumer_reclaiming_its_own_entry_is_another_delivery(redis: Redis) -> None:
    jobs = stream(redis, lease=0.1)
    await jobs.add(chat_job())
    [before] = await jobs.take("worker-a", 1)
    await idle_at_least(redis, 0.1)
    [after] = await jobs.take("worker-a", 1)
    assert await jobs.claim_delivery(after)
    assert not await jobs.claim_delivery(before)


async def test_loads_count_each_pool_and_an_unused_pool_reads_empty(redis: Redis) -> None:
    chat = stream(redis)
    video = JobStream(redis, "video", prefix=PREFIX, block=0.05)
    for n in range(3):
        await chat.add(chat_job(n))
    await video.add(chat_job(9))
    await chat.take("worker-a", 2)
    loads = await stream_loads(redis, ["chat", "video", "image"], prefix=PREFIX)
    assert (loads["chat"].length, loads["chat"].pending, loads["chat"].waiting) == (3, 2, 1)
    assert (loads["video"].length, loads["video"].pending) == (1, 0)  # no consumer group yet
    assert (loads["image"].length, loads["image"].pending) == (0, 0)


async def test_the_group_comes_back_when_redis_lost_its_data(redis: Redis) -> None:
    jobs = stream(redis)
    await jobs.add(chat_job())
    await jobs.take("worker-a", 1)
    await redis.flushall()
    assert await jobs.take("worker-a", 1) == []
    entry_id = await jobs.add(chat_job(2))
    [delivery] = await jobs.take("worker-a", 1)
    assert delivery.entry_id == entry_id


# Across real processes: tests/cluster_worker.py is the worker.


def worker(redis_server: RedisServer, name: str, *options: str) -> Process:
    process = spawn(
        "tests.cluster_worker",
        redis_server.url,
        "--consumer", name,
        "--prefix", PREFIX,
        "--block", "0.2",
        "--record",
        *options,
    )  # fmt: skip
    process.wait_line("ready")
    return process


async def answers(redis: Redis) -> Counter[str]:
    return Counter(await redis.lrange(f"{PREFIX}:test:answers", 0, -1))


async def started_by(redis: Redis, consumer: str) -> list[dict[str, object]]:
    return [e for e in await events(redis, PREFIX, "started") if e["consumer"] == consumer]


async def test_kill_9_of_a_worker_holding_jobs_every_job_answered_exactly_once(
    redis: Redis, redis_server: RedisServer
) -> None:
    jobs = stream(redis)
    # The doomed worker's jobs would take a minute: it holds them when killed.
    doomed = worker(redis_server, "doomed", "--slots", "2", "--job-seconds", "60", "--lease", "1")
    survivor = None
    try:
        for n in range(6):
            await jobs.add(chat_job(n))

        async def doomed_holds_two() -> bool:
            return len(await started_by(redis, "doomed")) >= 2

        await eventually(doomed_holds_two, what="the doomed worker holding 2 jobs")
        doomed.kill()
        survivor = worker(redis_server, "survivor", "--slots", "2", "--job-seconds", "0.5")

        async def all_answered() -> bool:
            return len(await answers(redis)) == 6

        await eventually(all_answered, what="6 jobs answered")
        counts = await answers(redis)
        assert set(counts.values()) == {1}, counts
        held = {e["job"] for e in await started_by(redis, "doomed")}
        reclaimed = {e["job"] for e in await started_by(redis, "survivor") if e["deliveries"] == 2}
        assert held == reclaimed
        load = await jobs.load()
        assert (load.length, load.pending) == (0, 0)
    finally:
        doomed.stop()
        if survivor is not None:
            survivor.stop()


async def test_a_worker_stopped_past_its_lease_drops_its_job_on_waking(
    redis: Redis, redis_server: RedisServer
) -> None:
    jobs = stream(redis)
    options = ("--slots", "1", "--job-seconds", "2", "--lease", "1")
    sleeper = worker(redis_server, "sleeper", *options)
    survivor = None
    try:
        job = chat_job()
        await jobs.add(job)

        async def sleeper_started() -> bool:
            return len(await started_by(redis, "sleeper")) >= 1

        await eventually(sleeper_started, what="the sleeper starting the job")
        sleeper.pause()
        survivor = worker(redis_server, "survivor", *options)

        async def answered() -> bool:
            return (await answers(redis))[job.id] == 1

        await eventually(answered, what="the survivor answering the job")
        # Past redis-py's 5 s socket timeout too: the sleeper wakes to TimeoutError.
        await asyncio.sleep(6)
        sleeper.resume()

        async def sleeper_dropped() -> bool:
            return any(e["consumer"] == "sleeper" for e in await events(redis, PREFIX, "dropped"))

        await eventually(sleeper_dropped, what="the sleeper dropping the job it lost")
        assert await answers(redis) == Counter({job.id: 1})
        # The sleeper goes on working once the survivor is gone.
        survivor.stop()
        later = chat_job(2)
        await jobs.add(later)

        async def later_answered() -> bool:
            return (await answers(redis))[later.id] == 1

        await eventually(later_answered, what="the woken worker answering a new job")
        assert await answers(redis) == Counter({job.id: 1, later.id: 1})
    finally:
        sleeper.stop()
        if survivor is not None:
            survivor.stop()


async def test_redis_frozen_mid_job_then_back_no_job_lost_or_answered_twice(
    redis: Redis, redis_server: RedisServer
) -> None:
    jobs = stream(redis)
    options = ("--slots", "2", "--job-seconds", "2", "--lease", "2")
    workers = [worker(redis_server, name, *options) for name in ("worker-a", "worker-b")]
    try:
        ids = []
        for n in range(6):
            new = chat_job(n)
            ids.append(new.id)
            await jobs.add(new)

        async def four_running() -> bool:
            return len(await events(redis, PREFIX, "started")) >= 4

        await eventually(four_running, what="both workers busy")
        redis_server.pause()
        try:
            # Past redis-py's 5 s socket timeout: every worker call times out.
            await asyncio.sleep(6)
        finally:
            redis_server.resume()

        async def settled() -> bool:
            done = set(await answers(redis)) | {e["job"] for e in await dead(redis)}
            return done == set(ids) and await _drained(jobs)

        await eventually(settled, what="every job answered or dead-lettered")
        # Commands the frozen server ran for callers that had given up count as
        # deliveries too, so a job may run out of them; none is lost or answered twice.
        assert set((await answers(redis)).values()) == {1}
    finally:
        redis_server.resume()
        for process in workers:
            process.stop()


async def dead(redis: Redis) -> list[dict[str, object]]:
    return await events(redis, PREFIX, "dead")


async def _drained(jobs: JobStream) -> bool:
    load = await jobs.load()
    return (load.length, load.pending) == (0, 0)


async def test_a_worker_killed_after_answering_is_not_answered_again(
    redis: Redis, redis_server: RedisServer
) -> None:
    jobs = stream(redis)
    job = chat_job()
    await jobs.add(job)
    doomed = worker(redis_server, "doomed", "--lease", "0.5", "--crash-after-answer")
    code, _ = doomed.finish()
    assert code == 4
    survivor = worker(redis_server, "survivor", "--lease", "0.5")
    try:

        async def skipped() -> bool:
            return bool(await events(redis, PREFIX, "skipped"))

        await eventually(skipped, what="the survivor finishing the answered job")
        assert await answers(redis) == Counter({job.id: 1})
        assert [e["consumer"] for e in await events(redis, PREFIX, "started")] == ["doomed"]
        assert await _drained(jobs)
    finally:
        survivor.stop()


async def test_a_job_that_kills_its_worker_is_dead_lettered_after_three_deliveries(
    redis: Redis, redis_server: RedisServer
) -> None:
    jobs = stream(redis)
    job = chat_job()
    await jobs.add(job)
    for attempt in (1, 2, 3):
        crashing = worker(redis_server, f"crashing-{attempt}", "--lease", "0.3", "--crash-on-start")
        code, _ = crashing.finish()
        assert code == 3
    last = worker(redis_server, "last", "--lease", "0.3")
    try:

        async def told_dead() -> bool:
            return bool(await events(redis, PREFIX, "dead"))

        await eventually(told_dead, what="the job dead-lettered")
        [dead] = await events(redis, PREFIX, "dead")
        assert (dead["job"], dead["deliveries"], dead["consumer"]) == (job.id, 4, "last")
        assert [e["deliveries"] for e in await events(redis, PREFIX, "started")] == [1, 2, 3]
        assert await answers(redis) == Counter()
        assert len(await jobs.dead_letters()) == 1
        load = await jobs.load()
        assert (load.length, load.pending) == (0, 0)
    finally:
        last.stop()
