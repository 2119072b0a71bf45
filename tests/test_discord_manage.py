"""`/admin`, `/stats` and `/reset`, end to end: the real bot in SimCord's Discord, with
its store and pools, the fake providers over loopback."""

from __future__ import annotations

import json

import discord
import pytest
from discord import app_commands
from simcord import SetupError
from simcord.actors import MemberActor
from simcord.results import InteractionResult

from aibot.discord.embeds import keys_embed
from aibot.discord.retries import RetryPolicy
from aibot.snapshots import KeyRingSnapshot, KeySnapshot, PoolSnapshot
from aibot.store import Store
from tests.fixtures.discord import World
from tests.test_discord_fair_use import answered, private, public

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

REFUSED = "🔒 `/admin` is for server managers (Manage Server) and the bot's admin role."


def manager(world: World, name: str = "boss") -> MemberActor:
    """A member whose role has Manage Server."""
    role = world.guild.create_role("moderators", permissions=discord.Permissions(manage_guild=True))
    return world.guild.add_member(world.env.create_user(name), roles=[role])


async def show_admin_to(world: World, *targets: object) -> None:
    """What a server admin does in Server Settings > Integrations: let these roles or
    members see `/admin` whatever the default permission says."""
    synced = {command.name: command for command in await world.bot.tree.sync()}
    world.guild.set_command_permissions(synced["admin"], dict.fromkeys(targets, True))


def private_embed(result: InteractionResult) -> discord.Embed:
    private(result)
    [embed] = result.response.embeds
    return embed


def fields(embed: discord.Embed) -> dict[str, str]:
    return {str(field.name): str(field.value) for field in embed.fields}


def store_of(world: World) -> Store:
    assert world.bot.store is not None
    return world.bot.store


async def admin_actions(world: World) -> list[tuple[int, str, str]]:
    """(member, action, detail) of this server's admin actions, oldest first."""
    actions = await store_of(world).ledger.admin_actions(world.guild.id)
    return [(a.user_id, a.action, a.detail) for a in reversed(actions)]


# ------------------------------------------------------------------ access


async def test_admin_is_hidden_from_a_plain_member_by_default(world: World) -> None:
    general = world.channel("general")
    visible = world.member.available_commands(general)
    assert {"stats", "reset"} <= set(visible)
    assert not any(name.startswith("admin") for name in visible)
    with pytest.raises(SetupError, match="default-member-permissions"):
        await world.member.slash(general, "admin keys")


async def test_a_plain_member_is_refused_when_the_server_shows_admin_to_everyone(
    world: World,
) -> None:
    await show_admin_to(world, world.guild.roles["@everyone"])
    general = world.channel("general")
    result = await world.member.slash(general, "admin pause", pool="chat")
    assert private(result) == REFUSED
    assert not world.pools["chat"].paused
    korean = world.add_member("도윤", locale="ko")
    words = private(await korean.slash(general, "admin jobs"))
    assert words.startswith("🔒 `/관리` 명령은")
    # The refusals are the check's (discord.py reports them as CheckFailure).
    assert [type(e) for e in world.env.errors] == [app_commands.CheckFailure] * 2
    assert await admin_actions(world) == []


async def test_a_manage_server_member_sees_key_health_redacted(world: World) -> None:
    boss = manager(world)
    world.fake.inject("openai", "invalid_key")  # the chat pool's OpenAI key is refused
    assert answered(await world.member.slash(world.channel("채팅방-1"), "chat", prompt="hi"))
    embed = private_embed(await boss.slash(world.channel("general"), "admin keys"))
    keys = fields(embed)
    assert embed.title == "Keys by pool and provider"
    assert list(keys)[:2] == ["chat · openai", "chat · minimax"]
    assert keys["chat · openai"].startswith("`sk-...0001` disabled · calls 1 ")
    assert keys["chat · minimax"] == "`mm-...0001` ready · calls 1 · 429s 0 · failures 0"
    assert keys["video · minimax"].count("`mm-...") == 2
    shown = json.dumps(embed.to_dict())
    assert not any(secret in shown for secret in world.bot.settings.secrets())
    assert await admin_actions(world) == [(boss.id, "keys", "9 key rings")]


@pytest.mark.aibot_env(AIBOT_ADMIN_ROLE="Bot Admins")
async def test_the_admin_role_may_use_admin(world: World) -> None:
    role = world.guild.create_role("bot admins")  # no permissions at all
    helper = world.guild.add_member(world.env.create_user("helper"), roles=[role])
    await show_admin_to(world, role)
    embed = private_embed(await helper.slash(world.channel("general"), "admin quota"))
    assert embed.title == "Limits on this server"
    assert list(fields(embed)) == ["chat", "image", "video"]
    # A member without the role still does not see it.
    assert "admin quota" not in world.member.available_commands(world.channel("general"))


