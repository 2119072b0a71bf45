"""Discord failing on the way back: a 429 or a 5xx on the defer, the final edit, a
followup or a file upload; an interaction token Discord no longer knows; Discord down
for every way at once. Each row checks what the member saw: one answer, no
"thinking…" left where Discord let the bot clear it, no traceback, no words of the
bot's own fault, nobody pinged but the member; and, when every way failed, one line
in the log and one more in `aibot_deliveries_failed_total`. Last, the bot's own fault
while it builds an answer: the member reads that it failed."""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import discord
import pytest
from simcord.results import InteractionResult

from aibot.discord.i18n import error_text
from aibot.discord.retries import RetryPolicy
from aibot.jobs import AibotError, Job, Result
from tests.fixtures.discord import World

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# Real asyncio sleeps: the same tries and deadline as in service, on a shorter scale.
QUICK = RetryPolicy(attempts=4, first_wait=0.01, longest_wait=0.04, total=5.0)

EDIT = ("PATCH", "/webhooks/*")  # the deferred message (and a file upload into it)
FOLLOWUP = ("POST", "/webhooks/*")  # the second message of a long answer
CHANNEL = ("POST", "/channels/*/messages")  # a bot message, with the bot token
DEFER = ("POST", "/interactions/*/callback")

# Discord's JSON error codes for a token it no longer knows.
GONE = [
    pytest.param(401, 50027, id="401-invalid-webhook-token"),
    pytest.param(404, 10015, id="404-unknown-webhook"),
    pytest.param(404, 10062, id="404-unknown-interaction"),
]
# A moment of trouble, and how many times in a row Discord answers it.
TROUBLE = [
    pytest.param(429, 1, id="429"),
    pytest.param(500, 1, id="500"),
    pytest.param(502, 1, id="502"),
    pytest.param(503, 2, id="503-twice"),
    pytest.param(504, 1, id="504"),
]
OUR_FAULT = ("Something went wrong", "Traceback", "HTTPException")


@dataclass(frozen=True)
class Fault:
    route: tuple[str, str]
    status: int
    code: int = 0
    times: int | None = 1

    def inject(self, world: World) -> None:
        method, path = self.route
        message = "You are being rate limited." if self.status == 429 else "injected"
        world.env.inject_error(
            method, path, status=self.status, code=self.code, message=message, times=self.times
        )


def bodies(world: World, method: str, marker: str = "") -> list[dict[str, Any]]:
    """The JSON bodies the bot sent with `method`, in order (those holding `marker`)."""
    out = []
    for entry in world.env.http_requests:
        body = json.loads(entry.json) if isinstance(entry.json, str) else entry.json
        if entry.method == method and isinstance(body, dict) and marker in json.dumps(body):
            out.append(body)
    return out


def words(*texts: str) -> list[str]:
    """The words of `texts` in order: an answer split into messages reads the same."""
    return [word for text in texts for word in text.split()]


def bot_messages(world: World, channel: str) -> list[discord.Message]:
    """Every message of the bot in `channel`, oldest first, the deferred one included."""
    return [m for m in world.channel(channel).history() if m.author.bot]


def assert_seen_cleanly(world: World, result: InteractionResult, channel: str) -> None:
    """No traceback or words of the bot's own fault anywhere; every message the bot
    wrote lets it ping nobody but the member."""
    for message in bot_messages(world, channel):
        assert not any(words in message.content for words in OUR_FAULT), message.content
    for method in ("POST", "PATCH"):
        for body in bodies(world, method):
            if "content" not in body and "embeds" not in body:
                continue
            allowed = body.get("allowed_mentions")
            assert allowed is not None, body  # without it, Discord parses every mention
            assert allowed.get("parse") == [] and not allowed.get("roles")
            assert set(allowed.get("users", [])) <= {world.member.id}


def lost_answers(world: World, pool: str) -> float:
    for line in world.bot.metrics.text().decode().splitlines():
        if line.startswith(f'aibot_deliveries_failed_total{{pool="{pool}"}}'):
            return float(line.split()[-1])
    raise AssertionError("no aibot_deliveries_failed_total series")


def late_answers(world: World, channel: str) -> list[discord.Message]:
    """The bot's messages in the channel that deliver an answer late, mentioning the member."""
    mention = f"<@{world.member.id}>"
    return [m for m in bot_messages(world, channel) if m.content.startswith(mention)]


