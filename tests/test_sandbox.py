"""The fake providers speak each API's wire format to the real clients.

The openai SDK and aiohttp talk HTTP over loopback to `FakeProviders`: chat
streams parse with the SDK, images decode as PNG, a video goes from task to
download, Stability takes multipart only, a spent key bucket answers 429 with
the rate-limit headers, and every injected fault shows as the real API shows it.
"""

from __future__ import annotations

import asyncio
import base64
import signal
import struct
import subprocess
import sys
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import openai
import pytest

from aibot.jobs import Progress, RateLimited, Result
from aibot.sandbox import FakeProviders, RecordingReply
from aibot.sandbox.limits import TokenBucket, format_duration

KEY = "sk-sandbox-test-0000000000000000000001"
OTHER_KEY = "sk-sandbox-test-0000000000000000000002"
PROMPT = "고양이 그림을 그려줘"


SDK = Callable[..., openai.AsyncOpenAI]


@pytest.fixture
async def sdk(fake_providers: FakeProviders) -> AsyncIterator[SDK]:
    """Makes openai SDK clients (no retries) for the OpenAI fake, or for MiniMax's
    compatible chat with `minimax=True`; closes them after the test."""
    made: list[openai.AsyncOpenAI] = []

    def make(key: str = KEY, *, minimax: bool = False, **options: Any) -> openai.AsyncOpenAI:
        env = fake_providers.env()
        base_url = env["MINIMAX_BASE_URL"] + "/v1" if minimax else env["OPENAI_BASE_URL"]
        made.append(openai.AsyncOpenAI(api_key=key, base_url=base_url, max_retries=0, **options))
        return made[-1]

    yield make
    for client in made:
        await client.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as session:
        yield session