# --------------------------------------------------------- pause, resume


async def test_a_paused_pool_tells_members_until_it_is_resumed(world: World) -> None:
    boss = manager(world)
    general, chat = world.channel("general"), world.channel("채팅방-1")
    words = private(await boss.slash(general, "admin pause", pool="chat"))
    assert words.startswith("⏸️ The `chat` pool is paused")

    refused = await world.member.slash(chat, "chat", prompt="hello")
    assert private(refused) == "⏸️ `/chat` is paused by an admin. Try again later."
    korean = world.add_member("지아", locale="ko")
    words = private(await korean.slash(chat, "chat", prompt="안녕"))
    assert words == "⏸️ 관리자가 `/채팅` 명령을 잠시 멈췄어요. 나중에 다시 해 주세요."
    assert world.fake.counters.requests(endpoint="chat") == 0

    words = private(await boss.slash(general, "admin resume", pool="chat"))
    assert words == "▶️ The `chat` pool takes jobs again."
    assert answered(await world.member.slash(chat, "chat", prompt="hello again"))
    assert await admin_actions(world) == [
        (boss.id, "pause", "chat: running -> paused"),
        (boss.id, "resume", "chat: paused -> running"),
    ]


# ------------------------------------------------------------------ quota


async def test_an_admin_sets_and_resets_this_servers_quota(world: World) -> None:
    boss = manager(world)
    general, chat = world.channel("general"), world.channel("채팅방-1")
    words = private(await boss.slash(general, "admin quota", daily_quota=1))
    assert words == "Choose a `pool` to change its limits."

    result = await boss.slash(general, "admin quota", pool="chat", daily_quota=1, cooldown=5)
    assert result.response.content == "✅ Saved the new limits for `chat`."
    assert fields(private_embed(result)) == {
        "chat": "cooldown 5 s · per member 1 a day · whole server no limit a day"
    }
    assert answered(await world.member.slash(chat, "chat", prompt="one"))
    await world.env.advance_time(5)
    assert "allowance" in private(await world.member.slash(chat, "chat", prompt="two"))

    result = await boss.slash(general, "admin quota", pool="chat", reset=True)
    assert result.response.content == "↩️ `chat` follows the bot's settings again."
    assert fields(private_embed(result))["chat"].startswith("cooldown no limit · per member 2,500")
    assert answered(await world.member.slash(chat, "chat", prompt="three"))
    assert await admin_actions(world) == [
        (boss.id, "quota.set", "chat: cooldown=5, daily_quota=1"),
        (boss.id, "quota.reset", "chat"),
    ]


@pytest.mark.aibot_env(AIBOT_IMAGE_DAILY_BUDGET="3")
async def test_a_server_budget_above_the_bots_is_refused_and_the_bots_is_shown_as_such(
    world: World,
) -> None:
    """The bot's budget (every server's uses together) stays in force: a higher one
    for a server would be saved, shown, and never reached."""
    boss = manager(world)
    general = world.channel("general")
    shown = fields(private_embed(await boss.slash(general, "admin quota", pool="image")))
    assert shown["image"].endswith("whole server 3 (the bot's, every server together) a day")

    result = await boss.slash(general, "admin quota", pool="image", daily_budget=50)
    assert result.response.content == (
        "⚠️ Not saved: a server's `image` budget can be at most the bot's, 3 a day for "
        "every server together."
    )
    assert fields(private_embed(result)) == shown
    result = await boss.slash(general, "admin quota", pool="image", daily_budget=2)
    assert result.response.content == "✅ Saved the new limits for `image`."
    assert fields(private_embed(result))["image"].endswith("whole server 2 a day")
    assert await admin_actions(world) == [
        (boss.id, "quota.show", "image"),
        (boss.id, "quota.set", "image: daily_budget=50: above the bot's"),
        (boss.id, "quota.set", "image: daily_budget=2"),
    ]


# ------------------------------------------------------------------- jobs


