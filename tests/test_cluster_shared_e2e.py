"""Cluster mode's shared state, end to end: what holds for the whole bot lives in
Redis (conversation memory, `/reset`), the usage ledger is the gateway's, fed
from the worker processes' outcomes, and a gateway's shards are its own.

The set-up is `tests.test_cluster_e2e`'s: the gateway in this process, worker
processes (`python -m tests.cluster_node`) stopped by their PID.
"""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from aibot.discord.i18n import text
from tests.cluster_processes import ROOT, eventually
from tests.test_cluster_e2e import PREFIX, WAIT, Cluster, _answered_once, _final, cluster

__all__ = ["cluster"]  # the fixture, shared with the transport's end-to-end tests

pytestmark = pytest.mark.slow

CHANNEL = "채팅방-1"


async def _jobs_in_ledger(world: Cluster) -> tuple[int, int]:
    """(jobs, input tokens) in the gateway's ledger, every guild."""
    assert world.bot.store is not None
    rows = await world.bot.store.ledger.stats(None, 1)
    return sum(row.jobs for row in rows), sum(row.tokens_in for row in rows)


async def test_memory_follows_a_member_to_another_worker_and_each_job_counts_once(
    cluster: Cluster,
) -> None:
    answer = "a long answer " * 40  # ~140 tokens: the next prompt carries them
    cluster.providers.chat_reply = answer
    first_worker = cluster.worker("w1", pools="chat")
    await cluster.serving("chat")
    first = await cluster.fake.send_interaction("chat", {"prompt": "first"}, channel=CHANNEL)
    await _answered_once(cluster, first, _final(first, answer.strip()))

    async def counted(jobs: int) -> bool:
        return (await _jobs_in_ledger(cluster))[0] == jobs

    await eventually(lambda: counted(1), timeout=WAIT, what="the first job in the ledger")
    _, tokens_first = await _jobs_in_ledger(cluster)
    first_worker.stop()  # a clean stop: its heartbeat goes, its outcomes are sent
    cluster.worker("w2", pools="chat")
    await cluster.serving("chat")

    second = await cluster.fake.send_interaction("chat", {"prompt": "second"}, channel=CHANNEL)
    await _answered_once(cluster, second, _final(second, answer.strip()))
    await eventually(lambda: counted(2), timeout=WAIT, what="the second job in the ledger")
    await asyncio.sleep(1.0)  # a row sent twice would be recorded by now

    jobs, tokens = await _jobs_in_ledger(cluster)
    assert jobs == 2, "each job counted once in the gateway's ledger"
    assert tokens - tokens_first > tokens_first + 100, "w2 sent w1's conversation along"

    reset = await cluster.fake.send_interaction("reset", {}, channel=CHANNEL)
    [callback] = await cluster.fake.wait_for("callback", interaction_id=reset.id, timeout=WAIT)
    assert callback.body["data"]["content"] == text("en", "reset_done")
    # Only the count of resets stays, to keep out an answer on its way.
    [meta] = await cluster.redis.keys(f"{PREFIX}:memory:*")
    assert await cluster.redis.hgetall(meta) == {"tokens": "0", "dropped": "0", "resets": "1"}


async def test_a_second_gateway_without_shard_ids_refuses_to_start_naming_the_first(
    cluster: Cluster,
) -> None:
    # The fixture's gateway has no AIBOT_SHARD_IDS either: it holds the whole bot.
    env = {
        **os.environ,
        **cluster.env,
        "AIBOT_NODE": "gateway-b",
        "AIBOT_POOLS": "none",
        "AIBOT_HTTP": "off",
        "AIBOT_DATA_DIR": str(cluster.folder / "gateway-b"),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.cluster_node",
        cluster.fake.base_url,
        cluster.fake.ws_url,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), WAIT)
    said = output.decode()

    assert process.returncode == 2, said
    assert "every shard held by gateway:" in said


async def test_a_hundred_simultaneous_chats_from_one_member_with_a_quota_of_ten(
    cluster: Cluster,
) -> None:
    cluster.providers.chat_reply = "within quota"
    cluster.worker("w1", pools="chat")
    await cluster.serving("chat")
    guild = cluster.fake.guilds[0].id
    # What /admin quota sets in cluster mode: the limits every gateway reads.
    assert cluster.bot.limits is not None
    await cluster.bot.limits.set_limits(guild, "chat", cooldown=0, daily_quota=10)

    sent = await asyncio.gather(
        *(
            cluster.fake.send_interaction("chat", {"prompt": f"q{i}"}, channel=CHANNEL)
            for i in range(100)
        )
    )
    callbacks = [
        (await cluster.fake.wait_for("callback", interaction_id=s.id, timeout=WAIT))[0]
        for s in sent
    ]

    accepted = [s for s, c in zip(sent, callbacks, strict=True) if c.callback_type == 5]
    assert len(accepted) == 10, "exactly the quota deferred; the rest refused at once"
    for s in accepted:
        await cluster.fake.wait_until(_final(s, "within quota"), timeout=WAIT)
    await asyncio.sleep(1.0)
    answers = [r for r in cluster.fake.records if r.body.get("content") == "within quota"]
    assert len(answers) == 10
