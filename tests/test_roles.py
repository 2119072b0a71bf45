"""The role work functions (chat, image, video, admin) and `build_pools`, run
for real against the fake providers: a member's job goes in, a Reply comes out.
Real time with small waits; video polls every 50 ms here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from aibot.jobs import AibotError, BadRequest, Job, NoKeyAvailable, Rejected, Unavailable
from aibot.pools import PoolContext, Pools, admin, build_context, build_pools, chat, image, video
from aibot.pools.base import Work
from aibot.sandbox import FakeProviders, RecordingReply
from aibot.settings import Settings
from aibot.store.memory import Recall

KEYS = {
    "OPENAI_API_KEY_1": "sk-roles-chat-openai-aaaaaaaaaaaaaaaaaaaa01",
    "MINIMAX_API_KEY_1": "mm-roles-chat-minimax-aaaaaaaaaaaaaaaaaa01",
    "OPENAI_API_KEY_2": "sk-roles-image-openai-aaaaaaaaaaaaaaaaaa02",
    "MINIMAX_API_KEY_2": "mm-roles-image-minimax-aaaaaaaaaaaaaaaaa02",
    "STABILITY_API_KEY_2": "sk-roles-image-stability-aaaaaaaaaaaaaa02",
    "MINIMAX_API_KEY_3": "mm-roles-video-minimax-aaaaaaaaaaaaaaaaa03,mm-roles-video-2-bbbbbbbb03",
    "OPENAI_API_KEY_4": "sk-roles-admin-openai-aaaaaaaaaaaaaaaaaa04",
    "MINIMAX_API_KEY_4": "mm-roles-admin-minimax-aaaaaaaaaaaaaaaaa04",
}
# Published rates are a few calls a minute for images and video: lift them so
# that tests never wait on pacing, and poll videos quickly.
TUNING = {
    **{
        f"AIBOT_{pool}_RPM_{p}": "60000"
        for pool in ("IMAGE", "VIDEO", "ADMIN")
        for p in ("OPENAI", "MINIMAX", "STABILITY")
    },
    "AIBOT_VIDEO_POLL_SECONDS": "0.05",
    "AIBOT_VIDEO_TIMEOUT_SECONDS": "20",
    "AIBOT_REQUEST_TIMEOUT": "10",
}
Env = Callable[..., Settings]


@pytest.fixture
def settings_for(fake_providers: FakeProviders) -> Env:
    """Settings pointed at the fakes; keyword arguments override variables."""

    def make(**overrides: str) -> Settings:
        env = {**fake_providers.env(), **KEYS, **TUNING, **overrides}
        return Settings.from_env({k: v for k, v in env.items() if v})

    return make


@pytest.fixture
async def contexts() -> AsyncIterator[list[PoolContext]]:
    """Contexts made by a test, closed after it."""
    made: list[PoolContext] = []
    yield made
    for context in made:
        await context.aclose()


def job(command: str, **args: Any) -> Job:
    return Job(command=command, args=args, user_id=7, channel_id=70, guild_id=700)


async def run(work: Work, job: Job) -> RecordingReply:
    """Run a job to its end as a pool would (the result to reply.finish, errors to
    reply.fail)."""
    reply = RecordingReply()
    try:
        await reply.finish(await work(job, reply))
    except AibotError as err:
        await reply.fail(err)
    assert reply.done and not reply.problems
    return reply


def context(settings: Settings, name: str, made: list[PoolContext], **kw: Any) -> PoolContext:
    ctx = build_context(settings, name, **kw)
    made.append(ctx)
    return ctx


class Memory:
    def __init__(self) -> None:
        self.turns: list[tuple[str, str]] = [("my name is Ana", "Hello Ana!")]
        self.dropped = 2  # two old turns no longer fit, not yet told

    async def recall(self, job: Job) -> Recall:
        messages = [
            message
            for prompt, answer in self.turns
            for message in (
                {"role": "user", "content": prompt},
                {"role": "assistant", "content": answer},
            )
        ]
        dropped, self.dropped = self.dropped, 0
        return Recall(messages, dropped)

    async def remember(self, job: Job, prompt: str, answer: str, *, resets: int = 0) -> None:
        self.turns.append((prompt, answer))


class Journal:
    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []

    async def accepted(self, job: Job, task_id: str, key_fingerprint: str) -> None:
        self.events.append(("accepted", job.id, task_id, key_fingerprint))

    async def progress(self, job_id: str, state: str) -> None:
        self.events.append(("progress", job_id, state))

    async def finished(self, job_id: str) -> None:
        self.events.append(("finished", job_id))


# -- chat --------------------------------------------------------------------


async def test_a_chat_answer_streams_then_finishes_with_usage(
    fake_providers: FakeProviders, settings_for: Env, contexts: list[PoolContext]
) -> None:
    memory = Memory()
    work = chat.build_work(context(settings_for(), "chat", contexts, memory=memory))
    reply = await run(work, job("chat", prompt="what is my name?"))
    assert reply.result is not None, reply.error
    assert reply.result.text.startswith("You said: what is my name?")
    assert len(reply.texts) > 1 and reply.texts[-1] == reply.result.text
    assert all(b.startswith(a) for a, b in zip(reply.texts, reply.texts[1:], strict=False))
    meta = reply.result.meta
    assert meta["provider"] == "openai" and meta["model"] == "gpt-5-mini"
    assert meta["key_id"] == "sk-...aa01"  # redacted: the ledger's record of the key
    assert meta["tokens_in"] > 0 and meta["tokens_out"] > 0 and meta["seconds"] >= 0
    assert meta["forgotten"] == 2  # told once, with this answer
    sent = fake_providers.counters.bodies("openai", "chat")[-1].body["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert memory.turns[-1] == ("what is my name?", reply.result.text)


async def test_chat_moves_to_minimax_when_the_openai_keys_are_dead(
    fake_providers: FakeProviders, settings_for: Env, contexts: list[PoolContext]
) -> None:
    fake_providers.think = "the member is testing me"
    settings = settings_for(OPENAI_API_KEY_1="bad-chat-openai-aaaaaaaaaaaaaaaa01")
    ctx = context(settings, "chat", contexts)
    reply = await run(chat.build_work(ctx), job("chat", prompt="hi"))
    assert reply.result is not None, reply.error
    assert reply.result.meta["provider"] == "minimax"
    assert reply.result.text.startswith("You said: hi")
    assert not any("think" in text or "testing me" in text for text in reply.texts)
    assert ctx.rings["openai"].all_down


async def test_a_filtered_chat_answer_fails_without_trying_elsewhere(
    fake_providers: FakeProviders, settings_for: Env, contexts: list[PoolContext]
) -> None:
    fake_providers.inject("openai", "filtered")
    reply = await run(
        chat.build_work(context(settings_for(), "chat", contexts)), job("chat", prompt="hi")
    )
    assert isinstance(reply.error, Rejected)
    assert fake_providers.counters.requests("minimax") == 0


# -- image -------------------------------------------------------------------


async def test_an_image_comes_from_the_first_provider(
    fake_providers: FakeProviders, settings_for: Env, contexts: list[PoolContext]
) -> None:
    work = image.build_work(context(settings_for(), "image", contexts))
    reply = await run(work, job("image", prompt="a lighthouse", aspect_ratio="16:9", seed=42))
    assert reply.result is not None, reply.error
    (file,) = reply.result.files
    assert file.filename == "image.png" and file.data and file.data.startswith(b"\x89PNG")
    assert reply.result.meta["provider"] == "minimax"
    assert reply.result.meta["model"] == "image-01" and reply.result.meta["seed"] == 42
    assert reply.result.meta["key_id"] == "mm-...aa02"
    assert fake_providers.counters.bodies("minimax", "image")[-1].body["seed"] == 42


async def test_an_image_falls_back_when_the_first_provider_is_down(
    fake_providers: FakeProviders,
    settings_for: Env,
    contexts: list[PoolContext],
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_providers.inject("minimax", "500", times=10)
    work = image.build_work(context(settings_for(), "image", contexts))
    with caplog.at_level(logging.INFO, logger="aibot.pool"):
        reply = await run(work, job("image", prompt="a lighthouse"))
    assert reply.result is not None, reply.error
    assert reply.result.meta["provider"] == "stability"
    assert [r.getMessage() for r in caplog.records if "next provider" in r.getMessage()] == [
        "image minimax failed (unavailable), trying the next provider"
    ]
    assert reply.result.meta["seed"] is not None  # Stability says which seed it used


async def test_an_image_goes_to_the_next_provider_rather_than_wait_for_a_paced_key(
    fake_providers: FakeProviders, settings_for: Env, contexts: list[PoolContext]
) -> None:
    # MiniMax image-01 at its published 10 a minute: one call each 6 s per key.
    work = image.build_work(context(settings_for(AIBOT_IMAGE_RPM_MINIMAX="10"), "image", contexts))
    providers = []
    for _ in range(3):
        reply = await run(work, job("image", prompt="a lighthouse"))
        assert reply.result is not None, reply.error
        providers.append(reply.result.meta["provider"])
    assert providers[0] == "minimax"
    assert "minimax" not in providers[1:]
    assert fake_providers.counters.requests("minimax") == 1


async def test_an_image_skips_a_provider_whose_keys_are_all_dead(
    fake_providers: FakeProviders, settings_for: Env, contexts: list[PoolContext]
) -> None:
    settings = settings_for(
        MINIMAX_API_KEY_2="bad-image-minimax-aaaaaaaaaaaa02",
        STABILITY_API_KEY_2="bad-image-stability-aaaaaaaaa02",
    )
    ctx = context(settings, "image", contexts)
    work = image.build_work(ctx)
    for _ in range(2):
        reply = await run(work, job("image", prompt="a lighthouse"))
        assert reply.result is not None and reply.result.meta["provider"] == "openai"
    assert fake_providers.counters.requests("minimax") == 1  # then never asked again
    assert fake_providers.counters.requests("stability") == 1


async def test_a_refused_image_prompt_does_not_fall_back(
    fake_providers: FakeProviders, settings_for: Env, contexts: list[PoolContext]
) -> None:
    fake_providers.inject("minimax", "reject")
    work = image.build_work(context(settings_for(), "image", contexts))
    reply = await run(work, job("image", prompt="something unspeakable"))
    assert isinstance(reply.error, Rejected)
    assert fake_providers.counters.requests("stability") == 0
    assert fake_providers.counters.requests("openai") == 0


async def test_a_chosen_image_provider_is_the_only_one_asked(
    fake_providers: FakeProviders,
    settings_for: Env,
    contexts: list[PoolContext],
    caplog: pytest.LogCaptureFixture,
) -> None:
    work = image.build_work(context(settings_for(), "image", contexts))
    reply = await run(work, job("image", prompt="a lighthouse", provider="openai"))
    assert reply.result is not None and reply.result.meta["provider"] == "openai"
    fake_providers.inject("openai", "500", times=10)
    with caplog.at_level(logging.INFO, logger="aibot.pool"):
        reply = await run(work, job("image", prompt="a lighthouse", provider="openai"))
    assert isinstance(reply.error, Unavailable)
    assert fake_providers.counters.requests("minimax") == 0
    assert not [r for r in caplog.records if "next provider" in r.getMessage()]  # none
    reply = await run(work, job("image", prompt="a lighthouse", provider="midjourney"))
    assert isinstance(reply.error, BadRequest)


@pytest.mark.parametrize("args", [{"prompt": " "}, {"prompt": "x", "seed": "many"}])
async def test_a_nonsense_image_request_is_a_bad_request(
    settings_for: Env, contexts: list[PoolContext], args: dict[str, Any]
) -> None:
    work = image.build_work(context(settings_for(), "image", contexts))
    reply = await run(work, job("image", **args))
    assert isinstance(reply.error, BadRequest)


# -- video -------------------------------------------------------------------


async def test_a_video_is_made_polled_and_downloaded(
    fake_providers: FakeProviders, settings_for: Env, contexts: list[PoolContext]
) -> None:
    fake_providers.video_polls = 4
    journal = Journal()
    work = video.build_work(context(settings_for(), "video", contexts, journal=journal))
    clip_job = job("video", prompt="a cat surfing", duration=6)
    reply = await run(work, clip_job)
    assert reply.result is not None, reply.error
    (clip,) = reply.result.files
    assert (clip.filename, clip.content_type) == ("video.mp4", "video/mp4")
    assert clip.data is not None and len(clip.data) == fake_providers.video_bytes
    assert clip.url and reply.result.meta["task_id"]
    stages = [update.stage for update in reply.updates]
    assert stages[-1] == "downloading" and {"preparing", "processing"} <= set(stages)
    assert [u.elapsed for u in reply.updates] == sorted(u.elapsed for u in reply.updates)
    # The role journals the task and its progress; closing the entry is the worker's.
    kinds = [event[0] for event in journal.events]
    assert kinds[0] == "accepted" and "progress" in kinds and "finished" not in kinds
    assert journal.events[0][2] == reply.result.meta["task_id"]
    assert fake_providers.counters.video_tasks == 1
    [asked] = fake_providers.counters.bodies("minimax", "video")
    assert (asked.body["duration"], asked.body["resolution"]) == (6, "768P")


async def test_a_journaled_video_resumes_after_a_restart_without_a_new_task(
    fake_providers: FakeProviders, settings_for: Env, contexts: list[PoolContext]
) -> None:
    first_key = KEYS["MINIMAX_API_KEY_3"].split(",")[0]
    fake_providers.video_seconds = 0.5
    # The first key is busy, so the task is made with the second one.
    fake_providers.inject("minimax", "rate_limit", key=first_key, endpoint="video")
    journal = Journal()
    before = video.build_work(context(settings_for(), "video", contexts, journal=journal))
    clip_job = job("video", prompt="a cat surfing")
    running = asyncio.create_task(before(clip_job, RecordingReply()))
    while not journal.events:
        await asyncio.sleep(0.01)
    running.cancel()  # the bot stops while the clip is being made
    with pytest.raises(asyncio.CancelledError):
        await running
    (accepted,) = journal.events  # journaled, not finished: to be resumed
    _, job_id, task_id, key_fingerprint = accepted

    after = context(settings_for(), "video", contexts, journal=journal)  # a new process
    reply = await run(video.build_work(after), video.resume(clip_job, task_id, key_fingerprint))
    assert reply.result is not None, reply.error
    assert reply.result.meta["task_id"] == task_id and reply.result.files[0].data
    assert reply.result.meta["key_id"] == "mm-...bb03"
    assert fake_providers.counters.video_tasks == 1
    assert fake_providers.counters.outcomes("bad_request", "minimax") == 0
    assert [event[0] for event in journal.events].count("accepted") == 1
    assert all(event[1] == job_id for event in journal.events)


async def test_a_video_that_takes_too_long_is_given_up(
    fake_providers: FakeProviders, settings_for: Env, contexts: list[PoolContext]
) -> None:
    fake_providers.video_seconds = 60
    journal = Journal()
    settings = settings_for(AIBOT_VIDEO_TIMEOUT_SECONDS="0.3")
    work = video.build_work(context(settings, "video", contexts, journal=journal))
    reply = await run(work, job("video", prompt="a cat surfing"))
    assert isinstance(reply.error, Unavailable)
    assert reply.updates and journal.events[0][0] == "accepted"


async def test_a_failed_video_task_fails_the_job(
    fake_providers: FakeProviders, settings_for: Env, contexts: list[PoolContext]
) -> None:
    fake_providers.inject("minimax", "video_fail")
    work = video.build_work(context(settings_for(), "video", contexts))
    reply = await run(work, job("video", prompt="a cat surfing"))
    assert isinstance(reply.error, Unavailable) and "Fail" in reply.error.detail


async def test_a_video_too_large_to_upload_is_sent_as_a_link(
    fake_providers: FakeProviders, settings_for: Env, contexts: list[PoolContext]
) -> None:
    ctx = context(settings_for(), "video", contexts)
    ctx.video["minimax"].max_bytes = 1024
    reply = await run(video.build_work(ctx), job("video", prompt="a cat surfing"))
    assert reply.result is not None, reply.error
    (clip,) = reply.result.files
    assert clip.data is None and clip.url and clip.url.endswith(".mp4")
    assert fake_providers.counters.requests("minimax", "download") == 0


async def test_polls_that_fail_now_and_then_do_not_fail_the_video(
    fake_providers: FakeProviders, settings_for: Env, contexts: list[PoolContext]
) -> None:
    fake_providers.inject("minimax", "500", times=4, endpoint="video_query")
    work = video.build_work(context(settings_for(), "video", contexts))
    reply = await run(work, job("video", prompt="a cat surfing"))
    assert reply.result is not None, reply.error


# -- admin and build_pools ---------------------------------------------------


async def test_admin_runs_every_kind_with_its_own_keys(
    fake_providers: FakeProviders, settings_for: Env, contexts: list[PoolContext]
) -> None:
    work = admin.build_work(context(settings_for(), "admin", contexts))
    for command, args in [
        ("chat", {"prompt": "hello"}),
        ("image", {"prompt": "a lighthouse"}),
        ("video", {"prompt": "a cat surfing"}),
    ]:
        reply = await run(work, job(command, **args))
        assert reply.result is not None, (command, reply.error)
    used = {name: fake_providers.counters.for_key(key) for name, key in KEYS.items()}
    assert used["OPENAI_API_KEY_4"] == 2 and used["MINIMAX_API_KEY_4"] > 1
    assert sum(used.values()) == used["OPENAI_API_KEY_4"] + used["MINIMAX_API_KEY_4"]
    reply = await run(work, job("reset"))
    assert isinstance(reply.error, BadRequest)
    reply = await run(work, job("image", prompt="a lighthouse", provider="stability"))
    assert isinstance(reply.error, NoKeyAvailable)  # admin has no Stability key


async def test_build_pools_makes_only_the_enabled_pools(
    fake_providers: FakeProviders, settings_for: Env
) -> None:
    settings = settings_for(AIBOT_POOLS="chat,video", AIBOT_CHAT_WORKERS="3")
    pools = build_pools(settings)
    try:
        assert isinstance(pools, Pools) and set(pools) == {"chat", "video"}
        assert pools["chat"].workers == 3
        rings = {(r.pool, r.provider): r.load() for p in pools.values() for r in p.rings}
        assert rings == {
            ("chat", "openai"): (1, 1),
            ("chat", "minimax"): (1, 1),
            ("video", "minimax"): (2, 2),
        }
        replies = [RecordingReply(), RecordingReply()]
        pools["chat"].submit(job("chat", prompt="hello"), replies[0])
        pools["video"].submit(job("video", prompt="a cat surfing"), replies[1])
        for reply in replies:
            assert not isinstance(await reply.wait(timeout=30), Exception)
    finally:
        await pools.aclose()


async def test_a_pool_without_keys_for_a_kind_has_no_key_available(
    settings_for: Env, contexts: list[PoolContext]
) -> None:
    settings = settings_for(MINIMAX_API_KEY_4="", OPENAI_API_KEY_4="")
    ctx = context(settings, "admin", contexts)
    assert ctx.rings == {}
    reply = await run(admin.build_work(ctx), job("video", prompt="a cat surfing"))
    assert isinstance(reply.error, NoKeyAvailable)


async def test_no_key_reaches_a_log_line_or_a_reply(
    fake_providers: FakeProviders, settings_for: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = settings_for(
        MINIMAX_API_KEY_2="bad-image-minimax-aaaaaaaaaaaa02",
        OPENAI_API_KEY_1="bad-chat-openai-aaaaaaaaaaaaaaaa01",
    )
    pools = build_pools(settings)
    fake_providers.inject("openai", "rate_limit")
    fake_providers.inject("stability", "reject")
    fake_providers.inject("minimax", "500", times=2)
    try:
        replies = []
        for command, args in [
            ("chat", {"prompt": "hi"}),
            ("image", {"prompt": "a lighthouse"}),
            ("video", {"prompt": "a cat surfing"}),
            ("chat", {"prompt": "hi again"}),
        ]:
            reply = RecordingReply()
            pools[command].submit(job(command, **args), reply)
            replies.append(reply)
        outcomes = [repr(await reply.wait(timeout=60)) for reply in replies]
        shown = [repr(p.snapshot()) for p in pools.values()]
    finally:
        await pools.aclose()
    text = "\n".join([caplog.text, *outcomes, *shown])
    assert "disabled" in caplog.text
    assert [key for key in settings.secrets() if key in text or key[10:] in text] == []
