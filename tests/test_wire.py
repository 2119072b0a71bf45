"""The real bot over a real socket, against the fake Discord.

What SimCord cannot show: the REST base and gateway overrides, shard discovery
through `GET /gateway/bot`, HELLO / IDENTIFY / READY on each shard, an
INTERACTION_CREATE over the websocket, the deferred callback, a multipart
upload, and a streamed answer on real time. The bot is aibot's own (`create_bot`)
talking to the fake providers; one small bot checks the plain followup path the
fake offers as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator, Callable

import discord
import pytest
from discord import app_commands
from discord.ext import commands

from aibot import create_bot
from aibot.discord.bot import AibotBot
from aibot.http import health
from aibot.logs import setup_logging
from aibot.sandbox import FakeProviders
from aibot.sandbox.fake_discord import FakeDiscord, FakeDiscordProcess, Record, pointed_at
from aibot.settings import Settings

# Every wait is bounded: a broken bot fails the test instead of hanging it.
WAIT = 15.0


async def _no_identify_wait(shard_id: int | None, *, initial: bool = False) -> None:
    # Real Discord spaces IDENTIFYs 5 s apart; the fake has no such limit.
    return None


@pytest.fixture
def wire_env(aibot_env: dict[str, str]) -> dict[str, str]:
    """aibot's test settings, with the shard count left for Discord to say."""
    return {k: v for k, v in aibot_env.items() if k != "AIBOT_SHARD_COUNT"}


@pytest.fixture
async def fake_discord(wire_env: dict[str, str]) -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord(shard_count=2, guilds=4, token=wire_env["DISCORD_TOKEN"])
    async with fake.running():
        with pointed_at(fake):
            yield fake


@contextlib.asynccontextmanager
async def connected(bot: commands.AutoShardedBot, fake: FakeDiscord) -> AsyncIterator[None]:
    """`bot` logged in and identified on every shard; closed afterwards."""
    bot.before_identify_hook = _no_identify_wait  # type: ignore[method-assign]
    run = asyncio.create_task(bot.start(fake.token))
    try:
        await fake.wait_ready(timeout=WAIT)
        yield
    finally:
        await asyncio.wait_for(bot.close(), WAIT)
        await asyncio.wait_for(run, WAIT)


@pytest.fixture
async def aibot(
    wire_env: dict[str, str], fake_discord: FakeDiscord
) -> AsyncIterator[commands.AutoShardedBot]:
    bot = create_bot(wire_env)
    async with connected(bot, fake_discord):
        yield bot


def _uploads(interaction_id: int) -> Callable[[Record], bool]:
    """A followup or an edit of this interaction that uploads files."""

    def wanted(record: Record) -> bool:
        return (
            record.kind in ("followup", "edit")
            and record.interaction_id == interaction_id
            and bool(record.files)
        )

    return wanted


async def test_the_bot_learns_its_two_shards_from_discord_and_identifies_each(
    fake_discord: FakeDiscord, aibot: commands.AutoShardedBot
) -> None:
    assert fake_discord.records_of("gateway_bot"), "the shard count came from GET /gateway/bot"
    assert sorted(fake_discord.identified) == [(0, 2), (1, 2)]
    assert aibot.shard_count == 2
    await asyncio.wait_for(aibot.wait_until_ready(), WAIT)
    assert {g.id for g in aibot.guilds} == {g.id for g in fake_discord.guilds}
    assert {g.shard_id for g in aibot.guilds} == {0, 1}


