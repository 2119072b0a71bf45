"""The fake Stability AI API: `POST /v2beta/stable-image/generate/{core|ultra|sd3}`.

Requests must be `multipart/form-data` (anything else is a 400, as the real
API answers a JSON or url-encoded body). `accept: image/*` (or none, or
`*/*`) answers the raw image with the headers `finish-reason` (`SUCCESS`, or
`CONTENT_FILTERED` with a grey image under the `filtered` fault), `seed` and
`x-request-id`; `accept: application/json` answers `{image, finish_reason,
seed}`. Errors are `{id, name, errors: [...]}` with 400, 401, 402, 403, 413,
422 (non-English prompt, when `stability_english_only`), 429 and 500. Images
are always PNG. Seed 0 (or none) means a seed derived from the prompt. Under
an `image_*` fault a 200 carries something else: a JSON document, an HTML
page, or `image/png` bytes that are empty or not an image.

From a picture: sd3 with `mode=image-to-image` needs an `image` file part (PNG,
JPEG or WebP) and a `strength` from 0 to 1, and refuses `aspect_ratio`; Ultra
takes `image` with `strength`; Core takes no image (where the real API may
ignore one, this fake refuses it, to catch a request sent to the wrong place).
The picture is recorded as an `Upload` (`aibot.sandbox.uploads`).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from aiohttp import web

from .checkpoint import Admission, Checkpoint, Refusal, endpoint
from .config import FakeConfig
from .faults import IMAGE_BODY_FAULTS, broken_image, html_page
from .media import colour_for, png
from .uploads import Upload, read_form

__all__ = ["MODES", "StabilityWire", "build_app"]

MODES = ("core", "ultra", "sd3")
_MAX_BODY = 10 * 1024**2
# refusal kind -> (status, name, default message)
_ERRORS: dict[str, tuple[int, str, str]] = {
    "missing_key": (401, "unauthorized", "authorization: missing or invalid bearer token"),
    "bad_key": (401, "unauthorized", "authorization: missing or invalid bearer token"),
    "no_quota": (
        402,
        "payment_required",
        "You lack sufficient credits to make this request. Please purchase more credits.",
    ),
    "rejected": (
        403,
        "content_moderation",
        "Your request was flagged by our content moderation system, as a result your "
        "request was denied and you were not charged.",
    ),
    "filtered": (403, "content_moderation", "The output was flagged by content moderation."),
    "too_large": (413, "payload_too_large", "body: payloads cannot be larger than 10MiB in size"),
    "unprocessable": (
        422,
        "invalid_language",
        "English is the only supported language for this service.",
    ),
    "rate_limited": (
        429,
        "rate_limit_exceeded",
        "You have exceeded the rate limit for this key; please wait before trying again.",
    ),
    "server_error": (
        500,
        "internal_error",
        "An unexpected server error has occurred, please try again later.",
    ),
    "bad_request": (400, "bad_request", "bad request"),
    "not_found": (404, "not_found", "not found"),
}
# aspect ratio -> frame size
_ASPECTS = {
    "1:1": (1024, 1024),
    "16:9": (1344, 768),
    "21:9": (1536, 640),
    "2:3": (832, 1216),
    "3:2": (1216, 832),
    "4:5": (896, 1088),
    "5:4": (1088, 896),
    "9:16": (768, 1344),
    "9:21": (640, 1536),
}
_FORMATS = {
    "core": ("png", "jpeg", "webp"),
    "ultra": ("png", "jpeg", "webp"),
    "sd3": ("png", "jpeg"),
}
_SD3_MODELS = ("sd3.5-large", "sd3.5-large-turbo", "sd3.5-medium")
_PICTURE_TYPES = ("image/png", "image/jpeg", "image/webp")
_MAX_SEED = 4294967294


class StabilityWire:
    """Multipart bodies only; `{id, name, errors}` errors; `x-request-id` on every answer."""

    provider = "stability"

    async def read(self, request: web.Request) -> dict[str, Any]:
        return await read_form(request, max_body=_MAX_BODY)

    def headers(self, admission: Admission) -> dict[str, str]:
        return {"x-request-id": admission.request_id}

    def refuse(self, refusal: Refusal, admission: Admission) -> web.Response:
        status, name, message = _ERRORS[refusal.kind]
        if refusal.kind == "bad_request" and refusal.message:
            message = refusal.message
        body = {"id": admission.request_id, "name": name, "errors": [message]}
        return web.json_response(body, status=status, headers=admission.headers)


class _Generate:
    """One of the three generate endpoints."""

    def __init__(self, config: FakeConfig, mode: str) -> None:
        self.config = config
        self.mode = mode

    async def __call__(
        self, request: web.Request, form: dict[str, Any], adm: Admission
    ) -> web.StreamResponse:
        prompt, aspect, seed = self._validate(form)
        picture = _picture(form, self.mode)
        if picture is not None:
            # The picture's shape is not known here: the output is square, its colour
            # drawn from the prompt and the picture.
            aspect, prompt = "1:1", f"{prompt}#{picture.sha256}"
        accept = request.headers.get("Accept", "image/*")
        if accept != "application/json" and accept != "*/*" and not accept.startswith("image/"):
            raise Refusal("bad_request", "accept: must be image/* or application/json")
        filtered = adm.fault == "filtered"
        width, height = (side // 16 for side in _ASPECTS[aspect])
        image = png(width, height, colour_for(f"{prompt}#{seed}"), blurred=filtered)
        reason = "CONTENT_FILTERED" if filtered else "SUCCESS"
        if adm.fault in IMAGE_BODY_FAULTS:
            return _broken(adm, reason, seed)
        if accept == "application/json":
            body = {
                "image": base64.b64encode(image).decode(),
                "finish_reason": reason,
                "seed": seed,
            }
            return web.json_response(body, headers=adm.headers)
        headers = {**adm.headers, "finish-reason": reason, "seed": str(seed)}
        return web.Response(body=image, content_type="image/png", headers=headers)

    def _validate(self, form: dict[str, Any]) -> tuple[str, str, int]:
        prompt, aspect = form.get("prompt", ""), form.get("aspect_ratio", "1:1")
        if not isinstance(prompt, str) or not isinstance(aspect, str):
            raise Refusal("bad_request", "prompt, aspect_ratio: must be text fields")
        if not prompt.strip() or len(prompt) > 10_000:
            raise Refusal("bad_request", "prompt: must be 1 to 10000 characters")
        if aspect not in _ASPECTS:
            raise Refusal("bad_request", f"aspect_ratio: must be one of {', '.join(_ASPECTS)}")
        if form.get("output_format", "png") not in _FORMATS[self.mode]:
            formats = ", ".join(_FORMATS[self.mode])
            raise Refusal("bad_request", f"output_format: must be one of {formats}")
        if self.mode == "sd3" and form.get("model", _SD3_MODELS[0]) not in _SD3_MODELS:
            raise Refusal("bad_request", f"model: must be one of {', '.join(_SD3_MODELS)}")
        if self.config.stability_english_only and not prompt.isascii():
            raise Refusal("unprocessable")
        try:
            seed = int(form.get("seed", 0))
        except (TypeError, ValueError):
            seed = -1
        if not 0 <= seed <= _MAX_SEED:
            raise Refusal("bad_request", f"seed: must be an integer from 0 to {_MAX_SEED}")
        if seed == 0:
            seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4]) % _MAX_SEED + 1
        return prompt, aspect, seed


def _picture(form: dict[str, Any], mode: str) -> Upload | None:
    """The picture of an image-to-image request, checked; None for text-to-image."""
    image, strength = form.get("image"), form.get("strength")
    if mode == "sd3":
        wanted = form.get("mode", "text-to-image")
        if wanted not in ("text-to-image", "image-to-image"):
            raise Refusal("bad_request", "mode: must be text-to-image or image-to-image")
        if wanted == "text-to-image":
            if image is not None or strength is not None:
                raise Refusal("bad_request", "image, strength: only with mode=image-to-image")
            return None
        if image is None or strength is None:
            raise Refusal("bad_request", "image, strength: required with mode=image-to-image")
        if "aspect_ratio" in form:
            raise Refusal("bad_request", "aspect_ratio: not allowed with mode=image-to-image")
    elif image is None:
        if strength is not None:
            raise Refusal("bad_request", "strength: only with an image")
        return None
    elif mode == "core":
        raise Refusal("bad_request", "image: not accepted by this endpoint")
    elif strength is None:
        raise Refusal("bad_request", "strength: required with an image")
    if not isinstance(image, Upload) or image.kind not in _PICTURE_TYPES:
        raise Refusal("bad_request", "image: must be a jpeg, png or webp file")
    try:
        inside = 0.0 <= float(strength) <= 1.0
    except (TypeError, ValueError):
        inside = False
    if not inside:
        raise Refusal("bad_request", "strength: must be a number from 0 to 1")
    return image


def _broken(adm: Admission, reason: str, seed: int) -> web.Response:
    """A 200 whose body is not the image (see `faults.broken_image`)."""
    if adm.fault == "image_html":
        return html_page(adm.headers)
    body = broken_image(adm.fault or "")
    if adm.fault == "image_json":
        return web.Response(body=body, content_type="application/json", headers=adm.headers)
    headers = {**adm.headers, "finish-reason": reason, "seed": str(seed)}
    return web.Response(body=body, content_type="image/png", headers=headers)


def build_app(gate: Checkpoint) -> web.Application:
    """The Stability fake's routes (base URL `http://host:port`)."""
    wire = StabilityWire()
    app = web.Application(client_max_size=_MAX_BODY + 1024**2)
    for mode in MODES:
        handler = endpoint(gate, wire, "image", _Generate(gate.config, mode))
        app.router.add_post(f"/v2beta/stable-image/generate/{mode}", handler)
    return app
