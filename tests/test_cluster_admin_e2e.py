"""Cluster mode end to end: `/admin jobs`, its cancel, `/admin pause` and `resume`
act on jobs that run in worker processes.

The admin is the fake Discord's tester (Manage Server in every guild); the jobs
run in `python -m tests.cluster_node` workers; the gateway is in this process.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from aibot.discord.i18n import text
from aibot.sandbox.fake_discord import Record, SentInteraction
from aibot.sandbox.fake_discord.payloads import option
from tests.cluster_processes import eventually
from tests.test_cluster_e2e import (
    LONG_ANSWER,
    PREFIX,
    WAIT,
    Cluster,
    _answered_once,
    _final,
    cluster,
)

__all__ = ["cluster"]

pytestmark = pytest.mark.slow

CHANNEL = "채팅방-1"
CANCELLED = text("en", "error_cancelled")


async def _admin(world: Cluster, subcommand: str, **options: Any) -> dict[str, Any]:
    """Run `/admin <subcommand>` as the tester; the private answer's data."""
    command = {
        "name": subcommand,
        "type": 1,
        "options": [option(name, value) for name, value in options.items()],
    }
    sent = await world.fake.send_interaction("admin", [command], channel="general")
    [callback] = await world.fake.wait_for("callback", interaction_id=sent.id, timeout=WAIT)
    assert callback.callback_type == 4 and callback.body["data"]["flags"] & 64, "private, at once"
    return callback.body["data"]


async def _listed(world: Cluster) -> list[tuple[str, str, str]]:
    """(job id, state, command) of every job `/admin jobs` lists."""
    data = await _admin(world, "jobs")
    values = "\n".join(f["value"] for embed in data["embeds"] for f in embed.get("fields", ()))
    return re.findall(r"`([^`]+)` · (\w+) · /(\w+)", values)


def _cancel_notice(sent: SentInteraction) -> Any:
    def wanted(record: Record) -> bool:
        content = str(record.body.get("content", ""))
        return record.interaction_id == sent.id and content.endswith(CANCELLED)

    return wanted


async def _stream_empty(world: Cluster) -> None:
    async def empty() -> bool:
        jobs = await world.redis.xlen(f"{PREFIX}:jobs:chat")
        return jobs == 0 and not await world.redis.hlen(f"{PREFIX}:cancels")

    await eventually(empty, timeout=WAIT, what="the chat stream and the cancel requests empty")


async def test_an_admin_cancels_a_chat_running_on_a_worker(cluster: Cluster) -> None:
    cluster.worker("w1", pools="chat")
    await cluster.serving("chat")
    sent = await cluster.chat_streaming()

    [(job_id, state, command)] = await _listed(cluster)
    assert (state, command) == ("running", "chat")
    answer = await _admin(cluster, "jobs", cancel=job_id)

    words = text("en", "admin_cancelled", id=job_id, command="chat", user=sent.user_id)
    assert answer["content"] == words
    await _answered_once(cluster, sent, _cancel_notice(sent))
    assert not any(r.body.get("content") == LONG_ANSWER for r in cluster.fake.records), "cut short"
    again = await _admin(cluster, "jobs", cancel=job_id)
    assert again["content"] == text("en", "admin_cancel_unknown", id=job_id)
    assert await _listed(cluster) == []
    await _stream_empty(cluster)


