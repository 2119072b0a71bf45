"""The fault suite: a hostile world, row by row, through the real bot in SimCord and
the fake providers over loopback.

Each row is one thing going wrong (a provider answering 429s, 5xx, a cut stream,
a broken event, a body that is no image, a refusal, a failed video task; the bot
killed at some step of a job) and says what the member must see at the end,
what the provider must have seen, and what the ledger and the member's quota
say. Whatever the row, the member gets exactly one answer, never "thinking..."
at the end, never a traceback.

Crashes are SimCord's `restart_bot` (tasks cancelled, no `close()`, like
`kill -9` at an await point) with a new bot on the same data folder. A job is
caught at a step by what it waits for on SimCord's virtual clock: a key whose
pace leaves no room yet (before the provider call), a video task being polled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from simcord.results import InteractionResult

from aibot import create_bot
from aibot.discord.bot import AibotBot
from tests.fixtures.discord import World

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CHANNEL = {"chat": "채팅방-1", "image": "이미지생성-1", "video": "비디오생성-1"}


def the_one_answer(result: InteractionResult) -> str:
    """The deferred message, answered (not "thinking..."), no followup, no trace."""
    assert result.acknowledged and not result.deferred, "left thinking..."
    assert result.response is not None and not result.response.ephemeral
    assert result.followups == []
    words = result.response.content or ""
    assert "Traceback" not in words and "our side" not in words
    return words


async def until_answered(world: World, result: InteractionResult, seconds: int = 120) -> None:
    """Move the virtual clock on (video polls, retry waits) until the job answered."""
    for _ in range(seconds // 10):
        if not result.deferred and _is_final(result):
            return
        await world.env.advance_time(10)


def _is_final(result: InteractionResult) -> bool:
    content = result.response.content if result.response else ""
    return not (content or "").startswith(("🎬 Starting", "🎬 Making", "🎬 Your video is number"))


async def ledger(world: World, bot: AibotBot | None = None) -> dict[tuple[str, str], tuple]:
    """Today's ledger: (pool, provider) -> (jobs, failed)."""
    store = (bot or world.bot).store
    rows = await store.ledger.stats(world.guild.id, days=1)
    return {(r.pool, r.provider): (r.jobs, r.failed) for r in rows}


def used(world: World, pool: str, bot: AibotBot | None = None) -> int:
    return (bot or world.bot).store.gate.usage(world.guild.id, world.member.id, pool)[0]


async def restart(world: World, env: dict[str, str]) -> AibotBot:
    """A crash: the bot's tasks cancelled where they wait, then a new bot on the
    same data folder."""
    old, new = world.bot, create_bot(env)
    await world.env.restart_bot(new)
    world.bot = new
    await old.release()
    return new


# ------------------------------------------------------------ provider faults


@dataclass(frozen=True)
class Row:
    """One provider fault: the command, the faults injected, the words the member
    must read, and what counts: (provider, endpoint) -> requests the fake saw, the
    member's uses of the pool after it, the ledger's (pool, provider) -> (jobs, failed)."""

    command: str
    faults: tuple[tuple[str, str, int], ...]
    words: str
    calls: dict[tuple[str, str], int | range]
    used: int
    ledger: dict[tuple[str, str], tuple[int, int]]
    options: dict[str, Any] = field(default_factory=dict)
    video_tasks: int = 0


ROWS = {
    "chat-429-storm": Row(
        "chat",
        (("openai", "rate_limit", 20),),
        "You said: hi",
        # The 429s cool the key; the job gives way to the next provider.
        {("openai", "chat"): range(1, 20), ("minimax", "chat"): 1},
        used=1,
        ledger={("chat", "minimax"): (1, 0)},
    ),
    "chat-5xx": Row(
        "chat",
        (("openai", "500", 20),),
        "You said: hi",
        {("openai", "chat"): 3, ("minimax", "chat"): 1},
        used=1,
        ledger={("chat", "minimax"): (1, 0)},
    ),
    "chat-cut-stream": Row(
        "chat",
        (("openai", "cut_stream", 1),),
        "The answer was cut off",
        {("openai", "chat"): 1, ("minimax", "chat"): 0},
        used=0,
        ledger={("chat", "openai"): (1, 1)},
    ),
    "chat-bad-json": Row(
        "chat",
        (("openai", "bad_event", 1),),
        "sent back a broken answer",
        {("openai", "chat"): 1, ("minimax", "chat"): 0},
        used=0,
        ledger={("chat", "openai"): (1, 1)},
    ),
    "image-wrong-content-type": Row(
        "image",
        (("stability", "image_html", 20),),
        "sent back a broken answer",
        {("stability", "image"): 3},
        used=0,
        ledger={("image", "stability"): (1, 1)},
        options={"provider": "stability"},
    ),
    "image-safety-refusal": Row(
        "image",
        (("minimax", "reject", 1),),
        "safety system refused",
        {("minimax", "image"): 1},
        used=1,
        ledger={("image", "minimax"): (1, 1)},
    ),
    "video-task-fails": Row(
        "video",
        (("minimax", "video_fail", 1),),
        "provider is down",
        {("minimax", "video"): 1},
        used=0,
        ledger={("video", "minimax"): (1, 1)},
        video_tasks=1,
    ),
}


