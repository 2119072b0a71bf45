"""What outlives a restart: /chat conversations and journaled video jobs."""

from __future__ import annotations

import logging

from aibot.jobs import Job
from aibot.store import Recall, estimate_tokens

CHANNEL, THREAD = 700, 701
ALICE, BOB = 21, 22
DAY = 86_400


def chat(user: int = ALICE, channel: int = CHANNEL) -> Job:
    return Job(command="chat", args={}, user_id=user, channel_id=channel, guild_id=1)


def video(token: str = "interaction-token-secret") -> Job:
    return Job(
        command="video",
        args={"prompt": "a cat surfing"},
        user_id=ALICE,
        channel_id=CHANNEL,
        guild_id=1,
        application_id=55,
        interaction_id=66,
        token=token,
        token_expires_at=1_772_000_000.0,
        pool="video",
    )


# Conversation memory


def test_tokens_are_estimated_per_character_kind():
    assert estimate_tokens("") == 4
    assert estimate_tokens("a" * 40) == 10 + 4
    assert estimate_tokens("안녕하세요") == 5 + 4


async def test_a_conversation_is_remembered_in_order(store_opener):
    store = await store_opener()
    assert await store.memory.history(chat()) == []
    await store.memory.remember(chat(), "hello", "hi there")
    await store.memory.remember(chat(), "how are you", "fine")
    assert await store.memory.history(chat()) == [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hi there"},
        {"role": "user", "content": "how are you"},
        {"role": "assistant", "content": "fine"},
    ]


async def test_each_member_and_channel_or_thread_is_its_own_conversation(store_opener):
    store = await store_opener()
    await store.memory.remember(chat(ALICE, CHANNEL), "alice here", "ok")
    await store.memory.remember(chat(ALICE, THREAD), "in the thread", "ok")
    await store.memory.remember(chat(BOB, CHANNEL), "bob here", "ok")
    assert (await store.memory.history(chat(ALICE, CHANNEL)))[0]["content"] == "alice here"
    assert (await store.memory.history(chat(ALICE, THREAD)))[0]["content"] == "in the thread"
    assert (await store.memory.history(chat(BOB, CHANNEL)))[0]["content"] == "bob here"


async def test_the_oldest_turns_go_first_and_the_member_is_told_once(store_opener):
    # Each turn below is 2 x (10 + 4) = 28 estimated tokens; 100 hold three.
    store = await store_opener({"AIBOT_CHAT_HISTORY_TOKENS": "100"})
    for n in range(3):
        assert await store.memory.remember(chat(), f"question {n:<30}", f"answer {n:<32}") == 0
    assert await store.memory.remember(chat(), f"question {3:<30}", f"answer {3:<32}") == 1

    recall = await store.memory.recall(chat())
    assert recall.dropped == 1
    assert [m["content"].split()[1] for m in recall.messages] == ["1", "1", "2", "2", "3", "3"]
    assert (await store.memory.recall(chat())).dropped == 0, "told once"


async def test_memory_survives_a_restart_and_reset_clears_it(store_opener):
    store = await store_opener()
    await store.memory.remember(chat(), "remember 42", "I will")
    await store.memory.remember(chat(BOB), "bob's", "ok")
    await store.close()

    reopened = await store_opener()
    assert (await reopened.memory.history(chat()))[0]["content"] == "remember 42"
    assert await reopened.memory.reset(CHANNEL, ALICE) == 1
    assert await reopened.memory.history(chat()) == []
    assert await reopened.memory.history(chat(BOB)) != []


# Durable video jobs


