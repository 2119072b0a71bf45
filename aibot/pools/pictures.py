"""A member's picture on the worker's side: the reference a job carries and its
download.

The front checked the attachment's type and size before the defer and put only
plain data in the job (`job.args["picture"]`: its URL, type, size and, when
Discord knows them, width and height). The worker downloads it here, bounded in
size and time, and checks the bytes again: a label is not proof of a picture.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from aibot.jobs import BadRequest, Unavailable
from aibot.providers.picture import DEFAULT_STRENGTH, Picture
from aibot.providers.sniff import image_type

__all__ = ["PICTURE_ARG", "PictureRef", "fetch_picture", "picture_ref", "strength_of"]

PICTURE_ARG = "picture"
# Answers that mean the link is gone (an expired or deleted attachment): asking
# again cannot help, the member must attach it again.
_GONE = frozenset({401, 403, 404, 410})
_CHUNK = 1 << 16
_NAMES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WebP"}


@dataclass(slots=True, frozen=True)
class PictureRef:
    """Where a member's picture is and what Discord said of it."""

    url: str
    content_type: str
    size: int
    width: int | None = None
    height: int | None = None


def picture_ref(args: Mapping[str, Any]) -> PictureRef | None:
    """The picture a job's arguments name, or None when there is none."""
    found = args.get(PICTURE_ARG)
    if not isinstance(found, Mapping) or not found.get("url"):
        return None
    try:
        return PictureRef(
            url=str(found["url"]),
            content_type=str(found.get("content_type") or ""),
            size=int(found.get("size") or 0),
            width=int(found["width"]) if found.get("width") else None,
            height=int(found["height"]) if found.get("height") else None,
        )
    except (TypeError, ValueError):
        raise BadRequest("the picture's details are not valid") from None


def strength_of(args: Mapping[str, Any]) -> float:
    """How far a transformed image may move from the picture: 0 to 1."""
    value = args.get("strength")
    if value is None or value == "":
        return DEFAULT_STRENGTH
    try:
        strength = float(value)
    except (TypeError, ValueError):
        raise BadRequest("the strength must be a number from 0 to 1") from None
    if not 0.0 <= strength <= 1.0:
        raise BadRequest("the strength must be a number from 0 to 1")
    return strength


async def fetch_picture(
    ref: PictureRef, *, max_bytes: int, timeout: float, types: frozenset[str]
) -> Picture:
    """The picture's bytes, at most `max_bytes`, within `timeout` seconds, of one
    of `types` by its bytes. A picture too large, of another kind or no longer
    there is the member's to fix (`BadRequest`); a failed download is not."""
    if not ref.url.startswith(("https://", "http://")):
        raise BadRequest("the picture's link is not a web address")
    if ref.size > max_bytes:
        raise _too_large(max_bytes)
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.get(ref.url) as answer,
        ):
            if answer.status in _GONE:
                raise BadRequest("the picture is no longer available", words="bad_picture_gone")
            if answer.status != 200:
                raise Unavailable(f"the picture could not be downloaded (HTTP {answer.status})")
            if (answer.content_length or 0) > max_bytes:
                raise _too_large(max_bytes)
            data = bytearray()
            async for chunk in answer.content.iter_chunked(_CHUNK):
                data += chunk
                if len(data) > max_bytes:
                    raise _too_large(max_bytes)
    except (aiohttp.ClientError, TimeoutError):
        raise Unavailable("the picture could not be downloaded") from None
    kind = image_type(bytes(data))
    if kind not in types:
        kinds = "/".join(name for kind, name in _NAMES.items() if kind in types)
        raise BadRequest(
            f"the picture is not a {kinds} image", words="bad_picture_kind", kinds=kinds
        )
    return Picture(bytes(data), kind)


def _too_large(max_bytes: int) -> BadRequest:
    limit = f"{max_bytes / 1024**2:g}"
    return BadRequest(
        f"the picture is larger than {limit} MB", words="bad_picture_size", limit=limit
    )