async def test_an_image_is_deferred_then_uploaded_as_multipart_over_the_socket(
    fake_discord: FakeDiscord, aibot: commands.AutoShardedBot
) -> None:
    guild = next(g for g in fake_discord.guilds if g.shard_id == 1)

    sent = await fake_discord.send_interaction(
        "image", {"prompt": "a lighthouse at dawn"}, guild=guild, channel="이미지생성-1"
    )

    [callback] = await fake_discord.wait_for("callback", interaction_id=sent.id, timeout=WAIT)
    assert callback.status == 200
    assert callback.callback_type == 5  # deferred: "thinking..."
    [upload] = await fake_discord.wait_until(_uploads(sent.id), timeout=WAIT)
    assert upload.status == 200
    [(name, size)] = upload.files
    assert name.endswith((".png", ".jpg", ".jpeg", ".webp")) and size > 0
    assert upload.message_id == callback.message_id, "the image fills the deferred message"
    assert len(fake_discord.records_of("callback", sent.id)) == 1, "answered exactly once"


async def test_a_chat_streams_into_the_deferred_message(
    wire_env: dict[str, str], fake_discord: FakeDiscord, fake_providers: FakeProviders
) -> None:
    fake_providers.chat_reply = " ".join(f"word{i}" for i in range(60))
    fake_providers.chunk_delay = 0.04  # about two seconds of streaming
    bot = create_bot(wire_env)
    assert isinstance(bot, AibotBot)
    async with connected(bot, fake_discord):
        sent = await fake_discord.send_interaction("chat", {"prompt": "count"}, channel="채팅방-1")

        [callback] = await fake_discord.wait_for("callback", interaction_id=sent.id, timeout=WAIT)
        answer = fake_providers.chat_reply

        def final(record: Record) -> bool:
            content = record.body.get("content")
            return record.kind == "edit" and record.interaction_id == sent.id and content == answer

        await fake_discord.wait_until(final, timeout=WAIT)
        await asyncio.wait_for(
            _until(lambda: bot.queue.worker.pools["chat"].snapshot().done == 1), WAIT
        )
    assert callback.status == 200 and callback.callback_type == 5
    edits = fake_discord.records_of("edit", sent.id)
    assert any(e.body["content"].endswith("▌") for e in edits), "the answer streamed"
    assert all(e.message_id == callback.message_id for e in edits), "into the deferred message"
    assert all(e.body["allowed_mentions"] == {"parse": []} for e in edits)
    assert len(fake_discord.records_of("callback", sent.id)) == 1, "answered exactly once"


async def test_a_job_deferred_just_before_shutdown_still_gets_its_answer(
    wire_env: dict[str, str], fake_discord: FakeDiscord
) -> None:
    bot = create_bot(wire_env)
    assert isinstance(bot, AibotBot)
    answered = asyncio.Event()

    async def another_command() -> None:
        # Another member's command still being answered: the deferred job waits
        # for its turn to be queued when the bot is told to stop.
        bot.foreground.serving()
        await answered.wait()

    async with connected(bot, fake_discord):
        other = asyncio.create_task(another_command())
        try:
            sent = await fake_discord.send_interaction("chat", {"prompt": "hi"}, channel="채팅방-1")
            [callback] = await fake_discord.wait_for(
                "callback", interaction_id=sent.id, timeout=WAIT
            )
            assert bot.intake is not None
            await asyncio.wait_for(_until(lambda: bot.intake.taking == 1), WAIT)
            closing = asyncio.create_task(bot.close())
            await asyncio.sleep(0.05)
            assert not closing.done(), "the drain waits for the job on its way to a pool"
        finally:
            answered.set()
        await asyncio.wait_for(asyncio.gather(other, closing), WAIT)
    assert callback.callback_type == 5 and bot.intake.taking == 0
    [answer] = fake_discord.records_of("edit", sent.id)[-1:]
    assert answer.body["content"] and not answer.body["content"].endswith("▌")
    assert len(fake_discord.records_of("callback", sent.id)) == 1, "answered exactly once"