async def test_a_conversation_nobody_added_to_for_thirty_days_is_forgotten(
    store_opener, store_clock
):
    store = await store_opener()
    await store.memory.remember(chat(ALICE), "an old question", "an old answer")
    await store.memory.remember(chat(BOB), "bob's first", "ok")
    store_clock.advance(20 * DAY)
    await store.memory.remember(chat(BOB), "bob's second", "ok")
    await store.memory.reset(CHANNEL, ALICE + BOB)  # a reset on nothing counts too
    store_clock.advance(11 * DAY)

    await store.prune()
    assert await store.memory.recall(chat(ALICE)) == Recall([], 0, 0)
    # Bob added to his 11 days ago: all of it is kept, the older turn too.
    bob = await store.memory.history(chat(BOB))
    assert [m["content"] for m in bob if m["role"] == "user"] == ["bob's first", "bob's second"]
    # The reset is still counted: an answer recalled before it stays out.
    assert (await store.memory.recall(chat(ALICE + BOB))).resets == 1


async def test_a_journaled_job_is_resumed_with_its_task_after_a_restart(store_opener):
    store = await store_opener()
    waiting, running = video(), video()
    await store.journal.submitted(waiting)
    await store.journal.submitted(running)
    await store.journal.accepted(running, "task-1", "fp-abcdef")
    await store.journal.progress(running.id, "processing")
    await store.close()

    reopened = await store_opener()
    resumed = await reopened.journal.unfinished()
    assert [(j.id, task, key) for j, task, key in resumed] == [
        (waiting.id, None, None),
        (running.id, "task-1", "fp-abcdef"),
    ]
    again = resumed[1][0]
    assert again == running, "every field comes back, the interaction token included"
    assert (await reopened.journal.entry(running.id)).state == "processing"


async def test_a_finished_job_is_not_resumed_and_forgets_its_token(store_opener):
    store = await store_opener()
    done = video()
    await store.journal.accepted(done, "task-2", "fp")
    await store.journal.finished(done.id)
    await store.journal.progress(done.id, "processing")  # a late update changes nothing
    assert await store.journal.unfinished() == []
    entry = await store.journal.entry(done.id)
    assert entry.finished and entry.state == "finished" and entry.outcome == "done"
    assert entry.job.token == ""


async def test_a_job_is_delivered_once_even_across_a_restart(store_opener):
    store = await store_opener()
    job = video()
    await store.journal.accepted(job, "task-3", "fp")
    assert await store.journal.mark_delivered(job.id) is True
    assert await store.journal.mark_delivered(job.id) is False
    await store.journal.finished(job.id)
    await store.close()

    reopened = await store_opener()
    assert await reopened.journal.unfinished() == [], "a delivered job is not resumed"
    assert await reopened.journal.mark_delivered(job.id) is False


async def test_a_delivery_a_crash_cut_off_is_made_by_the_next_run_once(store_opener):
    store = await store_opener()
    job = video()
    await store.journal.accepted(job, "task-3", "fp")
    assert await store.journal.mark_delivered(job.id) is True
    await store.close()  # as after a crash: the clip never went out, the job never finished

    reopened = await store_opener()
    [(resumed, task, key)] = await reopened.journal.unfinished()
    assert (resumed.id, task, key) == (job.id, "task-3", "fp")
    assert await reopened.journal.mark_delivered(job.id) is True
    assert await reopened.journal.mark_delivered(job.id) is False


async def test_deliver_once_holds_for_a_job_never_journaled(store_opener):
    store = await store_opener()
    assert await store.journal.mark_delivered("image-job-1") is True
    assert await store.journal.mark_delivered("image-job-1") is False
    assert await store.journal.entry("image-job-1") is None
    assert await store.journal.unfinished() == []


async def test_the_interaction_token_is_never_logged(store_opener, caplog):
    caplog.set_level(logging.DEBUG)
    store = await store_opener()
    job = video(token="tok-SECRET-123")
    await store.journal.submitted(job)
    await store.journal.accepted(job, "task-4", "fp")
    await store.journal.unfinished()
    await store.journal.finished(job.id, "rejected")
    await store.close()
    assert "tok-SECRET-123" not in caplog.text
    assert "tok-SECRET-123" not in repr(job)
