"""A member's picture end to end: `/image` made from an attached picture, `/video`
starting from one, and a picture the bot cannot use refused privately before the
defer. The real bot in SimCord's Discord; the worker downloads the picture over
loopback (`cdn`) and the fake providers check what they are sent."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from aibot.pools.video import FRAME_ARG
from tests.fixtures.attachments import LoopbackCdn, jpeg_picture, png_picture, webp_picture
from tests.fixtures.discord import World
from tests.test_discord_commands import assert_deferred_public, assert_private, bodies
from tests.test_discord_fair_use import restart

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def data_url_bytes(value: str) -> bytes:
    head, _, data = value.partition(",")
    assert head in ("data:image/png;base64", "data:image/jpeg;base64"), head
    return base64.b64decode(data)


def provider_calls(world: World) -> int:
    return world.fake.counters.requests()


# ------------------------------------------------------------------ image


async def test_an_image_is_made_from_an_attached_picture(world: World, cdn: LoopbackCdn) -> None:
    picture = png_picture()
    result = await world.member.slash(
        world.channel("이미지생성-1"),
        "image",
        prompt="as a watercolour",
        picture=("fox.png", picture),
    )
    assert_deferred_public(result, world)
    [embed] = result.response.embeds
    assert {f.name: f.value for f in embed.fields}["Provider"] == "minimax"
    # MiniMax comes first in the image pool: it kept the subject of the very picture.
    [sent] = world.fake.counters.bodies("minimax", "image")
    [reference] = sent.body["subject_reference"]
    assert reference["type"] == "character"
    assert data_url_bytes(reference["image_file"]) == picture
    assert cdn.downloads == 1


async def test_a_chosen_provider_transforms_the_picture_with_the_strength_asked(
    world: World, cdn: LoopbackCdn
) -> None:
    picture = jpeg_picture()
    result = await world.member.slash(
        world.channel("이미지생성-1"),
        "image",
        prompt="in winter",
        provider="stability",
        strength=0.25,
        picture=("cabin.jpg", picture),
    )
    assert_deferred_public(result, world)
    [sent] = world.fake.counters.bodies("stability", "image")
    # Core cannot start from a picture: SD3's image-to-image does, in the picture's shape.
    assert sent.path.endswith("/generate/sd3")
    assert sent.body["mode"] == "image-to-image" and sent.body["strength"] == "0.25"
    assert "aspect_ratio" not in sent.body
    assert sent.body["image"].sha256 == sha(picture)
    assert sent.body["image"].kind == "image/jpeg"


async def test_openai_edits_the_picture(world: World, cdn: LoopbackCdn) -> None:
    picture = png_picture()
    await world.member.slash(
        world.channel("이미지생성-1"),
        "image",
        prompt="add a hat",
        provider="openai",
        picture=("me.png", picture),
    )
    [sent] = world.fake.counters.bodies("openai", "image")
    assert sent.path == "/v1/images/edits"
    assert sent.body["prompt"] == "add a hat" and sent.body["size"] == "auto"
    assert sent.body["image"].sha256 == sha(picture)


async def test_a_webp_picture_skips_the_provider_that_cannot_read_it(
    world: World, cdn: LoopbackCdn
) -> None:
    picture = webp_picture()
    result = await world.member.slash(
        world.channel("이미지생성-1"), "image", prompt="brighter", picture=("sky.webp", picture)
    )
    [embed] = result.response.embeds
    assert {f.name: f.value for f in embed.fields}["Provider"] == "stability"
    assert world.fake.counters.requests("minimax") == 0  # image-01 reads no WebP
    [sent] = world.fake.counters.bodies("stability", "image")
    assert sent.body["image"].kind == "image/webp"


async def test_a_chosen_provider_that_cannot_read_the_picture_is_refused_privately(
    world: World, cdn: LoopbackCdn
) -> None:
    result = await world.member.slash(
        world.channel("이미지생성-1"),
        "image",
        prompt="brighter",
        provider="minimax",
        picture=("sky.webp", webp_picture()),
    )
    assert "Please attach a PNG, JPEG image" in assert_private(result, world)
    assert provider_calls(world) == 0 and cdn.downloads == 0


@pytest.mark.aibot_env(
    STABILITY_API_KEY_2=None, OPENAI_API_KEY_2=None, STABILITY_API_KEY_4=None, OPENAI_API_KEY_4=None
)
async def test_a_picture_no_image_service_here_reads_is_refused_privately_in_korean(
    world: World, cdn: LoopbackCdn
) -> None:
    # Only MiniMax makes images here, and image-01 reads no WebP.
    member = world.add_member("하은", locale="ko")
    sky = ("sky.webp", webp_picture())
    result = await member.slash(world.channel("이미지생성-1"), "image", prompt="밝게", picture=sky)
    assert "PNG, JPEG" in assert_private(result, world)
    assert provider_calls(world) == 0 and cdn.downloads == 0
    assert world.bot.store.gate.usage(world.guild.id, member.id, "image")[0] == 0  # no use spent


# ------------------------------------------------- pictures the bot refuses


async def test_a_file_that_is_no_picture_is_refused_privately_before_the_defer(
    world: World, cdn: LoopbackCdn
) -> None:
    result = await world.member.slash(
        world.channel("이미지생성-1"), "image", prompt="x", picture=("notes.txt", b"hello")
    )
    words = assert_private(result, world)
    assert words == (
        "🖼️ That attachment is not a picture I can use. Please attach a PNG, JPEG, WebP image."
    )
    assert provider_calls(world) == 0 and cdn.downloads == 0


@pytest.mark.aibot_env(AIBOT_ATTACHMENT_MAX_MB="0.001")
async def test_a_picture_too_large_is_refused_privately_in_korean(
    world: World, cdn: LoopbackCdn
) -> None:
    member = world.add_member("하은", locale="ko")
    big = png_picture() + bytes(3000)  # 0.001 MB is 1,049 bytes
    result = await member.slash(
        world.channel("이미지생성-1"), "image", prompt="x", picture=("big.png", big)
    )
    words = assert_private(result, world)
    assert words == (
        "🖼️ 이 사진은 3 KB예요. 1 KB까지만 받을 수 있어요. 더 작은 사진을 첨부해 주세요."
    )
    assert provider_calls(world) == 0 and cdn.downloads == 0


async def test_strength_without_a_picture_is_refused_privately(world: World) -> None:
    result = await world.member.slash(
        world.channel("이미지생성-1"), "image", prompt="x", strength=0.5
    )
    assert "attach one with `picture`" in assert_private(result, world)
    assert provider_calls(world) == 0


async def test_a_webp_first_frame_is_refused_privately(world: World, cdn: LoopbackCdn) -> None:
    result = await world.member.slash(
        world.channel("비디오생성-1"), "video", prompt="x", picture=("a.webp", webp_picture())
    )
    assert "Please attach a PNG, JPEG image" in assert_private(result, world)
    assert provider_calls(world) == 0 and cdn.downloads == 0


async def test_the_picture_options_carry_korean_names(world: World) -> None:
    synced = {c["name"]: c for c in bodies(world, "PUT", "/commands")[-1]}
    image = {o["name"]: o for o in synced["image"]["options"]}
    video = {o["name"]: o for o in synced["video"]["options"]}
    assert image["picture"]["type"] == 11 and video["picture"]["type"] == 11  # attachment
    assert image["picture"]["name_localizations"] == {"ko": "사진"}
    assert image["strength"]["name_localizations"] == {"ko": "강도"}
    assert (image["strength"]["min_value"], image["strength"]["max_value"]) == (0.0, 1.0)
    assert video["picture"]["description_localizations"]["ko"].startswith("영상이 시작할")


# ------------------------------------------------------------------ video


async def settle_video(world: World, result: Any) -> None:
    for _ in range(8):
        await world.env.advance_time(10)
        if result.response.attachments:
            return


async def test_a_video_starts_from_the_attached_picture(world: World, cdn: LoopbackCdn) -> None:
    picture = png_picture()
    result = await world.member.slash(
        world.channel("비디오생성-1"),
        "video",
        prompt="it starts to snow",
        picture=("a.png", picture),
    )
    assert_deferred_public(result, world)
    [sent] = world.fake.counters.bodies("minimax", "video")
    assert data_url_bytes(sent.body["first_frame_image"]) == picture
    # Once the task exists it holds the picture: the journal keeps no copy, nor the link.
    [(job, _state)] = world.pools["video"].jobs()
    entry = await world.bot.store.journal.entry(job.id)
    assert entry is not None and entry.task_id
    assert "picture" not in entry.job.args and FRAME_ARG not in entry.job.args
    await settle_video(world, result)
    assert result.response.attachments[0].filename == "video.mp4"


@pytest.mark.aibot_env(
    MINIMAX_API_KEY_3="mm-video-minimax-0000000000000000000000003",
    AIBOT_VIDEO_RPM_MINIMAX="1",
    AIBOT_REQUEST_TIMEOUT="300",
)
async def test_a_video_from_a_picture_resumes_after_a_restart_without_its_link(
    world: World, cdn: LoopbackCdn, aibot_env: dict[str, str]
) -> None:
    channel = world.channel("비디오생성-1")
    await world.member.slash(channel, "video", prompt="first")  # the one key's call this minute
    picture = jpeg_picture()
    other = world.add_member("dahyun")
    result = await other.slash(channel, "video", prompt="waves", picture=("sea.jpg", picture))
    # Downloaded and journaled, waiting for the key: no task yet.
    waiting = [job for job, _state in world.pools["video"].jobs() if job.user_id == other.id]
    entry = await world.bot.store.journal.entry(waiting[0].id)
    assert entry is not None and entry.task_id is None
    assert data_url_bytes(entry.job.args[FRAME_ARG]) == picture
    assert "picture" not in entry.job.args
    assert world.fake.counters.video_tasks == 1

    cdn.forget()  # the member's link no longer works
    await restart(world, {**aibot_env, "AIBOT_VIDEO_RPM_MINIMAX": "600"})
    await settle_video(world, result)
    assert result.response.attachments[0].filename == "video.mp4"
    sent = world.fake.counters.bodies("minimax", "video")[-1]
    assert data_url_bytes(sent.body["first_frame_image"]) == picture
    assert world.fake.counters.video_tasks == 2 and cdn.downloads == 1