def png_size(data: bytes) -> tuple[int, int]:
    """Check a PNG the long way (signature, chunk CRCs, pixel data) and give its size."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, chunks = 8, {}
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : position + 12 + length])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc
        chunks[kind] = body
        position += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (8, 2)
    assert len(zlib.decompress(chunks[b"IDAT"])) == height * (1 + 3 * width)
    assert b"IEND" in chunks
    return width, height


async def minimax_native(
    http: aiohttp.ClientSession, fake: FakeProviders, method: str, path: str, **kwargs: Any
) -> dict[str, Any]:
    url = fake.env()["MINIMAX_BASE_URL"] + path
    async with http.request(method, url, **kwargs) as response:
        assert response.status == 200
        return await response.json()


async def stability_post(
    http: aiohttp.ClientSession,
    fake: FakeProviders,
    fields: dict[str, str],
    *,
    mode: str = "core",
    accept: str = "image/*",
) -> aiohttp.ClientResponse:
    url = f"{fake.env()['STABILITY_BASE_URL']}/v2beta/stable-image/generate/{mode}"
    form = aiohttp.FormData(fields, default_to_multipart=True)
    response = await http.post(url, data=form, headers={"accept": accept})
    await response.read()
    return response


# Chat


async def test_a_streamed_chat_parses_with_the_sdk(fake_providers: FakeProviders, sdk: SDK) -> None:
    client = sdk()
    stream = await client.chat.completions.create(
        model="gpt-5-mini",
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]

    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith(f"You said: {PROMPT}")
    assert len(chunks) > 5  # streamed in small pieces
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


async def test_a_chat_without_streaming_is_one_completion(
    fake_providers: FakeProviders, sdk: SDK
) -> None:
    fake_providers.chat_reply = lambda prompt: prompt.upper()
    completion = await sdk().chat.completions.create(
        model="gpt-5-mini", messages=[{"role": "user", "content": "shout this"}]
    )
    assert completion.choices[0].message.content == "SHOUT THIS"
    assert completion.choices[0].finish_reason == "stop"


async def test_max_tokens_cuts_the_answer_with_finish_reason_length(
    fake_providers: FakeProviders, sdk: SDK
) -> None:
    fake_providers.chat_reply = "0123456789" * 10
    completion = await sdk().chat.completions.create(
        model="gpt-5-mini", messages=[{"role": "user", "content": "count"}], max_tokens=3
    )
    assert completion.choices[0].message.content == "0123456789" * 2 + "0123"
    assert completion.choices[0].finish_reason == "length"


async def test_minimax_chat_thinks_first_and_wants_a_sane_temperature(
    fake_providers: FakeProviders, sdk: SDK
) -> None:
    fake_providers.think = "The user greets me."
    client = sdk(minimax=True)
    stream = await client.chat.completions.create(
        model="MiniMax-M2.5", messages=[{"role": "user", "content": "hello"}], stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text.startswith("<think>\nThe user greets me.\n</think>\n\nYou said: hello")

    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="MiniMax-M2.5", messages=[{"role": "user", "content": "hi"}], temperature=1.5
        )
    assert caught.value.response.json()["base_resp"]["status_code"] == 2013


# Images


async def test_openai_images_decode_as_png(fake_providers: FakeProviders, sdk: SDK) -> None:
    result = await sdk().images.generate(
        model="gpt-image-1-mini", prompt=PROMPT, size="1536x1024", n=2
    )
    images = [base64.b64decode(item.b64_json) for item in result.data]
    assert [png_size(image) for image in images] == [(96, 64), (96, 64)]
    assert images[0] != images[1]


async def test_minimax_images_come_as_urls_served_by_the_fake_or_as_base64(
    fake_providers: FakeProviders, http: aiohttp.ClientSession
) -> None:
    body = {"model": "image-01", "prompt": PROMPT, "aspect_ratio": "16:9"}
    answer = await minimax_native(http, fake_providers, "POST", "/v1/image_generation", json=body)
    assert answer["base_resp"]["status_code"] == 0
    async with http.get(answer["data"]["image_urls"][0]) as response:
        assert response.content_type == "image/png"
        assert png_size(await response.read()) == (80, 45)

    body |= {"response_format": "base64", "n": 3}
    answer = await minimax_native(http, fake_providers, "POST", "/v1/image_generation", json=body)
    assert len(answer["data"]["image_base64"]) == 3
    assert answer["metadata"]["success_count"] == 3
    assert png_size(base64.b64decode(answer["data"]["image_base64"][0])) == (80, 45)


# Video


async def test_a_video_goes_from_task_to_download(
    fake_providers: FakeProviders, http: aiohttp.ClientSession
) -> None:
    fake_providers.video_polls, fake_providers.video_bytes = 3, 50_000
    body = {"model": "MiniMax-Hailuo-2.3", "prompt": PROMPT, "duration": 6}
    created = await minimax_native(http, fake_providers, "POST", "/v1/video_generation", json=body)
    query = {"task_id": created["task_id"]}

    statuses = []
    for _ in range(3):
        answer = await minimax_native(
            http, fake_providers, "GET", "/v1/query/video_generation", params=query
        )
        statuses.append(answer["status"])
    assert statuses == ["Queueing", "Processing", "Success"]
    assert (answer["video_width"], answer["video_height"]) == (1366, 768)

    params = {"file_id": answer["file_id"]}
    found = await minimax_native(http, fake_providers, "GET", "/v1/files/retrieve", params=params)
    async with http.get(found["file"]["download_url"]) as response:
        video = await response.read()
    assert len(video) == found["file"]["bytes"] == 50_000
    assert video[4:8] == b"ftyp"
    assert fake_providers.counters.video_tasks == 1


async def test_a_video_task_belongs_to_the_key_that_made_it(
    fake_providers: FakeProviders, http: aiohttp.ClientSession
) -> None:
    body = {"model": "MiniMax-Hailuo-2.3", "prompt": PROMPT}
    created = await minimax_native(http, fake_providers, "POST", "/v1/video_generation", json=body)
    other = {"Authorization": f"Bearer {OTHER_KEY}"}
    answer = await minimax_native(
        http,
        fake_providers,
        "GET",
        "/v1/query/video_generation",
        params={"task_id": created["task_id"]},
        headers=other,
    )
    assert answer["base_resp"]["status_code"] == 2013


async def test_a_video_waits_for_real_seconds_too(
    fake_providers: FakeProviders, http: aiohttp.ClientSession
) -> None:
    fake_providers.video_seconds, fake_providers.video_polls = 3600, 0
    body = {"model": "MiniMax-Hailuo-2.3", "prompt": PROMPT}
    created = await minimax_native(http, fake_providers, "POST", "/v1/video_generation", json=body)
    params = {"task_id": created["task_id"]}
    for _ in range(3):
        answer = await minimax_native(
            http, fake_providers, "GET", "/v1/query/video_generation", params=params
        )
        assert answer["status"] == "Preparing"


# Stability


async def test_stability_takes_multipart_and_answers_raw_bytes_with_headers(
    fake_providers: FakeProviders, http: aiohttp.ClientSession
) -> None:
    fields = {"prompt": "a red fox", "aspect_ratio": "16:9", "seed": "42"}
    response = await stability_post(http, fake_providers, fields, mode="ultra")
    assert response.status == 200
    assert response.headers["finish-reason"] == "SUCCESS"
    assert response.headers["seed"] == "42"
    assert response.headers["x-request-id"]
    assert png_size(await response.read()) == (84, 48)


async def test_stability_answers_json_when_asked_and_refuses_a_json_body(
    fake_providers: FakeProviders, http: aiohttp.ClientSession
) -> None:
    fields = {"prompt": "a red fox", "model": "sd3.5-medium"}
    response = await stability_post(http, fake_providers, fields, mode="sd3", accept="*/*")
    assert response.headers["finish-reason"] == "SUCCESS"
    response = await stability_post(http, fake_providers, fields, accept="application/json")
    answer = await response.json()
    assert answer["finish_reason"] == "SUCCESS" and answer["seed"] > 0
    assert png_size(base64.b64decode(answer["image"])) == (64, 64)

    url = f"{fake_providers.env()['STABILITY_BASE_URL']}/v2beta/stable-image/generate/core"
    async with http.post(url, json={"prompt": "a red fox"}) as response:
        assert response.status == 400
        error = await response.json()
    assert error["name"] == "bad_request" and error["id"] and error["errors"]


# Rate limits


async def test_a_spent_bucket_answers_429_with_rate_limit_headers(
    fake_providers: FakeProviders, sdk: SDK
) -> None:
    fake_providers.rpm["openai"] = 12  # a bucket of 2
    client = sdk()
    messages = [{"role": "user", "content": "hi"}]
    first = await client.chat.completions.with_raw_response.create(
        model="gpt-5-mini", messages=messages
    )
    assert first.headers["x-ratelimit-limit-requests"] == "12"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert first.headers["x-request-id"]
    await client.chat.completions.create(model="gpt-5-mini", messages=messages)

    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="gpt-5-mini", messages=messages)
    headers = caught.value.response.headers
    assert caught.value.code == "rate_limit_exceeded"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert int(headers["retry-after"]) >= 1
    assert headers["x-ratelimit-reset-requests"].endswith("s")
    assert fake_providers.counters.rate_limited("openai") == 1

    # Another key has its own bucket.
    await sdk(OTHER_KEY).chat.completions.create(model="gpt-5-mini", messages=messages)


async def test_each_provider_says_rate_limited_its_own_way(
    fake_providers: FakeProviders, http: aiohttp.ClientSession
) -> None:
    fake_providers.key_rpm[KEY] = 6  # a bucket of 1, for this key only
    body = {"model": "image-01", "prompt": PROMPT}
    await minimax_native(http, fake_providers, "POST", "/v1/image_generation", json=body)
    answer = await minimax_native(http, fake_providers, "POST", "/v1/image_generation", json=body)
    assert answer["base_resp"]["status_code"] == 1002

    await stability_post(http, fake_providers, {"prompt": "fox"})
    response = await stability_post(http, fake_providers, {"prompt": "fox"})
    assert response.status == 429
    assert (await response.json())["name"] == "rate_limit_exceeded"
    assert fake_providers.counters.rate_limited() == 2


def test_a_bucket_holds_ten_seconds_refills_steadily_and_counts_refusals() -> None:
    now = [0.0]
    bucket = TokenBucket(60, clock=lambda: now[0])  # 10 tokens, 1 per second
    assert all(bucket.take().allowed for _ in range(10))
    refused = bucket.take()
    assert not refused.allowed and refused.remaining == 0
    assert refused.retry_after == pytest.approx(2.0)  # the refusal spent a token too

    for _ in range(50):  # hammering cannot dig deeper than -capacity
        bucket.take()
    assert bucket.tokens == pytest.approx(-10)
    now[0] += 11
    assert bucket.take().allowed
    now[0] += 1000
    assert bucket.tokens == pytest.approx(10)
    assert TokenBucket(1, clock=lambda: 0.0).capacity == 1


def test_reset_durations_use_openai_format() -> None:
    assert format_duration(0.0117) == "12ms"
    assert format_duration(1) == "1s"
    assert format_duration(1.5) == "1.5s"
    assert format_duration(360) == "6m0s"
    assert format_duration(3723) == "1h2m3s"


# Keys


async def test_invalid_and_exhausted_keys(
    fake_providers: FakeProviders, http: aiohttp.ClientSession, sdk: SDK
) -> None:
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.AuthenticationError) as caught:
        await sdk("bad-key").chat.completions.create(model="gpt-5-mini", messages=messages)
    assert caught.value.code == "invalid_api_key"
    assert "bad-key" not in str(caught.value)

    fake_providers.exhausted_keys.add(KEY)
    with pytest.raises(openai.RateLimitError) as caught:
        await sdk().chat.completions.create(model="gpt-5-mini", messages=messages)
    assert caught.value.code == "insufficient_quota"
    assert "retry-after" not in caught.value.response.headers
    body = {"model": "image-01", "prompt": PROMPT}
    answer = await minimax_native(http, fake_providers, "POST", "/v1/image_generation", json=body)
    assert answer["base_resp"]["status_code"] == 1008
    assert (await stability_post(http, fake_providers, {"prompt": "fox"})).status == 402

    fake_providers.invalid_keys.add(KEY)
    answer = await minimax_native(http, fake_providers, "POST", "/v1/image_generation", json=body)
    assert answer["base_resp"]["status_code"] == 2049
    assert (await stability_post(http, fake_providers, {"prompt": "fox"})).status == 401


# Faults


async def test_fault_500_is_a_server_error_everywhere(
    fake_providers: FakeProviders, http: aiohttp.ClientSession, sdk: SDK
) -> None:
    for provider in ("openai", "minimax", "stability"):
        fake_providers.inject(provider, "500")
    with pytest.raises(openai.InternalServerError):
        await sdk().images.generate(model="gpt-image-1-mini", prompt="x")
    url = fake_providers.env()["MINIMAX_BASE_URL"] + "/v1/video_generation"
    async with http.post(url, json={"model": "MiniMax-Hailuo-2.3", "prompt": "x"}) as response:
        assert response.status == 500
        assert (await response.json())["base_resp"]["status_code"] == 1000
    response = await stability_post(http, fake_providers, {"prompt": "fox"})
    assert response.status == 500 and (await response.json())["name"] == "internal_error"
    assert fake_providers.faults.pending() == 0


async def test_fault_timeout_holds_the_request_past_the_client_timeout(
    fake_providers: FakeProviders, sdk: SDK
) -> None:
    fake_providers.inject("openai", "timeout")
    client = sdk(timeout=0.2)
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(
            model="gpt-5-mini", messages=[{"role": "user", "content": "hi"}]
        )
    # The fault is used up: the next request is answered at once.
    await client.chat.completions.create(
        model="gpt-5-mini", messages=[{"role": "user", "content": "hi"}]
    )


async def test_fault_invalid_key_and_rate_limit_hit_once(
    fake_providers: FakeProviders, sdk: SDK
) -> None:
    fake_providers.inject("openai", "invalid_key")
    fake_providers.inject("openai", "rate_limit")
    client = sdk()
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.AuthenticationError):
        await client.chat.completions.create(model="gpt-5-mini", messages=messages)
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="gpt-5-mini", messages=messages)
    assert caught.value.code == "rate_limit_exceeded"
    assert "retry-after" in caught.value.response.headers
    await client.chat.completions.create(model="gpt-5-mini", messages=messages)


async def test_fault_reject_is_each_apis_content_refusal(
    fake_providers: FakeProviders, http: aiohttp.ClientSession, sdk: SDK
) -> None:
    for provider in ("openai", "minimax", "stability"):
        fake_providers.inject(provider, "reject")
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk().images.generate(model="gpt-image-1-mini", prompt="x")
    assert caught.value.code == "content_policy_violation"
    body = {"model": "image-01", "prompt": PROMPT}
    answer = await minimax_native(http, fake_providers, "POST", "/v1/image_generation", json=body)
    assert answer["base_resp"]["status_code"] == 1026
    response = await stability_post(http, fake_providers, {"prompt": "fox"})
    assert response.status == 403 and (await response.json())["name"] == "content_moderation"


async def test_fault_filtered_blurs_stability_and_cuts_chat(
    fake_providers: FakeProviders, http: aiohttp.ClientSession, sdk: SDK
) -> None:
    fake_providers.inject("stability", "filtered")
    fake_providers.inject("openai", "filtered")
    response = await stability_post(http, fake_providers, {"prompt": "fox"})
    assert response.status == 200
    assert response.headers["finish-reason"] == "CONTENT_FILTERED"

    completion = await sdk().chat.completions.create(
        model="gpt-5-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.choices[0].finish_reason == "content_filter"


async def test_fault_slow_stream_still_streams_the_whole_answer(
    fake_providers: FakeProviders, sdk: SDK
) -> None:
    fake_providers.slow_chunk_delay = 0.01
    fake_providers.chat_reply = "slowly but surely"
    fake_providers.inject("minimax", "slow_stream")
    stream = await sdk(minimax=True).chat.completions.create(
        model="MiniMax-M2.5", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text == "slowly but surely"
    assert fake_providers.faults.pending() == 0


async def test_fault_video_fail_ends_the_task_in_fail(
    fake_providers: FakeProviders, http: aiohttp.ClientSession
) -> None:
    fake_providers.video_polls = 1
    fake_providers.inject("minimax", "video_fail")
    body = {"model": "MiniMax-Hailuo-2.3", "prompt": PROMPT}
    created = await minimax_native(http, fake_providers, "POST", "/v1/video_generation", json=body)
    params = {"task_id": created["task_id"]}
    answer = await minimax_native(
        http, fake_providers, "GET", "/v1/query/video_generation", params=params
    )
    assert answer["status"] == "Fail" and answer["file_id"] == ""


async def test_a_fault_for_one_key_spares_the_others(
    fake_providers: FakeProviders, sdk: SDK
) -> None:
    fake_providers.inject("openai", "500", times=2, key=OTHER_KEY)
    messages = [{"role": "user", "content": "hi"}]
    await sdk().chat.completions.create(model="gpt-5-mini", messages=messages)
    other = sdk(OTHER_KEY)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            await other.chat.completions.create(model="gpt-5-mini", messages=messages)
    await other.chat.completions.create(model="gpt-5-mini", messages=messages)


def test_an_unknown_fault_is_refused_at_once(fake_providers: FakeProviders) -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        fake_providers.inject("openai", "meteor")


# Counters


async def test_counters_see_requests_keys_and_bodies_but_never_keep_a_key(
    fake_providers: FakeProviders, http: aiohttp.ClientSession, sdk: SDK
) -> None:
    client = sdk()
    await client.chat.completions.create(
        model="gpt-5-mini", messages=[{"role": "user", "content": "hi"}]
    )
    await stability_post(http, fake_providers, {"prompt": "fox"})
    counters = fake_providers.counters

    assert counters.requests("openai", "chat") == 1
    assert counters.requests(endpoint="image") == 1
    assert counters.for_key(KEY) == 2 and counters.for_key(OTHER_KEY) == 0
    assert counters.outcomes("ok") == 2
    [chat] = counters.bodies("openai")
    assert chat.body["messages"][0]["content"] == "hi"
    assert counters.bodies("stability")[0].body["prompt"] == "fox"
    assert KEY not in repr(counters.snapshot()) + repr(counters.bodies()) + repr(fake_providers)

    fake_providers.reset()
    assert counters.requests() == 0 and counters.bodies() == []


# RecordingReply


async def test_recording_reply_keeps_everything_and_wakes_its_waiter() -> None:
    reply = RecordingReply()
    waiting = asyncio.ensure_future(reply.wait(timeout=5))
    await reply.progress(Progress("running"))
    await reply.stream("Hel")
    await reply.stream("Hello")
    await reply.finish(Result(text="Hello!"))

    assert await waiting == Result(text="Hello!")
    assert reply.events == ["progress", "stream", "stream", "finish"]
    assert reply.text == "Hello!" and reply.problems == []

    await reply.fail(RateLimited("late"))
    assert reply.problems == ["fail after the job had ended"]
    assert reply.result == Result(text="Hello!") and reply.error is None


async def test_recording_reply_wait_times_out() -> None:
    with pytest.raises(TimeoutError):
        await RecordingReply().wait(timeout=0.01)


# Running


async def test_the_fakes_start_on_free_ports_and_stop_cleanly() -> None:
    async with FakeProviders.running(rpm=60) as fake:
        assert len(set(fake.ports.values())) == 3
        assert fake.rpm == {"openai": 60, "minimax": 60, "stability": 60}
        with pytest.raises(RuntimeError):
            fake.start()
    assert fake.ports == {}
    fake.stop()  # a second stop is harmless


def test_python_m_sandbox_serves_in_the_foreground() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "aibot.sandbox", "--rpm", "60"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = dict(process.stdout.readline().strip().split("=", 1) for _ in range(3))
        assert lines["OPENAI_BASE_URL"].endswith("/v1")
        assert set(lines) == {"OPENAI_BASE_URL", "MINIMAX_BASE_URL", "STABILITY_BASE_URL"}
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=10)
        assert '"counters"' in out
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