@pytest.fixture
def quick(world: World) -> World:
    world.bot.replies.policy = QUICK
    return world


async def chat(world: World, prompt: str = "still here?") -> InteractionResult:
    return await world.member.slash(world.channel("채팅방-1"), "chat", prompt=prompt)


# ------------------------------------------------------------------ the defer


@pytest.mark.parametrize("status", [429, 500, 502, 503])
async def test_a_failed_defer_runs_nothing_and_keeps_the_quota(quick: World, status: int) -> None:
    Fault(DEFER, status).inject(quick)
    result = await chat(quick)
    assert not result.acknowledged  # Discord tells the member the bot did not respond
    assert quick.fake.counters.requests() == 0
    assert quick.bot.store.gate.usage(quick.guild.id, quick.member.id, "chat")[0] == 0
    assert bot_messages(quick, "채팅방-1") == []
    assert lost_answers(quick, "chat") == 0


@pytest.mark.aibot_env(AIBOT_CHAT_COOLDOWN="3600")
async def test_a_failed_defer_leaves_no_cooldown_either(quick: World) -> None:
    """The command never ran: under an hour's cooldown the member may ask again at
    once, and is answered."""
    Fault(DEFER, 503).inject(quick)
    assert not (await chat(quick)).acknowledged
    again = await chat(quick, "and now?")
    assert again.response is not None and "Slow down" not in (again.response.content or "")
    assert quick.fake.counters.requests() == 1
    assert quick.bot.store.gate.usage(quick.guild.id, quick.member.id, "chat")[0] == 1


async def test_a_defer_discord_took_though_its_answer_was_lost_goes_on_to_the_answer(
    quick: World,
) -> None:
    # A first try reached Discord, its 5xx answer made discord.py try again, and the
    # second try heard "already acknowledged": the member is waiting for an answer.
    Fault(DEFER, 400, code=40060).inject(quick)
    await chat(quick, "still there?")
    assert quick.fake.counters.requests("openai", "chat") == 1
    assert "You said: still there?" in bot_messages(quick, "채팅방-1")[-1].content
    assert quick.bot.store.gate.usage(quick.guild.id, quick.member.id, "chat")[0] == 1


# ------------------------------------------------- a moment of trouble: retried


@pytest.mark.parametrize(("status", "times"), TROUBLE)
async def test_the_final_chat_answer_outlasts_a_moment_of_trouble(
    quick: World, status: int, times: int
) -> None:
    Fault(EDIT, status, times=times).inject(quick)
    result = await chat(quick)
    assert not result.deferred  # no "thinking…" left
    assert result.response.content.startswith("You said: still here?")
    assert result.followups == [] and late_answers(quick, "채팅방-1") == []
    assert len(bodies(quick, "PATCH", "You said")) == times + 1
    assert_seen_cleanly(quick, result, "채팅방-1")
    assert lost_answers(quick, "chat") == 0


@pytest.mark.parametrize(("status", "times"), TROUBLE)
async def test_the_followup_of_a_long_answer_outlasts_a_moment_of_trouble(
    quick: World, status: int, times: int
) -> None:
    paragraphs = [f"Paragraph {i}: " + "lorem ipsum dolor " * 20 for i in range(8)]
    quick.fake.chat_reply = "\n\n".join(paragraphs)
    Fault(FOLLOWUP, status, times=times).inject(quick)
    result = await chat(quick, "tell me a lot")
    assert not result.deferred
    [followup] = result.followups
    assert words(result.response.content, followup.content) == words(quick.fake.chat_reply)
    assert len(bodies(quick, "POST", "Paragraph 7")) == times + 1
    assert late_answers(quick, "채팅방-1") == []
    assert_seen_cleanly(quick, result, "채팅방-1")


@pytest.mark.parametrize(("status", "times"), TROUBLE)
async def test_an_image_upload_outlasts_a_moment_of_trouble(
    quick: World, status: int, times: int
) -> None:
    Fault(EDIT, status, times=times).inject(quick)
    result = await quick.member.slash(quick.channel("이미지생성-1"), "image", prompt="a fox")
    assert not result.deferred
    [image] = result.response.attachments
    assert image.filename.endswith(".png") and len(result.response.embeds) == 1
    assert len(bodies(quick, "PATCH", image.filename)) == times + 1
    assert late_answers(quick, "이미지생성-1") == []
    assert_seen_cleanly(quick, result, "이미지생성-1")


