"""The admin's controls in Redis: pools paused for every worker, jobs listed from
the streams themselves, cancel requests recorded only for jobs that exist, and a
cancelled job no worker took yet taken out of its stream exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from aibot.cluster.connection import connect
from aibot.cluster.controls import CancelRequest, Controls
from aibot.cluster.streams import JobStream
from aibot.jobs import Job
from tests.fixtures.redis_server import RedisServer

PREFIX = "t"
GUILD, OTHER_GUILD = 1, 2


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = connect(redis_server.url)
    yield client
    await client.aclose()


def chat_job(n: int = 0, guild: int = GUILD) -> Job:
    return Job(
        "chat", {"prompt": f"q{n}"}, user_id=100 + n, channel_id=7, guild_id=guild, pool="chat"
    )


def chat_stream(redis: Redis, lease: float = 3.0) -> JobStream:
    return JobStream(redis, "chat", prefix=PREFIX, block=0.05, reclaim_every=0, lease=lease)


async def test_a_pause_is_seen_by_every_reader_until_resumed(redis: Redis) -> None:
    gateway, worker = Controls(redis, PREFIX), Controls(redis, PREFIX)
    assert (await worker.poll(["chat", "video"])).paused == frozenset()

    await gateway.pause("video", by="gateway-1")

    assert (await worker.poll(["chat", "video"])).paused == {"video"}
    assert await gateway.paused(["chat", "video", "admin"]) == {"video"}
    await gateway.unpause("video")
    assert (await worker.poll(["chat", "video"])).paused == frozenset()


async def test_jobs_lists_running_then_queued_from_the_stream(redis: Redis) -> None:
    stream, controls = chat_stream(redis), Controls(redis, PREFIX)
    assert await controls.jobs(["chat", "video"], GUILD) == []  # no stream yet
    jobs = [chat_job(n) for n in range(3)]
    for job in jobs:
        await stream.add(job)
    await stream.take("w1", 1)

    listed = await controls.jobs(["chat", "video"], GUILD)

    assert [(j.job, j.state, j.consumer) for j in listed] == [
        (jobs[0], "running", "w1"),
        (jobs[1], "queued", ""),
        (jobs[2], "queued", ""),
    ]
    assert all(j.pool == "chat" for j in listed)


async def test_a_job_whose_lease_ran_out_is_listed_as_queued(redis: Redis) -> None:
    stream, controls = chat_stream(redis), Controls(redis, PREFIX, lease=0.05)
    job = chat_job()
    await stream.add(job)
    await stream.take("dead-worker", 1)
    await asyncio.sleep(0.1)

    [listed] = await controls.jobs(["chat"], GUILD)

    assert (listed.job, listed.state) == (job, "queued")  # waits to be reclaimed


async def test_at_most_limit_jobs_of_each_kind_are_read(redis: Redis) -> None:
    stream, controls = chat_stream(redis), Controls(redis, PREFIX, limit=2)
    for n in range(5):
        await stream.add(chat_job(n))
    await stream.take("w1", 3)

    listed = await controls.jobs(["chat"], GUILD)

    assert [j.state for j in listed] == ["running", "running", "queued", "queued"]


async def test_a_server_s_jobs_are_listed_whatever_other_servers_came_first(
    redis: Redis,
) -> None:
    """`limit` applies to the server asked about: another server's many jobs ahead
    of its own (running and queued) hide none of them."""
    stream, controls = chat_stream(redis), Controls(redis, PREFIX, limit=2)
    theirs = [chat_job(n, guild=OTHER_GUILD) for n in range(5)]
    ours = [chat_job(10), chat_job(11)]
    for job in [*theirs[:3], ours[0], *theirs[3:], ours[1]]:
        await stream.add(job)
    await stream.take("w1", 4)  # three of theirs and our first are running

    listed = await controls.jobs(["chat"], GUILD)

    assert [(j.job, j.state) for j in listed] == [(ours[0], "running"), (ours[1], "queued")]
    assert [j.job for j in await controls.jobs(["chat"], OTHER_GUILD)] == theirs[:2] + theirs[3:5]


async def test_a_cancel_is_recorded_only_for_a_job_in_the_stream(redis: Redis) -> None:
    stream, controls = chat_stream(redis), Controls(redis, PREFIX)
    job, other = chat_job(1), chat_job(2)
    entry = await stream.add(job)
    other_entry = await stream.add(other)

    assert not await controls.request_cancel("chat", "1-1", job.id), "no such entry"
    assert not await controls.request_cancel("chat", other_entry, job.id), "another job's entry"
    assert await controls.request_cancel("chat", entry, job.id)
    assert not await controls.request_cancel("chat", entry, job.id), "asked already"

    state = await controls.poll(["chat"])
    assert state.cancels == {job.id: CancelRequest(job.id, "chat", entry)}
    assert [j.job for j in await controls.jobs(["chat"], GUILD)] == [other], "no longer listed"


async def test_no_cancel_once_the_answer_is_being_sent(redis: Redis) -> None:
    stream, controls = chat_stream(redis), Controls(redis, PREFIX)
    job = chat_job()
    await stream.add(job)
    [delivery] = await stream.take("w1", 1)
    assert await stream.claim_delivery(delivery)

    assert not await controls.request_cancel("chat", delivery.entry_id, job.id)


async def test_a_waiting_job_is_taken_out_once_and_never_delivered(redis: Redis) -> None:
    stream, controls = chat_stream(redis), Controls(redis, PREFIX)
    job = chat_job()
    entry = await stream.add(job)
    await controls.request_cancel("chat", entry, job.id)
    request = (await controls.poll(["chat"])).cancels[job.id]

    workers = [Controls(redis, PREFIX) for _ in range(5)]
    dropped = await asyncio.gather(*(w.drop_waiting(request) for w in workers))

    assert [d for d in dropped if d is not None] == [job], "one worker tells the member"
    assert await stream.take("w1", 1) == []
    assert (await controls.poll(["chat"])).cancels == {}


async def test_a_taken_job_is_left_to_its_holder_until_its_entry_is_gone(redis: Redis) -> None:
    stream, controls = chat_stream(redis), Controls(redis, PREFIX)
    job = chat_job()
    await stream.add(job)
    [delivery] = await stream.take("w1", 1)
    await controls.request_cancel("chat", delivery.entry_id, job.id)
    request = CancelRequest(job.id, "chat", delivery.entry_id)

    assert await controls.drop_waiting(request) is None
    assert job.id in (await controls.poll(["chat"])).cancels, "kept for the holder"

    await stream.finish(delivery.entry_id)  # the holder told the member, then finished
    assert await controls.drop_waiting(request) is None
    assert (await controls.poll(["chat"])).cancels == {}, "gone with its entry"


async def test_requests_older_than_the_ttl_are_forgotten(redis: Redis) -> None:
    stream, controls = chat_stream(redis), Controls(redis, PREFIX, cancel_ttl=0.05)
    old, new = chat_job(1), chat_job(2)
    old_entry, new_entry = await stream.add(old), await stream.add(new)
    await controls.request_cancel("chat", old_entry, old.id)
    await asyncio.sleep(0.1)

    await controls.request_cancel("chat", new_entry, new.id)

    assert set((await controls.poll(["chat"])).cancels) == {new.id}
