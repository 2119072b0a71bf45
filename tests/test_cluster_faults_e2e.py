"""Cluster faults end to end: workers stopped, killed and stalled mid-job.

The same world as tests/test_cluster_e2e.py (its `cluster` fixture: a real
Redis, the wire-level fake Discord, the gateway bot in this process and
`python -m tests.cluster_node` worker subprocesses stopped by PID). Each test
checks what the member sees in the end: one answer, no "thinking…" left, no
failure notice and no traceback text; and what the provider saw.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from aibot.demo.stage import ALERT_CHANNEL
from aibot.discord.i18n import text
from aibot.jobs import FOLLOWUPS
from aibot.sandbox import FakeProviders
from aibot.sandbox.fake_discord import DEFAULT_CHANNELS, Record, SentInteraction
from tests.cluster_processes import eventually
from tests.fixtures.redis_server import RedisServer
from tests.test_cluster_e2e import (
    LONG_ANSWER,
    PREFIX,
    WAIT,
    Cluster,
    _answered_once,
    _final,
    _uploads,
    cluster,
    cluster_on,
)

__all__ = ["cluster"]

pytestmark = pytest.mark.slow

LEASE = 2.0  # seconds: a stalled worker loses its job quickly


def _shown(world: Cluster, sent: SentInteraction) -> list[Record]:
    """Every message write of the interaction's answer, in order."""
    return [
        r
        for r in world.fake.records
        if r.interaction_id == sent.id and r.kind in ("edit", "followup", "message")
    ]


def _streaming(content: str) -> bool:
    return content.endswith("▌")


def _video_progress(content: str) -> bool:
    making = text("en", "video_progress", stage="", elapsed="").split(":")[0]
    return content == text("en", "video_starting") or content.startswith(making)


def _ends_with(
    world: Cluster,
    sent: SentInteraction,
    wanted: Callable[[Record], bool],
    *,
    progress: Callable[[str], bool] = _streaming,
) -> None:
    """What the member sees last is the answer: no "thinking…" (the defer alone), no
    later write over it; before it only `progress` (no failure notice), and no
    traceback anywhere."""
    shown = _shown(world, sent)
    assert shown and wanted(shown[-1]), [(r.kind, r.body.get("content")) for r in shown]
    assert not [r for r in shown if r.kind != "edit"], "one message: the deferred one"
    before = [str(r.body.get("content")) for r in shown[:-1]]
    assert all(map(progress, before)), f"only progress before the answer: {before}"
    for record in shown:
        assert "Traceback" not in str(record.body)


async def _job_id(world: Cluster, pool: str) -> str:
    """The id of the one job in `pool`'s stream."""
    [(_, fields)] = await world.redis.xrange(f"{PREFIX}:jobs:{pool}")
    return str(fields["id"])


async def _chat_held_by_one_of_two(world: Cluster) -> tuple[SentInteraction, str, str]:
    """A /chat streaming on one of two chat workers, w1 and w2: the interaction,
    the worker that holds it, the job id."""
    for name in ("w1", "w2"):
        world.worker(name, pools="chat")
    await world.serving("chat")
    sent = await world.chat_streaming()
    return sent, await world.holder("chat"), await _job_id(world, "chat")


async def _drained(world: Cluster, pool: str) -> bool:
    """Nothing left in `pool`'s stream: every entry acknowledged and deleted."""
    key = f"{PREFIX}:jobs:{pool}"
    return not await world.redis.xlen(key) and not await world.redis.xpending_range(
        key, "workers", "-", "+", 10
    )


def _said(world: Cluster, name: str, *words: str) -> Callable[[], Awaitable[bool]]:
    async def said() -> bool:
        log = world.node(name).log.read_text()
        return any(all(w in line for w in words) for line in log.splitlines())

    return said


async def _dropped_by_w1(world: Cluster, job_id: str) -> None:
    """Until worker w1, awake again, has let go of the job another worker took."""
    await eventually(
        _said(world, "w1", f"job {job_id}", "dropped"),
        timeout=WAIT,
        what=f"w1 dropping the job it lost: {world.logs()}",
    )


