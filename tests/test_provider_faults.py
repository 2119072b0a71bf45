"""Provider answers that go wrong, through the real clients (the openai SDK, aiohttp)
over loopback against the fakes: streams framed as other OpenAI-compatible servers
frame them are read whole; a cut stream is an incomplete answer, a broken event or
a body that is not an image a fault of the provider (typed, retried where a retry
can help, never "our side"); and through the whole bot, a member whose answer was
cut off sees it marked so, and keeps the quota.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from aibot.discord.i18n import error_text
from aibot.jobs import AibotError, BadAnswer, Incomplete, Rejected, Unavailable
from aibot.providers.minimax import MiniMaxImages
from aibot.providers.openai_chat import OpenAIChat
from aibot.providers.openai_images import OpenAIImages
from aibot.providers.retry import stream_with_keys, with_keys
from aibot.providers.stability import StabilityImages
from aibot.sandbox import FakeProviders
from aibot.sandbox.chat import DIALECTS
from aibot.sandbox.faults import IMAGE_BODY_FAULTS
from tests.fixtures.discord import World
from tests.test_providers import KEYS, MESSAGES, PICTURE, lease_for, ring

REPLY = "Ünïcode answer, 안녕하세요 😀, in several pieces of eight characters."
Chats = dict[str, OpenAIChat]
Images = dict[str, OpenAIImages | MiniMaxImages | StabilityImages]


@pytest.fixture
async def chats(fake_providers: FakeProviders) -> AsyncIterator[Chats]:
    """A chat client for each provider that speaks OpenAI's chat, at the fakes."""
    fake_providers.chat_reply = REPLY
    made = {
        "openai": OpenAIChat(fake_providers.url("openai"), "gpt-test", timeout=5),
        "minimax": OpenAIChat.minimax(fake_providers.url("minimax"), "MiniMax-M2.5", timeout=5),
    }
    yield made
    for chat in made.values():
        await chat.aclose()


@pytest.fixture
async def images(fake_providers: FakeProviders) -> AsyncIterator[Images]:
    """An image client for each provider, at the fakes."""
    made: Images = {
        "openai": OpenAIImages(fake_providers.url("openai"), "gpt-image-1-mini", timeout=5),
        "minimax": MiniMaxImages(fake_providers.url("minimax"), "image-01", timeout=5),
        "stability": StabilityImages(fake_providers.url("stability"), "core", timeout=5),
    }
    yield made
    for client in made.values():
        await client.aclose()


async def read_stream(chats: Chats, provider: str) -> tuple[str, OpenAIChat, list[str]]:
    """Stream an answer to the end through `stream_with_keys`: (text, stream, deltas)."""
    shown: list[str] = []

    async def show(delta: str) -> None:
        shown.append(delta)

    chat = chats[provider]
    stream = await stream_with_keys(
        ring(provider),
        lambda lease: chat.stream(lease, MESSAGES, max_tokens=200),
        show,
        timeout=30,
    )
    return "".join(shown), stream, shown


# ------------------------------------------------- streams of other servers

ALL_DIALECTS = frozenset(DIALECTS) - {"crlf"}  # one line end at a time


@pytest.mark.parametrize("provider", ["openai", "minimax"])
@pytest.mark.parametrize(
    "dialect",
    [pytest.param({name}, id=name) for name in DIALECTS]
    + [pytest.param(set(ALL_DIALECTS), id="all-at-once")],
)
async def test_a_stream_framed_as_any_compatible_server_frames_it_is_read_whole(
    fake_providers: FakeProviders, chats: Chats, provider: str, dialect: set[str]
) -> None:
    fake_providers.stream_dialect = dialect
    text, stream, _ = await read_stream(chats, provider)
    assert text == REPLY
    assert stream.tokens_out > 0 and stream.tokens_in > 0  # the usage was read too


# --------------------------------------------------------- broken streams


