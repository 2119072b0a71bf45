"""Images from Stability AI's stable-image API (core, ultra, sd3).

Requests are always multipart/form-data, even with no file, and ask for raw
bytes (`accept: image/*`). A 200 can still be a refusal: a blurred image with
`finish-reason: CONTENT_FILTERED`, so the header is checked; or not an image at
all (JSON, an HTML page, nothing), so the body is checked too.

`transform` makes an image from a picture: Ultra takes `image` and `strength`
itself; otherwise SD3's `mode=image-to-image` does (Core cannot, so a Core
setup transforms on SD3, with the configured SD3 model if there is one). The
output follows the picture's shape: no `aspect_ratio` then.
"""

from __future__ import annotations

import aiohttp

from aibot.catalogue import PICTURE_KINDS
from aibot.jobs import AibotError, Rejected, Unavailable
from aibot.leases import Lease
from aibot.providers.base import (
    HttpSession,
    Image,
    ImageRequest,
    error_for_status,
    json_error_code,
    nearest_ratio,
)
from aibot.providers.picture import Picture
from aibot.providers.sniff import verified_image_type
from aibot.rate_headers import rate_headers

__all__ = ["StabilityImages"]

_RATIOS = ("16:9", "1:1", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21")
_ENDPOINTS = ("core", "ultra", "sd3")
# After a 429 Stability locks the key out for 60 s.
_LOCKOUT_SECONDS = 60.0


class StabilityImages:
    """`model` is an endpoint (core, ultra, sd3) or an SD3 model (sd3.5-large, ...)."""

    name = "stability"
    transform_types = PICTURE_KINDS["stability"]

    def __init__(self, base_url: str, model: str = "core", *, timeout: float) -> None:
        self.model = model
        endpoint = model if model in _ENDPOINTS else "sd3"
        root = f"{base_url.rstrip('/')}/v2beta/stable-image/generate"
        self._url = f"{root}/{endpoint}"
        self._transform_url = f"{root}/{'ultra' if model == 'ultra' else 'sd3'}"
        self._sd3_model = None if model in _ENDPOINTS else model
        self._http = HttpSession(timeout)

    async def generate(self, lease: Lease, request: ImageRequest) -> Image:
        form = self._form(request)
        form.add_field("aspect_ratio", nearest_ratio(request.aspect_ratio, _RATIOS))
        return await self._post(self._url, form, lease, request)

    async def transform(
        self, lease: Lease, request: ImageRequest, picture: Picture, strength: float
    ) -> Image:
        """An image made from `picture`; `strength` from 0 (keep it) to 1 (ignore it)."""
        form = self._form(request)
        if self.model != "ultra":
            form.add_field("mode", "image-to-image")
        form.add_field("strength", f"{min(max(strength, 0.0), 1.0):g}")
        form.add_field(
            "image", picture.data, filename=picture.filename, content_type=picture.content_type
        )
        return await self._post(self._transform_url, form, lease, request)

    async def _post(
        self, url: str, form: aiohttp.FormData, lease: Lease, request: ImageRequest
    ) -> Image:
        headers = {"authorization": f"Bearer {lease.key}", "accept": "image/*"}
        try:
            async with self._http.get().post(url, data=form, headers=headers) as answer:
                if answer.status != 200:
                    raise await self._error(answer, lease)
                data = await answer.read()
                found = answer.headers
        except (aiohttp.ClientError, TimeoutError):
            raise Unavailable(f"{self.name}: connection failed") from None
        declared = found.get("content-type", "")
        content_type = verified_image_type(data, provider=self.name, declared=declared)
        if found.get("finish-reason", "SUCCESS").upper() == "CONTENT_FILTERED":
            raise Rejected(f"{self.name}: the image was filtered")
        seed = found.get("seed")
        return Image(
            data=data,
            content_type=content_type,
            seed=int(seed) if seed and seed.isdigit() else request.seed,
            model=self.model,
            provider=self.name,
            key_id=lease.key_id,
            headers=rate_headers(found),
        )

    def _form(self, request: ImageRequest) -> aiohttp.FormData:
        form = aiohttp.FormData(default_to_multipart=True)
        form.add_field("prompt", request.prompt)
        form.add_field("output_format", "png")
        if request.negative_prompt:
            form.add_field("negative_prompt", request.negative_prompt)
        if request.seed is not None:
            form.add_field("seed", str(request.seed))
        if self._sd3_model:
            form.add_field("model", self._sd3_model)
        return form

    async def _error(self, answer: aiohttp.ClientResponse, lease: Lease) -> AibotError:
        try:
            body = await answer.json(content_type=None)
        except (ValueError, aiohttp.ClientError):
            body = None
        code, message = json_error_code(body)
        error = error_for_status(
            answer.status,
            provider=self.name,
            code=code,
            message=message,
            headers=answer.headers,
            key=lease.key,
        )
        if answer.status == 429 and error.retry_after is None:
            error.retry_after = _LOCKOUT_SECONDS
        if answer.status == 403 and not isinstance(error, Rejected):
            # Stability's 403 is its content moderation, whatever the body says (a
            # bad key is a 401): the prompt is refused, the key stays in use.
            error = Rejected(f"{self.name}: refused by content moderation")
        return error

    async def aclose(self) -> None:
        await self._http.aclose()
