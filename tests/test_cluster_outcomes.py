"""Job outcomes from worker processes into the gateway's ledger (aibot/cluster/outcomes.py),
against a real redis-server: each job counted once, whatever is delivered twice."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from aibot.cluster.connection import connect
from aibot.cluster.outcomes import OutcomeFollower, OutcomePublisher, outcomes_stream
from aibot.jobs import Job
from aibot.store import Store
from aibot.watch import ProviderWatch
from tests.cluster_processes import eventually
from tests.fixtures.redis_server import RedisServer, start_redis
from tests.test_alerts import Clock, Recorded

_ROOT = Path(__file__).resolve().parents[1]
_PREFIX = "bot"
GUILD = 2001


def chat(user: int, job_id: str | None = None) -> Job:
    job = Job(command="chat", args={}, user_id=user, channel_id=9, guild_id=GUILD, pool="chat")
    job.token = "interaction-token-never-in-redis"
    if job_id is not None:
        job.id = job_id
    return job


async def jobs_counted(store: Store) -> int:
    return sum(row.jobs for row in await store.ledger.stats(None, days=2))


async def _counted(store: Store, jobs: int) -> bool:
    return await jobs_counted(store) == jobs


async def test_rows_from_two_worker_processes_are_recorded_once_each(
    redis_server: RedisServer, store_opener
) -> None:
    store = await store_opener(clock=time.time)
    client = connect(redis_server.url)
    follower = OutcomeFollower(client, _PREFIX, store.ledger)
    await follower.step(block=False)  # the group exists before the workers publish

    await asyncio.gather(_worker(redis_server, "a", 20), _worker(redis_server, "b", 15))
    while await follower.step(block=False):
        pass

    assert await jobs_counted(store) == 35
    [row] = await store.ledger.stats(GUILD, days=2)
    assert (row.pool, row.provider, row.tokens_in, row.failed) == ("chat", "openai", 35 * 12, 0)
    top = await store.ledger.top_members(GUILD, days=2)
    assert {m.user_id: m.jobs for m in top} == {1: 20, 2: 15}
    raw = json.dumps(await client.xrange(outcomes_stream(_PREFIX)))
    assert "interaction-token" not in raw and "sk-whole" not in raw
    assert await client.xpending(outcomes_stream(_PREFIX), "ledger") == {
        "pending": 0,
        "min": None,
        "max": None,
        "consumers": [],
    }
    await client.aclose()


async def test_a_job_reported_twice_or_delivered_twice_is_counted_once(
    redis_server: RedisServer, store_opener
) -> None:
    store = await store_opener(clock=time.time)
    client = connect(redis_server.url)
    stream = outcomes_stream(_PREFIX)
    follower = OutcomeFollower(client, _PREFIX, store.ledger)
    await follower.step(block=False)

    # A reclaimed job: the worker that died and the one that took it over both report.
    for _ in range(2):
        publisher = OutcomePublisher(client, _PREFIX)
        publisher.record(
            chat(1, "job-1"), provider="openai", key_id="sk-...abcd", outcome="ok", latency=1
        )
        await publisher.flush()
    assert await follower.step(block=False) == 2
    assert await jobs_counted(store) == 1

    # The gateway wrote a row, then died before acknowledging it: read again at start.
    publisher.record(
        chat(2, "job-2"), provider="openai", key_id="sk-...abcd", outcome="ok", latency=1
    )
    await publisher.flush()
    delivered = await client.xreadgroup("ledger", "gateway", {stream: ">"}, count=10)
    assert len(delivered[0][1]) == 1
    store.ledger.record(
        chat(2, "job-2"), provider="openai", key_id="sk-...abcd", outcome="ok", latency=1
    )
    restarted = OutcomeFollower(client, _PREFIX, store.ledger)
    assert await restarted.step(block=False) == 1  # its own pending row, again
    assert await jobs_counted(store) == 2
    assert (await client.xpending(stream, "ledger"))["pending"] == 0
    await client.aclose()


async def test_the_follower_resumes_by_itself_after_redis_restarts(
    redis_server: RedisServer, store_opener, tmp_path: Path
) -> None:
    store = await store_opener(clock=time.time)
    client = connect(redis_server.url)
    publisher = OutcomePublisher(client, _PREFIX)
    follower = OutcomeFollower(client, _PREFIX, store.ledger, block=0.2)
    follower.start()
    publisher.record(chat(1), provider="openai", key_id="k", outcome="ok", latency=1)

    await eventually(lambda: _counted(store, 1), what="the first row recorded")

    redis_server.stop()
    publisher.record(chat(2), provider="openai", key_id="k", outcome="ok", latency=1)
    await asyncio.sleep(0.5)  # the follower and the publisher meet Redis down
    again = start_redis(tmp_path, port=redis_server.port)  # empty: no persistence
    try:
        await eventually(lambda: _counted(store, 2), what="the row sent while Redis was down")
        publisher.record(chat(3), provider="openai", key_id="k", outcome="ok", latency=1)
        await eventually(lambda: _counted(store, 3), what="a row after the restart")
    finally:
        await follower.stop()
        await client.aclose()
        again.stop()
    assert publisher.dropped == 0


async def _worker(server: RedisServer, name: str, rows: int) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from tests.test_cluster_outcomes import _child; _child()",
        server.url,
        name,
        str(rows),
        cwd=_ROOT,
    )
    assert await child.wait() == 0


def _child() -> None:
    """A worker process recording `rows` outcomes of one member's jobs."""
    url, name, rows = sys.argv[1:]
    user = 1 if name == "a" else 2

    async def run() -> None:
        client = connect(url)
        ledger = OutcomePublisher(client, _PREFIX)
        for n in range(int(rows)):
            ledger.record(
                chat(user, f"{name}-{n}"),
                provider="openai",
                key_id="sk-wholeKEYpassedbymistake1234",
                outcome="ok",
                latency=0.5,
                tokens_in=12,
            )
        await ledger.flush()
        await client.aclose()

    asyncio.run(run())


