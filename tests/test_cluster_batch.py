"""`Batched`: the Redis commands of one turn of the loop go as one pipeline, and
each caller still gets its own reply or error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from aibot.cluster.batch import Batched
from aibot.cluster.connection import connect
from tests.fixtures.redis_server import RedisServer


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = connect(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()


async def test_calls_made_together_each_get_their_own_reply_in_order(redis: Redis) -> None:
    batched = Batched(redis)

    replies = await asyncio.gather(
        *(batched.call(lambda pipe, n=n: pipe.rpush("order", n)) for n in range(50))
    )

    assert replies == list(range(1, 51))  # each its own reply, in the order queued
    assert await redis.lrange("order", 0, -1) == [str(n) for n in range(50)]


async def test_one_command_failing_fails_only_its_caller(redis: Redis) -> None:
    batched = Batched(redis)
    await redis.set("text", "not a list")

    wrong, right = await asyncio.gather(
        batched.call(lambda pipe: pipe.lpush("text", 1)),
        batched.call(lambda pipe: pipe.incr("count")),
        return_exceptions=True,
    )

    assert isinstance(wrong, ResponseError) and "WRONGTYPE" in str(wrong)
    assert right == 1


async def test_a_caller_that_gave_up_before_its_batch_left_is_not_sent(redis: Redis) -> None:
    batched = Batched(redis)
    gone = asyncio.create_task(batched.call(lambda pipe: pipe.set("gone", 1)))
    await asyncio.sleep(0)  # queued, the batch not sent yet
    gone.cancel()

    assert await batched.call(lambda pipe: pipe.set("kept", 1)) is True

    assert gone.cancelled()
    assert await redis.exists("gone") == 0 and await redis.get("kept") == "1"


async def test_redis_away_fails_every_caller_of_the_batch(redis_server: RedisServer) -> None:
    client = connect(redis_server.url)
    batched = Batched(client)
    await client.ping()
    redis_server.stop()
    try:
        results = await asyncio.gather(
            *(batched.call(lambda pipe: pipe.incr("count")) for _ in range(3)),
            return_exceptions=True,
        )
    finally:
        await client.aclose()

    assert all(isinstance(result, Exception) for result in results)