async def test_a_defer_cut_off_on_its_way_runs_nothing_and_gives_the_use_back(
    fake_discord: FakeDiscord, aibot: commands.AutoShardedBot
) -> None:
    assert isinstance(aibot, AibotBot)
    fake_discord.cut_callbacks = 1  # the connection drops before Discord answers

    sent = await fake_discord.send_interaction("chat", {"prompt": "hi"}, channel="채팅방-1")

    [told] = await fake_discord.wait_for("callback", interaction_id=sent.id, timeout=WAIT)
    assert fake_discord.records_of("callback_cut", sent.id), "the defer was cut off"
    assert told.callback_type == 4, "the member is told in one sentence instead"
    assert aibot.store.gate.usage(sent.guild_id, sent.user_id, "chat") == (0, 2500)
    assert aibot.intake is not None and aibot.intake.taking == 0
    assert aibot.queue.worker.pools["chat"].snapshot().done == 0, "no job ran"


async def test_at_debug_no_interaction_token_reaches_the_logs(
    wire_env: dict[str, str], fake_discord: FakeDiscord
) -> None:
    # discord.py logs each request's URL at DEBUG, and an interaction's callback and
    # webhook URLs hold its token (15 minutes of posting as the bot).
    stream = io.StringIO()
    setup = setup_logging(Settings.from_env({**wire_env, "LOG_LEVEL": "DEBUG"}), stream=stream)
    try:
        bot = create_bot(wire_env)
        async with connected(bot, fake_discord):
            sent = await fake_discord.send_interaction("chat", {"prompt": "hi"}, channel="채팅방-1")
            await fake_discord.wait_until(
                lambda record: record.kind == "edit" and record.interaction_id == sent.id,
                timeout=WAIT,
            )
    finally:
        setup.close()
    written = stream.getvalue()
    assert f"/interactions/{sent.id}/[token]/callback" in written  # the URLs were logged
    assert "/webhooks/" in written
    assert sent.token not in written


async def test_a_video_task_made_as_the_bot_stops_is_paid_for_once(
    wire_env: dict[str, str], fake_discord: FakeDiscord, fake_providers: FakeProviders
) -> None:
    # The provider has made the task, its answer is on the way, and the drain's
    # deadline cuts the job short: the task's id is journaled all the same, and the
    # next start polls that task instead of paying for another.
    env = {
        **wire_env,
        "AIBOT_DRAIN_SECONDS": "0",
        "AIBOT_VIDEO_POLL_SECONDS": "0.05",
        "AIBOT_VIDEO_RPM_MINIMAX": "6000",  # polls not paced a minute apart
    }
    fake_providers.timeout_delay = 0.5
    fake_providers.inject("minimax", "slow_answer", endpoint="video")
    bot = create_bot(env)
    async with connected(bot, fake_discord):
        sent = await fake_discord.send_interaction(
            "video", {"prompt": "waves"}, channel="비디오생성-1"
        )
        await asyncio.wait_for(_until(lambda: fake_providers.counters.video_tasks == 1), WAIT)
    again = create_bot(env)
    async with connected(again, fake_discord):
        await fake_discord.wait_until(_uploads(sent.id), timeout=WAIT)
    assert fake_providers.counters.video_tasks == 1


async def test_a_video_task_whose_answer_was_lost_is_not_asked_for_again(
    wire_env: dict[str, str], fake_discord: FakeDiscord, fake_providers: FakeProviders
) -> None:
    # The provider makes the task (and bills it), and its answer is lost on the way
    # (a 5xx from a proxy in front of it). Asking again would pay for a second clip.
    fake_providers.inject("minimax", "lost_answer", endpoint="video")
    bot = create_bot(wire_env)
    async with connected(bot, fake_discord):
        sent = await fake_discord.send_interaction(
            "video", {"prompt": "waves"}, channel="비디오생성-1"
        )

        def told(record: Record) -> bool:
            content = str(record.body.get("content"))
            return record.interaction_id == sent.id and "provider is down" in content

        await fake_discord.wait_until(told, timeout=WAIT)
    assert fake_providers.counters.video_tasks == 1


