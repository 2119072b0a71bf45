"""The steps every fake request goes through, whatever the provider.

`endpoint(checkpoint, wire, name, impl)` turns a provider's handler into an aiohttp
handler that: reads the body (the wire's way), counts and records the request,
checks the key (missing, invalid, out of quota), consumes an injected fault,
spends a token of the key's bucket, and only then runs the handler. Anything
that is not a success is a `Refusal` in neutral terms (`rate_limited`,
`bad_key`, ...); the provider's `Wire` renders it in that API's own shape.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from .config import FakeConfig
from .counters import Counters, Received
from .faults import GENERATING, Faults
from .limits import Buckets, Verdict

__all__ = ["Admission", "Checkpoint", "Handler", "Refusal", "Wire", "bearer_key", "endpoint"]

# Refusal kinds each wire knows how to render.
REFUSALS = (
    "missing_key",
    "bad_key",
    "no_quota",
    "rate_limited",
    "server_error",
    "rejected",
    "filtered",
    "bad_request",
    "not_found",
    "too_large",
    "unprocessable",
)


class Refusal(Exception):
    """A non-success answer in provider-neutral terms; `message` is safe to send back."""

    def __init__(
        self,
        kind: str,
        message: str = "",
        *,
        param: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        assert kind in REFUSALS, kind
        super().__init__(message or kind)
        self.kind = kind
        self.message = message
        self.param = param
        self.retry_after = retry_after


@dataclass(slots=True)
class Admission:
    """What the checkpoint decided for one request, for the handler and the wire.

    `fault` is an injected fault the handler itself must act on (slow_stream,
    filtered, video_fail, timeout, the stream and image-body faults); `headers`
    go on every answer.
    """

    provider: str
    endpoint: str
    key: str = field(repr=False)
    request_id: str
    verdict: Verdict | None = None
    fault: str | None = None
    refusal: Refusal | None = None
    headers: dict[str, str] = field(default_factory=dict)


class Wire(Protocol):
    """One API's way of reading requests and writing headers and errors."""

    provider: str

    async def read(self, request: web.Request) -> dict[str, Any]:
        """The request's body as a dict; raise Refusal("bad_request") when unreadable."""

    def headers(self, admission: Admission) -> dict[str, str]:
        """Headers for every answer (request id, rate-limit state)."""

    def refuse(self, refusal: Refusal, admission: Admission) -> web.Response:
        """The refusal in this API's error shape."""


Impl = Callable[[web.Request, dict[str, Any], Admission], Awaitable[web.StreamResponse]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Checkpoint:
    """Admission for every fake request: counters, keys, faults and buckets together."""

    def __init__(self, config: FakeConfig, counters: Counters, faults: Faults) -> None:
        self.config = config
        self.counters = counters
        self.faults = faults
        self.buckets = Buckets()
        self._ids = itertools.count(1)

    def new_id(self) -> int:
        """A fresh number for request, task and file ids (unique within this world)."""
        return next(self._ids)

    def admit(
        self, provider: str, name: str, key: str | None, path: str, body: dict[str, Any]
    ) -> Admission:
        """Count the request and decide whether it may proceed (see the module doc)."""
        self.counters.request(Received(provider, name, path, body), key)
        admission = Admission(provider, name, key or "", f"req_{self.new_id():012d}")
        admission.refusal = self._check(admission)
        return admission

    def _check(self, adm: Admission) -> Refusal | None:
        config = self.config
        if not adm.key:
            return Refusal("missing_key", "no API key was provided")
        if config.key_is_invalid(adm.key):
            return Refusal("bad_key", "invalid API key")
        if adm.endpoint in GENERATING and adm.key in config.exhausted_keys:
            return Refusal("no_quota", "out of quota")
        adm.fault = self.faults.take(adm.provider, adm.endpoint, adm.key)
        if adm.fault == "invalid_key":
            return Refusal("bad_key", "invalid API key")
        rpm = config.rpm_for(adm.provider, adm.key)
        forced = adm.fault == "rate_limit"
        adm.verdict = self.buckets.take(adm.provider, adm.key, rpm, force_refusal=forced)
        if adm.verdict is not None and not adm.verdict.allowed:
            return Refusal("rate_limited", retry_after=adm.verdict.retry_after)
        if adm.fault == "500":
            return Refusal("server_error")
        if adm.fault == "reject":
            return Refusal("rejected", "the input was flagged by the safety system")
        if adm.fault == "unknown_model":
            return Refusal("not_found", "The model does not exist or you do not have access to it.")
        return None

    def reset(self) -> None:
        """Counters, faults and buckets back to a fresh start (the config stays)."""
        self.counters.reset()
        self.faults.clear()
        self.buckets.clear()


def bearer_key(request: web.Request) -> str | None:
    """The key from `Authorization: Bearer KEY` (the scheme is optional), or None."""
    value = request.headers.get("Authorization", "").strip()
    if value[:7].lower() == "bearer ":
        value = value[7:].strip()
    return value or None


def endpoint(checkpoint: Checkpoint, wire: Wire, name: str, impl: Impl) -> Handler:
    """An aiohttp handler for `impl` behind the checkpoint (see the module doc)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        key = bearer_key(request)
        unreadable: Refusal | None = None
        try:
            body = await wire.read(request)
        except Refusal as refusal:
            body, unreadable = {}, refusal
        admission = checkpoint.admit(wire.provider, name, key, request.path, body)
        admission.headers.update(wire.headers(admission))
        if admission.fault == "timeout":
            await asyncio.sleep(checkpoint.config.timeout_delay)
        try:
            refused = admission.refusal or unreadable
            if refused is not None:
                raise refused
            response = await impl(request, body, admission)
            # Done (a task made, a charge taken) whether the client hears of it or not.
            if admission.fault == "slow_answer":
                await asyncio.sleep(checkpoint.config.timeout_delay)
            elif admission.fault == "lost_answer":
                raise Refusal("server_error")
        except Refusal as refusal:
            checkpoint.counters.outcome(wire.provider, refusal.kind)
            return wire.refuse(refusal, admission)
        checkpoint.counters.outcome(wire.provider, "ok")
        return response

    return handle
