"""The fake OpenAI API: chat completions (streamed or not), image generation
and image edits (`/v1/images/edits`, multipart: `image` or `image[]` parts, 1 to
16 PNG, WebP or JPEG files under 50 MB, a `prompt` up to 32,000 characters,
optional `mask`, `input_fidelity`, `size`, `quality`, `output_format`, `n`; the
pictures are recorded as `Upload`s, see `aibot.sandbox.uploads`).

Errors are `{"error": {message, type, param, code}}` with OpenAI's statuses;
every answer carries `x-request-id`, and every answer to a key that passed
the key check carries `x-ratelimit-limit-requests`, `-remaining-requests`
and `-reset-requests` from the key's bucket (remaining counts the bucket's
whole tokens, reset is the time until it is full again). Images are always
PNG, whatever `output_format` asks for; under an `image_*` fault the base64
holds something else (`faults.broken_image`), or the answer is an HTML page.
"""

from __future__ import annotations

import base64
import json
import math
import time
from typing import Any

from aiohttp import web

from .chat import ChatCompletions
from .checkpoint import Admission, Checkpoint, Refusal, endpoint
from .faults import IMAGE_BODY_FAULTS, broken_image, html_page
from .limits import format_duration
from .media import colour_for, png
from .uploads import Upload, read_form

__all__ = ["OpenAIFormWire", "OpenAIWire", "build_app"]

