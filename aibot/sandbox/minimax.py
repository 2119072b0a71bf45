"""The fake MiniMax API: native image, video and file endpoints, and the
OpenAI-compatible chat at `/v1/chat/completions`.

Native endpoints answer HTTP 200 with `base_resp: {status_code, status_msg}`
(0 success, 1002 rate limit, 2049 invalid key, 1004 no key, 1008 balance,
1026/1027 sensitive input/output, 2013 invalid parameters), except a 5xx
fault, which is an HTTP 500 carrying status 1000. The compatible chat answers
OpenAI's error shape with the MiniMax `base_resp` added. Image URLs and video
downloads point at `/download/...` on this same server, without a key, like
the real signed storage links. A task or file of another key is answered as
unknown (2013), exactly as a missing one.

From a picture: image-01 takes `subject_reference: [{"type": "character",
"image_file": URL or data URL}]` (exactly one, JPEG or PNG under 10 MB); a
video takes `first_frame_image` (a URL or a JPEG or PNG data URL under 20 MB),
which text-only models (`T2V-*`) refuse and image-to-video ones (`I2V-*`)
require. Anything else is a 2013, as the real API answers.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from aiohttp import web

from ..secrets import fingerprint
from .chat import ChatCompletions
from .checkpoint import Admission, Checkpoint, Refusal, endpoint
from .counters import Received
from .faults import IMAGE_BODY_FAULTS, broken_image, html_page
from .media import MP4_MIN_SIZE, colour_for, mp4, png
from .openai import OpenAIWire
from .uploads import data_url_upload
from .videos import VideoTask, VideoTasks

__all__ = ["CompatWire", "MiniMaxWire", "build_app"]

_OK = {"status_code": 0, "status_msg": "success"}
# refusal kind -> (status_code, status_msg)
_CODES: dict[str, tuple[int, str]] = {
    "missing_key": (
        1004,
        "login fail: Please carry the API secret key in the 'Authorization' field",
    ),
    "bad_key": (2049, "invalid api key"),
    "no_quota": (1008, "insufficient balance"),
    "rate_limited": (1002, "rate limit exceeded(RPM)"),
    "server_error": (1000, "unknown error"),
    "rejected": (1026, "input new_sensitive"),
    "filtered": (1027, "output new_sensitive"),
    "bad_request": (2013, "invalid params"),
    "not_found": (2013, "invalid params"),
    "too_large": (2013, "invalid params"),
    "unprocessable": (2013, "invalid params"),
}
# aspect ratio -> MiniMax's frame size for image-01
_ASPECTS = {
    "1:1": (1024, 1024),
    "16:9": (1280, 720),
    "4:3": (1152, 864),
    "3:2": (1248, 832),
    "2:3": (832, 1248),
    "3:4": (864, 1152),
    "9:16": (720, 1280),
    "21:9": (1344, 576),
}
_RESOLUTIONS = ("512P", "768P", "1080P")
_MAX_SUBJECT_BYTES = 10 * 1024**2
_MAX_FRAME_BYTES = 20 * 1024**2


def base_resp(refusal: Refusal) -> dict[str, Any]:
    """MiniMax's `base_resp` for a refusal."""
    code, message = _CODES[refusal.kind]
    if code == 2013 and refusal.message:
        message = f"{message}, {refusal.message}"
    return {"status_code": code, "status_msg": message}


class MiniMaxWire:
    """The native endpoints: JSON bodies (query strings for GETs), `base_resp` errors."""

    provider = "minimax"

    async def read(self, request: web.Request) -> dict[str, Any]:
        if request.method == "GET":
            return dict(request.query)
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            raise Refusal("bad_request", "the body is not a JSON object")
        return body

    def headers(self, admission: Admission) -> dict[str, str]:
        return {"Trace-Id": admission.request_id}

    def refuse(self, refusal: Refusal, admission: Admission) -> web.Response:
        status = 500 if refusal.kind == "server_error" else 200
        body = {"base_resp": base_resp(refusal)}
        return web.json_response(body, status=status, headers=admission.headers)


class CompatWire(OpenAIWire):
    """The OpenAI-compatible chat: OpenAI's errors plus `base_resp`, no rate-limit headers."""

    provider = "minimax"

    def headers(self, admission: Admission) -> dict[str, str]:
        return {"Trace-Id": admission.request_id}

    def error(self, refusal: Refusal) -> dict[str, Any]:
        return {**super().error(refusal), "base_resp": base_resp(refusal)}


