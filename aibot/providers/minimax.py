"""MiniMax's native image and video APIs (chat is OpenAI-compatible: see
`OpenAIChat.minimax`).

Native endpoints answer HTTP 200 with `base_resp: {status_code, status_msg}`;
a non-zero code is the real error and maps to a typed error here. A video is a
task: create it, query it until it is done, retrieve its file's download URL,
download the bytes.

From a picture: image-01 keeps a character's likeness from it (`subject_reference`,
no strength), and a video starts from it (`first_frame_image`); both take the
picture as a base64 data URL, so no link to it leaves the bot.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from aibot.catalogue import PICTURE_KINDS
from aibot.jobs import (
    AibotError,
    BadAnswer,
    BadKey,
    BadRequest,
    RateLimited,
    Rejected,
    Unavailable,
)
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
from aibot.secrets import scrub

__all__ = [
    "MAX_VIDEO_BYTES",
    "MiniMaxImages",
    "MiniMaxVideo",
    "VideoFile",
    "VideoStatus",
    "VideoTask",
    "base_resp_error",
]

_RATIOS = ("1:1", "16:9", "4:3", "3:2", "2:3", "3:4", "9:16", "21:9")
# Discord's upload limit for a bot without boosts; larger clips are sent as a link.
MAX_VIDEO_BYTES = 10 * 1024 * 1024
_ERRORS: dict[int, tuple[type[AibotError], str]] = {
    1000: (Unavailable, "unknown error"),
    1001: (Unavailable, "timed out"),
    1002: (RateLimited, "rate limited"),
    1004: (BadKey, "not authorized"),
    1008: (BadKey, "insufficient balance"),
    1026: (Rejected, "the prompt was flagged as sensitive"),
    1027: (Rejected, "the output was flagged as sensitive"),
    2013: (BadRequest, "invalid parameters"),
    2049: (BadKey, "invalid API key"),
}
_FAILED = frozenset({"fail", "failed", "unknown"})


@dataclass(slots=True, frozen=True)
class VideoTask:
    """A created task and the key that made it (only that account can poll it)."""

    task_id: str
    key_fingerprint: str
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(slots=True, frozen=True)
class VideoStatus:
    """`status` as MiniMax says it (Preparing, Queueing, Processing, Success, Fail)."""

    status: str
    file_id: str = ""
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def done(self) -> bool:
        return self.status.lower() == "success"

    @property
    def failed(self) -> bool:
        return self.status.lower() in _FAILED


@dataclass(slots=True, frozen=True)
class VideoFile:
    """A finished clip: where to download it, its size, the (redacted) key that asked."""

    download_url: str
    size: int = 0
    filename: str = "video.mp4"
    key_id: str = ""
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)


def base_resp_error(body: Any, *, key: str | None = None) -> AibotError | None:
    """The typed error a native answer's `base_resp` carries, or None for success."""
    resp = body.get("base_resp") if isinstance(body, Mapping) else None
    if not isinstance(resp, Mapping):
        return BadAnswer("minimax: the answer had no status")
    code = int(resp.get("status_code") or 0)
    if code == 0:
        return None
    kind, reason = _ERRORS.get(code, (Unavailable, "error"))
    message = scrub(str(resp.get("status_msg") or ""), key)
    detail = f"minimax: {code} {reason}"
    if kind in (BadRequest, Rejected) and message:
        detail = f"{detail}: {message}"
    return kind(detail)