async def test_health_says_the_gateway_is_down_once_discord_cannot_be_reached(
    wire_env: dict[str, str], fake_discord: FakeDiscord
) -> None:
    bot = create_bot(wire_env)
    assert isinstance(bot, AibotBot)
    async with connected(bot, fake_discord):
        await asyncio.wait_for(_until(lambda: health(bot.status_source())[0] == 200), WAIT)
        await fake_discord.stop()  # every shard's connection cut, none made again

        def down() -> bool:
            status, body = health(bot.status_source())
            return status == 503 and body["problems"] == ["gateway down"]

        await asyncio.wait_for(_until(down), WAIT)


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.01)


async def test_a_wrong_token_is_refused_at_login(
    wire_env: dict[str, str], fake_discord: FakeDiscord
) -> None:
    bot = create_bot({**wire_env, "DISCORD_TOKEN": "not-the-token"})
    with pytest.raises(discord.LoginFailure):
        await asyncio.wait_for(bot.start("not-the-token"), WAIT)
    await asyncio.wait_for(bot.close(), WAIT)
    assert [r.status for r in fake_discord.records_of("login")] == [401]
    assert not fake_discord.identified


class FollowupBot(commands.AutoShardedBot):
    """A bot that defers `/chat` and answers with a followup carrying a file."""

    def __init__(self) -> None:
        super().__init__(command_prefix=commands.when_mentioned, intents=discord.Intents.default())

        @app_commands.command(name="chat", description="answer with a file")
        async def chat(interaction: discord.Interaction, prompt: str) -> None:
            await interaction.response.defer(thinking=True)
            answer = discord.File(io.BytesIO(f"you said: {prompt}".encode()), "answer.txt")
            await interaction.followup.send("here it is", file=answer)

        self.tree.add_command(chat)


async def test_a_followup_with_a_file_arrives_as_multipart(fake_discord: FakeDiscord) -> None:
    bot = FollowupBot()
    async with connected(bot, fake_discord):
        sent = await fake_discord.send_interaction("chat", {"prompt": "hello"}, channel="채팅방-1")

        [callback] = await fake_discord.wait_for("callback", interaction_id=sent.id, timeout=WAIT)
        [followup] = await fake_discord.wait_for("followup", interaction_id=sent.id, timeout=WAIT)

    assert callback.callback_type == 5
    assert followup.status == 200
    assert followup.body["content"] == "here it is"
    assert followup.files == (("answer.txt", len(b"you said: hello")),)
    assert followup.message_id == callback.message_id, "after a defer, a followup edits it"


async def test_in_its_own_process_the_fake_times_a_burst_of_interactions() -> None:
    bot = FollowupBot()
    chat = {"name": "chat", "options": {"prompt": "hi"}, "channel": "채팅방-1"}
    async with FakeDiscordProcess.spawn(shard_count=2, guilds=4) as fake:
        with pointed_at(fake):
            bot.before_identify_hook = _no_identify_wait  # type: ignore[method-assign]
            run = asyncio.create_task(bot.start(fake.token))
            try:
                assert await asyncio.wait_for(fake.wait_ready(timeout=WAIT), WAIT) == [0, 1]
                await asyncio.wait_for(fake.burst([chat], count=20, duration=0.1), WAIT)
                results = await fake.results()
                async with asyncio.timeout(WAIT):
                    while results["answered"] < 20:
                        await asyncio.sleep(0.05)
                        results = await fake.results()
            finally:
                await asyncio.wait_for(bot.close(), WAIT)
                await asyncio.wait_for(run, WAIT)

    assert results["sent"] == 20
    assert results["callback_types"] == {"5": 20}
    assert len(results["latencies_ms"]) == 20
    # The slowest ten, slowest first: which command, when in the burst, how late.
    slowest = results["slowest"]
    assert len(slowest) == 10
    assert [ms for *_, ms in slowest] == [round(ms, 2) for ms in results["latencies_ms"][:-11:-1]]
    assert all(command == "chat" and 0.0 <= at <= 1000.0 for command, at, _ in slowest)