async def test_rows_wait_for_the_backgrounds_turn_while_members_are_answered(
    redis_server: RedisServer, store_opener
) -> None:
    store = await store_opener(clock=time.time)
    client = connect(redis_server.url)
    asked, members_done = asyncio.Event(), asyncio.Event()
    members_done.set()  # quiet at first

    async def turn() -> None:  # members first: the background goes once they are done
        asked.set()
        await members_done.wait()

    follower = OutcomeFollower(client, _PREFIX, store.ledger, turn=turn)
    await follower.step(block=False)  # the group exists
    publisher = OutcomePublisher(client, _PREFIX)
    publisher.record(
        chat(1, "job-1"), provider="openai", key_id="sk-...abcd", outcome="ok", latency=1
    )
    await publisher.flush()

    members_done.clear()  # a burst of commands is being answered
    asked.clear()
    stepping = asyncio.create_task(follower.step(block=False))
    await asyncio.wait_for(asked.wait(), 5)
    assert not stepping.done() and follower.recorded == 0
    # Not even read yet: parsing a batch is work that waits too.
    assert (await client.xpending(outcomes_stream(_PREFIX), "ledger"))["pending"] == 0
    assert await jobs_counted(store) == 0
    members_done.set()
    assert await stepping == 1
    assert await jobs_counted(store) == 1
    await client.aclose()


async def test_rows_that_come_one_by_one_are_recorded_together(
    redis_server: RedisServer, store_opener
) -> None:
    """After a batch the follower lingers, so the rows of jobs ending one by one
    cost one read, one write and one acknowledgement together (a turn asked each)."""
    store = await store_opener(clock=time.time)
    client = connect(redis_server.url)
    batches = 0

    async def turn() -> None:  # asked once per batch
        nonlocal batches
        batches += 1

    follower = OutcomeFollower(client, _PREFIX, store.ledger, block=5.0, linger=2.0, turn=turn)
    publisher = OutcomePublisher(client, _PREFIX)
    follower.start()
    try:
        publisher.record(chat(1), provider="openai", key_id="k", outcome="ok", latency=1)
        await eventually(lambda: _counted(store, 1), what="the first row recorded")
        for user in range(2, 7):  # while the follower lingers, one at a time
            publisher.record(chat(user), provider="openai", key_id="k", outcome="ok", latency=1)
            await publisher.flush()
        await eventually(lambda: _counted(store, 6), what="the five rows after it")
    finally:
        await follower.stop()
        await client.aclose()
    assert batches == 2, "the first row alone, then the five that came meanwhile together"


async def test_a_provider_failing_on_the_workers_is_alerted_by_the_gateway(
    redis_server: RedisServer, store_opener
) -> None:
    """The rows the gateway reads tell its provider watch, as one process's own
    outcomes do (`tests/test_alerts.py`): failures for over a minute, an alert."""
    store = await store_opener(clock=time.time)
    client = connect(redis_server.url)
    clock, alerts = Clock(), Recorded()
    watch = ProviderWatch(alerts, clock)
    follower = OutcomeFollower(client, _PREFIX, store.ledger, watch=watch.seen)
    await follower.step(block=False)  # the group exists
    publisher = OutcomePublisher(client, _PREFIX)
    for n, outcome in enumerate(["unavailable", "unavailable", "incomplete"]):
        assert alerts.alerts == []
        publisher.record(
            chat(1, f"job-{n}"), provider="openai", key_id="k", outcome=outcome, latency=1
        )
        await publisher.flush()
        assert await follower.step(block=False) == 1
        clock.now += 31
    await client.aclose()

    [failing] = alerts.alerts
    assert (failing.kind, failing.pool) == ("provider_failing", "chat")
    assert failing.detail["failures"] == "3" and failing.detail["seconds"] == "62"
    assert await jobs_counted(store) == 3  # still recorded


async def test_a_row_the_gateway_cannot_read_is_skipped_not_retried_forever(
    redis_server: RedisServer, store_opener
) -> None:
    store = await store_opener(clock=time.time)
    client = connect(redis_server.url)
    follower = OutcomeFollower(client, _PREFIX, store.ledger)
    await follower.step(block=False)  # the group exists
    await client.xadd(outcomes_stream(_PREFIX), {"job": "j-old", "outcome": "ok"})  # no `row`
    publisher = OutcomePublisher(client, _PREFIX)
    publisher.record(chat(1, "job-1"), provider="openai", key_id="k", outcome="ok", latency=1)
    await publisher.flush()

    assert await follower.step(block=False) == 2  # both taken off the stream
    assert await jobs_counted(store) == 1  # the readable one recorded
    assert (await client.xpending(outcomes_stream(_PREFIX), "ledger"))["pending"] == 0
    await client.aclose()
