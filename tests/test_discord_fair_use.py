"""Fair use, memory and durable jobs, end to end: the real bot in SimCord's Discord with
its SQLite store, the fake providers over loopback. Time is SimCord's virtual clock,
which is also the store's (days, cooldowns)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from simcord import Env
from simcord.actors import MemberActor
from simcord.builders import ChannelHandle
from simcord.results import InteractionResult

from aibot import create_bot
from aibot.discord.bot import AibotBot
from aibot.discord.i18n import duration
from tests.fixtures.discord import World, answer_of

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def private(result: InteractionResult) -> str:
    """Answered at once and privately, in one message; its words."""
    assert result.acknowledged and result.response is not None
    assert result.response.ephemeral and result.followups == []
    return result.response.content


def public(result: InteractionResult) -> str:
    """Deferred in public and answered in that one message (SimCord's `deferred` means
    still loading); its words."""
    assert result.acknowledged and not result.deferred
    assert result.response is not None and not result.response.ephemeral
    assert result.followups == []
    return answer_of(result)


def answered(result: InteractionResult) -> bool:
    """A /chat that ran: the fake's answer in the public message."""
    return public(result).startswith("You said:")


def one_response_each(env: Env) -> None:
    """Every interaction got exactly one initial response (callback)."""
    paths = [e.path for e in env.http_requests if e.method == "POST" and "/callback" in e.path]
    ids = Counter(path.split("/")[2] for path in paths)
    assert ids and set(ids.values()) == {1}


def seconds_to_midnight(now: datetime, zone: str) -> float:
    local = now.astimezone(ZoneInfo(zone))
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), local.tzinfo)
    return (midnight - local).total_seconds()


async def in_a_row(
    member: MemberActor, channel: ChannelHandle, count: int, command: str, **options: Any
) -> list[InteractionResult]:
    """`count` slash commands, each sent as soon as the bot has settled the one before.

    SimCord delivers one interaction per verb and settles after it, and refuses verbs
    that overlap, so this is as close together as its public API sends them. For the
    gate it is as good as a burst: the intake takes or refuses a job synchronously, in
    the step that receives the interaction (nothing before the defer waits), so the
    order of arrival, not the spacing, decides which ten get through."""
    return [await member.slash(channel, command, **options) for _ in range(count)]


async def restart(world: World, env_vars: dict[str, str]) -> AibotBot:
    """Restart the bot as after a crash (tasks cancelled, no close) with a new bot on
    the same data folder; the old bot's store file and clients are then let go."""
    old = world.bot
    new = create_bot(env_vars)
    await world.env.restart_bot(new)
    world.bot = new
    await old.release()
    return new


# ------------------------------------------------------------ cooldown, quota


@pytest.mark.aibot_env(AIBOT_CHAT_COOLDOWN="30")
async def test_a_cooldown_refusal_is_private_and_says_when(world: World) -> None:
    channel = world.channel("채팅방-1")
    assert answered(await world.member.slash(channel, "chat", prompt="one"))

    words = private(await world.member.slash(channel, "chat", prompt="two"))
    assert words == "⏱️ Slow down a little: try again in 30 s."
    await world.env.advance_time(29)
    words = private(await world.member.slash(channel, "chat", prompt="three"))
    assert "try again in 1 s" in words
    await world.env.advance_time(1)
    assert answered(await world.member.slash(channel, "chat", prompt="four"))
    assert world.fake.counters.requests(endpoint="chat") == 2


@pytest.mark.aibot_env(AIBOT_CHAT_DAILY_QUOTA="2", AIBOT_TIMEZONE="Asia/Seoul")
async def test_the_daily_quota_comes_back_at_local_midnight(world: World) -> None:
    channel = world.channel("채팅방-1")
    for prompt in ("one", "two"):
        assert answered(await world.member.slash(channel, "chat", prompt=prompt))

    until = seconds_to_midnight(world.env.now(), "Asia/Seoul")
    words = private(await world.member.slash(channel, "chat", prompt="three"))
    assert words == (
        f"📅 You have used today's `/chat` allowance. It comes back in {duration(until, 'en')}."
    )
    # A Korean member reads it in Korean, with the command's Korean name.
    korean = world.add_member("서준", locale="ko")
    await world.bot.tree.sync()
    assert answered(await korean.slash(channel, "chat", prompt="하나"))
    assert answered(await korean.slash(channel, "chat", prompt="둘"))
    words = private(await korean.slash(channel, "chat", prompt="셋"))
    assert words.startswith("📅 오늘 `/채팅` 사용량을 다 썼어요.")

    # (Answers stream on the virtual clock too: measure again.)
    await world.env.advance_time(seconds_to_midnight(world.env.now(), "Asia/Seoul") - 1)
    words = private(await world.member.slash(channel, "chat", prompt="not yet"))
    assert "It comes back in 1 s." in words
    await world.env.advance_time(1)  # 00:00 in Seoul
    assert answered(await world.member.slash(channel, "chat", prompt="a new day"))
    assert answered(await korean.slash(channel, "chat", prompt="새 날"))
    assert world.fake.counters.requests(endpoint="chat") == 6  # refusals reached nobody