# SimCord's default settle deadline (5 s): it waits for every real-time timer due
# before the deadline, and aiohttp arms one 15 s ahead for an idle keep-alive
# connection (the MiniMax and Stability clients'): with a 20 s deadline, each row
# calling them waited 15 s for that timer.
@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
async def test_a_provider_fault_gets_one_clear_answer(world: World, row: Row) -> None:
    world.fake.chat_reply = "You said: hi"
    for provider, fault, times in row.faults:
        world.fake.inject(provider, fault, times=times)
    channel = world.channel(CHANNEL[row.command])
    result = await world.member.slash(channel, row.command, prompt="hi", **row.options)
    await until_answered(world, result)

    assert row.words in the_one_answer(result)
    for (provider, endpoint), count in row.calls.items():
        seen = world.fake.counters.requests(provider, endpoint)
        assert seen in count if isinstance(count, range) else seen == count, (provider, endpoint)
    assert world.fake.counters.video_tasks == row.video_tasks
    assert used(world, row.command) == row.used
    assert await ledger(world) == row.ledger
    assert await world.bot.store.journal.unfinished() == []


# ---------------------------------------------------------------- crashes


@pytest.mark.aibot_env(AIBOT_CHAT_PROVIDERS="openai", AIBOT_CHAT_RPM_OPENAI="1")
async def test_a_chat_caught_before_its_provider_call_runs_again_after_a_crash(
    world: World, aibot_env: dict[str, str]
) -> None:
    channel = world.channel("채팅방-1")
    first = await world.member.slash(channel, "chat", prompt="one")
    assert "You said: one" in the_one_answer(first)
    # The only key's pace leaves no room for a minute: the second job waits for it.
    second = await world.member.slash(channel, "chat", prompt="two")
    assert second.deferred
    assert world.fake.counters.requests("openai", "chat") == 1

    bot = await restart(world, aibot_env)
    await until_answered(world, second)
    assert "You said: two" in the_one_answer(second)
    assert world.fake.counters.requests("openai", "chat") == 2  # once each
    assert sorted(m.id for m in channel.history()) == [first.response.id, second.response.id]
    assert used(world, "chat", bot) == 2
    assert await bot.store.journal.unfinished() == []


@pytest.mark.aibot_env(AIBOT_CHAT_PROVIDERS="openai", AIBOT_CHAT_RPM_OPENAI="1")
async def test_a_chat_whose_token_expired_during_a_crash_is_asked_again(
    world: World, aibot_env: dict[str, str]
) -> None:
    channel = world.channel("채팅방-1")
    await world.member.slash(channel, "chat", prompt="one")
    second = await world.member.slash(channel, "chat", prompt="two")
    assert second.deferred
    # The bot stays down for 14 minutes (a bot without the chat pool stands in),
    # so the token has too little life left to answer a job that runs again.
    await restart(world, {**aibot_env, "AIBOT_POOLS": "admin"})
    await world.env.advance_time(14 * 60)
    assert second.deferred
    bot = await restart(world, aibot_env)

    words = the_one_answer(second)
    assert words == "🔄 The bot restarted while it was working on this. Please ask again."
    assert world.fake.counters.requests("openai", "chat") == 1  # never asked for it
    await world.env.advance_time(120)
    assert world.fake.counters.requests("openai", "chat") == 1
    assert await ledger(world, bot) == {("chat", "openai"): (1, 0), ("chat", "-"): (1, 1)}
    assert await bot.store.journal.unfinished() == []
    # Asked to ask again, the member has that use back: only the first one counts.
    assert bot.store.gate.usage(world.guild.id, world.member.id, "chat")[0] == 1


# Two messages' worth of words: a long answer, the deferred message and a followup.
LONG = " ".join(f"word{i}" for i in range(500))


@pytest.mark.parametrize("again", ["short", "long"])
@pytest.mark.aibot_env(AIBOT_CHAT_PROVIDERS="openai", AIBOT_CHAT_RPM_OPENAI="1")
async def test_a_long_answer_cut_by_a_crash_is_written_over_when_it_runs_again(
    world: World, aibot_env: dict[str, str], again: str
) -> None:
    """The first run had posted a followup ending in "▌" when the bot died: the run
    after the restart writes over it, or deletes it when its answer is shorter."""
    channel = world.channel("채팅방-1")
    first = await world.member.slash(channel, "chat", prompt="one")
    second = await world.member.slash(channel, "chat", prompt="two")
    assert second.deferred  # its job waits for the key's pace
    # What the job's first run had written when the bot died (SimCord's clock stands
    # still while a fake provider streams: the stream is its reply's, written here).
    [(job, _, _)] = await world.bot.store.journal.unfinished()
    world.tick_reply_clock()
    cut_short = world.bot.replies.make(job)
    for end in range(1, len(LONG), 200):
        await cut_short.stream(LONG[:end])
    [half_written] = [
        m for m in channel.history() if m.id not in (first.response.id, second.response.id)
    ]
    assert half_written.content.endswith("▌")

    world.fake.chat_reply = LONG if again == "long" else "a short answer"
    bot = await restart(world, aibot_env)
    await until_answered(world, second)
    shown = {m.id: m.content for m in channel.history()}
    assert not [words for words in shown.values() if "▌" in words]
    if again == "long":  # the followup is written over, no other posted
        assert list(shown) == [first.response.id, second.response.id, half_written.id]
        assert (shown[second.response.id] + " " + shown[half_written.id]).split() == LONG.split()
    else:  # the followup is deleted
        assert shown == {
            first.response.id: shown[first.response.id],
            second.response.id: "a short answer",
        }
    assert await bot.store.journal.unfinished() == []