# refusal kind -> (status, type, code, default message)
_ERRORS: dict[str, tuple[int, str, str | None, str]] = {
    "missing_key": (
        401,
        "invalid_request_error",
        None,
        "You didn't provide an API key. You need to provide your API key in an "
        "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
    ),
    "bad_key": (
        401,
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
    ),
    "no_quota": (
        429,
        "insufficient_quota",
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details.",
    ),
    "rate_limited": (429, "requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    "server_error": (
        500,
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    "rejected": (
        400,
        "invalid_request_error",
        "content_policy_violation",
        "Your request was rejected as a result of our safety system.",
    ),
    "filtered": (
        400,
        "invalid_request_error",
        "content_policy_violation",
        "The generated output was rejected as a result of our safety system.",
    ),
    "bad_request": (400, "invalid_request_error", None, "Invalid request."),
    "not_found": (404, "invalid_request_error", None, "Not found."),
    "too_large": (413, "invalid_request_error", None, "Request too large."),
    "unprocessable": (400, "invalid_request_error", None, "Invalid request."),
}
_FORMATS = ("png", "jpeg", "webp")
_MAX_EDIT_IMAGES = 16
_MAX_EDIT_IMAGE_BYTES = 50 * 1024**2
_MAX_EDIT_BODY = 64 * 1024**2


class OpenAIWire:
    """OpenAI's JSON bodies, rate-limit headers and error shape."""

    provider = "openai"

    async def read(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            raise Refusal("bad_request", "We could not parse the JSON body of your request.")
        return body

    def headers(self, admission: Admission) -> dict[str, str]:
        headers = {"x-request-id": admission.request_id}
        verdict = admission.verdict
        if verdict is not None:
            headers["x-ratelimit-limit-requests"] = str(verdict.limit)
            headers["x-ratelimit-remaining-requests"] = str(verdict.remaining)
            headers["x-ratelimit-reset-requests"] = format_duration(verdict.reset)
        return headers

    def error(self, refusal: Refusal) -> dict[str, Any]:
        """The `{"error": {...}}` body for a refusal."""
        _status, kind, code, message = _ERRORS[refusal.kind]
        if refusal.kind == "rate_limited" and refusal.retry_after is not None:
            message = f"{message} Please try again in {format_duration(refusal.retry_after)}."
        elif refusal.kind in ("bad_request", "not_found") and refusal.message:
            message = refusal.message
        return {"error": {"message": message, "type": kind, "param": refusal.param, "code": code}}

    def refuse(self, refusal: Refusal, admission: Admission) -> web.Response:
        headers = dict(admission.headers)
        if refusal.kind == "rate_limited" and refusal.retry_after is not None:
            headers["retry-after"] = str(max(math.ceil(refusal.retry_after), 1))
            headers["retry-after-ms"] = str(math.ceil(refusal.retry_after * 1000))
        status = _ERRORS[refusal.kind][0]
        return web.json_response(self.error(refusal), status=status, headers=headers)


class OpenAIFormWire(OpenAIWire):
    """The multipart endpoints (image edits): the same headers and errors."""

    async def read(self, request: web.Request) -> dict[str, Any]:
        return await read_form(request, max_body=_MAX_EDIT_BODY)


def image_size(size: Any) -> tuple[int, int]:
    """(width, height) of an OpenAI `size` such as "1536x1024" or "auto"."""
    if size in (None, "auto"):
        return 1024, 1024
    try:
        width, height = (int(side) for side in str(size).split("x"))
    except ValueError:
        width = height = 0
    if not (256 <= width <= 4096 and 256 <= height <= 4096):
        raise Refusal("bad_request", f"Invalid value: {size!r}.", param="size")
    return width, height


async def generate_images(
    request: web.Request, body: dict[str, Any], adm: Admission
) -> web.StreamResponse:
    """`POST /v1/images/generations`: `n` PNGs as `b64_json` (scaled down 16 times)."""
    prompt, n = body.get("prompt"), body.get("n", 1)
    if not isinstance(prompt, str) or not prompt.strip():
        raise Refusal("bad_request", "Missing required parameter: 'prompt'.", param="prompt")
    if not isinstance(n, int) or not 1 <= n <= 10:
        raise Refusal("bad_request", "n must be between 1 and 10.", param="n")
    if body.get("response_format") not in (None, "b64_json"):
        raise Refusal(
            "bad_request", "Unknown parameter: 'response_format'.", param="response_format"
        )
    if body.get("output_format", "png") not in _FORMATS:
        raise Refusal("bad_request", "Invalid output_format.", param="output_format")
    return _images(adm, prompt, n, image_size(body.get("size")))


async def edit_images(
    request: web.Request, body: dict[str, Any], adm: Admission
) -> web.StreamResponse:
    """`POST /v1/images/edits` (multipart): `n` PNGs made from the pictures, as
    `b64_json`; their colour comes from the prompt and the first picture."""
    pictures = body.get("image", body.get("image[]"))
    pictures = pictures if isinstance(pictures, list) else [pictures] if pictures else []
    if not pictures:
        raise Refusal("bad_request", "Missing required parameter: 'image'.", param="image")
    if len(pictures) > _MAX_EDIT_IMAGES:
        raise Refusal("bad_request", "Too many images: at most 16.", param="image")
    for number, picture in enumerate(pictures, 1):
        if not isinstance(picture, Upload) or picture.kind is None:
            message = f"Invalid image file or mode for image {number}, please check your image."
            raise Refusal("bad_request", message, param="image")
        if picture.size > _MAX_EDIT_IMAGE_BYTES:
            raise Refusal("bad_request", f"Image {number} is larger than 50 MB.", param="image")
    mask = body.get("mask")
    if mask is not None and (not isinstance(mask, Upload) or mask.kind != "image/png"):
        raise Refusal("bad_request", "The mask must be a PNG image.", param="mask")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > 32_000:
        raise Refusal("bad_request", "'prompt' must be 1 to 32000 characters.", param="prompt")
    if body.get("input_fidelity") not in (None, "high", "low"):
        raise Refusal("bad_request", "Invalid input_fidelity.", param="input_fidelity")
    if body.get("output_format", "png") not in _FORMATS:
        raise Refusal("bad_request", "Invalid output_format.", param="output_format")
    try:
        n = int(body.get("n", "1"))
    except ValueError:
        n = 0
    if not 1 <= n <= 10:
        raise Refusal("bad_request", "n must be between 1 and 10.", param="n")
    seed = f"{prompt}#{pictures[0].sha256}"
    return _images(adm, seed, n, image_size(body.get("size")), prompt_length=len(prompt))


def _images(
    adm: Admission, prompt: str, n: int, size: tuple[int, int], *, prompt_length: int = 0
) -> web.StreamResponse:
    """The answer of a generation or an edit: `n` PNGs scaled down 16 times (or
    what an injected fault sends instead)."""
    if adm.fault == "filtered":
        raise Refusal("filtered")
    if adm.fault == "image_html":
        return html_page(adm.headers)
    width, height = size
    prompt_length = prompt_length or len(prompt)
    images = [png(width // 16, height // 16, colour_for(f"{prompt}#{i}")) for i in range(n)]
    if adm.fault in IMAGE_BODY_FAULTS:
        images = [broken_image(adm.fault)] * n
    answer = {
        "created": int(time.time()),
        "data": [{"b64_json": base64.b64encode(data).decode()} for data in images],
        "output_format": "png",
        "size": f"{width}x{height}",
        "usage": {
            "input_tokens": prompt_length // 4 + 1,
            "output_tokens": 272 * n,
            "total_tokens": prompt_length // 4 + 1 + 272 * n,
            "input_tokens_details": {"text_tokens": prompt_length // 4 + 1, "image_tokens": 0},
        },
    }
    return web.json_response(answer, headers=adm.headers)


def build_app(gate: Checkpoint) -> web.Application:
    """The OpenAI fake's routes (base URL `http://host:port/v1`)."""
    wire = OpenAIWire()
    chat = ChatCompletions(gate.config)
    app = web.Application(client_max_size=_MAX_EDIT_BODY)
    app.router.add_post("/v1/chat/completions", endpoint(gate, wire, "chat", chat))
    app.router.add_post("/v1/images/generations", endpoint(gate, wire, "image", generate_images))
    edits = endpoint(gate, OpenAIFormWire(), "image", edit_images)
    app.router.add_post("/v1/images/edits", edits)
    return app