async def test_an_admin_lists_and_cancels_only_this_servers_jobs(world: World) -> None:
    boss = manager(world)
    general, videos = world.channel("general"), world.channel("비디오생성-1")
    world.pools["video"].workers = 1
    first = await world.member.slash(videos, "video", prompt="one")
    other = world.add_member("dahyun")
    second = await other.slash(videos, "video", prompt="two")
    elsewhere = world.env.create_guild("another server")
    stranger = elsewhere.add_member(world.env.create_user("stranger"))
    foreign = await stranger.slash(
        elsewhere.create_text_channel("비디오생성-1"), "video", prompt="3"
    )
    ids = {job.user_id: job.id for job, _ in world.pools["video"].jobs()}

    listing = fields(private_embed(await boss.slash(general, "admin jobs")))
    assert listing == {
        "video": (
            f"`{ids[world.member.id]}` · running · /video · <@{world.member.id}>\n"
            f"`{ids[other.id]}` · queued · /video · <@{other.id}>"
        )
    }
    korean = manager(world, "운영자")
    world.clients.set(korean, locale="ko")
    listed = fields(private_embed(await korean.slash(general, "admin jobs")))["video"]
    assert f"`{ids[other.id]}` · 대기 중 · /비디오 ·" in listed  # as its cancel reply says
    words = private(await boss.slash(general, "admin jobs", cancel=ids[stranger.id]))
    assert words == f"No queued or running job `{ids[stranger.id]}` on this server."

    words = private(await boss.slash(general, "admin jobs", cancel=ids[other.id]))
    assert words == f"✖️ Cancelled job `{ids[other.id]}` (`/video` of <@{other.id}>); they are told."
    assert second.response.content == "✖️ An admin cancelled this request."
    private(await boss.slash(general, "admin jobs", pool="video", cancel=ids[world.member.id]))
    assert first.response.content == "✖️ An admin cancelled this request."
    assert [job.id for job, _ in world.pools["video"].jobs()] == [ids[stranger.id]]
    assert foreign.response.content.startswith("🎬 Your video is number")  # still waiting
    words = private_embed(await boss.slash(general, "admin jobs")).description
    assert words == "No queued or running jobs on this server."
    for _ in range(6):  # the other server's video goes on to the end
        await world.env.advance_time(10)
    assert foreign.response.attachments and foreign.followups == []
    assert [action for _, action, _ in await admin_actions(world)] == [
        "jobs",
        "jobs",
        "cancel",
        "cancel",
        "cancel",
        "jobs",
    ]


async def test_a_video_cancelled_once_its_task_exists_still_counts_its_clip(
    world: World,
) -> None:
    boss = manager(world)
    general, videos = world.channel("general"), world.channel("비디오생성-1")
    world.pools["video"].workers = 1
    await world.member.slash(videos, "video", prompt="one")
    await world.add_member("dahyun").slash(videos, "video", prompt="two")
    await world.env.advance_time(15)  # the first one's task exists
    running, queued = (job.id for job, _state in world.pools["video"].jobs())
    for job_id in (queued, running):  # the queued one first, so that it never starts
        private(await boss.slash(general, "admin jobs", cancel=job_id))

    rows = {row.provider: row for row in await store_of(world).ledger.stats(world.guild.id)}
    # The provider makes the first clip all the same, and bills it; the second never
    # had a task.
    made, never = rows["minimax"], rows["-"]
    assert (made.jobs, made.failed, made.video_seconds) == (1, 1, 6) and made.cost > 0
    assert (never.jobs, never.video_seconds, never.cost) == (1, 0, 0)


async def test_a_job_being_answered_is_too_late_to_cancel(world: World) -> None:
    boss = manager(world)
    # Discord fails the answer's first try: the reply waits 20-40 s to try again.
    world.bot.replies.policy = RetryPolicy(first_wait=40, longest_wait=40, total=120)
    world.env.inject_error("PATCH", "/webhooks/*", status=503)
    result = await world.member.slash(world.channel("채팅방-1"), "chat", prompt="hello")
    [(job, state)] = world.pools["chat"].jobs()
    assert state == "running"
    words = private(await boss.slash(world.channel("general"), "admin jobs", cancel=job.id))
    assert words == (
        f"Job `{job.id}` (`/chat` of <@{world.member.id}>) is being answered already: "
        "too late to cancel."
    )
    await world.env.advance_time(60)
    assert result.response.content.startswith("You said: hello")  # answered as it would be
    assert world.pools["chat"].snapshot().done == 1
    [(_, action, detail)] = await admin_actions(world)
    assert action == "cancel" and detail.endswith(": too late")


# ------------------------------------------------------------------ stats