@pytest.mark.parametrize(("status", "times"), TROUBLE)
async def test_a_video_upload_outlasts_a_moment_of_trouble(
    quick: World, status: int, times: int
) -> None:
    result = await quick.member.slash(quick.channel("비디오생성-1"), "video", prompt="a fox")
    for _ in range(6):
        if "downloading" in result.response.content:
            break
        await quick.env.advance_time(10)
    Fault(EDIT, status, times=times).inject(quick)  # the next write is the upload
    for _ in range(3):
        await quick.env.advance_time(10)
    assert not result.deferred
    [clip] = result.response.attachments
    assert clip.filename == "video.mp4"
    assert len(bodies(quick, "PATCH", "video.mp4")) == times + 1
    assert late_answers(quick, "비디오생성-1") == []
    assert_seen_cleanly(quick, result, "비디오생성-1")


async def test_a_video_no_way_would_upload_comes_as_its_link(quick: World) -> None:
    result = await quick.member.slash(quick.channel("비디오생성-1"), "video", prompt="a fox")
    for _ in range(6):
        if "downloading" in result.response.content:
            break
        await quick.env.advance_time(10)
    # The upload is refused by the webhook, then by the channel ("Missing Permissions"),
    # then in the member's direct messages: the link goes there.
    Fault(EDIT, 403, code=50013).inject(quick)
    Fault(CHANNEL, 403, code=50013, times=2).inject(quick)
    for _ in range(3):
        await quick.env.advance_time(10)
    assert late_answers(quick, "비디오생성-1") == []
    [late] = [m for m in quick.member.user.dm_channel.history() if m.author.bot]
    assert late.attachments == []
    assert "Your video is ready" in late.content
    assert "http://127.0.0.1" in late.content  # the provider's link
    assert lost_answers(quick, "video") == 0
    assert_seen_cleanly(quick, result, "비디오생성-1")


async def test_a_failure_notice_outlasts_two_503s_in_a_row(quick: World) -> None:
    quick.fake.inject("minimax", "reject")
    Fault(EDIT, 503, times=2).inject(quick)
    result = await quick.member.slash(quick.channel("이미지생성-1"), "image", prompt="bad")
    assert not result.deferred
    assert "safety system refused" in result.response.content
    assert late_answers(quick, "이미지생성-1") == []
    assert_seen_cleanly(quick, result, "이미지생성-1")


# ------------------------------------- the webhook gone: the channel, the member only


@pytest.mark.parametrize(("status", "code"), GONE)
async def test_a_token_discord_no_longer_knows_sends_the_answer_to_the_channel(
    quick: World, status: int, code: int
) -> None:
    Fault(EDIT, status, code=code, times=None).inject(quick)
    result = await chat(quick, "where?")
    [late] = late_answers(quick, "채팅방-1")
    head = f"<@{quick.member.id}>, here is your `/chat` answer:"
    assert late.content.startswith(f"{head}\nYou said: where?")
    assert len(bodies(quick, "PATCH", "You said")) == 1  # a dead token is not tried again
    # Only the interaction webhook could clear the deferred message; it says nothing wrong.
    assert result.response.content == ""
    assert_seen_cleanly(quick, result, "채팅방-1")
    assert lost_answers(quick, "chat") == 0


async def test_a_late_answer_the_channel_will_not_take_comes_as_a_direct_message(
    quick: World,
) -> None:
    Fault(EDIT, 404, code=10015, times=None).inject(quick)  # the token is gone
    # The bot may use slash commands there but not post: no Send Messages.
    channel = quick.channel("채팅방-1")
    quick.env.inject_error("POST", f"/channels/{channel.id}/messages", status=403, code=50013)
    await chat(quick, "where?")
    [direct] = [m for m in quick.member.user.dm_channel.history() if m.author.bot]
    head = f"<@{quick.member.id}>, here is your `/chat` answer:"
    assert direct.content.startswith(f"{head}\nYou said: where?")
    assert late_answers(quick, "채팅방-1") == []
    assert lost_answers(quick, "chat") == 0