# One chat slot: the stalled worker's pool is full when it loses the job.
@pytest.mark.aibot_env(AIBOT_LEASE_SECONDS=str(LEASE), AIBOT_CHAT_WORKERS="1")
async def test_a_worker_stopped_past_its_lease_then_resumed_answers_nothing_twice(
    cluster: Cluster,
) -> None:
    cluster.worker("w1", pools="chat")
    await cluster.serving("chat")

    sent = await cluster.chat_streaming()
    assert await cluster.holder("chat") == "w1"
    job_id = await _job_id(cluster, "chat")
    stalled = cluster.node("w1")
    os.kill(stalled.popen.pid, signal.SIGSTOP)
    try:
        cluster.worker("w2", pools="chat")
        await _answered_once(cluster, sent, _final(sent, LONG_ANSWER))
    finally:
        os.kill(stalled.popen.pid, signal.SIGCONT)

    await _dropped_by_w1(cluster, job_id)
    # w1 is awake and done with the job: whatever it wrote, the answer stands.
    await _answered_once(cluster, sent, _final(sent, LONG_ANSWER))
    _ends_with(cluster, sent, _final(sent, LONG_ANSWER))
    await eventually(
        lambda: _drained(cluster, "chat"), timeout=WAIT, what="the entry acknowledged and deleted"
    )
    assert cluster.providers.counters.requests("openai", "chat") == 2, "w1's call, w2's"
    assert "Traceback" not in stalled.log.read_text()

    # The slot the dropped job held is w1's again: with w2 gone, w1 answers the next.
    cluster.node("w2").kill()
    cluster.providers.chat_reply, cluster.providers.chunk_delay = "again", 0.0
    again = await cluster.fake.send_interaction("chat", {"prompt": "more"}, channel="채팅방-1")
    await _answered_once(cluster, again, _final(again, "again"))


# One chat slot each: the stalled worker's pool is full when it loses the job.
@pytest.mark.aibot_env(AIBOT_LEASE_SECONDS=str(LEASE), AIBOT_CHAT_WORKERS="1")
async def test_a_worker_stopped_while_its_provider_answered_answers_once_on_waking(
    cluster: Cluster,
) -> None:
    """Its answer and its lease's renewal come due together as it wakes: the renewal
    finds the lease lost while the answer's delivery claim is on its way. The claim
    decides (a claim that wins takes the entry back); the worker that took the job
    over meanwhile sends nothing, and nobody runs it a third time."""
    cluster.worker("w1", pools="chat")
    await cluster.serving("chat")
    counters = cluster.providers.counters
    cluster.providers.chat_reply, cluster.providers.chunk_delay = LONG_ANSWER, 0.04
    sent = await cluster.fake.send_interaction("chat", {"prompt": "count"}, channel="채팅방-1")
    await cluster.streaming(sent)
    stalled = cluster.node("w1")
    os.kill(stalled.popen.pid, signal.SIGSTOP)
    try:
        cluster.worker("w2", pools="chat")

        async def taken_over() -> bool:  # w2 asks the provider in turn, after the lease
            return counters.requests("openai", "chat") == 2

        await eventually(taken_over, timeout=WAIT, what=f"w2 taking the job: {cluster.logs()}")
        await asyncio.sleep(0.5)  # w1's answer has all come in while it was stopped
    finally:
        os.kill(stalled.popen.pid, signal.SIGCONT)

    await _answered_once(cluster, sent, _final(sent, LONG_ANSWER))
    await eventually(
        lambda: _drained(cluster, "chat"), timeout=WAIT, what="the entry acknowledged and deleted"
    )
    await asyncio.sleep(2 * LEASE)  # past another lease: no third run, no second answer
    await _answered_once(cluster, sent, _final(sent, LONG_ANSWER))
    assert counters.requests("openai", "chat") == 2