class _NativeApi:
    """JSON calls to the native API with the leased key; errors typed."""

    def __init__(self, base_url: str, *, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = HttpSession(timeout)

    async def call(
        self, lease: Lease, method: str, path: str, **kwargs: Any
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """(body, rate-limit headers) of a successful call."""
        headers = {"authorization": f"Bearer {lease.key}"}
        url = f"{self.base_url}{path}"
        try:
            async with self.http.get().request(method, url, headers=headers, **kwargs) as answer:
                try:
                    body = await answer.json(content_type=None)
                except ValueError:
                    body = None
                if answer.status != 200:
                    code, message = json_error_code(body)
                    raise error_for_status(
                        answer.status,
                        provider="minimax",
                        code=code,
                        message=message,
                        headers=answer.headers,
                        key=lease.key,
                    )
                found = rate_headers(answer.headers)
        except (aiohttp.ClientError, TimeoutError):
            raise Unavailable("minimax: connection failed") from None
        if error := base_resp_error(body, key=lease.key):
            raise error
        return body, found

    async def aclose(self) -> None:
        await self.http.aclose()


class MiniMaxImages:
    """image-01: one image per call, as base64; no negative prompt, so it
    becomes a sentence of the prompt."""

    name = "minimax"
    transform_types = PICTURE_KINDS["minimax"]

    def __init__(self, base_url: str, model: str = "image-01", *, timeout: float) -> None:
        self.model = model
        self._api = _NativeApi(base_url, timeout=timeout)

    async def generate(self, lease: Lease, request: ImageRequest) -> Image:
        return await self._image(lease, request, self._payload(request))

    async def transform(
        self, lease: Lease, request: ImageRequest, picture: Picture, strength: float
    ) -> Image:
        """An image keeping the likeness of the character in `picture` (image-01 has
        no strength)."""
        payload = self._payload(request)
        payload["subject_reference"] = [{"type": "character", "image_file": picture.data_url()}]
        return await self._image(lease, request, payload)

    def _payload(self, request: ImageRequest) -> dict[str, Any]:
        prompt = request.prompt
        if request.negative_prompt:
            prompt = f"{prompt}\n\nAvoid: {request.negative_prompt}"
        payload: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt,
            "aspect_ratio": nearest_ratio(request.aspect_ratio, _RATIOS),
            "response_format": "base64",
            "n": 1,
            "prompt_optimizer": False,
        }
        if request.seed is not None:
            payload["seed"] = request.seed
        return payload

    async def _image(self, lease: Lease, request: ImageRequest, payload: dict[str, Any]) -> Image:
        body, headers = await self._api.call(lease, "POST", "/v1/image_generation", json=payload)
        data = _first_image(body)
        if not data:
            failed = (body.get("metadata") or {}).get("failed_count")
            if failed and str(failed) != "0":
                raise Rejected("minimax: the image was filtered")
        return Image(
            data=data,
            content_type=verified_image_type(data, provider=self.name),
            seed=request.seed,
            model=self.model,
            provider=self.name,
            key_id=lease.key_id,
            headers=headers,
        )

    async def aclose(self) -> None:
        await self._api.aclose()


def _first_image(body: Mapping[str, Any]) -> bytes:
    images = (body.get("data") or {}).get("image_base64") or []
    try:
        return base64.b64decode(images[0], validate=True) if images else b""
    except (binascii.Error, ValueError, TypeError):
        raise BadAnswer("minimax: the image was not base64") from None


class MiniMaxVideo:
    """Hailuo video tasks. `download` needs no key (the URL is pre-signed) and
    gives up on clips larger than `max_bytes`, which are then sent as a link."""

    name = "minimax"

    def __init__(
        self, base_url: str, model: str, *, timeout: float, max_bytes: int = MAX_VIDEO_BYTES
    ) -> None:
        self.model = model
        self.max_bytes = max_bytes
        self._api = _NativeApi(base_url, timeout=timeout)

    async def create(
        self,
        lease: Lease,
        prompt: str,
        *,
        model: str | None = None,
        duration: int = 6,
        first_frame: str | None = None,
    ) -> VideoTask:
        """A new task; `first_frame` (a data URL or a URL) is the picture the clip
        starts from."""
        # 768P: what the price table's estimate is for, and every duration allows it.
        payload = {
            "model": model or self.model,
            "prompt": prompt,
            "duration": duration,
            "resolution": "768P",
        }
        if first_frame:
            payload["first_frame_image"] = first_frame
        body, headers = await self._api.call(lease, "POST", "/v1/video_generation", json=payload)
        task_id = str(body.get("task_id") or "")
        if not task_id:
            raise Unavailable("minimax: no task id in the answer")
        return VideoTask(task_id, lease.fingerprint, headers)

    async def query(self, lease: Lease, task_id: str) -> VideoStatus:
        params = {"task_id": task_id}
        body, headers = await self._api.call(
            lease, "GET", "/v1/query/video_generation", params=params
        )
        return VideoStatus(str(body.get("status") or ""), str(body.get("file_id") or ""), headers)

    async def retrieve(self, lease: Lease, file_id: str) -> VideoFile:
        params = {"file_id": file_id}
        body, headers = await self._api.call(lease, "GET", "/v1/files/retrieve", params=params)
        file = body.get("file") or {}
        url = str(file.get("download_url") or "")
        if not url:
            raise Unavailable("minimax: the file has no download URL")
        size, name = int(file.get("bytes") or 0), str(file.get("filename") or "")
        return VideoFile(url, size, name, lease.key_id, headers)

    async def download(self, url: str) -> bytes | None:
        """The clip's bytes, or None when it is larger than `max_bytes`."""
        try:
            async with self._api.http.get().get(url) as answer:
                if answer.status != 200:
                    raise Unavailable(f"minimax: download answered {answer.status}")
                if (answer.content_length or 0) > self.max_bytes:
                    return None
                data = bytearray()
                async for chunk in answer.content.iter_chunked(1 << 16):
                    data += chunk
                    if len(data) > self.max_bytes:
                        return None
        except (aiohttp.ClientError, TimeoutError):
            raise Unavailable("minimax: download failed") from None
        return bytes(data)

    async def aclose(self) -> None:
        await self._api.aclose()
