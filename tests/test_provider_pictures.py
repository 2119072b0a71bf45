"""Images and videos from a picture, provider by provider, over loopback against
the fakes: each client sends the picture the way its API takes it (Stability
image-to-image, OpenAI edits, MiniMax subject reference and first frame), the
fakes refuse what the real APIs refuse, and the worker's download of a member's
picture is bounded and checked."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from aibot.catalogue import FRAME_TYPES, PICTURE_TYPES
from aibot.discord.i18n import error_text
from aibot.jobs import AibotError, BadAnswer, BadRequest, Unavailable
from aibot.pools.pictures import PictureRef, fetch_picture, picture_ref, strength_of
from aibot.providers.base import ImageRequest
from aibot.providers.minimax import MiniMaxImages, MiniMaxVideo
from aibot.providers.openai_images import OpenAIImages
from aibot.providers.picture import Picture, can_transform
from aibot.providers.stability import StabilityImages
from aibot.sandbox import FakeProviders
from tests.fixtures.attachments import jpeg_picture, png_picture, webp_picture
from tests.test_providers import KEYS, lease_for

REQUEST = ImageRequest("the same cat, in a spacesuit", aspect_ratio="3:2")
PNG = Picture(png_picture(), "image/png")
WEBP = Picture(webp_picture(), "image/webp")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def data_url_bytes(value: str) -> bytes:
    return base64.b64decode(value.partition(",")[2])


@pytest.fixture
async def images(fake_providers: FakeProviders) -> AsyncIterator[dict[str, Any]]:
    fake = fake_providers
    made: dict[str, Any] = {
        "stability": StabilityImages(fake.url("stability"), "core", timeout=5),
        "ultra": StabilityImages(fake.url("stability"), "ultra", timeout=5),
        "sd3.5-medium": StabilityImages(fake.url("stability"), "sd3.5-medium", timeout=5),
        "openai": OpenAIImages(fake.url("openai"), "gpt-image-1-mini", timeout=5),
        "minimax": MiniMaxImages(fake.url("minimax"), "image-01", timeout=5),
        "video": MiniMaxVideo(fake.url("minimax"), "MiniMax-Hailuo-2.3", timeout=5),
        "t2v": MiniMaxVideo(fake.url("minimax"), "T2V-01", timeout=5),
    }
    yield made
    for client in made.values():
        await client.aclose()


# --------------------------------------------------------- the transforms


async def test_stability_core_transforms_on_sd3_image_to_image(
    fake_providers: FakeProviders, images: dict[str, Any]
) -> None:
    image = await images["stability"].transform(await lease_for("stability"), REQUEST, PNG, 0.35)
    assert image.data.startswith(b"\x89PNG") and image.provider == "stability"
    [sent] = fake_providers.counters.bodies("stability", "image")
    assert sent.path == "/v2beta/stable-image/generate/sd3"
    assert (sent.body["mode"], sent.body["strength"]) == ("image-to-image", "0.35")
    assert "aspect_ratio" not in sent.body and "model" not in sent.body
    assert sent.body["image"].sha256 == sha(PNG.data)
    assert sent.body["image"].content_type == "image/png"


async def test_stability_ultra_and_sd3_models_transform_on_their_own_endpoint(
    fake_providers: FakeProviders, images: dict[str, Any]
) -> None:
    lease = await lease_for("stability")
    await images["ultra"].transform(lease, REQUEST, WEBP, 1.0)
    await images["sd3.5-medium"].transform(lease, REQUEST, PNG, 0.0)
    ultra, sd3 = fake_providers.counters.bodies("stability", "image")
    assert ultra.path.endswith("/ultra") and "mode" not in ultra.body
    assert ultra.body["strength"] == "1" and ultra.body["image"].kind == "image/webp"
    assert sd3.path.endswith("/sd3") and sd3.body["model"] == "sd3.5-medium"
    assert sd3.body["strength"] == "0"


async def test_openai_edits_the_picture(
    fake_providers: FakeProviders, images: dict[str, Any]
) -> None:
    negative = ImageRequest("a hat on the cat", negative_prompt="text")
    image = await images["openai"].transform(await lease_for("openai"), negative, PNG, 0.6)
    assert image.data.startswith(b"\x89PNG") and image.provider == "openai"
    [sent] = fake_providers.counters.bodies("openai", "image")
    assert sent.path == "/v1/images/edits"
    assert sent.body["image"].sha256 == sha(PNG.data)
    assert sent.body["prompt"] == "a hat on the cat\n\nAvoid: text"
    assert (sent.body["size"], sent.body["n"], sent.body["model"]) == (
        "auto",
        "1",
        "gpt-image-1-mini",
    )


async def test_minimax_keeps_the_subject_of_the_picture(
    fake_providers: FakeProviders, images: dict[str, Any]
) -> None:
    picture = Picture(jpeg_picture(), "image/jpeg")
    image = await images["minimax"].transform(await lease_for("minimax"), REQUEST, picture, 0.6)
    assert image.data.startswith(b"\x89PNG") and image.provider == "minimax"
    [sent] = fake_providers.counters.bodies("minimax", "image")
    [reference] = sent.body["subject_reference"]
    assert reference["type"] == "character"
    assert reference["image_file"].startswith("data:image/jpeg;base64,")
    assert data_url_bytes(reference["image_file"]) == picture.data
    assert sent.body["aspect_ratio"] == "3:2"


async def test_a_video_starts_from_a_first_frame(
    fake_providers: FakeProviders, images: dict[str, Any]
) -> None:
    lease = await lease_for("minimax")
    task = await images["video"].create(lease, "it rains", first_frame=PNG.data_url())
    assert task.task_id and fake_providers.counters.video_tasks == 1
    [sent] = fake_providers.counters.bodies("minimax", "video")
    assert data_url_bytes(sent.body["first_frame_image"]) == PNG.data


def test_which_provider_reads_which_picture(images: dict[str, Any]) -> None:
    assert can_transform(images["stability"], "image/webp")
    assert can_transform(images["openai"], "image/webp")
    assert not can_transform(images["minimax"], "image/webp")
    assert can_transform(images["minimax"], "image/png")
    assert not can_transform(images["video"], "image/png")  # a video client makes no images


# ------------------------------------------- what the fakes (and APIs) refuse


async def test_what_the_apis_refuse_is_a_bad_request(
    fake_providers: FakeProviders, images: dict[str, Any]
) -> None:
    lease = await lease_for("minimax")
    with pytest.raises(BadRequest, match="invalid params"):
        await images["minimax"].transform(lease, REQUEST, WEBP, 0.5)  # image-01 reads no WebP
    with pytest.raises(BadRequest, match="first_frame_image is not supported"):
        await images["t2v"].create(lease, "rain", first_frame=PNG.data_url())
    with pytest.raises(BadRequest, match="first_frame_image"):
        await images["video"].create(lease, "rain", first_frame="data:image/png;base64,AAAA")
    with pytest.raises(BadRequest):
        text_file = Picture(b"not a picture at all", "image/png")
        await images["openai"].transform(await lease_for("openai"), REQUEST, text_file, 0.5)


async def post(url: str, **kwargs: Any) -> tuple[int, Any]:
    headers = {"authorization": f"Bearer {KEYS['stability'][0]}"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, headers=headers, **kwargs) as answer,
    ):
        return answer.status, await answer.json(content_type=None)


def form(**fields: Any) -> aiohttp.FormData:
    made = aiohttp.FormData(default_to_multipart=True)
    for name, value in fields.items():
        if isinstance(value, bytes):
            made.add_field(name, value, filename="picture.png", content_type="image/png")
        else:
            made.add_field(name, value)
    return made


@pytest.mark.parametrize(
    ("endpoint", "fields", "why"),
    [
        ("sd3", {"mode": "image-to-image", "image": PNG.data}, "required"),
        ("sd3", {"mode": "image-to-image", "strength": "0.5"}, "required"),
        (
            "sd3",
            {"mode": "image-to-image", "image": PNG.data, "strength": "0.5", "aspect_ratio": "1:1"},
            "aspect_ratio: not allowed",
        ),
        ("sd3", {"mode": "image-to-image", "image": PNG.data, "strength": "1.5"}, "strength"),
        ("sd3", {"mode": "image-to-image", "image": b"text", "strength": "0.5"}, "image: must"),
        ("sd3", {"image": PNG.data, "strength": "0.5"}, "only with mode=image-to-image"),
        ("core", {"image": PNG.data, "strength": "0.5"}, "not accepted"),
        ("ultra", {"image": PNG.data}, "strength: required"),
    ],
)
async def test_the_stability_fake_refuses_a_bad_image_to_image_request(
    fake_providers: FakeProviders, endpoint: str, fields: dict[str, Any], why: str
) -> None:
    url = f"{fake_providers.url('stability')}/v2beta/stable-image/generate/{endpoint}"
    status, body = await post(url, data=form(prompt="a cat", **fields))
    assert status == 400 and why in body["errors"][0]


async def test_the_openai_fake_wants_a_multipart_edit_with_an_image(
    fake_providers: FakeProviders,
) -> None:
    url = f"{fake_providers.url('openai')}/images/edits"
    status, body = await post(url, json={"prompt": "x", "image": "nope"})
    assert status == 400 and "multipart" in body["error"]["message"]
    status, body = await post(url, data=form(prompt="x", model="gpt-image-1-mini"))
    assert status == 400 and body["error"]["param"] == "image"
    status, body = await post(url, data=form(prompt="x", image=PNG.data, input_fidelity="max"))
    assert status == 400 and body["error"]["param"] == "input_fidelity"


@pytest.mark.parametrize(
    "reference",
    [
        [],
        [{"type": "character", "image_file": PNG.data_url()}] * 2,
        [{"type": "face", "image_file": PNG.data_url()}],
        [{"type": "character", "image_file": "ftp://example.invalid/a.png"}],
    ],
)
async def test_the_minimax_fake_takes_one_character_reference(
    fake_providers: FakeProviders, reference: list[dict[str, str]]
) -> None:
    url = f"{fake_providers.url('minimax')}/v1/image_generation"
    payload = {"model": "image-01", "prompt": "a cat", "subject_reference": reference}
    status, body = await post(url, json=payload)
    assert status == 200 and body["base_resp"]["status_code"] == 2013


async def test_an_image_to_video_model_needs_a_first_frame(fake_providers: FakeProviders) -> None:
    url = f"{fake_providers.url('minimax')}/v1/video_generation"
    status, body = await post(url, json={"model": "I2V-01", "prompt": "rain"})
    assert status == 200 and body["base_resp"]["status_code"] == 2013


@pytest.mark.parametrize(("fault", "error"), [("500", Unavailable), ("image_garbage", BadAnswer)])
@pytest.mark.parametrize("name", ["stability", "openai", "minimax"])
async def test_a_transform_fails_as_its_generation_does(
    fake_providers: FakeProviders,
    images: dict[str, Any],
    name: str,
    fault: str,
    error: type[AibotError],
) -> None:
    fake_providers.inject(name, fault)
    with pytest.raises(error):
        await images[name].transform(await lease_for(name), REQUEST, PNG, 0.5)


# ------------------------------------------------- the worker's download


@pytest.fixture
async def files() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """A loopback file server: `served[path]` is bytes, or an HTTP status to answer."""
    served: dict[str, Any] = {}

    async def serve(request: web.Request) -> web.StreamResponse:
        found = served.get(request.path, 404)
        if isinstance(found, int):
            return web.Response(status=found)
        if request.path.startswith("/chunked"):  # no content-length: the size shows late
            answer = web.StreamResponse()
            answer.enable_chunked_encoding()
            await answer.prepare(request)
            await answer.write(found)
            await answer.write_eof()
            return answer
        return web.Response(body=found, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/{path:.*}", serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}", served
    await runner.cleanup()


async def fetch(url: str, *, max_bytes: int = 10_000, types: frozenset[str] = PICTURE_TYPES):
    ref = PictureRef(url, "image/png", 100)
    return await fetch_picture(ref, max_bytes=max_bytes, timeout=5, types=types)


async def test_a_picture_is_downloaded_and_told_by_its_bytes(
    files: tuple[str, dict[str, Any]],
) -> None:
    origin, served = files
    served["/a.png"] = PNG.data
    served["/a.webp"] = WEBP.data
    picture = await fetch(f"{origin}/a.png")
    assert picture == PNG and picture.filename == "picture.png"
    assert (await fetch(f"{origin}/a.webp")).content_type == "image/webp"


@pytest.mark.parametrize(
    ("path", "content", "error", "words"),
    [
        # The member's own to fix: told in their language (here Korean).
        ("/big.png", PNG.data + bytes(20_000), BadRequest, "사진이 0.00953674MB보다 커요"),
        ("/chunked.png", PNG.data + bytes(20_000), BadRequest, "MB보다 커요"),
        ("/gone.png", 404, BadRequest, "사진을 더 이상 받을 수 없어요. 다시 첨부해 주세요"),
        ("/expired.png", 403, BadRequest, "다시 첨부해 주세요"),
        ("/notes.png", b"just some text", BadRequest, "사진이 PNG/JPEG/WebP 이미지가 아니에요"),
        ("/broken.png", 502, Unavailable, "AI 제공자"),  # not theirs: the provider side
    ],
)
async def test_a_download_that_cannot_be_a_picture_fails(
    files: tuple[str, dict[str, Any]], path: str, content: Any, error: type, words: str
) -> None:
    origin, served = files
    served[path] = content
    with pytest.raises(error) as caught:
        await fetch(f"{origin}{path}")
    assert words in error_text(caught.value, "ko")


async def test_a_frame_must_be_png_or_jpeg(files: tuple[str, dict[str, Any]]) -> None:
    origin, served = files
    served["/a.webp"] = WEBP.data
    with pytest.raises(BadRequest) as caught:
        await fetch(f"{origin}/a.webp", types=FRAME_TYPES)
    said = error_text(caught.value, "en")
    assert said == "⚠️ That request cannot be done: the picture is not a PNG/JPEG image"


async def test_a_picture_said_to_be_too_large_is_not_downloaded() -> None:
    ref = PictureRef("http://127.0.0.1:9/never.png", "image/png", 20_000)
    with pytest.raises(BadRequest, match="larger than"):
        await fetch_picture(ref, max_bytes=10_000, timeout=5, types=PICTURE_TYPES)
    with pytest.raises(Unavailable):
        small = PictureRef("http://127.0.0.1:9/closed.png", "image/png", 100)
        await fetch_picture(small, max_bytes=10_000, timeout=5, types=PICTURE_TYPES)


def test_the_job_carries_the_picture_as_plain_data() -> None:
    args = {"picture": {"url": "https://cdn/a.png", "content_type": "image/png", "size": 10}}
    assert picture_ref(args) == PictureRef("https://cdn/a.png", "image/png", 10)
    assert picture_ref({"prompt": "x"}) is None
    assert strength_of({}) == 0.6 and strength_of({"strength": 0.2}) == 0.2
    with pytest.raises(BadRequest):
        strength_of({"strength": 2})