async def test_a_worker_killed_during_an_image_is_replaced_and_uploads_once(
    cluster: Cluster,
) -> None:
    counters = cluster.providers.counters
    cluster.providers.timeout_delay = 30.0
    cluster.providers.inject("minimax", "timeout", endpoint="image")  # the first call hangs
    for name in ("w1", "w2"):
        cluster.worker(name, pools="image")
    await cluster.serving("image")

    sent = await cluster.fake.send_interaction(
        "image", {"prompt": "a lighthouse"}, channel="이미지생성-1"
    )

    async def called() -> bool:
        return counters.requests("minimax", "image") == 1

    await eventually(called, timeout=WAIT, what="the first worker calling the provider")
    cluster.node(await cluster.holder("image")).kill()

    await _answered_once(cluster, sent, _uploads(sent))
    _ends_with(cluster, sent, _uploads(sent))
    assert counters.requests("minimax", "image") == 2, "the dead worker's call, the survivor's"
    await eventually(
        lambda: _drained(cluster, "image"), timeout=WAIT, what="the entry acknowledged and deleted"
    )


async def test_a_worker_killed_after_a_long_answer_s_followup_leaves_no_half_written_one(
    cluster: Cluster,
) -> None:
    """The reclaimer writes over the followup the dead worker posted (journaled in
    Redis as it was posted) instead of posting its own beside a half-written one."""
    words = " ".join(f"word{i}" for i in range(500))  # two messages' worth
    for name in ("w1", "w2"):
        cluster.worker(name, pools="chat")
    await cluster.serving("chat")
    cluster.providers.chat_reply, cluster.providers.chunk_delay = words, 0.01
    sent = await cluster.fake.send_interaction("chat", {"prompt": "count"}, channel="채팅방-1")
    holder = await cluster.holder("chat")
    job_id = await _job_id(cluster, "chat")

    async def followup_journaled() -> bool:
        return bool(await cluster.redis.hexists(f"{PREFIX}:task:{job_id}", FOLLOWUPS))

    await eventually(followup_journaled, timeout=WAIT, what="a followup posted and journaled")
    cluster.node(holder).kill()

    posted = [r.message_id for r in cluster.fake.records_of("followup", sent.id)]
    messages = cluster.fake.messages

    async def answered() -> bool:
        shown = [messages.original(sent), *map(messages.get, posted)]
        return " ".join(str(m["content"]) for m in shown if m).split() == words.split()

    await eventually(answered, timeout=WAIT, what=f"the whole answer: {cluster.logs()}")
    await eventually(lambda: _drained(cluster, "chat"), timeout=WAIT, what="the entry finished")
    assert [r.message_id for r in cluster.fake.records_of("followup", sent.id)] == posted
    assert not await cluster.redis.exists(f"{PREFIX}:task:{job_id}")


async def test_a_job_that_cannot_be_started_stops_only_itself(cluster: Cluster) -> None:
    """A reclaimed job whose record the worker cannot read (its followups not JSON:
    another version's, or damaged) is left to be dead-lettered; the worker's take
    loop goes on, and the pool's next job is answered."""
    sent, holder, job_id = await _chat_held_by_one_of_two(cluster)
    await cluster.redis.hset(f"{PREFIX}:task:{job_id}", FOLLOWUPS, "not json")
    cluster.node(holder).kill()

    async def reclaimed() -> bool:
        rows = await cluster.redis.xpending_range(f"{PREFIX}:jobs:chat", "workers", "-", "+", 9)
        return any(row["times_delivered"] >= 2 for row in rows)

    await eventually(reclaimed, timeout=WAIT, what="the job reclaimed")
    cluster.providers.chat_reply, cluster.providers.chunk_delay = "the next one", 0.0
    after = await cluster.fake.send_interaction("chat", {"prompt": "next"}, channel="채팅방-1")
    await _answered_once(cluster, after, _final(after, "the next one"))
    other = "w2" if holder == "w1" else "w1"
    assert f"job {job_id}: could not be started here" in cluster.node(other).log.read_text()
    assert not [r for r in _shown(cluster, sent) if r.body.get("content") == LONG_ANSWER]


