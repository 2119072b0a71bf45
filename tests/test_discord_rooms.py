"""The admin rooms end to end: the real bot in SimCord's Discord with the reference
design's `🚨-알림-채널`, `⚙️-봇-상태` and `📊-전체-통계` channels, the fake providers
over loopback, SimCord's clock for the ten-minute folding and the day boundary."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import discord
import pytest
from simcord.builders import ChannelHandle

from aibot.store.backup import integrity
from tests.fixtures.discord import World
from tests.test_discord_fair_use import answered, private, public, restart
from tests.test_discord_manage import fields, manager, private_embed

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ALERTS, STATUS, STATS = "🚨-알림-채널", "⚙️-봇-상태", "📊-전체-통계"


def room(world: World, name: str) -> ChannelHandle:
    world.channels[name] = channel = world.guild.create_text_channel(name)
    return channel


def said(channel: ChannelHandle) -> list[str]:
    return [message.content for message in channel.history()]


async def pause_and_resume(world: World, times: int = 1) -> None:
    boss = manager(world)
    for _ in range(times):
        assert "paused" in private(
            await boss.slash(world.channel("general"), "admin pause", pool="chat")
        )
        await boss.slash(world.channel("general"), "admin resume", pool="chat")


# ------------------------------------------------------------------ alerts


async def test_a_pause_and_a_resume_are_alerted_with_who_did_it(world: World) -> None:
    alerts = room(world, ALERTS)
    await pause_and_resume(world)
    paused, resumed = said(alerts)
    assert paused.startswith("⏸️ The `chat` pool was paused by boss on aibot test guild.")
    assert resumed == "▶️ The `chat` pool was resumed by boss on aibot test guild."


async def test_an_alert_raised_while_another_is_being_posted_is_posted_too(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    alerts = room(world, ALERTS)
    send = discord.abc.Messageable.send
    discord_took_it = asyncio.Event()

    async def held_at_first(channel: Any, *args: Any, **kwargs: Any) -> Any:
        # Discord takes its time with the alerts, until the test lets them through.
        await world.env.external_wait(discord_took_it.wait(), reason="Discord slow to answer")
        return await send(channel, *args, **kwargs)

    monkeypatch.setattr(discord.abc.Messageable, "send", held_at_first)
    await pause_and_resume(world)  # the resume is alerted while the pause is being posted
    assert said(alerts) == []
    discord_took_it.set()
    await world.env.advance_time(1)
    paused, resumed = said(alerts)
    assert paused.startswith("⏸️") and resumed.startswith("▶️")


async def test_repeats_are_folded_into_a_count_after_ten_minutes(world: World) -> None:
    alerts = room(world, ALERTS)
    await pause_and_resume(world, times=3)
    assert len(said(alerts)) == 2  # the first pause and the first resume
    await world.env.advance_time(600)
    folded = said(alerts)[2:]
    assert len(folded) == 2
    assert folded[0].startswith("🔁 2 more like this in the last 10 min, latest:\n⏸️")
    assert folded[1].startswith("🔁 2 more like this in the last 10 min, latest:\n▶️")
    await world.env.advance_time(600)
    assert len(said(alerts)) == 4  # nothing more happened: nothing more said


@pytest.mark.aibot_env(
    OPENAI_API_KEY_1="bad-chat-openai-000000000000000001", MINIMAX_API_KEY_1=None
)
async def test_a_disabled_key_and_a_pool_without_keys_are_alerted_redacted(
    world: World, aibot_env: dict[str, str]
) -> None:
    alerts = room(world, ALERTS)
    await world.member.slash(world.channel("채팅방-1"), "chat", prompt="hello?")
    disabled, empty = said(alerts)
    assert disabled.startswith("🔑 A key of the `chat` pool (`openai`) was disabled: `bad...0001`")
    assert empty.startswith("🚫 The `chat` pool has no usable key left")
    assert aibot_env["OPENAI_API_KEY_1"] not in disabled


@pytest.mark.simcord(settle_timeout=20)
@pytest.mark.aibot_env(AIBOT_CHAT_PROVIDERS="openai", AIBOT_OVERFLOW="false")
async def test_a_provider_failing_for_over_a_minute_is_alerted(world: World) -> None:
    alerts = room(world, ALERTS)
    channel = world.channel("채팅방-1")
    world.fake.inject("openai", "500", times=100)
    await world.member.slash(channel, "chat", prompt="one")
    assert said(alerts) == []  # one failure is not yet trouble
    await world.env.advance_time(61)
    await world.member.slash(channel, "chat", prompt="two")
    [failing] = said(alerts)
    assert failing.startswith("🔥 `openai` keeps failing in the `chat` pool: 2 jobs over")


@pytest.mark.aibot_env(AIBOT_CHAT_DAILY_BUDGET="10")
async def test_a_daily_budget_ninety_percent_spent_is_alerted_once(world: World) -> None:
    alerts = room(world, ALERTS)
    channel = world.channel("채팅방-1")
    for n in range(10):
        assert answered(await world.member.slash(channel, "chat", prompt=f"n{n}"))
        assert len(said(alerts)) == (0 if n < 8 else 1)
    assert said(alerts)[0].startswith(
        "💸 The `chat` pool has used 9 of its daily budget of 10 jobs (90%)"
    )


async def test_jobs_resumed_after_a_restart_are_alerted(
    world: World, aibot_env: dict[str, str]
) -> None:
    alerts = room(world, ALERTS)
    await world.member.slash(world.channel("비디오생성-1"), "video", prompt="fox")
    await world.env.advance_time(15)
    await restart(world, aibot_env)
    assert said(alerts) == [
        "🔄 The bot restarted and resumed 1 unfinished job(s); they are delivered when done."
    ]


async def test_a_failed_backup_is_alerted_and_told_privately(
    world: World, aibot_env: dict[str, str], tmp_path: Path
) -> None:
    alerts = room(world, ALERTS)
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    await restart(world, {**aibot_env, "AIBOT_BACKUP_DIR": str(blocked / "backups")})
    words = private(await manager(world).slash(world.channel("general"), "admin backup"))
    assert words.startswith("💾 The backup failed: backup of")
    # Once at the start (the day's backup) and once now: folded into one message.
    [alert] = said(alerts)
    assert alert.startswith("💾 The backup failed: backup of")


@pytest.mark.aibot_env(AIBOT_ALERT_CHANNEL="off")
async def test_the_alert_channel_can_be_turned_off(world: World) -> None:
    alerts = room(world, ALERTS)
    await pause_and_resume(world)
    assert said(alerts) == []


# ------------------------------------------------------------ live status


def status_messages(channel: ChannelHandle) -> list[discord.Message]:
    return [m for m in channel.history() if m.embeds and m.embeds[0].title == "Pools"]


def edits_of(world: World, message_id: int) -> int:
    return sum(
        1
        for e in world.env.http_requests
        if e.method == "PATCH" and e.path.endswith(f"/messages/{message_id}")
    )


async def test_the_status_message_is_edited_not_posted_again_across_a_restart(
    world: World, aibot_env: dict[str, str]
) -> None:
    status = room(world, STATUS)
    await world.env.advance_time(30)
    [message] = status_messages(status)
    assert "queued 0/" in message.embeds[0].fields[0].value
    await world.env.advance_time(60)
    assert edits_of(world, message.id) == 0  # nothing changed: nothing written
    assert answered(await world.member.slash(world.channel("채팅방-1"), "chat", prompt="hi"))
    await world.env.advance_time(30)
    assert edits_of(world, message.id) == 1
    assert "done 1" in status_messages(status)[0].embeds[0].fields[0].value

    await restart(world, aibot_env)
    await world.env.advance_time(30)
    [again] = status_messages(status)
    assert again.id == message.id and edits_of(world, message.id) == 2
    assert "done 0" in again.embeds[0].fields[0].value  # this run's figures


async def test_a_deleted_status_message_is_posted_again(world: World) -> None:
    status = room(world, STATUS)
    await world.env.advance_time(30)
    [message] = status_messages(status)
    mods = world.guild.create_role("mods", permissions=discord.Permissions(manage_messages=True))
    moderator = world.guild.add_member(world.env.create_user("mod"), roles=[mods])
    await moderator.delete(message)
    await world.env.advance_time(30)
    [again] = status_messages(status)
    assert again.id != message.id


async def test_a_status_message_purged_with_others_is_posted_again(world: World) -> None:
    status = room(world, STATUS)
    await world.env.advance_time(30)
    [message] = status_messages(status)
    # A moderator's purge: one MESSAGE_DELETE_BULK for several messages.
    world.env.backend.bulk_delete_messages(status.id, [message.id])
    await world.env.advance_time(30)
    [again] = status_messages(status)
    assert again.id != message.id


async def test_a_room_channel_the_bot_may_not_post_in_is_passed_over(world: World) -> None:
    me = world.guild.me
    closed = world.guild.create_text_channel(
        STATUS, overwrites={me: discord.PermissionOverwrite(send_messages=False)}
    )
    await world.env.advance_time(600)
    writes = [e for e in world.env.http_requests if f"/channels/{closed.id}/" in e.path]
    assert writes == []  # not one refused post, every 30 s, for ever
    status = room(world, "bot-status")  # the next channel whose name matches
    await world.env.advance_time(30)
    assert len(status_messages(status)) == 1


async def test_a_communitys_own_alerts_channel_gets_no_alerts(world: World) -> None:
    theirs = room(world, "twitch-alerts")
    ours = room(world, "bot-alerts")
    await pause_and_resume(world)
    assert said(theirs) == []
    assert len(said(ours)) == 2


@pytest.mark.aibot_env(AIBOT_STATUS_CHANNEL="off")
async def test_the_status_channel_can_be_turned_off(world: World) -> None:
    status = room(world, STATUS)
    await world.env.advance_time(60)
    assert status.history() == []


# ---------------------------------------------------------- daily summary

# SimCord's day starts at 2026-01-01 00:00 UTC: 23:00 on Dec 31 one hour west.
ONE_HOUR_BEFORE_MIDNIGHT = "Etc/GMT+1"


@pytest.mark.aibot_env(AIBOT_TIMEZONE=ONE_HOUR_BEFORE_MIDNIGHT, AIBOT_STATUS_CHANNEL="off")
async def test_yesterdays_summary_is_posted_once_even_across_a_restart(
    world: World, aibot_env: dict[str, str]
) -> None:
    stats = room(world, STATS)
    channel = world.channel("채팅방-1")
    for prompt in ("one", "two"):
        assert answered(await world.member.slash(channel, "chat", prompt=prompt))
    await world.env.advance_time(3600)  # past midnight where the bot is
    [summary] = [m.embeds[0] for m in stats.history()]
    assert summary.title == "Yesterday, 2025-12-31"
    assert summary.description.startswith("jobs 2 · failed 0 · estimated cost")
    assert "Busiest hour: 23:00-0:00, 2 jobs" in summary.description
    assert summary.fields[0].value.startswith("**chat** · ")

    await restart(world, aibot_env)
    await world.env.advance_time(60)
    assert len(stats.history()) == 1


@pytest.mark.aibot_env(AIBOT_TIMEZONE=ONE_HOUR_BEFORE_MIDNIGHT, AIBOT_STATUS_CHANNEL="off")
async def test_a_summary_cut_off_on_its_way_is_posted_at_the_next_start(
    world: World, aibot_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stats = room(world, STATS)
    assert answered(await world.member.slash(world.channel("채팅방-1"), "chat", prompt="one"))
    send = discord.abc.Messageable.send

    async def cut_off(channel: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("embed") is not None:  # the summary: the connection drops
            raise aiohttp.ClientOSError(104, "Connection reset by peer")
        return await send(channel, *args, **kwargs)

    monkeypatch.setattr(discord.abc.Messageable, "send", cut_off)
    await world.env.advance_time(3600)  # past midnight where the bot is
    assert stats.history() == []
    monkeypatch.undo()
    await restart(world, aibot_env)
    await world.env.advance_time(60)
    [summary] = [m.embeds[0] for m in stats.history()]
    assert summary.title == "Yesterday, 2025-12-31"


@pytest.mark.aibot_env(
    AIBOT_TIMEZONE=ONE_HOUR_BEFORE_MIDNIGHT,
    AIBOT_STATUS_CHANNEL="off",
    AIBOT_STATS_CHANNEL="off",
)
async def test_the_summary_channel_can_be_turned_off(world: World) -> None:
    stats = room(world, STATS)
    assert answered(await world.member.slash(world.channel("채팅방-1"), "chat", prompt="hi"))
    await world.env.advance_time(3600)
    assert stats.history() == []


@pytest.mark.aibot_env(AIBOT_LEDGER_DAYS="1", AIBOT_STATUS_CHANNEL="off")
async def test_a_bot_that_runs_for_weeks_prunes_every_day(world: World) -> None:
    chat = world.channel("채팅방-1")
    assert answered(await world.member.slash(chat, "chat", prompt="My name is Minji."))
    await world.env.advance_time(2 * 24 * 3600)  # two midnights, and no restart
    week = fields(private_embed(await world.member.slash(chat, "stats")))["Last 7 days"]
    assert week == "No jobs yet."  # the ledger keeps one day

    await world.env.advance_time(29 * 24 * 3600)  # 31 days since the member last chatted
    assert answered(await world.member.slash(chat, "chat", prompt="What is my name?"))
    sent = world.fake.counters.bodies(endpoint="chat")[-1].body["messages"]
    assert [m["content"] for m in sent[1:]] == ["What is my name?"]


# ---------------------------------------------------------------- backups


@pytest.mark.aibot_env(AIBOT_CHAT_DAILY_QUOTA="5", AIBOT_BACKUP_KEEP="2")
async def test_a_backup_is_made_checked_and_restored_into_a_fresh_bot(
    world: World, aibot_env: dict[str, Any], tmp_path: Path
) -> None:
    folder = Path(aibot_env["AIBOT_DATA_DIR"]).parent / "backups"
    [daily] = list(folder.iterdir())  # the day's backup, made at the start
    chat = world.channel("채팅방-1")
    world.fake.chat_reply = "Hello, Minji."
    assert public(await world.member.slash(chat, "chat", prompt="I am Minji.")) == "Hello, Minji."
    await world.member.slash(world.channel("비디오생성-1"), "video", prompt="fox")
    await world.env.advance_time(15)

    words = private(await manager(world).slash(world.channel("general"), "admin backup"))
    assert words.startswith("💾 Backup made and checked: `")
    made = Path(words.split("`")[1])
    assert made.parent == folder and made.name.startswith("aibot-20260101-")
    assert integrity(made) == "ok"
    assert sorted(folder.iterdir()) == sorted([daily, made])

    # A fresh bot on a new data folder holding only that backup (README, "Backups").
    restored = tmp_path / "restored"
    restored.mkdir()
    shutil.copy(made, restored / "aibot.db")
    new = await restart(world, {**aibot_env, "AIBOT_DATA_DIR": str(restored)})
    store = new.store
    assert store.path == restored / "aibot.db"
    assert store.gate.usage(world.guild.id, world.member.id, "chat") == (1, 5)
    assert [job.command for _pool, job, _state in new.queue.jobs()] == ["video"]  # the journal
    world.fake.chat_reply = "You are Minji."
    assert public(await world.member.slash(chat, "chat", prompt="Who am I?")) == "You are Minji."
    messages = world.fake.counters.bodies(endpoint="chat")[-1].body["messages"]
    assert ("user", "I am Minji.") in [(m["role"], m["content"]) for m in messages]  # memory