async def test_stats_shows_todays_and_the_weeks_figures(world: World) -> None:
    chat = world.channel("채팅방-1")
    other = world.add_member("dahyun")
    for member, prompt in ((world.member, "one"), (world.member, "two"), (other, "three")):
        assert answered(await member.slash(chat, "chat", prompt=prompt))
    world.fake.inject("openai", "reject")
    public(await world.member.slash(chat, "chat", prompt="something rude"))

    embed = private_embed(await world.member.slash(chat, "stats"))
    figures = fields(embed)
    today = f"Today ({world.env.now().date().isoformat()})"
    assert list(figures) == [today, "Last 7 days"]  # no top members for a member
    assert figures[today] == figures["Last 7 days"]
    [line] = figures[today].split("\n")
    # The refusal counts against the provider that refused it, and costs nothing.
    assert line.startswith("**chat** · openai: jobs 4 · failed 1 · ")
    assert "$" in line and not line.endswith("$0")  # tokens cost something

    boss = manager(world)
    figures = fields(private_embed(await boss.slash(world.channel("general"), "stats")))
    top = figures["Top members (7 days)"].split("\n")
    assert len(top) == 2
    assert top[0].startswith(f"1. <@{world.member.id}> · jobs 3 · ")
    assert top[1].startswith(f"2. <@{other.id}> · jobs 1 · ")

    await world.env.advance_time(24 * 3600)  # tomorrow: today is empty, the week is not
    figures = fields(private_embed(await world.member.slash(chat, "stats")))
    [today] = [name for name in figures if name.startswith("Today")]
    assert figures[today] == "No jobs yet."
    assert "openai: jobs 4 · failed 1" in figures["Last 7 days"]


# ------------------------------------------------------------------ reset


async def test_reset_forgets_the_conversation_in_this_channel_only(world: World) -> None:
    chat, general = world.channel("채팅방-1"), world.channel("general")
    assert answered(await world.member.slash(chat, "chat", prompt="remember 42"))
    assert answered(await world.member.slash(general, "chat", prompt="remember 7"))

    words = private(await world.member.slash(chat, "reset"))
    assert words == "🧹 I forgot our conversation in this channel. Your next `/chat` starts fresh."
    assert answered(await world.member.slash(chat, "chat", prompt="what number?"))
    sent = world.fake.counters.bodies(endpoint="chat")[-1].body["messages"]
    assert [m["role"] for m in sent] == ["system", "user"]
    assert answered(await world.member.slash(general, "chat", prompt="and here?"))
    sent = world.fake.counters.bodies(endpoint="chat")[-1].body["messages"]
    assert sent[1]["content"] == "remember 7"  # the other channel remembers

    korean = world.add_member("하준", locale="ko")
    words = private(await korean.slash(chat, "reset"))
    assert words == "이 채널에서 잊을 대화가 없어요."


# ------------------------------------------------------------------- sync


async def test_the_commands_carry_korean_names_and_manage_server_by_default(
    world: World,
) -> None:
    await world.bot.tree.sync()
    [put] = [e for e in world.env.http_requests if e.method == "PUT" and "/commands" in e.path][-1:]
    body = json.loads(put.json) if isinstance(put.json, str) else put.json
    synced = {command["name"]: command for command in body}
    admin = synced["admin"]
    assert admin["name_localizations"]["ko"] == "관리"
    assert int(admin["default_member_permissions"]) == discord.Permissions(manage_guild=True).value
    assert admin["dm_permission"] is False  # servers only
    subcommands = {o["name"]: o["name_localizations"]["ko"] for o in admin["options"]}
    assert subcommands == {
        "keys": "키",
        "quota": "한도",
        "pause": "일시정지",
        "resume": "재개",
        "jobs": "작업",
        "backup": "백업",
    }
    assert synced["stats"]["name_localizations"]["ko"] == "통계"
    assert synced["reset"]["name_localizations"]["ko"] == "초기화"
    assert synced["stats"]["default_member_permissions"] is None


def test_key_health_fits_one_message_and_puts_trouble_first() -> None:
    secret = "sk-admin-openai-000000000000000000000000004"
    ready = KeySnapshot("sk-...1234", "ready", 0, 5, 0, 0)
    bad = KeySnapshot("sk-...0004", "disabled", 0, 1, 0, 1, reason=f"401 for {secret}")
    keys = (*[ready] * 29, bad)
    providers = ("openai", "minimax", "stability")
    idle = dict(state="running", workers_busy=0, workers_total=1, queued=0, queue_size=1)
    idle |= dict(done=0, failed=0, p50_ms=0, p95_ms=0, p99_ms=0)
    snapshots = [
        PoolSnapshot(pool, **idle, rings=tuple(KeyRingSnapshot(pool, p, keys) for p in providers))
        for pool in ("chat", "image", "video", "admin")
    ]
    embed = keys_embed(snapshots, "en", secrets=[secret])
    assert len(embed) <= 6000
    first = embed.fields[0].value.split("\n")
    assert first[0] == "`sk-...0004` disabled · calls 1 · 429s 0 · failures 1 · 401 for sk-...0004"
    assert first[-1] == "… and 20 more"
    assert embed.footer.text == f"… and {12 - len(embed.fields)} more"
    assert secret not in json.dumps(embed.to_dict())