@pytest.mark.parametrize("provider", ["openai", "minimax"])
@pytest.mark.parametrize("dialect", [set(), set(ALL_DIALECTS)], ids=["openai-framing", "others"])
@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("cut_stream", Incomplete),  # the body ends with no finish reason and no [DONE]
        ("drop_stream", Incomplete),  # the connection closes mid-body
        ("bad_event", BadAnswer),  # an event that is not JSON
    ],
)
async def test_a_stream_broken_after_its_first_words_is_a_provider_fault(
    fake_providers: FakeProviders,
    chats: Chats,
    provider: str,
    dialect: set[str],
    fault: str,
    error: type[AibotError],
) -> None:
    fake_providers.stream_dialect = dialect
    fake_providers.inject(provider, fault)
    shown: list[str] = []

    async def show(delta: str) -> None:
        shown.append(delta)

    chat = chats[provider]
    with pytest.raises(error) as raised:
        await stream_with_keys(
            ring(provider),
            lambda lease: chat.stream(lease, MESSAGES, max_tokens=200),
            show,
            timeout=30,
        )
    text = "".join(shown)
    assert text and REPLY.startswith(text) and text != REPLY  # half, and shown as it came
    assert isinstance(raised.value, Unavailable)  # its quota goes back
    assert raised.value.provider == provider and raised.value.key_id
    assert fake_providers.counters.requests(provider, "chat") == 1, "not begun again"


@pytest.mark.parametrize("fault", ["cut_stream", "drop_stream", "bad_event"])
async def test_a_stream_broken_before_any_words_is_asked_again(
    fake_providers: FakeProviders, chats: Chats, fault: str
) -> None:
    fake_providers.chat_reply = ""  # the fault strikes after the role, before any words
    fake_providers.inject("openai", fault)
    text, _, _ = await read_stream(chats, "openai")
    assert text == ""
    assert fake_providers.counters.requests("openai", "chat") == 2


def event(delta: dict[str, object] | None = None, finish: str | None = None) -> str:
    choice = {"index": 0, "delta": delta or {}, "finish_reason": finish}
    return "data: " + json.dumps({"object": "chat.completion.chunk", "choices": [choice]})


HELLO = event({"role": "assistant", "content": "Hello"})
ENDS = event(finish="stop")


@pytest.mark.parametrize(
    ("body", "content_type", "outcome"),
    [
        pytest.param(f"{HELLO}\n\n{ENDS}\n\n", "text/event-stream", "Hello", id="no-done"),
        pytest.param(f"{HELLO}\n\ndata: [DONE]\n\n", "text/event-stream", "Hello", id="no-finish"),
        pytest.param(f"{HELLO}\n\n{ENDS[:30]}", "text/event-stream", Incomplete, id="last-cut"),
        pytest.param(f"{HELLO}\n\n", "text/event-stream", Incomplete, id="no-end"),
        pytest.param("<html>502 Bad Gateway</html>", "text/html", BadAnswer, id="html"),
        pytest.param("", "text/event-stream", BadAnswer, id="empty-body"),
        pytest.param("data: 42\n\n", "text/event-stream", BadAnswer, id="not-an-object"),
        pytest.param(
            event({"content": 7}) + "\n\n", "text/event-stream", BadAnswer, id="bad-content"
        ),
        pytest.param('data: {"choices": {}}\n\n', "text/event-stream", BadAnswer, id="bad-choices"),
        pytest.param('{"choices": []}', "application/json", BadAnswer, id="json-not-a-stream"),
    ],
)
async def test_what_a_server_answers_is_read_or_typed(
    body: str, content_type: str, outcome: str | type[AibotError]
) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=body.encode(), content_type=content_type)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    chat = OpenAIChat(f"http://127.0.0.1:{runner.addresses[0][1]}/v1", "gpt-test", timeout=5)
    try:
        stream = chat.stream(await lease_for("openai"), MESSAGES, max_tokens=16)
        if isinstance(outcome, str):
            assert "".join([delta async for delta in stream]) == outcome
        else:
            with pytest.raises(outcome):
                _ = [delta async for delta in stream]
    finally:
        await chat.aclose()
        await runner.cleanup()


@pytest.mark.parametrize("body", ["", "<html>403 Forbidden</html>", '{"name": "forbidden"}'])
async def test_a_stability_403_refuses_the_prompt_and_keeps_the_key(body: str) -> None:
    async def moderated(request: web.Request) -> web.Response:
        return web.Response(status=403, body=body.encode())

    app = web.Application()
    app.router.add_post("/v2beta/stable-image/generate/core", moderated)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    images = StabilityImages(f"http://127.0.0.1:{runner.addresses[0][1]}", "core", timeout=5)
    keys = ring("stability", KEYS["stability"][0])  # one key: disabled, it would be all
    try:
        with pytest.raises(Rejected):
            await with_keys(keys, lambda lease: images.generate(lease, PICTURE), timeout=5)
        assert not keys.all_down
    finally:
        await images.aclose()
        await runner.cleanup()


