"""What every provider client shares: image request and result types, the
lazily created aiohttp session, and the mapping of HTTP answers to typed errors.

Each client turns its API's failures into the `aibot.jobs` error kinds here, so
the retry policy (`retry.py`) and the pools never look at a status code. An
error's `detail` is safe to show: provider text is scrubbed of key material
and cut short (`aibot.secrets.scrub`), and the original exception is never
chained (its message may quote the key). Rate-limit headers are read by
`aibot.rate_headers`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import openai

from aibot.jobs import (
    AibotError,
    BadKey,
    BadRequest,
    Misconfigured,
    RateLimited,
    Rejected,
    Unavailable,
)
from aibot.leases import Lease
from aibot.rate_headers import retry_after
from aibot.secrets import scrub

__all__ = [
    "HttpSession",
    "Image",
    "ImageProvider",
    "ImageRequest",
    "OpenAIClients",
    "error_for_status",
    "json_error_code",
    "nearest_ratio",
    "openai_error",
]

# Words providers use for a prompt or output their safety system refused.
_SAFETY_WORDS = ("content_policy", "safety", "moderation", "content_filter", "sensitive")


@dataclass(slots=True, frozen=True)
class ImageRequest:
    """What a member asked for; each provider maps it to its own parameters."""

    prompt: str
    aspect_ratio: str = "1:1"
    negative_prompt: str = ""
    seed: int | None = None


@dataclass(slots=True, frozen=True)
class Image:
    """One generated image. `key_id` is the (redacted) key that made it;
    `headers` are the answer's rate-limit headers, which `with_keys` hands to
    the lease to tighten the key's budget."""

    data: bytes = field(repr=False)
    content_type: str
    seed: int | None
    model: str
    provider: str
    key_id: str = ""
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)


class ImageProvider(Protocol):
    """An image API: `generate` makes one image with the leased key."""

    name: str
    model: str

    async def generate(self, lease: Lease, request: ImageRequest) -> Image: ...

    async def aclose(self) -> None: ...


class HttpSession:
    """One aiohttp session per provider object, created on first use (it must be
    made inside the running loop) and closed by `aclose()`."""

    def __init__(self, timeout: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout, raise_for_status=False)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class OpenAIClients:
    """One `AsyncOpenAI` per key, made on first use (inside the loop that uses it)
    and kept. The keys share one HTTP client, so one connection pool and one TLS
    context: making a TLS context takes some 20 ms of processor time, during which
    the bot's event loop serves nothing else. The SDK's own retries are off so every
    429 reaches the key ring."""

    def __init__(self, base_url: str, *, timeout: float) -> None:
        self.base_url = base_url
        self._timeout = timeout
        self._http: openai.DefaultAsyncHttpxClient | None = None
        self._clients: dict[str, openai.AsyncOpenAI] = {}

    def get(self, lease: Lease) -> openai.AsyncOpenAI:
        client = self._clients.get(lease.fingerprint)
        if client is None:
            if self._http is None:
                self._http = openai.DefaultAsyncHttpxClient()
            client = openai.AsyncOpenAI(
                api_key=lease.key,
                base_url=self.base_url,
                max_retries=0,
                timeout=self._timeout,
                http_client=self._http,
            )
            self._clients[lease.fingerprint] = client
        return client

    async def aclose(self) -> None:
        # The per-key clients hold nothing but the shared HTTP client.
        http, self._http, self._clients = self._http, None, {}
        if http is not None:
            await http.aclose()


def openai_error(exc: openai.OpenAIError, *, provider: str, key: str | None) -> AibotError:
    """The typed error for an openai SDK exception (any OpenAI-compatible API)."""
    if isinstance(exc, openai.APITimeoutError):
        return Unavailable(f"{provider}: timed out")
    if isinstance(exc, openai.APIConnectionError):
        return Unavailable(f"{provider}: connection failed")
    if isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, Mapping) else {}
        return error_for_status(
            exc.status_code,
            provider=provider,
            code=exc.code or str(body.get("type") or ""),
            message=str(body.get("message") or ""),
            headers=exc.response.headers,
            key=key,
        )
    if isinstance(exc, openai.APIError):
        # An error event inside a stream that had already answered 200.
        code = exc.code or ""
        if _is_safety(code, exc.message):
            return Rejected(f"{provider}: {scrub(exc.message, key)}")
        return Unavailable(f"{provider}: {code or 'stream error'}")
    return Unavailable(f"{provider}: {type(exc).__name__}")


def error_for_status(
    status: int,
    *,
    provider: str,
    code: str = "",
    message: str = "",
    headers: Mapping[str, str] | None = None,
    key: str | None = None,
) -> AibotError:
    """The typed error for an HTTP error answer. `code` is the provider's error
    code or name (insufficient_quota, content_policy_violation, ...)."""
    code = (code or "").lower()
    text = scrub(message, key)
    label = f"{provider}: {code or status}"
    if status == 429:
        if code == "insufficient_quota":
            return BadKey(f"{provider}: insufficient quota")
        return RateLimited(label, retry_after=retry_after(headers))
    if status in (401, 402, 403) and not _is_safety(code, message):
        return BadKey(f"{provider}: {code or _KEY_REASONS[status]}")
    if 400 <= status < 500 and _is_safety(code, message):
        return Rejected(f"{label}: {text}" if text else label)
    if status in (408, 409) or status >= 500:
        return Unavailable(label)
    if status == 404:
        return Misconfigured(f"{label}: {text}" if text else label)
    if 400 <= status < 500:
        return BadRequest(f"{label}: {text}" if text else label)
    return Unavailable(label)


_KEY_REASONS = {401: "unauthorized", 402: "out of credits", 403: "forbidden"}


def _is_safety(code: str, message: str) -> bool:
    code = code.lower()
    message = message.lower()
    return any(word in code for word in _SAFETY_WORDS) or any(
        word in message for word in _SAFETY_WORDS[:3]
    )


def nearest_ratio(ratio: str, allowed: Sequence[str]) -> str:
    """The allowed `w:h` aspect ratio closest to `ratio` (itself when allowed)."""
    if ratio in allowed:
        return ratio
    wanted = _ratio_value(ratio)
    return min(allowed, key=lambda r: abs(_ratio_value(r) - wanted))


def _ratio_value(ratio: str) -> float:
    try:
        width, height = (float(part) for part in ratio.split(":", 1))
        return width / height if width > 0 and height > 0 else 1.0
    except ValueError:
        return 1.0


def json_error_code(body: Any) -> tuple[str, str]:
    """(code, message) from an error body: OpenAI `{"error": {...}}`,
    Stability `{"name", "errors": [...]}` or anything else."""
    if not isinstance(body, Mapping):
        return "", ""
    error = body.get("error")
    if isinstance(error, Mapping):
        code = error.get("code") or error.get("type") or ""
        return str(code), str(error.get("message") or "")
    errors = body.get("errors")
    message = "; ".join(str(e) for e in errors) if isinstance(errors, list) else ""
    return str(body.get("name") or ""), message or str(body.get("message") or "")
