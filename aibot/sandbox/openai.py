"""The fake OpenAI API: chat completions (streamed or not) and image generation.

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

__all__ = ["OpenAIWire", "build_app"]

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
    if adm.fault == "filtered":
        raise Refusal("filtered")
    if adm.fault == "image_html":
        return html_page(adm.headers)
    width, height = image_size(body.get("size"))
    images = [png(width // 16, height // 16, colour_for(f"{prompt}#{i}")) for i in range(n)]
    if adm.fault in IMAGE_BODY_FAULTS:
        images = [broken_image(adm.fault)] * n
    answer = {
        "created": int(time.time()),
        "data": [{"b64_json": base64.b64encode(data).decode()} for data in images],
        "output_format": "png",
        "size": f"{width}x{height}",
        "usage": {
            "input_tokens": len(prompt) // 4 + 1,
            "output_tokens": 272 * n,
            "total_tokens": len(prompt) // 4 + 1 + 272 * n,
            "input_tokens_details": {"text_tokens": len(prompt) // 4 + 1, "image_tokens": 0},
        },
    }
    return web.json_response(answer, headers=adm.headers)


def build_app(gate: Checkpoint) -> web.Application:
    """The OpenAI fake's routes (base URL `http://host:port/v1`)."""
    wire = OpenAIWire()
    chat = ChatCompletions(gate.config)
    app = web.Application(client_max_size=16 * 1024**2)
    app.router.add_post("/v1/chat/completions", endpoint(gate, wire, "chat", chat))
    app.router.add_post("/v1/images/generations", endpoint(gate, wire, "image", generate_images))
    return app