@pytest.mark.parametrize(("status", "code"), GONE)
async def test_an_image_whose_token_died_arrives_in_the_channel_with_its_file(
    quick: World, status: int, code: int
) -> None:
    Fault(EDIT, status, code=code, times=None).inject(quick)
    Fault(CHANNEL, 503).inject(quick)  # and the channel stumbles once too
    result = await quick.member.slash(quick.channel("이미지생성-1"), "image", prompt="a fox")
    [late] = late_answers(quick, "이미지생성-1")
    assert late.content == f"<@{quick.member.id}>, here is your `/image` answer:"
    assert len(late.attachments) == 1 and len(late.embeds) == 1
    assert_seen_cleanly(quick, result, "이미지생성-1")


@pytest.mark.parametrize("status", [429, 500, 502, 503])
async def test_an_answer_the_webhook_never_takes_goes_to_the_channel_not_a_failure(
    quick: World, status: int
) -> None:
    Fault(EDIT, status, times=None).inject(quick)
    result = await chat(quick, "anyone?")
    [late] = late_answers(quick, "채팅방-1")
    assert "\nYou said: anyone?" in late.content
    assert len(bodies(quick, "PATCH", "You said")) == QUICK.attempts
    assert_seen_cleanly(quick, result, "채팅방-1")
    assert lost_answers(quick, "chat") == 0


async def test_only_the_rest_of_a_long_answer_goes_to_the_channel(quick: World) -> None:
    paragraphs = [f"Paragraph {i}: " + "lorem ipsum dolor " * 20 for i in range(8)]
    quick.fake.chat_reply = "\n\n".join(paragraphs)
    Fault(FOLLOWUP, 401, code=50027, times=None).inject(quick)
    result = await chat(quick, "tell me a lot")
    assert not result.deferred and result.followups == []
    [late] = late_answers(quick, "채팅방-1")
    assert result.response.content.startswith("Paragraph 0")
    rest = late.content.split("\n", 1)[1]
    assert words(result.response.content, rest) == words(quick.fake.chat_reply)
    assert_seen_cleanly(quick, result, "채팅방-1")


# ------------------------------------------------ every way down: logged, counted


async def test_an_answer_no_way_delivers_is_logged_once_and_counted(
    quick: World, caplog: pytest.LogCaptureFixture
) -> None:
    Fault(EDIT, 503, times=None).inject(quick)
    Fault(CHANNEL, 503, times=None).inject(quick)
    with caplog.at_level(logging.INFO, logger="aibot"):
        result = await chat(quick, "hello?")
    assert lost_answers(quick, "chat") == 1
    assert lost_answers(quick, "image") == 0
    [lost] = [r for r in caplog.records if "could not be delivered" in r.getMessage()]
    assert lost.levelno == logging.WARNING
    assert re.fullmatch(r"job \S+: its answer could not be delivered, .*", lost.getMessage())
    assert _token(quick) not in caplog.text
    assert bot_messages(quick, "채팅방-1")[0].content == ""  # nothing got through
    assert result.acknowledged


# ------------------------------------------- an answer the bot itself cannot build


async def test_an_answer_the_bot_cannot_build_is_told_as_a_failure(quick: World) -> None:
    await chat(quick, "hello?")
    channel = quick.channel("채팅방-1")
    job = Job(
        "chat",
        {"prompt": "hello?"},
        user_id=quick.member.id,
        channel_id=channel.id,
        guild_id=quick.guild.id,
        application_id=quick.bot.application_id or 0,
        token=_token(quick),
        token_expires_at=time.time() + 600,
    )
    # A fault of the bot's own while it builds the answer (no code writes this meta):
    # the member must not be left with the deferred "thinking…".
    with pytest.raises(ValueError):
        await quick.bot.replies.make(job).finish(Result("answer", meta={"forgotten": "some"}))
    told = bot_messages(quick, "채팅방-1")[-1]
    assert told.content == error_text(AibotError("internal"), "en", command="chat")


def _token(world: World) -> str:
    """The interaction token, from the webhook paths the bot called."""
    for entry in world.env.http_requests:
        if entry.path.startswith("/webhooks/"):
            return entry.path.split("/")[3]
    raise AssertionError("no webhook call")