# ------------------------------------------------------- images that are not


@pytest.mark.parametrize("provider", ["openai", "minimax", "stability"])
@pytest.mark.parametrize("fault", sorted(IMAGE_BODY_FAULTS))
async def test_a_200_whose_image_is_not_an_image_is_never_delivered(
    fake_providers: FakeProviders, images: Images, provider: str, fault: str
) -> None:
    fake_providers.inject(provider, fault)
    with pytest.raises(BadAnswer):
        await images[provider].generate(await lease_for(provider), PICTURE)


@pytest.mark.parametrize("provider", ["openai", "minimax", "stability"])
async def test_an_image_that_is_not_an_image_is_asked_again(
    fake_providers: FakeProviders, images: Images, provider: str
) -> None:
    fake_providers.inject(provider, "image_json")
    client = images[provider]
    image = await with_keys(
        ring(provider), lambda lease: client.generate(lease, PICTURE), timeout=30
    )
    assert image.data.startswith(b"\x89PNG") and image.content_type == "image/png"
    assert fake_providers.counters.requests(provider, "image") == 2


# ----------------------------------------------------------------- words


@pytest.mark.parametrize(
    ("error", "english", "korean"),
    [
        (Incomplete("openai: cut"), "cut off", "끊겼어요"),
        (BadAnswer("stability: json"), "broken answer", "잘못된 응답"),
    ],
)
def test_a_provider_fault_is_told_as_the_providers(
    error: AibotError, english: str, korean: str
) -> None:
    assert english in error_text(error, "en", command="chat")
    assert korean in error_text(error, "ko", command="chat")
    assert error_text(error, "en") != error_text(AibotError(), "en")  # never "our side"


# ------------------------------------------------------- through the bot


async def chat_cut_off(world: World, fault: str) -> tuple[str, int]:
    """A member's /chat whose stream breaks after its first words: (what the member
    sees at the end, their /chat uses today)."""
    world.tick_reply_clock()
    world.fake.chat_reply = " ".join(f"word{i}" for i in range(60))
    world.fake.inject("openai", fault)
    result = await world.member.slash(world.channel("채팅방-1"), "chat", prompt="tell me")
    assert result.acknowledged and not result.deferred and result.followups == []
    assert result.response is not None and not result.response.ephemeral
    used = world.bot.store.gate.usage(world.guild.id, world.member.id, "chat")[0]
    return result.response.content, used


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.aibot_env(AIBOT_CHAT_PROVIDERS="openai")
@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ("cut_stream", "The answer was cut off"),
        ("drop_stream", "The answer was cut off"),
        ("bad_event", "sent back a broken answer"),
    ],
)
async def test_a_member_sees_a_broken_answer_marked_as_the_providers_fault(
    world: World, fault: str, words: str
) -> None:
    seen, _ = await chat_cut_off(world, fault)
    shown, _, told = seen.partition("\n\n")
    assert shown.startswith("word0 word1") and shown in world.fake.chat_reply
    assert shown != world.fake.chat_reply and "▌" not in shown
    assert words in told and "our side" not in seen and "Traceback" not in seen


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.aibot_env(AIBOT_CHAT_PROVIDERS="openai")
@pytest.mark.parametrize("fault", ["cut_stream", "drop_stream", "bad_event"])
async def test_a_member_whose_answer_broke_keeps_the_quota(world: World, fault: str) -> None:
    _, used = await chat_cut_off(world, fault)
    assert used == 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.simcord(settle_timeout=10)
async def test_a_stability_answer_that_is_json_is_never_delivered_as_the_image(
    world: World,
) -> None:
    world.fake.inject("stability", "image_json", times=10)  # every try
    channel = world.channel("이미지생성-1")
    result = await world.member.slash(channel, "image", prompt="a fox", provider="stability")
    assert result.response is not None and result.followups == []
    assert result.response.attachments == [] and result.response.embeds == []
    assert "broken answer" in result.response.content
    assert world.fake.counters.requests("stability", "image") >= 2  # asked again first


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.simcord(settle_timeout=10)
async def test_a_member_whose_image_was_not_an_image_keeps_the_quota(world: World) -> None:
    world.fake.inject("stability", "image_json", times=10)
    channel = world.channel("이미지생성-1")
    await world.member.slash(channel, "image", prompt="a fox", provider="stability")
    assert world.bot.store.gate.usage(world.guild.id, world.member.id, "image")[0] == 0
