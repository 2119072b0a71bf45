"""The image role: one image for a prompt, from the first provider that can
make it.

The pool's providers are tried in their configured order (or only the one the
member chose): a provider whose keys are all down, busy past the deadline or
unavailable after retries gives way to the next. A refused prompt or a bad
request does not: another provider would only be asked the same thing.

With a picture (`job.args["picture"]`), the image is made from it: the picture is
downloaded once, then each provider that can start from its kind transforms it
(Stability image-to-image, OpenAI edits, MiniMax subject reference), in the same
order; the others are left out.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

from aibot.catalogue import PICTURE_TYPES
from aibot.jobs import Artifact, BadRequest, Job, Reply, Result
from aibot.leases import Lease
from aibot.pools import PoolContext
from aibot.pools.base import Work
from aibot.pools.pictures import PictureRef, fetch_picture, picture_ref, strength_of
from aibot.providers.base import Image, ImageRequest
from aibot.providers.picture import ImageTransformer, can_transform
from aibot.providers.retry import with_keys

__all__ = ["build_work", "image_request"]

_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
_MAX_SEED = 4_294_967_294


def image_request(args: Mapping[str, Any]) -> ImageRequest:
    """The request a job's arguments describe; BadRequest when they make no sense."""
    prompt = str(args.get("prompt") or "").strip()
    if not prompt:
        raise BadRequest("the prompt is empty")
    seed = args.get("seed")
    if seed is not None and seed != "":
        try:
            seed = int(seed)
        except (TypeError, ValueError):
            raise BadRequest("the seed must be a whole number") from None
        if not 0 <= seed <= _MAX_SEED:
            raise BadRequest(f"the seed must be between 0 and {_MAX_SEED}")
    else:
        seed = None
    aspect_ratio = str(args.get("aspect_ratio") or "1:1")
    negative_prompt = str(args.get("negative_prompt") or "").strip()
    # By position: a frozen dataclass given keywords takes a good deal longer to make.
    return ImageRequest(prompt, aspect_ratio, negative_prompt, seed)


def build_work(ctx: PoolContext) -> Work:
    """The image work function for a pool."""

    async def work(job: Job, reply: Reply) -> Result:
        request = image_request(job.args)
        choice = str(job.args.get("provider") or "").strip().lower()
        choice = "" if choice == "auto" else choice
        loop = asyncio.get_running_loop()
        started = loop.time()
        ref = picture_ref(job.args)
        if ref is None:
            make, able = _generate(ctx, request), None
        else:
            make, able = await _transform(ctx, job.args, request, ref, choice)

        # Plain functions handing back the call (not coroutines awaiting it): no
        # frame more on any step of the job.
        def attempt(provider: str) -> Awaitable[Image]:
            call = make(provider)
            timeout = ctx.settings.request_timeout
            return with_keys(ctx.rings[provider], call, timeout=timeout)

        image = await ctx.first_provider("image", attempt, choice=choice or None, able=able)
        extension = _EXTENSIONS.get(image.content_type, "png")
        artifact = Artifact(f"image.{extension}", image.content_type, image.data)
        meta = {
            "provider": image.provider,
            "model": image.model,
            "key_id": image.key_id,
            "seed": image.seed,
            "seconds": round(loop.time() - started, 3),
        }
        # Result(text, files, meta) by position: sooner made than with keywords.
        return Result("", (artifact,), meta)

    return work


Call = Callable[[Lease], Awaitable[Image]]


def _generate(ctx: PoolContext, request: ImageRequest) -> Callable[[str], Call]:
    """Each provider's call making an image from the prompt alone. A lambda, not a
    partial: cheaper to make, and it calls `generate` with no keyword."""

    def make(provider: str) -> Call:
        client = ctx.images[provider]
        return lambda lease: client.generate(lease, request)

    return make


async def _transform(
    ctx: PoolContext,
    args: Mapping[str, Any],
    request: ImageRequest,
    ref: PictureRef,
    choice: str,
) -> tuple[Callable[[str], Call], Callable[[str], bool]]:
    """Each provider's call making an image from the member's picture (downloaded
    here, once), and which providers can."""
    strength = strength_of(args)
    picture = await fetch_picture(
        ref,
        max_bytes=ctx.settings.attachment_max_bytes,
        timeout=ctx.settings.request_timeout,
        types=PICTURE_TYPES,
    )
    kind = picture.content_type.removeprefix("image/")

    def able(provider: str) -> bool:
        return can_transform(ctx.images[provider], picture.content_type)

    if choice and choice in ctx.images and not able(choice):
        raise BadRequest(
            f"{choice} cannot start from a {kind} picture",
            words="bad_picture_unread_by",
            provider=choice,
            kind=kind,
        )
    if not any(able(name) for name in ctx.providers_for("image")):
        raise BadRequest(
            f"no image service here can start from a {kind} picture",
            words="bad_picture_unread",
            kind=kind,
        )
    if "aspect_ratio" not in args and ref.width and ref.height:
        # The new image keeps the picture's shape unless the member asked for another.
        request = dataclasses.replace(request, aspect_ratio=f"{ref.width}:{ref.height}")

    def make(provider: str) -> Call:
        client = cast(ImageTransformer, ctx.images[provider])
        return lambda lease: client.transform(lease, request, picture, strength)

    return make, able