@pytest.mark.aibot_env(AIBOT_IMAGE_PROVIDERS="minimax", AIBOT_IMAGE_RPM_MINIMAX="1")
async def test_an_image_caught_before_its_provider_call_runs_again_after_a_crash(
    world: World, aibot_env: dict[str, str]
) -> None:
    channel = world.channel("이미지생성-1")
    first = await world.member.slash(channel, "image", prompt="a fox")
    assert first.response.attachments
    second = await world.member.slash(channel, "image", prompt="a cat")
    assert second.deferred

    bot = await restart(world, aibot_env)
    await until_answered(world, second)
    the_one_answer(second)
    assert second.response.attachments and second.response.embeds
    assert world.fake.counters.requests("minimax", "image") == 2
    assert used(world, "image", bot) == 2
    assert await bot.store.journal.unfinished() == []


@pytest.mark.aibot_env(AIBOT_VIDEO_WORKERS="1", AIBOT_OVERFLOW="false")
async def test_a_video_caught_before_its_task_is_made_makes_one_after_a_crash(
    world: World, aibot_env: dict[str, str]
) -> None:
    world.fake.video_polls = 1
    channel = world.channel("비디오생성-1")
    first = await world.member.slash(channel, "video", prompt="one")
    second = await world.add_member("b").slash(channel, "video", prompt="two")
    assert world.fake.counters.video_tasks == 1  # the second waits in line

    bot = await restart(world, aibot_env)
    await until_answered(world, first, 300)
    await until_answered(world, second, 300)
    for result in (first, second):
        the_one_answer(result)
        assert [a.filename for a in result.response.attachments] == ["video.mp4"]
    assert world.fake.counters.video_tasks == 2  # one each, none twice
    assert await bot.store.journal.unfinished() == []


async def test_a_video_caught_while_polling_is_not_made_twice(
    world: World, aibot_env: dict[str, str]
) -> None:
    world.fake.video_polls = 3
    channel = world.channel("비디오생성-1")
    result = await world.member.slash(channel, "video", prompt="waves")
    await world.env.advance_time(10)  # one poll done: the task is processing
    bot = await restart(world, aibot_env)
    await until_answered(world, result, 120)
    the_one_answer(result)
    assert [a.filename for a in result.response.attachments] == ["video.mp4"]
    assert world.fake.counters.video_tasks == 1
    assert await ledger(world, bot) == {("video", "minimax"): (1, 0)}


async def test_a_chat_answered_before_a_crash_is_not_answered_again(
    world: World, aibot_env: dict[str, str]
) -> None:
    channel = world.channel("채팅방-1")
    result = await world.member.slash(channel, "chat", prompt="hello")
    words = the_one_answer(result)
    bot = await restart(world, aibot_env)
    await world.env.advance_time(60)
    assert the_one_answer(result) == words
    assert world.fake.counters.requests(endpoint="chat") == 1
    assert await bot.store.journal.unfinished() == []


# ------------------------------------------------- overflow and blank prompts


@pytest.mark.aibot_env(
    OPENAI_API_KEY_1="bad-openai-key-000000000000001",
    MINIMAX_API_KEY_1="bad-minimax-key-00000000000001",
)
async def test_the_job_that_finds_every_key_dead_is_answered_by_the_admin_pool(
    world: World,
) -> None:
    result = await world.member.slash(world.channel("채팅방-1"), "chat", prompt="hi")
    assert "You said: hi" in the_one_answer(result)
    assert world.pools["chat"].snapshot().keys_healthy == 0
    assert await ledger(world) == {("admin", "openai"): (1, 0)}
    assert used(world, "chat") == 1


@pytest.mark.parametrize(
    "prompt",
    ["\u200b\u200b", "   ", "\u3164", "\u2060\ufeff"],
    ids=["zero-width", "spaces", "hangul-filler", "joiners"],
)
@pytest.mark.parametrize("command", ["chat", "image", "video"])
async def test_a_prompt_with_nothing_to_see_is_refused_privately_at_once(
    world: World, command: str, prompt: str
) -> None:
    result = await world.member.slash(world.channel(CHANNEL[command]), command, prompt=prompt)
    assert result.response is not None and result.response.ephemeral
    assert result.followups == []
    assert "prompt is empty" in result.response.content
    assert world.fake.counters.requests() == 0
    assert used(world, command) == 0