async def test_a_worker_killed_after_claiming_the_delivery_is_still_answered_once(
    cluster: Cluster,
) -> None:
    sent, holder, job_id = await _chat_held_by_one_of_two(cluster)
    cluster.node(holder).kill()
    # What a worker leaves when it dies between claiming the delivery and sending
    # the answer (JobStream.claim_delivery's key, naming its first delivery).
    await cluster.redis.set(f"{PREFIX}:delivered:{job_id}", f"{holder}#1", px=3_600_000)

    await _answered_once(cluster, sent, _final(sent, LONG_ANSWER))
    _ends_with(cluster, sent, _final(sent, LONG_ANSWER))
    await eventually(
        lambda: _drained(cluster, "chat"), timeout=WAIT, what="the entry acknowledged and deleted"
    )


async def _video_made_by_w1(world: Cluster) -> tuple[SentInteraction, str]:
    """A /video whose task worker w1 asked for and recorded: the interaction, the job id."""
    world.worker("w1", pools="video")
    await world.serving("video")
    sent = await world.fake.send_interaction("video", {"prompt": "waves"}, channel="비디오생성-1")

    async def task_recorded() -> bool:
        return bool(await world.redis.keys(f"{PREFIX}:task:*"))

    await eventually(task_recorded, timeout=WAIT, what="the video task recorded")
    assert await world.holder("video") == "w1"
    return sent, await _job_id(world, "video")


@pytest.mark.aibot_env(AIBOT_LEASE_SECONDS=str(LEASE))
async def test_a_worker_stopped_past_its_lease_during_a_video_leaves_one_task_one_upload(
    cluster: Cluster,
) -> None:
    cluster.providers.video_seconds = 6.0
    sent, job_id = await _video_made_by_w1(cluster)
    stalled = cluster.node("w1")
    os.kill(stalled.popen.pid, signal.SIGSTOP)
    try:
        cluster.worker("w2", pools="video")
        await _answered_once(cluster, sent, _uploads(sent))
    finally:
        os.kill(stalled.popen.pid, signal.SIGCONT)

    await _dropped_by_w1(cluster, job_id)
    await _answered_once(cluster, sent, _uploads(sent))
    _ends_with(cluster, sent, _uploads(sent), progress=_video_progress)
    assert cluster.providers.counters.video_tasks == 1, "w2 polled w1's task"
    await eventually(
        lambda: _drained(cluster, "video"), timeout=WAIT, what="the entry acknowledged and deleted"
    )
    assert "Traceback" not in stalled.log.read_text()


@pytest.mark.aibot_env(AIBOT_LEASE_SECONDS=str(LEASE))
async def test_a_worker_that_lost_a_video_leaves_its_task_to_whoever_runs_it_next(
    cluster: Cluster,
) -> None:
    cluster.providers.video_seconds = 12.0  # still being made when w1 wakes up
    sent, job_id = await _video_made_by_w1(cluster)
    stalled = cluster.node("w1")
    os.kill(stalled.popen.pid, signal.SIGSTOP)
    try:
        cluster.worker("w2", pools="video")
        await eventually(
            _said(cluster, "w2", f"job {job_id}", "polling its task"),
            timeout=WAIT,
            what=f"w2 polling w1's task: {cluster.logs()}",
        )
    finally:
        os.kill(stalled.popen.pid, signal.SIGCONT)
    await _dropped_by_w1(cluster, job_id)
    # w1 let go of the job without closing its record: whoever takes it up after
    # w2 (w1 again) polls the same task.
    cluster.node("w2").kill()
    await _answered_once(cluster, sent, _uploads(sent))
    assert cluster.providers.counters.video_tasks == 1, "one task, paid for once"