@pytest.mark.aibot_env(AIBOT_CHAT_DAILY_QUOTA="10")
async def test_a_hundred_chats_in_a_row_against_a_quota_of_ten(world: World) -> None:
    results = await in_a_row(world.member, world.channel("채팅방-1"), 100, "chat", prompt="hi")
    refused = [r for r in results if r.response is not None and r.response.ephemeral]
    accepted = [r for r in results if r not in refused]
    assert len(accepted) == 10 and len(refused) == 90
    assert accepted == results[:10]  # first come, first served
    assert all(answered(r) for r in accepted)
    for result in refused:
        assert private(result).startswith("📅 You have used today's `/chat` allowance.")
    one_response_each(world.env)
    assert world.fake.counters.requests(endpoint="chat") == 10  # a refusal never reached one
    assert world.bot.store is not None
    assert world.bot.store.gate.usage(world.guild.id, world.member.id, "chat") == (10, 10)


@pytest.mark.aibot_env(AIBOT_IMAGE_DAILY_QUOTA="1")
async def test_a_refused_image_never_reaches_a_provider(world: World) -> None:
    channel = world.channel("이미지생성-1")
    first = await world.member.slash(channel, "image", prompt="a red fox")
    public(first)
    assert first.response.embeds and first.response.attachments
    words = private(await world.member.slash(channel, "image", prompt="a blue fox"))
    assert "`/image` allowance" in words
    assert world.fake.counters.requests(endpoint="image") == 1


@pytest.mark.aibot_env(AIBOT_CHAT_DAILY_QUOTA="1")
async def test_a_job_the_provider_failed_gives_its_quota_back(world: World) -> None:
    channel = world.channel("채팅방-1")
    # The stream stops halfway, with no proper end: the provider's fault.
    world.fake.inject("openai", "cut_stream")
    failed = await world.member.slash(channel, "chat", prompt="hello?")
    assert "cut off" in public(failed)
    # The quota of 1 is still there.
    assert answered(await world.member.slash(channel, "chat", prompt="hello again"))
    words = private(await world.member.slash(channel, "chat", prompt="and again"))
    assert "allowance" in words


# --------------------------------------------------------------- restarts


async def test_the_conversation_survives_a_restart(world: World, aibot_env: dict[str, str]) -> None:
    channel = world.channel("채팅방-1")
    world.fake.chat_reply = "Nice to meet you, Minji."
    first = await world.member.slash(channel, "chat", prompt="My name is Minji.")
    assert public(first) == "Nice to meet you, Minji."

    await restart(world, aibot_env)
    world.fake.chat_reply = "Your name is Minji."
    second = await world.member.slash(channel, "chat", prompt="What is my name?")
    assert public(second) == "Your name is Minji."
    messages = world.fake.counters.bodies(endpoint="chat")[-1].body["messages"]
    assert [(m["role"], m["content"]) for m in messages[1:]] == [
        ("user", "My name is Minji."),
        ("assistant", "Nice to meet you, Minji."),
        ("user", "What is my name?"),
    ]


@pytest.mark.aibot_env(AIBOT_CHAT_HISTORY_TOKENS="30")
async def test_a_member_is_told_once_when_old_turns_were_forgotten(world: World) -> None:
    channel = world.channel("채팅방-1")
    world.fake.chat_reply = "Noted."
    answers = [
        public(await world.member.slash(channel, "chat", prompt=f"Remember fact number {n}."))
        for n in range(3)
    ]
    # The second exchange pushed the first out of the 30-token memory: the next
    # answer says so, the ones before it do not.
    assert answers[0] == answers[1] == "Noted."
    assert answers[2].startswith("Noted.\n\n-# ")
    assert "forgot the oldest 1 exchange(s)" in answers[2]
    sent = world.fake.counters.bodies(endpoint="chat")[-1].body["messages"]
    assert "Remember fact number 0." not in [m["content"] for m in sent]


async def test_a_video_accepted_before_a_restart_is_delivered_once_after_it(
    world: World, aibot_env: dict[str, str]
) -> None:
    world.fake.video_polls = 2
    channel = world.channel("비디오생성-1")
    result = await world.member.slash(channel, "video", prompt="a fox running")
    assert result.response.content == "🎬 Starting your video…"
    assert world.fake.counters.video_tasks == 1
    [(job, state)] = world.pools["video"].jobs()
    assert state == "running"

    bot = await restart(world, aibot_env)
    assert bot.store is not None
    for _ in range(6):
        await world.env.advance_time(10)
        if result.response.attachments:
            break
    [clip] = result.response.attachments
    assert clip.filename == "video.mp4"
    assert result.response.content.startswith("🎬 Here is your video")
    assert result.followups == []
    assert world.fake.counters.video_tasks == 1  # polled the old task, paid once
    # Exactly one message in the channel: the deferred one, now holding the video.
    assert [m.id for m in channel.history()] == [result.response.id]
    entry = await bot.store.journal.entry(job.id)
    assert entry is not None and entry.finished and entry.delivered
    # Later time changes nothing: nothing is left to resume or deliver.
    await world.env.advance_time(60)
    assert [m.id for m in channel.history()] == [result.response.id]
    assert await bot.store.journal.unfinished() == []
