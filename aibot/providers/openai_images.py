"""Images from OpenAI's GPT Image models (`POST /v1/images/generations`).

GPT Image has three sizes and no seed or negative prompt: the aspect ratio
maps to the nearest size and a negative prompt becomes a sentence of the
prompt.
"""

from __future__ import annotations

import base64
import binascii

import openai
from openai.types import ImagesResponse

from aibot.jobs import BadAnswer
from aibot.keys import Lease
from aibot.providers.base import (
    Image,
    ImageRequest,
    OpenAIClients,
    nearest_ratio,
    openai_error,
)
from aibot.providers.sniff import verified_image_type
from aibot.rate_headers import rate_headers

__all__ = ["OpenAIImages"]

_SIZES = {"1:1": "1024x1024", "3:2": "1536x1024", "2:3": "1024x1536"}


class OpenAIImages:
    """GPT Image through the openai SDK, one client per key."""

    name = "openai"

    def __init__(self, base_url: str, model: str, *, timeout: float) -> None:
        self.model = model
        self._clients = OpenAIClients(base_url, timeout=timeout)

    async def generate(self, lease: Lease, request: ImageRequest) -> Image:
        prompt = request.prompt
        if request.negative_prompt:
            prompt = f"{prompt}\n\nAvoid: {request.negative_prompt}"
        client = self._clients.get(lease)
        try:
            raw = await client.images.with_raw_response.generate(
                model=self.model,
                prompt=prompt,
                n=1,
                size=_SIZES[nearest_ratio(request.aspect_ratio, tuple(_SIZES))],
                output_format="png",
            )
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
