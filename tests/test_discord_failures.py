"""When things go wrong the member still gets exactly one clear answer: a full pool, a
refused prompt, bad keys, a provider that is down, a fault of the bot's own, Discord
refusing an edit, a token that expired, a restart in the middle of a video."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from typing import Any

import aiohttp
import discord
import pytest
from simcord.results import InteractionResult

from aibot import create_bot
from aibot.providers.retry import ATTEMPTS
from tests.fixtures.discord import World

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def callback_types(world: World) -> list[int]:
    """The interaction callbacks the bot made, in order (4 a message, 5 a defer)."""
    types = []
    for entry in world.env.http_requests:
        if entry.method == "POST" and entry.path.endswith("/callback"):
            body = json.loads(entry.json) if isinstance(entry.json, str) else entry.json
            types.append(body["type"])
    return types


def one_public_answer(result: InteractionResult) -> str:
    """The deferred message, answered and no longer "thinking...", with no followup."""
    assert result.acknowledged and not result.deferred
    assert result.response is not None and not result.response.ephemeral
    assert result.followups == []
    return result.response.content


def one_private_answer(result: InteractionResult) -> str:
    assert result.acknowledged and not result.deferred
    assert result.response is not None and result.response.ephemeral
    assert result.followups == []
    return result.response.content


async def settle_videos(world: World, rounds: int = 8) -> None:
    for _ in range(rounds):
        await world.env.advance_time(10)


# ------------------------------------------------------------ a full pool


@pytest.mark.aibot_env(AIBOT_VIDEO_WORKERS="1", AIBOT_VIDEO_QUEUE="1", AIBOT_OVERFLOW="false")
async def test_a_full_pool_says_busy_privately_with_an_estimate(world: World) -> None:
    channel = world.channel("비디오생성-1")
    running = await world.member.slash(channel, "video", prompt="one")
    waiting = await world.add_member("b").slash(channel, "video", prompt="two")
    refused = await world.add_member("c", locale="ko").slash(channel, "video", prompt="셋")
    assert callback_types(world) == [5, 5, 4]
    # One clip ahead, none finished yet: a clip's minutes, not a chat answer's seconds.
    assert "지금 바빠요" in one_private_answer(refused) and "약 3분" in refused.response.content
    await settle_videos(world)
    assert running.response.attachments and waiting.response.attachments
    assert world.fake.counters.video_tasks == 2


@pytest.mark.aibot_env(AIBOT_VIDEO_WORKERS="1", AIBOT_VIDEO_QUEUE="1")
async def test_a_full_pool_overflows_to_the_admin_pool(world: World) -> None:
    channel = world.channel("비디오생성-1")
    for name in ("a", "b", "c"):
        await world.add_member(name).slash(channel, "video", prompt=f"clip {name}")
    assert callback_types(world) == [5, 5, 5]
    [(job, state)] = world.pools["admin"].jobs()
    assert job.command == "video" and job.args["prompt"] == "clip c" and state == "running"
    await settle_videos(world)
    assert world.pools["admin"].snapshot().done == 1
    assert world.pools["video"].snapshot().done == 2


# ----------------------------------------------------------- the provider


async def test_a_refused_image_prompt_is_explained_and_counts(world: World) -> None:
    world.fake.inject("minimax", "reject")
    result = await world.member.slash(world.channel("이미지생성-1"), "image", prompt="bad")
    assert "safety system refused" in one_public_answer(result)
    assert result.response.embeds == [] and result.response.attachments == []
    gate = world.bot.store.gate
    assert gate.usage(world.guild.id, world.member.id, "image")[0] == 1


@pytest.mark.aibot_env(
    OPENAI_API_KEY_1="bad-openai-key-000000000000001",
    MINIMAX_API_KEY_1="bad-minimax-key-00000000000001",
    AIBOT_OVERFLOW="false",
)
async def test_when_every_key_is_bad_the_member_is_told_and_keeps_the_quota(
    world: World,
) -> None:
    result = await world.member.slash(world.channel("채팅방-1"), "chat", prompt="hello")
    assert "No working key" in one_public_answer(result)
    assert world.pools["chat"].snapshot().keys_healthy == 0
    assert world.bot.store.gate.usage(world.guild.id, world.member.id, "chat")[0] == 0


@pytest.mark.aibot_env(
    OPENAI_API_KEY_1="bad-openai-key-000000000000001",
    MINIMAX_API_KEY_1="bad-minimax-key-00000000000001",
)
async def test_after_every_chat_key_failed_the_admin_pool_answers(world: World) -> None:
    # The first job finds the chat keys dead and is itself moved to the admin pool.
    first = await world.member.slash(world.channel("채팅방-1"), "chat", prompt="one")
    assert "You said: one" in one_public_answer(first)
    second = await world.member.slash(world.channel("채팅방-1"), "chat", prompt="two")
    assert "You said: two" in one_public_answer(second)
    assert world.pools["admin"].snapshot().done == 2
    assert world.pools["chat"].snapshot().failed == 0
    assert world.bot.store.gate.usage(world.guild.id, world.member.id, "chat")[0] == 2


async def test_a_model_the_provider_does_not_know_moves_the_job_to_the_next_provider(
    world: World,
) -> None:
    world.fake.inject("openai", "unknown_model", times=10, endpoint="chat")  # retired
    result = await world.member.slash(world.channel("채팅방-1"), "chat", prompt="hi")
    assert "You said: hi" in one_public_answer(result)
    counters = world.fake.counters
    assert counters.requests("openai", "chat") == 1, "no other key or retry for a 404"
    assert counters.requests("minimax", "chat") == 1


@pytest.mark.aibot_env(AIBOT_CHAT_PROVIDERS="openai")
async def test_a_model_no_provider_knows_asks_for_an_admin_and_gives_the_use_back(
    world: World,
) -> None:
    world.fake.inject("openai", "unknown_model", endpoint="chat")
    result = await world.member.slash(world.channel("채팅방-1"), "chat", prompt="hi")
    assert "An admin needs to check" in one_public_answer(result)
    assert world.bot.store.gate.usage(world.guild.id, world.member.id, "chat")[0] == 0


@pytest.mark.simcord(settle_timeout=20)
@pytest.mark.aibot_env(AIBOT_CHAT_PROVIDERS="openai")
async def test_a_provider_that_is_down_is_explained_in_korean(world: World) -> None:
    member = world.add_member("유나", locale="ko")
    world.fake.inject("openai", "500", times=10)
    result = await member.slash(world.channel("채팅방-1"), "chat", prompt="안녕")
    assert "AI 제공자가 응답하지 않아요" in one_public_answer(result)
    assert world.bot.store.gate.usage(world.guild.id, member.id, "chat")[0] == 0


@pytest.mark.aibot_env(AIBOT_CHAT_MAX_TOKENS="2")
async def test_an_answer_cut_at_the_token_limit_says_it_stops_there(world: World) -> None:
    world.fake.chat_reply = "one two three four five six seven eight nine ten"
    result = await world.member.slash(world.channel("채팅방-1"), "chat", prompt="count")
    assert one_public_answer(result) == (
        "one two three fo\n\n-# ✂️ The answer stops here: it reached the length this bot allows."
    )


@pytest.mark.aibot_env(AIBOT_CHAT_MAX_TOKENS="6")
async def test_an_answer_cut_inside_code_closes_the_code_before_saying_so(world: World) -> None:
    world.fake.chat_reply = "Here:\n```python\nfor i in range(10):\n    print(i)\n```\nDone."
    result = await world.member.slash(world.channel("채팅방-1"), "chat", prompt="code")
    answer = one_public_answer(result)
    assert answer.endswith(
        "print(i)\n```\n\n-# ✂️ The answer stops here: it reached the length this bot allows."
    )


@pytest.mark.aibot_env(AIBOT_CHAT_PROVIDERS="openai")
async def test_a_stream_broken_inside_code_closes_the_code_before_saying_so(world: World) -> None:
    world.tick_reply_clock()
    code = "\n".join(f"    total += {i}" for i in range(60))
    world.fake.chat_reply = f"Here:\n```python\ntotal = 0\n{code}\nprint(total)\n```\nDone."
    world.fake.inject("openai", "cut_stream")  # the body ends halfway
    result = await world.member.slash(world.channel("채팅방-1"), "chat", prompt="code")
    for message in (result.response, *result.followups):
        fences = [line for line in message.content.split("\n") if line.startswith("```")]
        assert len(fences) % 2 == 0, message.content  # the notice is not code
    assert "\n```\n\n✂️ The answer was cut off" in result.response.content


@pytest.mark.aibot_env(AIBOT_CHAT_MAX_TOKENS="3", AIBOT_CHAT_PROVIDERS="minimax")
async def test_a_token_limit_spent_on_thinking_is_explained_and_gives_the_use_back(
    world: World,
) -> None:
    world.fake.think = "the member wants a greeting; let me think about it at length"
    result = await world.member.slash(world.channel("채팅방-1"), "chat", prompt="hi")
    assert one_public_answer(result).startswith("✂️ The answer was cut off")
    assert world.bot.store.gate.usage(world.guild.id, world.member.id, "chat")[0] == 0
    # Asked once: the same request would think as long again, each time paid for.
    assert world.fake.counters.requests("minimax", "chat") == 1


@pytest.mark.aibot_env(MINIMAX_API_KEY_3="mm-video-minimax-0000000000000000000000003")
async def test_a_video_being_made_outlives_its_key_running_out_of_credit(world: World) -> None:
    channel = world.channel("비디오생성-1")
    first = await world.member.slash(channel, "video", prompt="made before")
    # The account runs dry: the next video's task is refused, and the key disabled.
    world.fake.exhausted_keys.add("mm-video-minimax-0000000000000000000000003")
    await world.add_member("b").slash(channel, "video", prompt="made after")
    await settle_videos(world)
    # The first clip is paid for: it is still asked about with its key, and delivered.
    assert first.response.attachments and first.followups == []


async def test_a_finished_video_the_bot_cannot_download_comes_as_its_link(world: World) -> None:
    world.fake.broken_downloads = 1  # the link's host has a bad moment
    result = await world.member.slash(world.channel("비디오생성-1"), "video", prompt="a wave")
    await settle_videos(world)
    assert "/download/video-" in result.response.content and not result.response.attachments
    assert world.fake.counters.video_tasks == 1
    assert world.pools["video"].snapshot().failed == 0


async def test_a_finished_video_whose_file_the_provider_cannot_tell_yet_is_asked_for_again(
    world: World,
) -> None:
    # The task is done; the file lookup fails for every try of one call.
    world.fake.inject("minimax", "500", times=ATTEMPTS, endpoint="file")
    result = await world.member.slash(world.channel("비디오생성-1"), "video", prompt="a wave")
    await settle_videos(world, rounds=16)
    assert result.response.attachments  # the clip made and paid for reaches the member
    assert world.fake.counters.video_tasks == 1
    assert world.fake.counters.requests("minimax", "file") == ATTEMPTS + 1


@pytest.mark.aibot_env(AIBOT_VIDEO_TIMEOUT_SECONDS="25")
async def test_a_video_given_up_on_is_counted_against_its_provider(world: World) -> None:
    world.fake.video_polls = 50  # far longer than the bot waits
    await world.member.slash(world.channel("비디오생성-1"), "video", prompt="a wave")
    await settle_videos(world)
    [row] = await world.bot.store.ledger.stats(world.guild.id)
    assert (row.pool, row.provider, row.failed) == ("video", "minimax", 1)
    # The task goes on at the provider: its clip is made, and billed.
    assert row.video_seconds == 6 and row.cost > 0


async def test_a_video_task_the_provider_failed_costs_nothing(world: World) -> None:
    world.fake.inject("minimax", "video_fail")
    await world.member.slash(world.channel("비디오생성-1"), "video", prompt="a wave")
    await settle_videos(world)
    [row] = await world.bot.store.ledger.stats(world.guild.id)
    assert (row.provider, row.failed, row.video_seconds, row.cost) == ("minimax", 1, 0, 0)


async def test_a_fault_of_the_bots_own_gives_the_use_back(world: World) -> None:
    assert world.bot.store is not None
    with sqlite3.connect(world.bot.store.path) as conn:  # the memory's table lost
        conn.execute("DROP TABLE turns")
    result = await world.member.slash(world.channel("채팅방-1"), "chat", prompt="hi")
    assert one_public_answer(result) == "⚠️ Something went wrong on our side. Please try again."
    assert world.bot.store.gate.usage(world.guild.id, world.member.id, "chat")[0] == 0


# ------------------------------------------------------------ Discord side


async def test_a_failed_streaming_edit_does_not_lose_the_answer(world: World) -> None:
    world.tick_reply_clock()
    world.fake.chat_reply = " ".join(f"word{i}" for i in range(100))
    world.env.inject_error("PATCH", "/webhooks/*", status=500, times=1)
    result = await world.member.slash(world.channel("채팅방-1"), "chat", prompt="still here?")
    assert one_public_answer(result) == world.fake.chat_reply
    patches = [e for e in world.env.http_requests if e.method == "PATCH"]
    assert len(patches) >= 3  # the failed partial edit, later ones, the final answer


async def test_an_answer_whose_token_died_arrives_in_the_channel(world: World) -> None:
    world.env.inject_error(
        "PATCH", "/webhooks/*", status=404, code=10015, message="Unknown Webhook", times=None
    )
    await world.member.slash(world.channel("채팅방-1"), "chat", prompt="where?")
    last = world.channel("채팅방-1").history()[-1]
    assert last.author.bot
    assert last.content.startswith(f"<@{world.member.id}>, here is your `/chat` answer:")
    assert "You said: where?" in last.content


@pytest.mark.aibot_env(AIBOT_VIDEO_POLL_SECONDS="60")
async def test_a_video_that_outlives_the_token_is_posted_mentioning_the_member(
    world: World,
) -> None:
    world.fake.video_polls = 16  # polled every minute: done after the 15-minute token
    result = await world.member.slash(world.channel("비디오생성-1"), "video", prompt="long")
    await world.env.advance_time(15 * 60)
    before = result.response.content
    await world.env.advance_time(200)
    assert result.response.content == before  # the expired token is not used
    last = world.channel("비디오생성-1").history()[-1]
    assert last.content.startswith(f"<@{world.member.id}>, here is your `/video` answer:")
    [clip] = last.attachments
    assert clip.filename == "video.mp4"
    mentions = [
        body
        for entry in world.env.http_requests
        if entry.method == "POST" and entry.path.endswith("/messages")
        for body in [entry.json if isinstance(entry.json, dict) else json.loads(entry.json)]
    ]
    assert mentions[-1]["allowed_mentions"] == {"parse": [], "users": [world.member.id]}


@pytest.mark.aibot_env(AIBOT_VIDEO_POLL_SECONDS="60")
async def test_a_late_video_names_the_command_as_a_korean_member_knows_it(world: World) -> None:
    world.fake.video_polls = 16  # done after the 15-minute token
    member = world.add_member("유나", locale="ko")
    await member.slash(world.channel("비디오생성-1"), "video", prompt="파도")
    await world.env.advance_time(15 * 60 + 200)
    last = world.channel("비디오생성-1").history()[-1]
    assert last.content.startswith(f"<@{member.id}>님, 요청하신 `/비디오` 결과예요:")


# ----------------------------------------------------------- restarts


async def test_a_video_survives_a_restart_and_is_delivered_once(
    world: World, aibot_env: dict[str, Any]
) -> None:
    result = await world.member.slash(world.channel("비디오생성-1"), "video", prompt="fox")
    await world.env.advance_time(15)  # the task exists and was polled once
    old = world.bot
    await world.env.restart_bot(create_bot(aibot_env))  # a crash: no close()
    await old.release()
    await settle_videos(world)
    assert result.response.attachments
    assert world.fake.counters.video_tasks == 1
    deliveries = [
        e for e in world.env.http_requests if e.method == "PATCH" and "video.mp4" in str(e.json)
    ]
    assert len(deliveries) == 1


async def test_a_video_cut_off_by_a_crash_as_it_uploads_is_delivered_after_the_restart(
    world: World, aibot_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    result = await world.member.slash(world.channel("비디오생성-1"), "video", prompt="fox")
    edit = discord.Webhook.edit_message
    uploading = asyncio.Event()

    async def stalled(webhook: discord.Webhook, message_id: int, **fields: Any) -> Any:
        if fields.get("attachments"):  # the clip: the process dies as it goes up
            uploading.set()
            await asyncio.sleep(10**6)
        return await edit(webhook, message_id, **fields)

    monkeypatch.setattr(discord.Webhook, "edit_message", stalled)
    while not uploading.is_set():
        await world.env.advance_time(10)
    old = world.bot
    await world.env.restart_bot(create_bot(aibot_env))  # a crash: no close()
    await old.release()
    monkeypatch.undo()
    await settle_videos(world)
    [clip] = result.response.attachments
    assert clip.filename == "video.mp4"
    assert world.fake.counters.video_tasks == 1  # the same task, polled again


async def test_a_finished_video_is_delivered_even_when_the_store_cannot_record_it(
    world: World,
) -> None:
    result = await world.member.slash(world.channel("비디오생성-1"), "video", prompt="fox")
    await world.env.advance_time(15)  # the task exists and was polled once
    assert world.bot.store is not None
    with sqlite3.connect(world.bot.store.path) as conn:  # the journal's table lost
        conn.execute("DROP TABLE jobs")
    await settle_videos(world)
    assert result.response.attachments


@pytest.mark.aibot_env(AIBOT_VIDEO_WORKERS="3")
async def test_videos_taken_up_after_a_restart_stay_where_their_tasks_are(
    world: World, aibot_env: dict[str, Any]
) -> None:
    channel = world.channel("비디오생성-1")
    results = [await world.add_member(name).slash(channel, "video", prompt=name) for name in "abc"]
    await world.env.advance_time(15)  # three tasks made, each polled once
    old = world.bot
    # The operator gave the video pool less room meanwhile: one at work, one waiting.
    smaller = {**aibot_env, "AIBOT_VIDEO_WORKERS": "1", "AIBOT_VIDEO_QUEUE": "1"}
    await world.env.restart_bot(create_bot(smaller))  # a crash: no close()
    await old.release()
    await settle_videos(world, rounds=12)
    assert all(result.response.attachments for result in results)
    assert world.fake.counters.video_tasks == 3


@pytest.mark.aibot_env(AIBOT_DRAIN_SECONDS="0.2")
async def test_a_video_running_at_shutdown_is_kept_for_the_next_start(
    world: World, aibot_env: dict[str, Any]
) -> None:
    result = await world.member.slash(world.channel("비디오생성-1"), "video", prompt="fox")
    await world.env.advance_time(30)
    await world.bot.close()  # as on SIGTERM: drain, then stop
    assert "Making your video" in result.response.content  # not failed, not restarted
    await world.env.restart_bot(create_bot(aibot_env))
    await settle_videos(world)
    assert result.response.attachments
    assert world.fake.counters.video_tasks == 1


@pytest.mark.aibot_env(
    AIBOT_DRAIN_SECONDS="0.2",
    AIBOT_IMAGE_WORKERS="1",
    AIBOT_IMAGE_PROVIDERS="minimax",
    AIBOT_IMAGE_RPM_MINIMAX="1",  # one image a minute: the second waits for its key
    MINIMAX_API_KEY_2="minimax-image-key-0000000001",
)
async def test_jobs_cut_short_by_a_shutdown_are_told_and_give_the_use_back(world: World) -> None:
    channel = world.channel("이미지생성-1")
    done = await world.member.slash(channel, "image", prompt="first")
    members = [world.add_member("dahyun"), world.add_member("minji")]
    cut = [await member.slash(channel, "image", prompt="cut short") for member in members]
    assert [state for _job, state in world.pools["image"].jobs()] == ["running", "queued"]
    await world.bot.close()  # as on SIGTERM: drain, then stop
    assert done.response.attachments
    assert world.bot.store.gate.usage(world.guild.id, world.member.id, "image")[0] == 1
    for member, result in zip(members, cut, strict=True):
        assert "restarting" in result.response.content
        assert world.bot.store.gate.usage(world.guild.id, member.id, "image")[0] == 0


@pytest.mark.aibot_env(AIBOT_HTTP="127.0.0.1:0")
async def test_commands_while_draining_are_told_to_come_back(world: World) -> None:
    world.bot.draining = True  # what close() sets first
    result = await world.member.slash(world.channel("채팅방-1"), "chat", prompt="hi")
    assert "restarting" in one_private_answer(result)
    # ... and a load balancer is told too.
    assert world.bot.http_server is not None
    url = f"{world.bot.http_server.url}/health"
    async with aiohttp.ClientSession() as session, session.get(url) as answer:
        assert answer.status == 503 and (await answer.json())["problems"] == ["draining"]
    world.bot.draining = False
