"""Conversation memory in Redis (aibot/cluster/memory.py) against a real redis-server:
the embedded store's rules, and a member's conversation followed across processes."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from aibot.cluster.connection import connect
from aibot.cluster.deliveries import StreamDeliveries
from aibot.cluster.journal import RedisJournal
from aibot.cluster.memory import SharedMemory
from aibot.cluster.streams import JobStream
from aibot.jobs import Job
from aibot.store.memory import estimate_tokens
from tests.fixtures.redis_server import RedisServer

_ROOT = Path(__file__).resolve().parents[1]
_PREFIX = "bot"
CHANNEL, MEMBER, OTHER = 700, 42, 43


def chat(user: int = MEMBER, channel: int = CHANNEL) -> Job:
    return Job(command="chat", args={}, user_id=user, channel_id=channel, guild_id=1, pool="chat")


@pytest.fixture
async def client(redis_server: RedisServer):
    client = connect(redis_server.url)
    yield client
    await client.aclose()


async def test_the_same_exchanges_give_the_same_memory_as_the_embedded_store(
    client, store_opener
) -> None:
    budget = 60
    store = await store_opener({"AIBOT_CHAT_HISTORY_TOKENS": str(budget)})
    shared = SharedMemory(client, _PREFIX, budget)
    exchanges = [
        ("hello", "hi there"),
        ("what is the tallest mountain?", "Everest, at 8,849 metres above sea level."),
        ("안녕하세요, 오늘 날씨 어때요?", "맑고 따뜻해요. 산책하기 좋은 날이에요."),
        ("and the deepest trench?", "The Mariana Trench, nearly 11 km deep."),
        ("thanks", "any time"),
    ]
    for prompt, answer in exchanges:
        job = chat()
        assert await shared.remember(job, prompt, answer) == await store.memory.remember(
            job, prompt, answer
        )
        expected = await store.memory.recall(chat())
        got = await shared.recall(chat())
        assert got == expected
    assert (await store.memory.recall(chat())).dropped == 0  # told once only
    assert (await shared.recall(chat())).dropped == 0


async def test_forgotten_turns_are_told_once_and_reset_forgets_only_that_conversation(
    client,
) -> None:
    shared = SharedMemory(client, _PREFIX, budget=40)
    for n in range(6):
        await shared.remember(chat(), f"question {n} " * 3, f"answer {n} " * 3)
    await shared.remember(chat(OTHER), "mine", "yours")
    first = await shared.recall(chat())
    assert first.dropped > 0
    assert first.messages[-1] == {"role": "assistant", "content": "answer 5 " * 3}
    assert (await shared.recall(chat())).dropped == 0

    kept = len(first.messages) // 2
    assert await shared.reset(CHANNEL, MEMBER) == kept
    assert (await shared.recall(chat())).messages == []
    assert len((await shared.recall(chat(OTHER))).messages) == 2


async def test_a_turn_larger_than_the_budget_is_kept_shortened_the_older_ones_go(
    client, store_opener
) -> None:
    budget = 400
    store = await store_opener({"AIBOT_CHAT_HISTORY_TOKENS": str(budget)})
    for memory in (SharedMemory(client, _PREFIX, budget), store.memory):
        await memory.remember(chat(), "My name is Minji.", "Nice to meet you, Minji.")
        pasted = "이 글을 요약해 주세요: " + "가나다라마바사" * 100  # 700 Hangul: over alone
        assert await memory.remember(chat(), pasted, "요약: 짧은 글이에요.") == 1
        recall = await memory.recall(chat())
        assert recall.dropped == 1  # the turn with the name: told once
        prompt, answer = (message["content"] for message in recall.messages)
        assert answer == "요약: 짧은 글이에요."  # the answer just given is remembered
        assert prompt.startswith("이 글을 요약해 주세요: 가나다") and prompt.endswith("…")
        assert estimate_tokens(prompt) + estimate_tokens(answer) <= budget


async def test_an_answer_recalled_before_a_reset_is_not_remembered_after_it(
    client, store_opener
) -> None:
    store = await store_opener()
    for memory in (SharedMemory(client, _PREFIX, 4000), store.memory):
        await memory.remember(chat(), "My name is Minji.", "Nice to meet you, Minji.")
        recalled = await memory.recall(chat())  # a /chat starts, and streams a while...
        assert await memory.reset(CHANNEL, MEMBER) == 1  # ... /reset meanwhile
        await memory.remember(chat(), "What is my name?", "Minji.", resets=recalled.resets)
        assert (await memory.recall(chat())).messages == [], "forgotten, as /reset said"
        fresh = await memory.recall(chat())  # the next /chat starts anew
        await memory.remember(chat(), "hello", "hi", resets=fresh.resets)
        assert len((await memory.recall(chat())).messages) == 2


async def test_a_worker_whose_lease_may_be_gone_adds_nothing_to_the_conversation(
    client,
) -> None:
    stream = JobStream(client, "chat", prefix=_PREFIX, block=0.05, reclaim_every=0, lease=60)
    await stream.add(chat())
    [delivery] = await stream.take("w1", 1)
    job = delivery.job
    deliveries = StreamDeliveries(RedisJournal(client, prefix=_PREFIX))
    memory = deliveries.fenced_memory(SharedMemory(client, _PREFIX, 1000))

    deliveries.hold(stream, delivery, since=time.monotonic())
    await memory.remember(job, "first", "its answer")
    # As a worker stalled past its lease finds its job when it wakes: another
    # worker may have taken the job over and remembered its own answer.
    deliveries.hold(stream, delivery, since=time.monotonic() - 2 * stream.lease)
    await memory.remember(job, "first", "a stale answer")
    said = [m["content"] for m in (await memory.recall(job)).messages]
    assert said == ["first", "its answer"]


async def test_a_conversation_expires_when_left_alone(client) -> None:
    shared = SharedMemory(client, _PREFIX, budget=100, ttl=60)
    await shared.remember(chat(), "hello", "hi")
    turns, meta = shared.keys(CHANNEL, MEMBER)
    assert 0 < await client.ttl(turns) <= 60
    assert 0 < await client.ttl(meta) <= 60


async def test_memory_follows_a_member_across_processes(redis_server: RedisServer, client) -> None:
    """A member chats through one process, then another: each answers with the
    whole conversation so far."""
    first = await _in_process(redis_server, "remember", "my name is Jiwoo", "Nice to meet you!")
    assert first == {"recalled": [], "dropped": 0}

    here = SharedMemory(client, _PREFIX, budget=1000)
    recalled = await here.recall(chat())
    assert [m["content"] for m in recalled.messages] == ["my name is Jiwoo", "Nice to meet you!"]
    await here.remember(chat(), "what is my name?", "Your name is Jiwoo.")

    second = await _in_process(redis_server, "recall")
    assert [m["content"] for m in second["recalled"]] == [
        "my name is Jiwoo",
        "Nice to meet you!",
        "what is my name?",
        "Your name is Jiwoo.",
    ]


async def _in_process(server: RedisServer, *args: str) -> dict[str, Any]:
    """Run `_child` in a process of its own: what it recalled for the member."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from tests.test_cluster_memory import _child; _child()",
        server.url,
        *args,
        cwd=_ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await child.communicate()
    assert child.returncode == 0
    return json.loads(out)


def _child() -> None:
    """Another process: recall the member's conversation, maybe add an exchange."""
    url, action, *exchange = sys.argv[1:]

    async def run() -> dict[str, Any]:
        client = connect(url)
        memory = SharedMemory(client, _PREFIX, budget=1000)
        recalled = await memory.recall(chat())
        if action == "remember":
            await memory.remember(chat(), *exchange)
        await client.aclose()
        return {"recalled": recalled.messages, "dropped": recalled.dropped}

    print(json.dumps(asyncio.run(run())))