@pytest.mark.aibot_env(AIBOT_CHAT_WORKERS="1")
async def test_a_cancelled_job_no_worker_took_yet_is_told_and_never_runs(
    cluster: Cluster,
) -> None:
    asked: list[str] = []

    def reply(prompt: str) -> str:
        asked.append(prompt)
        return LONG_ANSWER if "first" in prompt else "second answer"

    cluster.providers.chat_reply = reply
    cluster.providers.chunk_delay = 0.1
    cluster.worker("w1", pools="chat")
    await cluster.serving("chat")
    first = await cluster.fake.send_interaction("chat", {"prompt": "first"}, channel=CHANNEL)
    await cluster.streaming(first)
    second = await cluster.fake.send_interaction("chat", {"prompt": "second"}, channel=CHANNEL)
    await cluster.fake.wait_for("callback", interaction_id=second.id, timeout=WAIT)

    listed = await _listed(cluster)
    assert [(state, command) for _id, state, command in listed] == [
        ("running", "chat"),
        ("queued", "chat"),
    ]
    waiting = listed[1][0]
    answer = await _admin(cluster, "jobs", cancel=waiting)

    words = text("en", "admin_cancelled", id=waiting, command="chat", user=second.user_id)
    assert answer["content"] == words
    await _answered_once(cluster, second, _final(second, CANCELLED))
    await _answered_once(cluster, first, _final(first, LONG_ANSWER))
    assert not any("second" in prompt for prompt in asked), "never sent to the provider"
    await _stream_empty(cluster)

    async def both_in_the_ledger() -> bool:  # as one process records a cancelled job
        assert cluster.bot.store is not None
        rows = await cluster.bot.store.ledger.stats(None, 1)
        return sum(row.jobs for row in rows) == 2 and sum(row.failed for row in rows) == 1

    await eventually(both_in_the_ledger, timeout=WAIT, what="the cancelled job in the ledger")


@pytest.mark.aibot_env(AIBOT_CHAT_WORKERS="1")
async def test_a_paused_pool_takes_nothing_new_until_resumed(cluster: Cluster) -> None:
    cluster.providers.chat_reply = lambda prompt: (
        LONG_ANSWER if "first" in prompt else "after resume"
    )
    cluster.providers.chunk_delay = 0.05
    cluster.worker("w1", pools="chat")
    await cluster.serving("chat")
    first = await cluster.fake.send_interaction("chat", {"prompt": "first"}, channel=CHANNEL)
    await cluster.streaming(first)
    waiting = await cluster.fake.send_interaction("chat", {"prompt": "second"}, channel=CHANNEL)
    await cluster.fake.wait_for("callback", interaction_id=waiting.id, timeout=WAIT)

    paused = await _admin(cluster, "pause", pool="chat")

    assert paused["content"] == text("en", "admin_paused", pool="chat")
    assert _state(cluster, "chat") == "paused"
    assert text("en", "state_paused") in await _status_of(cluster, "chat")
    refused = await cluster.fake.send_interaction("chat", {"prompt": "third"}, channel=CHANNEL)
    [callback] = await cluster.fake.wait_for("callback", interaction_id=refused.id, timeout=WAIT)
    assert callback.callback_type == 4, "refused at once, as one process does"
    assert callback.body["data"]["content"] == text("en", "error_paused", command="chat")
    await _answered_once(cluster, first, _final(first, LONG_ANSWER))  # the running job finishes
    await asyncio.sleep(2.0)  # the worker has a free slot now, and takes nothing
    key = f"{PREFIX}:jobs:chat"
    assert (await cluster.redis.xpending(key, "workers"))["pending"] == 0, "not taken"
    assert await cluster.redis.xlen(key) == 1
    assert not cluster.fake.records_of("edit", waiting.id), "still waiting"

    resumed = await _admin(cluster, "resume", pool="chat")

    assert resumed["content"] == text("en", "admin_resumed", pool="chat")
    await _answered_once(cluster, waiting, _final(waiting, "after resume"))
    assert _state(cluster, "chat") == "running"


def _state(world: Cluster, pool: str) -> str:
    return next(s.state for s in world.bot.queue.snapshots() if s.name == pool)


async def _status_of(world: Cluster, pool: str) -> str:
    """`pool`'s line in `/status`, as a member sees it."""
    sent = await world.fake.send_interaction("status", channel="general")
    [callback] = await world.fake.wait_for("callback", interaction_id=sent.id, timeout=WAIT)
    [embed] = callback.body["data"]["embeds"]
    return next(f["value"] for f in embed["fields"] if f["name"] == pool)
