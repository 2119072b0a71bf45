"""Images from OpenAI's GPT Image models (`POST /v1/images/generations`), and
images made from a picture (`POST /v1/images/edits`, multipart).

GPT Image has three sizes and no seed or negative prompt: the aspect ratio
maps to the nearest size and a negative prompt becomes a sentence of the
prompt. An edit has no strength either: the prompt says what to change, and the
output keeps the picture's shape (`size=auto`).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable
from typing import Any

import openai
from openai.types import ImagesResponse

from aibot.catalogue import PICTURE_KINDS
from aibot.jobs import BadAnswer
from aibot.leases import Lease
from aibot.providers.base import (
    Image,
    ImageRequest,
    OpenAIClients,
    nearest_ratio,
    openai_error,
)
from aibot.providers.picture import Picture
from aibot.providers.sniff import verified_image_type
from aibot.rate_headers import rate_headers

__all__ = ["OpenAIImages"]

_SIZES = {"1:1": "1024x1024", "3:2": "1536x1024", "2:3": "1024x1536"}


class OpenAIImages:
    """GPT Image through the openai SDK, one client per key."""

    name = "openai"
    transform_types = PICTURE_KINDS["openai"]

    def __init__(self, base_url: str, model: str, *, timeout: float) -> None:
        self.model = model
        self._clients = OpenAIClients(base_url, timeout=timeout)

    async def generate(self, lease: Lease, request: ImageRequest) -> Image:
        images = self._clients.get(lease).images.with_raw_response
        size = _SIZES[nearest_ratio(request.aspect_ratio, tuple(_SIZES))]
        call = images.generate(
            model=self.model, prompt=_prompt(request), n=1, size=size, output_format="png"
        )
        return await self._image(call, lease)

    async def transform(
        self, lease: Lease, request: ImageRequest, picture: Picture, strength: float
    ) -> Image:
        """An edit of `picture` as the prompt says (GPT Image has no strength)."""
        images = self._clients.get(lease).images.with_raw_response
        upload = (picture.filename, picture.data, picture.content_type)
        call = images.edit(
            model=self.model,
            image=upload,
            prompt=_prompt(request),
            n=1,
            size="auto",
            output_format="png",
        )
        return await self._image(call, lease)

    async def _image(self, call: Awaitable[Any], lease: Lease) -> Image:
        """The image of a raw-response call (generate or edit), its errors typed."""
        try:
            raw = await call
            answer = raw.parse()
        except openai.OpenAIError as exc:
            raise openai_error(exc, provider=self.name, key=lease.key) from None
        if not isinstance(answer, ImagesResponse):
            # The SDK hands over the text of an answer that is not JSON (a proxy's page).
            raise BadAnswer(f"{self.name}: the answer was not JSON")
        first = answer.data[0] if answer.data else None
        try:
            data = base64.b64decode(first.b64_json or "", validate=True) if first else b""
        except (binascii.Error, ValueError):
            raise BadAnswer(f"{self.name}: the image was not base64") from None
        return Image(
            data=data,
            content_type=verified_image_type(data, provider=self.name),
            seed=None,
            model=self.model,
            provider=self.name,
            key_id=lease.key_id,
            headers=rate_headers(raw.headers),
        )

    async def aclose(self) -> None:
        await self._clients.aclose()


def _prompt(request: ImageRequest) -> str:
    if request.negative_prompt:
        return f"{request.prompt}\n\nAvoid: {request.negative_prompt}"
    return request.prompt