async def test_the_worker_that_took_over_a_killed_ones_job_says_so_in_the_alert_room(
    aibot_env: dict[str, str],
    redis_server: RedisServer,
    fake_providers: FakeProviders,
    tmp_path: Path,
) -> None:
    channels = (*DEFAULT_CHANNELS, ALERT_CHANNEL)
    async with cluster_on(
        redis_server.url, redis_server, aibot_env, fake_providers, tmp_path, channels=channels
    ) as world:
        for name in ("w1", "w2"):
            world.worker(name, pools="chat")
        await world.serving("chat")
        sent = await world.chat_streaming()
        killed = await world.holder("chat")
        world.node(killed).kill()
        await _answered_once(world, sent, _final(sent, LONG_ANSWER))

        survivor = "w2" if killed == "w1" else "w1"
        said = text("en", "alert_reclaimed", pool="chat", node=survivor, jobs=1)
        await world.fake.wait_until(
            lambda r: r.kind == "message" and r.body.get("content") == said, timeout=WAIT
        )
        await asyncio.sleep(1.0)  # a second alert for the same take-over would be here by now
        posts = [r.body.get("content") for r in world.fake.records_of("message")]
        assert posts.count(said) == 1, posts


async def _uses_today(world: Cluster, pool: str) -> int:
    """Every member's uses of `pool` today, as the shared gate counts them."""
    [counts] = await world.redis.keys(f"{PREFIX}:gate:used:*:{pool}")
    return int(await world.redis.hget(counts, "all") or 0)


@pytest.mark.aibot_env(AIBOT_LEASE_SECONDS=str(LEASE), AIBOT_DRAIN_SECONDS="1")
async def test_a_job_a_stopping_worker_hands_back_is_answered_elsewhere_and_counted_once(
    cluster: Cluster,
) -> None:
    counters = cluster.providers.counters
    cluster.providers.timeout_delay = 30.0
    cluster.providers.inject("openai", "timeout", endpoint="chat")  # w1's call hangs
    cluster.providers.chat_reply = "answered by w2"
    cluster.worker("w1", pools="chat")
    await cluster.serving("chat")
    sent = await cluster.fake.send_interaction("chat", {"prompt": "hi"}, channel="채팅방-1")

    async def called() -> bool:
        return counters.requests("openai", "chat") == 1

    await eventually(called, timeout=WAIT, what="w1 calling the provider")
    cluster.worker("w2", pools="chat")
    cluster.node("w1").stop()  # SIGTERM: its drain time runs out, the job goes back

    await _answered_once(cluster, sent, _final(sent, "answered by w2"))
    _ends_with(cluster, sent, _final(sent, "answered by w2"))
    assert await _uses_today(cluster, "chat") == 1, "the use stands: the member got the answer"


@pytest.mark.aibot_env(AIBOT_LEASE_SECONDS=str(LEASE))
async def test_a_job_whose_workers_all_died_is_given_up_and_its_use_given_back(
    cluster: Cluster,
) -> None:
    counters = cluster.providers.counters
    cluster.providers.timeout_delay = 60.0
    cluster.providers.inject("openai", "timeout", times=3, endpoint="chat")
    sent = None
    for attempt in (1, 2, 3):  # each worker dies in the middle of the job
        name = f"w{attempt}"
        cluster.worker(name, pools="chat")
        await cluster.serving("chat")
        if sent is None:
            sent = await cluster.fake.send_interaction("chat", {"prompt": "hi"}, channel="채팅방-1")

        async def called(times: int = attempt) -> bool:
            return counters.requests("openai", "chat") == times

        await eventually(called, timeout=WAIT, what=f"{name} calling the provider")
        cluster.node(name).kill()
    assert sent is not None and await _uses_today(cluster, "chat") == 1

    cluster.worker("w4", pools="chat")
    gave_up = _final(sent, text("en", "error_gave_up"))
    await _answered_once(cluster, sent, gave_up)
    assert counters.requests("openai", "chat") == 3, "not tried a fourth time"
    assert await _uses_today(cluster, "chat") == 0, "the use given back"
