"""Every command end to end: the real bot in SimCord's Discord, the fake providers over
loopback. A member runs a command and gets exactly one answer."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest
from simcord.results import InteractionResult

from tests.fixtures.discord import World, answer_of

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def assert_private(result: InteractionResult, world: World) -> str:
    """Answered at once, privately, with one message (no defer, no followup)."""
    assert callback_types(world) == [4]
    assert result.acknowledged and not result.deferred
    assert result.response is not None and result.response.ephemeral
    assert result.followups == []
    return result.response.content


def assert_deferred_public(result: InteractionResult, world: World) -> None:
    """Deferred publicly ("thinking..."), then answered in that message: no longer
    thinking (`deferred` is SimCord's "still loading")."""
    assert callback_types(world)[-1] == 5
    assert result.acknowledged and not result.deferred
    assert result.response is not None and not result.response.ephemeral
    assert result.response.content or result.response.embeds


def callback_types(world: World) -> list[int]:
    """The interaction callbacks the bot made, in order (4 a message, 5 a defer)."""
    return [body["type"] for body in bodies(world, "POST", "/callback")]


def bodies(world: World, method: str, path_part: str) -> list[dict[str, Any]]:
    """JSON bodies of the bot's REST calls (webhook edits and sends included)."""
    found = []
    for entry in world.env.http_requests:
        if entry.method == method and path_part in entry.path:
            body = entry.json
            found.append(json.loads(body) if isinstance(body, str) else body or {})
    return found


# ------------------------------------------------------------------- sync


async def test_commands_carry_korean_names_and_descriptions(world: World) -> None:
    synced = {c["name"]: c for c in bodies(world, "PUT", "/commands")[-1]}
    front = ("chat", "image", "video", "ping", "status", "instances")
    korean = {name: synced[name]["name_localizations"]["ko"] for name in front}
    assert korean == {
        "chat": "채팅",
        "image": "이미지",
        "video": "비디오",
        "ping": "핑",
        "status": "상태",
        "instances": "인스턴스",
    }
    assert synced["chat"]["description_localizations"]["ko"].startswith("AI에게")
    image_options = {o["name"]: o for o in synced["image"]["options"]}
    assert image_options["prompt"]["name_localizations"] == {"ko": "프롬프트"}
    assert image_options["aspect_ratio"]["name_localizations"] == {"ko": "비율"}
    durations = {o["name"]: o for o in synced["video"]["options"]}["duration"]["choices"]
    assert [c["name_localizations"]["ko"] for c in durations] == ["6초", "10초"]


# ---------------------------------------------------------------- routing


async def test_image_in_a_chat_channel_points_to_the_image_channel(world: World) -> None:
    result = await world.member.slash(world.channel("채팅방-1"), "image", prompt="a red fox")
    words = assert_private(result, world)
    assert world.channel("이미지생성-1").mention in words
    assert "/image" in words
    assert world.fake.counters.requests() == 0  # nothing reached a provider


async def test_a_korean_member_is_pointed_to_the_channel_in_korean(world: World) -> None:
    member = world.add_member("서연", locale="ko")
    result = await member.slash(world.channel("이미지생성-1"), "video", prompt="달리는 여우")
    words = assert_private(result, world)
    assert world.channel("비디오생성-1").mention in words
    assert "`/비디오` 명령은" in words and "써 주세요" in words


async def test_a_command_in_a_channel_of_no_pool_runs_there(world: World) -> None:
    result = await world.member.slash(world.channel("general"), "chat", prompt="hi")
    assert_deferred_public(result, world)
    assert "You said: hi" in answer_of(result)


# ------------------------------------------------------------------- chat


async def test_a_quick_chat_answer_is_written_once_and_pings_nobody(world: World) -> None:
    world.fake.chat_reply = "Seoul is the capital of South Korea. @everyone <@123> should not ping."
    result = await world.member.slash(world.channel("채팅방-1"), "chat", prompt="capital?")
    assert_deferred_public(result, world)
    assert result.followups == []
    assert result.response.content == world.fake.chat_reply
    # Within a second of the defer: no partial edit, the answer in one write.
    [edit] = bodies(world, "PATCH", "/webhooks/")
    assert edit["allowed_mentions"] == {"parse": []}


async def test_a_long_answer_is_split_with_code_fences_kept(world: World) -> None:
    code = "\n".join(f"    total += {i}  # step {i}" for i in range(120))
    prose = " ".join(f"Sentence number {i} explains one more detail." for i in range(60))
    world.fake.chat_reply = f"{prose}\n\n```python\ntotal = 0\n{code}\n```\nDone."
    result = await world.member.slash(world.channel("채팅방-1"), "chat", prompt="explain")
    assert_deferred_public(result, world)
    messages = [result.response, *result.followups]
    assert len(messages) >= 3
    assert all(0 < len(m.content) <= 2000 for m in messages)
    for message in messages:
        fences = [line for line in message.content.split("\n") if line.startswith("```")]
        assert len(fences) % 2 == 0  # every part closes what it opens
    assert messages[-1].content.endswith("Done.")
    assert messages[1].content.startswith("```python") or messages[2].content.startswith(
        "```python"
    )
    followups = bodies(world, "POST", "/webhooks/")
    assert followups and all(f["allowed_mentions"] == {"parse": []} for f in followups)


async def test_chat_in_korean_gets_a_korean_refusal_when_the_prompt_is_rejected(
    world: World,
) -> None:
    member = world.add_member("지훈", locale="ko")
    world.fake.inject("openai", "reject")
    result = await member.slash(world.channel("채팅방-1"), "chat", prompt="나쁜 말")
    assert_deferred_public(result, world)
    assert "안전 시스템이 거절" in result.response.content
    assert result.followups == []


# ------------------------------------------------------------------ image


async def test_image_comes_back_in_an_embed_with_the_file(world: World) -> None:
    result = await world.member.slash(
        world.channel("이미지생성-1"), "image", prompt="a red fox in snow", aspect_ratio="16:9"
    )
    assert_deferred_public(result, world)
    [embed] = result.response.embeds
    [attachment] = result.response.attachments
    assert embed.image.url == f"attachment://{attachment.filename}"
    assert embed.description == "a red fox in snow"
    fields = {f.name: f.value for f in embed.fields}
    assert fields["Provider"] == "minimax"
    assert fields["Model"] == "image-01"
    assert "Time taken" in fields
    [sent] = world.fake.counters.bodies(endpoint="image")
    assert sent.body["aspect_ratio"] == "16:9"


async def test_image_from_a_chosen_provider_in_korean(world: World) -> None:
    member = world.add_member("하은", locale="ko")
    result = await member.slash(
        world.channel("이미지생성-1"), "image", prompt="snowy mountain", provider="stability"
    )
    [embed] = result.response.embeds
    fields = {f.name: f.value for f in embed.fields}
    assert embed.title == "요청하신 이미지"
    assert fields["제공자"] == "stability"
    assert "시드" in fields


# ------------------------------------------------------------------ video


async def test_video_is_queued_then_shows_progress_then_arrives(world: World) -> None:
    world.fake.video_polls = 3
    result = await world.member.slash(
        world.channel("비디오생성-1"), "video", prompt="a fox running", duration=6
    )
    assert_deferred_public(result, world)
    assert result.response.content == "🎬 Starting your video…"
    seen = []
    for _ in range(6):
        await world.env.advance_time(10)
        seen.append(result.response.content)
        if result.response.attachments:
            break
    assert any("Making your video" in text for text in seen)
    [attachment] = result.response.attachments
    assert attachment.filename == "video.mp4"
    assert result.response.content.startswith("🎬 Here is your video")
    assert "> a fox running" in result.response.content
    assert result.followups == []
    assert world.fake.counters.video_tasks == 1


async def test_a_video_too_large_to_upload_comes_as_a_link(world: World) -> None:
    world.clients.set(world.member, upload_limit=1024)  # the fake's clip is 32 KiB
    result = await world.member.slash(world.channel("비디오생성-1"), "video", prompt="waves")
    for _ in range(4):
        await world.env.advance_time(10)
    content = result.response.content
    assert result.response.attachments == []
    assert "Your video is ready" in content and "http://127.0.0.1" in content


@pytest.mark.aibot_env(AIBOT_VIDEO_WORKERS="1")
async def test_second_video_is_told_its_place_in_line(world: World) -> None:
    first = await world.member.slash(world.channel("비디오생성-1"), "video", prompt="one")
    other = world.add_member("dahyun")
    second = await other.slash(world.channel("비디오생성-1"), "video", prompt="two")
    assert first.response.content == "🎬 Starting your video…"
    assert second.response.content == "🎬 Your video is number 2 in line."
    for _ in range(10):
        await world.env.advance_time(10)
    assert first.response.attachments and second.response.attachments


# ------------------------------------------------------------------ admin


@pytest.mark.simcord(shard_count=2)
async def test_ping_shows_every_shard_and_the_pools_here(world: World) -> None:
    result = await world.member.slash(world.channel("general"), "ping")
    assert result.acknowledged and not result.deferred
    content = result.response.content
    assert "shard 0" in content and "shard 1" in content
    assert "chat, image, video, admin" in content


async def test_status_shows_the_four_pools_from_their_snapshots(world: World) -> None:
    await world.member.slash(world.channel("채팅방-1"), "chat", prompt="hello")
    result = await world.member.slash(world.channel("general"), "status")
    assert result.response.ephemeral
    [embed] = result.response.embeds
    fields = {f.name: f.value for f in embed.fields}
    assert list(fields) == ["chat", "image", "video", "admin"]
    assert "done 1" in fields["chat"] and "workers 0/32" in fields["chat"]
    assert "keys 2/2 healthy" in fields["chat"]
    assert re.search(r"p50 (<1|\d+) ms", fields["chat"]) and "calls ready" in fields["chat"]
    assert "p50 - · p95 -" in fields["image"]  # nothing finished there yet


async def test_instances_in_korean_lists_channels_commands_and_place(world: World) -> None:
    member = world.add_member("민수", locale="ko")
    result = await member.slash(world.channel("general"), "instances")
    [embed] = result.response.embeds
    fields = {f.name: f.value for f in embed.fields}
    assert embed.title == "풀이 도는 곳"
    assert "`*이미지생성-*`" in fields["image"] and "/image" in fields["image"]
    assert "/ping, /status, /instances" in fields["admin"]
    assert all("이 프로세스" in value for value in fields.values())


@pytest.mark.aibot_env(AIBOT_POOLS="chat,admin")
async def test_a_process_runs_only_its_pools_and_says_where_the_others_are(
    world: World,
) -> None:
    loaded = {c.name for c in world.bot.tree.get_commands()}
    assert {"chat", "ping", "status", "instances"} <= loaded
    assert not {"image", "video"} & loaded
    result = await world.member.slash(world.channel("general"), "status")
    fields = {f.name: f.value for f in result.response.embeds[0].fields}
    assert fields["image"] == "not running in this process"
    result = await world.member.slash(world.channel("general"), "instances")
    fields = {f.name: f.value for f in result.response.embeds[0].fields}
    assert "another process" in fields["video"] and "this process" in fields["chat"]


async def test_a_message_mentioning_the_bot_is_no_error(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    assert world.bot.user is not None
    # SimCord listens for command errors itself; without it discord.py's own handler
    # logs each at ERROR, as in a deployed bot.
    world.bot.extra_events.pop("on_command_error", None)
    with caplog.at_level(logging.ERROR):
        await world.member.send(world.channel("general"), f"<@{world.bot.user.id}> hello")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert [m for m in world.channel("general").history() if m.author.bot] == []


@pytest.mark.aibot_env(OPENAI_API_KEY_2=None)
async def test_an_image_provider_without_a_key_is_refused_privately_naming_the_others(
    world: World,
) -> None:
    result = await world.member.slash(
        world.channel("이미지생성-1"), "image", prompt="a fox", provider="openai"
    )
    assert result.response.ephemeral and not result.deferred
    assert result.response.content == (
        "🔧 This bot has no `openai` key for this here. Choose one of "
        "`minimax`, `stability`, or leave the provider out."
    )
    assert world.fake.counters.requests() == 0
    assert world.bot.store.gate.usage(world.guild.id, world.member.id, "image")[0] == 0
