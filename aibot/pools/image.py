"""The image role: one image for a prompt, from the first provider that can
make it.

The pool's providers are tried in their configured order (or only the one the
member chose): a provider whose keys are all down, busy past the deadline or
unavailable after retries gives way to the next. A refused prompt or a bad
request does not: another provider would only be asked the same thing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from typing import Any

from aibot.jobs import Artifact, BadRequest, Job, Reply, Result
from aibot.pools import PoolContext
from aibot.pools.base import Work
from aibot.providers.base import Image, ImageRequest
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
        loop = asyncio.get_running_loop()
        started = loop.time()

        # Plain functions handing back the call (not coroutines awaiting it): no
        # frame more on any step of the job. A lambda, not a partial: cheaper to
        # make, and it calls `generate` with no keyword.
        def attempt(provider: str) -> Awaitable[Image]:
            client = ctx.images[provider]
            return with_keys(
                ctx.rings[provider],
                lambda lease: client.generate(lease, request),
                timeout=ctx.settings.request_timeout,
            )

        image = await ctx.first_provider(
            "image", attempt, choice=None if choice in ("", "auto") else choice
        )
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