class _Native:
    """The native handlers, sharing the gate's config and counters and the tasks."""

    def __init__(self, gate: Checkpoint, videos: VideoTasks) -> None:
        self.gate = gate
        self.config = gate.config
        self.videos = videos

    async def image(
        self, request: web.Request, body: dict[str, Any], adm: Admission
    ) -> web.Response:
        prompt, n = _prompt(body, 1500), body.get("n", 1)
        aspect, form = body.get("aspect_ratio", "1:1"), body.get("response_format", "url")
        if aspect not in _ASPECTS:
            raise Refusal("bad_request", "aspect_ratio is not supported", param="aspect_ratio")
        if form not in ("url", "base64") or not isinstance(n, int) or not 1 <= n <= 9:
            raise Refusal("bad_request", "response_format or n is not valid", param="n")
        if "subject_reference" in body:
            picture = _subject(body["subject_reference"], body.get("model"))
            prompt = f"{prompt}#{picture}"
        if adm.fault == "filtered":
            raise Refusal("filtered")
        if adm.fault == "image_html":
            return html_page(adm.headers)
        width, height = (side // 16 for side in _ASPECTS[aspect])
        colours = [colour_for(f"{prompt}#{body.get('seed')}#{i}") for i in range(n)]
        if form == "url":
            origin = str(request.url.origin())
            names = (f"img-{width}x{height}-{bytes(c).hex()}.png" for c in colours)
            data = {"image_urls": [f"{origin}/download/{name}" for name in names]}
        else:
            images = (png(width, height, c) for c in colours)
            if adm.fault in IMAGE_BODY_FAULTS:
                images = (broken_image(adm.fault) for _ in colours)
            data = {"image_base64": [base64.b64encode(i).decode() for i in images]}
        answer = {
            "id": adm.request_id,
            "data": data,
            "metadata": {"success_count": n, "failed_count": 0},
            "base_resp": _OK,
        }
        return web.json_response(answer, headers=adm.headers)

    async def video(
        self, request: web.Request, body: dict[str, Any], adm: Admission
    ) -> web.Response:
        if "first_frame_image" in body:
            _first_frame(body["first_frame_image"], str(body.get("model") or ""))
        else:
            if str(body.get("model") or "").startswith("I2V"):
                raise Refusal("bad_request", "first_frame_image is required for this model")
            _prompt(body, 2000)
        duration, resolution = body.get("duration", 6), body.get("resolution", "768P")
        if duration not in (6, 10) or resolution not in _RESOLUTIONS:
            raise Refusal("bad_request", "duration or resolution is not supported")
        number = self.gate.new_id()
        task = VideoTask(
            task_id=str(10**14 + number),
            file_id=str(3 * 10**14 + number),
            owner=fingerprint(adm.key),
            resolution=resolution,
            seconds=self.config.video_seconds,
            polls=self.config.video_polls,
            fail=adm.fault == "video_fail",
            size=max(self.config.video_bytes, MP4_MIN_SIZE),
            created=time.perf_counter(),
        )
        self.videos.add(task)
        self.gate.counters.video_task()
        return web.json_response({"task_id": task.task_id, "base_resp": _OK}, headers=adm.headers)

    async def query(
        self, request: web.Request, body: dict[str, Any], adm: Admission
    ) -> web.Response:
        task = self.videos.owned(str(body.get("task_id", "")), fingerprint(adm.key))
        if task is None:
            raise Refusal("not_found", "task_id not found", param="task_id")
        status = task.query(time.perf_counter())
        width, height = task.frame if status == "Success" else (0, 0)
        answer = {
            "task_id": task.task_id,
            "status": status,
            "file_id": task.file_id if status == "Success" else "",
            "video_width": width,
            "video_height": height,
            "base_resp": _OK,
        }
        return web.json_response(answer, headers=adm.headers)

    async def retrieve(
        self, request: web.Request, body: dict[str, Any], adm: Admission
    ) -> web.Response:
        file_id = str(body.get("file_id", ""))
        task = self.videos.file(file_id, fingerprint(adm.key))
        if task is None:
            raise Refusal("not_found", "file_id not found", param="file_id")
        origin = str(request.url.origin())
        file = {
            "file_id": file_id,
            "bytes": task.size,
            "created_at": int(time.time()),
            "filename": f"output_{file_id}.mp4",
            "purpose": "video_generation",
            "download_url": f"{origin}/download/video-{file_id}.mp4",
        }
        return web.json_response({"file": file, "base_resp": _OK}, headers=adm.headers)

    async def download(self, request: web.Request) -> web.Response:
        """`GET /download/{name}`: a generated image or a finished video; no key needed."""
        name = request.match_info["name"]
        received = Received("minimax", "download", request.path, {"name": name})
        self.gate.counters.request(received, None)
        if self.config.broken_downloads > 0:
            self.config.broken_downloads -= 1
            self.gate.counters.outcome("minimax", "unavailable")
            raise web.HTTPServiceUnavailable()
        data, kind = self._file(name)
        if data is None:
            self.gate.counters.outcome("minimax", "not_found")
            raise web.HTTPNotFound()
        self.gate.counters.outcome("minimax", "ok")
        return web.Response(body=data, content_type=kind)

    def _file(self, name: str) -> tuple[bytes | None, str]:
        if name.startswith("video-") and name.endswith(".mp4"):
            task = self.videos.file(name[6:-4])
            return (mp4(task.size) if task else None), "video/mp4"
        try:
            size, colour = name.removeprefix("img-").removesuffix(".png").split("-")
            width, height = (int(side) for side in size.split("x"))
            rgb = bytes.fromhex(colour)
        except ValueError:
            return None, ""
        if not (name.startswith("img-") and len(rgb) == 3 and 0 < width * height <= 1 << 16):
            return None, ""
        return png(width, height, (rgb[0], rgb[1], rgb[2])), "image/png"


def _prompt(body: dict[str, Any], longest: int) -> str:
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > longest:
        raise Refusal("bad_request", f"prompt must be 1 to {longest} characters", param="prompt")
    return prompt


def _picture(value: Any, name: str, max_bytes: int) -> str:
    """A picture given as a URL or a data URL: what identifies it (the URL, or the
    SHA-256 of the data URL's bytes); a 2013 unless it is a JPEG or PNG."""
    if isinstance(value, str) and value.startswith(("https://", "http://")):
        return value
    upload = data_url_upload(value)
    if upload is None or upload.kind not in ("image/jpeg", "image/png"):
        raise Refusal("bad_request", f"{name} must be a JPG or PNG image URL", param=name)
    if upload.size > max_bytes:
        raise Refusal("bad_request", f"{name} is too large", param=name)
    return upload.sha256


def _subject(references: Any, model: Any) -> str:
    """The one character reference image-01 takes; what identifies its picture."""
    if model not in ("image-01", "image-01-live"):
        raise Refusal("bad_request", "subject_reference is not supported by this model")
    if not isinstance(references, list) or len(references) != 1:
        raise Refusal("bad_request", "subject_reference must hold exactly one item")
    [reference] = references
    if not isinstance(reference, dict) or reference.get("type") != "character":
        raise Refusal("bad_request", "subject_reference type must be character")
    return _picture(reference.get("image_file"), "image_file", _MAX_SUBJECT_BYTES)


def _first_frame(frame: Any, model: str) -> str:
    if model.startswith("T2V"):
        raise Refusal("bad_request", "first_frame_image is not supported by this model")
    return _picture(frame, "first_frame_image", _MAX_FRAME_BYTES)


def build_app(gate: Checkpoint, videos: VideoTasks) -> web.Application:
    """The MiniMax fake's routes (base URL `http://host:port`)."""
    native, wire = _Native(gate, videos), MiniMaxWire()
    chat = ChatCompletions(gate.config, think=True, strict_temperature=True)
    app = web.Application(client_max_size=32 * 1024**2)
    app.router.add_post("/v1/chat/completions", endpoint(gate, CompatWire(), "chat", chat))
    app.router.add_post("/v1/image_generation", endpoint(gate, wire, "image", native.image))
    app.router.add_post("/v1/video_generation", endpoint(gate, wire, "video", native.video))
    query = endpoint(gate, wire, "video_query", native.query)
    app.router.add_get("/v1/query/video_generation", query)
    app.router.add_get("/v1/files/retrieve", endpoint(gate, wire, "file", native.retrieve))
    app.router.add_get("/download/{name}", native.download)
    return app
