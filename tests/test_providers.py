"""Provider clients and the one retry policy, over loopback against the fakes:
the real openai SDK and aiohttp speak each API's wire format, every provider
failure becomes its typed error, and keys move work around without a failure
reaching the member. Real time, small waits (the fakes run in their own thread).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from aibot.jobs import (
    AibotError,
    BadKey,
    BadRequest,
    Incomplete,
    Misconfigured,
    NoKeyAvailable,
    RateLimited,
    Rejected,
    Unavailable,
)
from aibot.keys import KeyRing
from aibot.leases import Lease
from aibot.providers.base import ImageRequest, error_for_status, nearest_ratio
from aibot.providers.minimax import MiniMaxImages, MiniMaxVideo, base_resp_error
from aibot.providers.openai_chat import OpenAIChat, ThinkFilter
from aibot.providers.openai_images import OpenAIImages
from aibot.providers.retry import ATTEMPTS, stream_with_keys, with_keys
from aibot.providers.stability import StabilityImages
from aibot.rate_headers import retry_after
from aibot.sandbox import FakeProviders

KEYS = {
    "openai": ("sk-proj-test-openai-aaaaaaaaaaaaaaaaaaaa0001", "sk-proj-test-openai-bbbbbbbb0002"),
    "minimax": ("mm-test-minimax-aaaaaaaaaaaaaaaaaaaaaaa0003", "mm-test-minimax-bbbbbbbbbb0004"),
    "stability": ("sk-stab-test-aaaaaaaaaaaaaaaaaaaaaaaaaa0005", "sk-stab-test-bbbbbbbbbbb0006"),
}
ALL_KEYS = [key for keys in KEYS.values() for key in keys]
MESSAGES = [{"role": "user", "content": "hello there"}]
PICTURE = ImageRequest("a red fox in the snow", aspect_ratio="16:9")
Call = Callable[[Lease], Awaitable[object]]


def ring(provider: str, *keys: str, rpm: float = 60_000) -> KeyRing:
    return KeyRing("test", provider, keys or KEYS[provider], rpm=rpm, concurrency=8)


async def lease_for(provider: str, key: str | None = None) -> Lease:
    keys = (key,) if key else KEYS[provider][:1]
    return await ring(provider, *keys).acquire(timeout=1)


@pytest.fixture
async def clients(fake_providers: FakeProviders) -> AsyncIterator[dict[str, object]]:
    """One client of each kind, pointed at the fakes."""
    fake = fake_providers
    made: dict[str, object] = {
        "openai_chat": OpenAIChat(fake.url("openai"), "gpt-test", timeout=5),
        "minimax_chat": OpenAIChat.minimax(fake.url("minimax"), "MiniMax-M2.5", timeout=5),
        "openai_image": OpenAIImages(fake.url("openai"), "gpt-image-1-mini", timeout=5),
        "minimax_image": MiniMaxImages(fake.url("minimax"), "image-01", timeout=5),
        "stability_image": StabilityImages(fake.url("stability"), "core", timeout=5),
        "minimax_video": MiniMaxVideo(fake.url("minimax"), "MiniMax-Hailuo-2.3", timeout=5),
    }
    yield made
    for client in made.values():
        await client.aclose()  # type: ignore[attr-defined]


def call_of(clients: dict[str, object], name: str) -> Call:
    """One request of the named client, made with a lease."""

    async def chat(lease: Lease) -> object:
        stream = clients[name].stream(lease, MESSAGES, max_tokens=64)  # type: ignore[attr-defined]
        return "".join([delta async for delta in stream])

    async def image(lease: Lease) -> object:
        return await clients[name].generate(lease, PICTURE)  # type: ignore[attr-defined]

    async def video(lease: Lease) -> object:
        return await clients[name].create(lease, "a cat surfing")  # type: ignore[attr-defined]

    return {"chat": chat, "image": image, "video": video}[name.split("_")[1]]


PROVIDER_OF = {
    "openai_chat": "openai",
    "minimax_chat": "minimax",
    "openai_image": "openai",
    "minimax_image": "minimax",
    "stability_image": "stability",
    "minimax_video": "minimax",
}


@pytest.mark.parametrize("name", list(PROVIDER_OF))
@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("500", Unavailable),
        ("invalid_key", BadKey),
        ("reject", Rejected),
        ("rate_limit", RateLimited),
    ],
)
async def test_every_provider_failure_becomes_its_typed_error(
    fake_providers: FakeProviders,
    clients: dict[str, object],
    name: str,
    fault: str,
    error: type[AibotError],
) -> None:
    provider = PROVIDER_OF[name]
    fake_providers.inject(provider, fault)
    with pytest.raises(error) as raised:
        await call_of(clients, name)(await lease_for(provider))
    assert not any(key in str(raised.value) for key in ALL_KEYS)
    if error is RateLimited and provider != "minimax":
        assert raised.value.retry_after is not None  # from retry-after(-ms)


@pytest.mark.parametrize("name", [n for n in PROVIDER_OF if n != "minimax_video"])
async def test_a_filtered_output_is_rejected(
    fake_providers: FakeProviders, clients: dict[str, object], name: str
) -> None:
    fake_providers.inject(PROVIDER_OF[name], "filtered")
    with pytest.raises(Rejected):
        await call_of(clients, name)(await lease_for(PROVIDER_OF[name]))


@pytest.mark.parametrize("name", list(PROVIDER_OF))
async def test_a_key_out_of_quota_is_a_bad_key(
    fake_providers: FakeProviders, clients: dict[str, object], name: str
) -> None:
    provider = PROVIDER_OF[name]
    fake_providers.exhausted_keys.add(KEYS[provider][0])
    with pytest.raises(BadKey):
        await call_of(clients, name)(await lease_for(provider))


async def test_a_hung_request_is_unavailable(fake_providers: FakeProviders) -> None:
    fake_providers.timeout_delay = 2.0
    chat = OpenAIChat(fake_providers.url("openai"), "gpt-test", timeout=0.2)
    images = StabilityImages(fake_providers.url("stability"), timeout=0.2)
    fake_providers.inject("openai", "timeout")
    fake_providers.inject("stability", "timeout")
    with pytest.raises(Unavailable):
        await call_of({"openai_chat": chat}, "openai_chat")(await lease_for("openai"))
    with pytest.raises(Unavailable):
        await images.generate(await lease_for("stability"), PICTURE)
    await chat.aclose()
    await images.aclose()


async def test_a_server_that_is_down_is_unavailable() -> None:
    chat = OpenAIChat("http://127.0.0.1:9/v1", "gpt-test", timeout=1)
    images = MiniMaxImages("http://127.0.0.1:9", timeout=1)
    with pytest.raises(Unavailable):
        await call_of({"openai_chat": chat}, "openai_chat")(await lease_for("openai"))
    with pytest.raises(Unavailable):
        await images.generate(await lease_for("minimax"), PICTURE)
    await chat.aclose()
    await images.aclose()


async def test_images_come_back_as_png_bytes(
    fake_providers: FakeProviders, clients: dict[str, object]
) -> None:
    for name in ("openai_image", "minimax_image", "stability_image"):
        image = await call_of(clients, name)(await lease_for(PROVIDER_OF[name]))
        assert image.data.startswith(b"\x89PNG"), name  # type: ignore[attr-defined]
        assert image.provider == PROVIDER_OF[name]  # type: ignore[attr-defined]
    form = fake_providers.counters.bodies("stability", "image")[-1].body
    assert form["aspect_ratio"] == "16:9" and form["output_format"] == "png"
    assert fake_providers.counters.bodies("openai", "image")[-1].body["size"] == "1536x1024"


async def test_openai_chat_streams_and_counts_tokens(
    fake_providers: FakeProviders, clients: dict[str, object]
) -> None:
    fake_providers.chat_reply = "The quick brown fox jumps over the lazy dog."
    chat = clients["openai_chat"]
    stream = chat.stream(await lease_for("openai"), MESSAGES, max_tokens=64)  # type: ignore[attr-defined]
    deltas = [delta async for delta in stream]
    assert len(deltas) > 1 and "".join(deltas) == fake_providers.chat_reply
    assert stream.tokens_out == len(deltas) and stream.tokens_in > 0
    assert stream.headers["x-ratelimit-limit-requests"]
    body = fake_providers.counters.bodies("openai", "chat")[-1].body
    assert body["stream_options"] == {"include_usage": True}
    assert body["max_completion_tokens"] == 64


async def test_minimax_chat_hides_its_thinking_even_split_across_chunks(
    fake_providers: FakeProviders, clients: dict[str, object]
) -> None:
    fake_providers.think = "the member wants a greeting; be brief"
    fake_providers.chat_reply = "Hello! How can I help?"
    fake_providers.chunk_chars = 3  # the tags arrive in pieces
    chat = clients["minimax_chat"]
    stream = chat.stream(  # type: ignore[attr-defined]
        await lease_for("minimax"), MESSAGES, max_tokens=200, temperature=0
    )
    text = "".join([delta async for delta in stream])
    assert text == "Hello! How can I help?"
    body = fake_providers.counters.bodies("minimax", "chat")[-1].body
    assert 0 < body["temperature"] <= 1 and body["max_tokens"] == 200


async def test_an_answer_cut_at_its_token_limit_says_so(
    fake_providers: FakeProviders, clients: dict[str, object]
) -> None:
    fake_providers.chat_reply = "one two three four five six seven eight nine ten"
    chat = clients["openai_chat"]
    stream = chat.stream(await lease_for("openai"), MESSAGES, max_tokens=2)  # type: ignore[attr-defined]
    text = "".join([delta async for delta in stream])
    assert text == fake_providers.chat_reply[:16] and stream.cut_short


async def test_a_token_limit_spent_on_thinking_is_an_incomplete_answer_not_an_empty_one(
    fake_providers: FakeProviders, clients: dict[str, object]
) -> None:
    # A reasoning model can spend all of its tokens before the first visible word.
    fake_providers.think = "the member wants a greeting; let me think about it at length"
    fake_providers.chat_reply = "Hello!"
    chat = clients["minimax_chat"]
    stream = chat.stream(await lease_for("minimax"), MESSAGES, max_tokens=3)  # type: ignore[attr-defined]
    with pytest.raises(Incomplete, match="token limit"):
        _ = [delta async for delta in stream]


async def test_a_minimax_error_answered_as_plain_json_is_typed() -> None:
    """MiniMax can answer a chat error as HTTP 200 JSON with base_resp, not a stream."""

    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"base_resp": {"status_code": 1004, "status_msg": "login fail"}})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    chat = OpenAIChat.minimax(f"http://127.0.0.1:{port}", "MiniMax-M2.5", timeout=5)
    try:
        with pytest.raises(BadKey):
            await call_of({"minimax_chat": chat}, "minimax_chat")(await lease_for("minimax"))
    finally:
        await chat.aclose()
        await runner.cleanup()


@pytest.mark.parametrize("size", [1, 2, 5, 7, 100])
def test_think_filter_removes_the_leading_blocks_whatever_the_chunking(size: int) -> None:
    raw = "\n<think>plan <b> carefully</think>\n<think>again</think>\n\nAnswer with < and <th"
    think = ThinkFilter()
    shown = "".join(think.feed(raw[i : i + size]) for i in range(0, len(raw), size))
    assert shown + think.flush() == "Answer with < and <th"


@pytest.mark.parametrize("size", [1, 3, 100])
def test_a_think_tag_inside_the_answer_is_text(size: int) -> None:
    # An answer about reasoning models quotes the tag: everything after it was lost.
    raw = "<think>the member asks about tags</think>Models wrap it in `<think>`; 끝."
    think = ThinkFilter()
    shown = "".join(think.feed(raw[i : i + size]) for i in range(0, len(raw), size))
    assert shown + think.flush() == "Models wrap it in `<think>`; 끝."


def test_an_unclosed_think_block_shows_nothing() -> None:
    think = ThinkFilter()
    assert think.feed("<think>still thinking") + think.flush() == ""


async def test_a_429_moves_the_call_to_another_key(
    fake_providers: FakeProviders, clients: dict[str, object]
) -> None:
    keys = ring("openai")
    fake_providers.inject("openai", "rate_limit")  # whichever key goes first
    text = await with_keys(keys, call_of(clients, "openai_chat"), timeout=30)
    assert text
    assert fake_providers.counters.rate_limited("openai") == 1
    assert [fake_providers.counters.for_key(key) for key in KEYS["openai"]] == [1, 1]
    snapshot = keys.snapshot().keys
    assert sorted(key.rate_limited for key in snapshot) == [0, 1]
    assert all(key.state != "disabled" for key in snapshot)


async def test_when_every_key_is_cooling_the_call_waits_for_one(
    fake_providers: FakeProviders, clients: dict[str, object]
) -> None:
    fake_providers.inject("openai", "rate_limit", times=2)
    text = await with_keys(ring("openai"), call_of(clients, "openai_chat"), timeout=30)
    assert text and fake_providers.counters.rate_limited("openai") == 2


async def test_a_dead_key_is_disabled_after_one_call(
    fake_providers: FakeProviders, clients: dict[str, object]
) -> None:
    dead, alive = "bad-minimax-key-cccccccccccccccc0007", KEYS["minimax"][0]
    keys = ring("minimax", dead, alive)
    for _ in range(4):
        await with_keys(keys, call_of(clients, "minimax_image"), timeout=30)
    assert fake_providers.counters.for_key(dead) == 1
    states = {key.key_id: (key.state, key.reason) for key in keys.snapshot().keys}
    assert states["bad...0007"][0] == "disabled" and "invalid" in states["bad...0007"][1]
    assert keys.load() == (1, 2)


async def test_when_every_key_is_dead_no_key_is_available(
    fake_providers: FakeProviders, clients: dict[str, object]
) -> None:
    keys = ring("stability", "bad-stability-aaaaaaaaaaaaaaa01", "bad-stability-bbbbbbbbbbbbbbb02")
    with pytest.raises(NoKeyAvailable):
        await with_keys(keys, call_of(clients, "stability_image"), timeout=30)
    assert keys.all_down
    assert fake_providers.counters.requests("stability") == 2


async def test_a_transient_failure_is_retried(
    fake_providers: FakeProviders, clients: dict[str, object]
) -> None:
    fake_providers.inject("minimax", "500", times=ATTEMPTS - 1)
    image = await with_keys(ring("minimax"), call_of(clients, "minimax_image"), timeout=30)
    assert image.data  # type: ignore[attr-defined]
    assert fake_providers.counters.requests("minimax", "image") == ATTEMPTS


async def test_a_lasting_outage_gives_up_after_a_few_attempts(
    fake_providers: FakeProviders, clients: dict[str, object]
) -> None:
    fake_providers.inject("stability", "500", times=10)
    with pytest.raises(Unavailable):
        await with_keys(ring("stability"), call_of(clients, "stability_image"), timeout=30)
    assert fake_providers.counters.requests("stability") == ATTEMPTS


async def test_the_deadline_bounds_the_retries(
    fake_providers: FakeProviders, clients: dict[str, object]
) -> None:
    fake_providers.timeout_delay = 5.0
    fake_providers.inject("openai", "timeout", times=10)
    with pytest.raises(Unavailable):
        await with_keys(ring("openai"), call_of(clients, "openai_image"), timeout=0.3)
    assert fake_providers.counters.requests("openai") == 1


@pytest.mark.parametrize("fault", ["reject", "filtered"])
async def test_a_refusal_is_not_retried(
    fake_providers: FakeProviders, clients: dict[str, object], fault: str
) -> None:
    fake_providers.inject("openai", fault)
    with pytest.raises(Rejected):
        await with_keys(ring("openai"), call_of(clients, "openai_image"), timeout=30)
    assert fake_providers.counters.requests("openai") == 1


async def test_a_bad_request_is_not_retried(clients: dict[str, object]) -> None:
    video = clients["minimax_video"]

    async def too_long(lease: Lease) -> object:
        return await video.create(lease, "a cat surfing", duration=7)  # type: ignore[attr-defined]

    with pytest.raises(BadRequest):
        await with_keys(ring("minimax"), too_long, timeout=30)


def chat_stream(clients: dict[str, object]) -> Callable[[Lease], object]:
    """What `stream_with_keys` opens for a chat answer on each key it tries."""
    chat = clients["openai_chat"]

    def open_stream(lease: Lease) -> object:
        return chat.stream(lease, MESSAGES, max_tokens=64)  # type: ignore[attr-defined]

    return open_stream


async def test_a_stream_is_retried_only_before_its_first_words(
    fake_providers: FakeProviders, clients: dict[str, object]
) -> None:
    open_stream = chat_stream(clients)
    shown: list[str] = []

    async def show(delta: str) -> None:
        shown.append(delta)

    fake_providers.inject("openai", "500")
    fake_providers.inject("openai", "rate_limit")
    stream = await stream_with_keys(ring("openai"), open_stream, show, timeout=30)
    assert "".join(shown).startswith("You said: hello there")
    assert stream.tokens_out == len(shown)  # type: ignore[attr-defined]
    assert fake_providers.counters.requests("openai", "chat") == 3

    shown.clear()
    fake_providers.inject("openai", "filtered")  # half an answer, then content_filter
    with pytest.raises(Rejected):
        await stream_with_keys(ring("openai"), open_stream, show, timeout=30)
    assert shown and fake_providers.counters.requests("openai", "chat") == 4


async def test_a_timeout_after_the_first_words_ends_the_stream_without_a_retry(
    fake_providers: FakeProviders, clients: dict[str, object]
) -> None:
    shown: list[str] = []

    async def show(delta: str) -> None:
        if shown:
            raise TimeoutError  # e.g. Discord's edit of the first words timed out
        shown.append(delta)

    with pytest.raises(Unavailable, match="timed out"):
        await stream_with_keys(ring("openai"), chat_stream(clients), show, timeout=30)
    assert len(shown) == 1, "not begun again on another key"
    assert fake_providers.counters.requests("openai", "chat") == 1


async def test_video_task_lifecycle_with_the_key_that_made_it(
    fake_providers: FakeProviders, clients: dict[str, object]
) -> None:
    video = clients["minimax_video"]
    lease = await lease_for("minimax")
    task = await video.create(lease, "a cat surfing", duration=6)  # type: ignore[attr-defined]
    assert task.key_fingerprint == lease.fingerprint and fake_providers.counters.video_tasks == 1
    states = [await video.query(lease, task.task_id) for _ in range(2)]  # type: ignore[attr-defined]
    assert not states[0].done and states[1].done and states[1].file_id
    file = await video.retrieve(lease, states[1].file_id)  # type: ignore[attr-defined]
    data = await video.download(file.download_url)  # type: ignore[attr-defined]
    assert data is not None and len(data) == file.size
    other = await lease_for("minimax", KEYS["minimax"][1])
    with pytest.raises(BadRequest):  # another account cannot see the task
        await video.query(other, task.task_id)  # type: ignore[attr-defined]


async def test_a_clip_too_large_to_upload_is_not_downloaded(
    fake_providers: FakeProviders,
) -> None:
    video = MiniMaxVideo(fake_providers.url("minimax"), "MiniMax-Hailuo-02", timeout=5)
    video.max_bytes = 1000
    lease = await lease_for("minimax")
    task = await video.create(lease, "a cat surfing")
    while not (status := await video.query(lease, task.task_id)).done:
        pass
    file = await video.retrieve(lease, status.file_id)
    assert await video.download(file.download_url) is None
    await video.aclose()


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (1000, Unavailable),
        (1001, Unavailable),
        (1002, RateLimited),
        (1004, BadKey),
        (1008, BadKey),
        (1026, Rejected),
        (1027, Rejected),
        (2013, BadRequest),
        (2049, BadKey),
    ],
)
def test_minimax_status_codes(code: int, error: type[AibotError]) -> None:
    found = base_resp_error({"base_resp": {"status_code": code, "status_msg": "x"}})
    assert type(found) is error
    assert base_resp_error({"base_resp": {"status_code": 0}}) is None


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (400, "content_policy_violation", Rejected),
        (400, "", BadRequest),
        (404, "model_not_found", Misconfigured),
        (422, "", BadRequest),
        (401, "invalid_api_key", BadKey),
        (403, "", BadKey),
        (403, "content_moderation", Rejected),
        (402, "payment_required", BadKey),
        (429, "insufficient_quota", BadKey),
        (429, "rate_limit_exceeded", RateLimited),
        (500, "", Unavailable),
        (503, "", Unavailable),
    ],
)
def test_http_statuses(status: int, code: str, error: type[AibotError]) -> None:
    assert type(error_for_status(status, provider="p", code=code)) is error


def test_error_text_never_carries_a_key() -> None:
    key, other = KEYS["minimax"][0], KEYS["openai"][1]
    message = f"bad key {key} here; also {other} and Bearer {key}"
    found = error_for_status(400, provider="minimax", message=message, key=key)
    assert key not in str(found) and other not in str(found)
    assert "mm-...0003" in str(found)


def test_retry_after_headers() -> None:
    assert retry_after({"retry-after-ms": "1500", "retry-after": "2"}) == 1.5
    assert retry_after({"Retry-After": "3"}) == 3.0
    assert retry_after({}) is None


def test_aspect_ratios_snap_to_what_a_provider_offers() -> None:
    assert nearest_ratio("4:3", ("1:1", "3:2", "2:3")) == "3:2"
    assert nearest_ratio("9:16", ("1:1", "3:2", "2:3")) == "2:3"
    assert nearest_ratio("junk", ("16:9", "1:1")) == "1:1"


async def test_no_key_reaches_a_log_line_or_an_error(
    fake_providers: FakeProviders,
    clients: dict[str, object],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []
    for name, provider in PROVIDER_OF.items():
        keys = ring(provider, f"bad-{KEYS[provider][0]}", *KEYS[provider])
        for fault in ("rate_limit", "500", "reject"):
            fake_providers.inject(provider, fault)
            try:
                await with_keys(keys, call_of(clients, name), timeout=30)
            except AibotError as err:
                errors.append(f"{err!r} {err} {err.detail}")
        errors.extend(repr(key) for key in keys.snapshot().keys)
    text = caplog.text + "\n".join(errors)
    assert "rate limited" in caplog.text and "disabled" in caplog.text
    leaked = [key for key in ALL_KEYS if key in text or key[8:] in text]
    assert leaked == []
