"""Fault injection for the fake providers: make the next requests fail on purpose.

`Faults.inject("openai", "500", times=2)` makes the next two matching requests
answer a 5xx. A request consumes at most one fault: the oldest injection that
matches its provider, its key (when the injection names one), its endpoint
(when the injection names one) and the endpoints the fault makes sense for
(a slow stream only on chat, a failed video only on video creation).

`broken_image(fault)` is what an `image_*` fault sends where the image belongs;
`html_page(headers)` the page `image_html` answers instead of any API's answer.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp import web

from .config import PROVIDER_NAMES

__all__ = [
    "ENDPOINTS",
    "FAULTS",
    "GENERATING",
    "IMAGE_BODY_FAULTS",
    "Faults",
    "broken_image",
    "html_page",
]

# Fault kinds and what each does (the wire form is each provider's own):
FAULTS = (
    "500",  # a 5xx server error
    "timeout",  # hold the request for `timeout_delay` seconds, then answer
    "slow_answer",  # do the work at once, hold its answer `timeout_delay` seconds
    "lost_answer",  # do the work (a task made, a charge taken), then answer a 5xx
    "invalid_key",  # answer as if the key were invalid
    "reject",  # the input is refused by the safety system
    "unknown_model",  # a 404: the model asked for does not exist (retired, misspelled)
    "filtered",  # the output is filtered (Stability CONTENT_FILTERED, chat content_filter)
    "slow_stream",  # chat chunks arrive `slow_chunk_delay` apart
    "rate_limit",  # a 429 whatever the key's budget
    "video_fail",  # the video task ends in Fail
    # A chat stream that goes wrong after half its words:
    "cut_stream",  # the body ends there: no finish reason, no [DONE]
    "drop_stream",  # the connection is closed there, mid-body
    "bad_event",  # one event there is not JSON (the stream goes on after it)
    # A 200 whose image is not an image (see `broken_image`):
    "image_json",  # Stability: an application/json body; OpenAI, MiniMax: JSON in the base64
    "image_html",  # every provider: a text/html page (a proxy's) instead of the answer
    "image_empty",  # Stability: image/png with no bytes; OpenAI, MiniMax: empty base64
    "image_garbage",  # labelled an image (image/png, or base64), bytes that are not one
)
IMAGE_BODY_FAULTS = frozenset({"image_json", "image_html", "image_empty", "image_garbage"})
# Endpoints behind the gate (MiniMax's `/download/...` links need no key and have no faults).
ENDPOINTS = frozenset({"chat", "image", "video", "video_query", "file"})
# Endpoints that make something (and so can be refused or filtered or billed).
GENERATING = frozenset({"chat", "image", "video"})
_APPLIES: dict[str, frozenset[str]] = {
    "reject": GENERATING,
    "unknown_model": GENERATING,
    "filtered": frozenset({"chat", "image"}),
    "slow_stream": frozenset({"chat"}),
    "cut_stream": frozenset({"chat"}),
    "drop_stream": frozenset({"chat"}),
    "bad_event": frozenset({"chat"}),
    "video_fail": frozenset({"video"}),
    **dict.fromkeys(IMAGE_BODY_FAULTS, frozenset({"image"})),
}
_BROKEN_IMAGES = {
    # Stability's answer to a job still running on its asynchronous endpoints.
    "image_json": b'{"id": "a6dc6c6e20acda010fe14d71f180658f", "status": "in-progress"}',
    "image_html": b"<html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>502 Bad Gateway</h1></body></html>",
    "image_empty": b"",
    "image_garbage": b"\x00\x01 not an image at all \xfe\xff" * 4,
}


@dataclass(slots=True)
class _Injection:
    provider: str
    fault: str
    times: int
    key: str | None = field(default=None, repr=False)
    endpoint: str | None = None

    def matches(self, provider: str, endpoint: str, key: str | None) -> bool:
        return (
            self.provider == provider
            and (self.key is None or self.key == key)
            and (self.endpoint is None or self.endpoint == endpoint)
            and endpoint in _APPLIES.get(self.fault, frozenset({endpoint}))
        )


class Faults:
    """Pending injected faults; safe to use from the test thread and the server thread."""

    def __init__(self) -> None:
        self._pending: list[_Injection] = []
        self._lock = threading.Lock()

    def inject(
        self,
        provider: str,
        fault: str,
        times: int = 1,
        key: str | None = None,
        *,
        endpoint: str | None = None,
    ) -> None:
        """Make the next `times` matching requests suffer `fault` (one of FAULTS)."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {', '.join(FAULTS)}")
        if provider not in PROVIDER_NAMES:
            raise ValueError(f"unknown provider {provider!r}; one of {', '.join(PROVIDER_NAMES)}")
        if endpoint is not None and endpoint not in ENDPOINTS:
            raise ValueError(
                f"unknown endpoint {endpoint!r}; one of {', '.join(sorted(ENDPOINTS))}"
            )
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._pending.append(_Injection(provider, fault, times, key, endpoint))

    def take(self, provider: str, endpoint: str, key: str | None) -> str | None:
        """Consume the oldest fault matching this request; None when there is none."""
        with self._lock:
            for injection in self._pending:
                if injection.matches(provider, endpoint, key):
                    injection.times -= 1
                    if injection.times == 0:
                        self._pending.remove(injection)
                    return injection.fault
        return None

    def pending(self, provider: str | None = None) -> int:
        """How many fault uses are still waiting (for one provider, or all)."""
        with self._lock:
            return sum(i.times for i in self._pending if provider in (None, i.provider))

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()


def broken_image(fault: str) -> bytes:
    """The bytes an `image_*` fault puts where the image belongs."""
    return _BROKEN_IMAGES[fault]


def html_page(headers: Mapping[str, str]) -> web.Response:
    """A proxy's error page with status 200, where an API's answer belongs."""
    return web.Response(
        body=_BROKEN_IMAGES["image_html"], content_type="text/html", headers=headers
    )
