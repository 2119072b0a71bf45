"""How one write to Discord is tried again, and what its failures mean: a moment's
trouble to sit out (429, 5xx, a dropped connection), a token that is gone for good
(`GONE_CODES`), or a message Discord refuses whichever way it goes (400, 413).

discord.py already sits some of these out itself: its webhook adapter retries a 5xx
and a 429 from Discord's API (one with a `Via` header) up to five times, and the
bot's own client does so for 500, 502, 504 and 429. `RetryPolicy.run` adds tries of
its own for what reaches it, on one deadline that also covers the time discord.py
spent inside a try, so the two never stack up past `RetryPolicy.total`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeVar

import aiohttp
import discord

__all__ = [
    "DELIVERY_ERRORS",
    "GONE_CODES",
    "INTERMEDIATE",
    "RetryPolicy",
    "Undelivered",
    "acknowledged_already",
    "describe",
    "forbidden",
    "refused",
    "token_gone",
    "transient",
]

log = logging.getLogger("aibot.discord.retries")

T = TypeVar("T")

# Discord's JSON error codes that mean the interaction webhook (its token, or the
# message it would edit) is gone for good: another try cannot succeed.
GONE_CODES: Mapping[int, str] = MappingProxyType(
    {
        10008: "Unknown Message",
        10015: "Unknown Webhook",
        10062: "Unknown Interaction",
        50027: "Invalid Webhook Token",
    }
)
# Statuses that refuse the message itself (malformed, too large), whichever way it goes.
_REFUSED = frozenset({400, 413})
_ACKNOWLEDGED_ALREADY = 40060  # Discord's "Interaction has already been acknowledged"

# What a write to Discord raises when it did not happen (TimeoutError is an OSError).
DELIVERY_ERRORS: tuple[type[BaseException], ...] = (
    discord.HTTPException,
    discord.RateLimited,
    aiohttp.ClientError,
    OSError,
)


class Undelivered(Exception):
    """No way to Discord delivered the answer. `reason` is safe to log (no token)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def transient(error: BaseException) -> bool:
    """Whether `error` may pass if the same write is tried again a little later."""
    if isinstance(error, discord.RateLimited):
        return True
    if isinstance(error, discord.HTTPException):
        return error.code not in GONE_CODES and (error.status == 429 or error.status >= 500)
    return isinstance(error, (aiohttp.ClientError, OSError))


def token_gone(error: BaseException) -> bool:
    """Whether `error` says the interaction webhook is gone (expired or unknown token,
    deleted message): the channel is the only way left."""
    if not isinstance(error, discord.HTTPException):
        return False
    return error.code in GONE_CODES or error.status in (401, 404)


def forbidden(error: BaseException) -> bool:
    """Whether the bot may not post there (no Send Messages or Attach Files): 403."""
    return isinstance(error, discord.HTTPException) and error.status == 403


def acknowledged_already(error: BaseException) -> bool:
    """Whether a response to an interaction found it answered already (code 40060):
    an earlier try reached Discord though its answer did not reach the bot."""
    return isinstance(error, discord.HTTPException) and error.code == _ACKNOWLEDGED_ALREADY


def refused(error: BaseException) -> bool:
    """Whether Discord refused the message itself (malformed, too large)."""
    return (
        isinstance(error, discord.HTTPException)
        and error.status in _REFUSED
        and error.code not in GONE_CODES
    )


def describe(error: BaseException) -> str:
    """An error for the log: its type, HTTP status and Discord code, never its text,
    which for a webhook call can hold the URL and so the interaction token."""
    if isinstance(error, Undelivered):
        return error.reason
    status = getattr(error, "status", None)
    code = getattr(error, "code", None)
    what = type(error).__name__
    if status:
        what += f" (HTTP {status}" + (f", code {code})" if code else ")")
    return what


def _retry_after(error: BaseException) -> float | None:
    """The seconds Discord asked to wait before trying again, when it said."""
    if isinstance(error, discord.RateLimited):
        return error.retry_after
    if not isinstance(error, discord.HTTPException) or error.status != 429:
        return None
    headers = getattr(error.response, "headers", None) or {}
    for name in ("Retry-After", "X-RateLimit-Reset-After"):
        try:
            return max(0.0, float(headers[name]))
        except (KeyError, TypeError, ValueError):
            continue
    return None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How one write to Discord is tried again: at most `attempts` tries, waiting
    `first_wait` seconds (with jitter) before the second, twice as long before each
    next one up to `longest_wait`, or what Discord's retry-after says; all of it,
    discord.py's own waits included, within `total` seconds."""

    attempts: int = 4
    first_wait: float = 0.5
    longest_wait: float = 8.0
    total: float = 30.0

    def wait_before(self, attempt: int, error: BaseException) -> float | None:
        """Seconds to wait before try `attempt` + 1 after `error`; None: do not retry."""
        if attempt >= self.attempts or not transient(error):
            return None
        hinted = _retry_after(error)
        if hinted is not None:
            return hinted
        backoff = min(self.longest_wait, self.first_wait * 2 ** (attempt - 1))
        return random.uniform(backoff / 2, backoff)

    async def run(self, write: Callable[[], Awaitable[T]], *, job_id: str = "") -> T:
        """`write()`, tried again while its failures are transient and time is left.
        Raises the last failure, or TimeoutError when `total` ran out mid-call."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.total
        async with asyncio.timeout_at(deadline):
            attempt = 1
            while True:
                try:
                    return await write()
                except DELIVERY_ERRORS as error:
                    wait = self.wait_before(attempt, error)
                    if wait is None or loop.time() + wait >= deadline:
                        raise
                    log.debug("job %s: %s, trying again in %.2f s", job_id, describe(error), wait)
                    await asyncio.sleep(wait)
                    attempt += 1


# A streaming edit or a progress line: once, and never long (the final answer waits).
INTERMEDIATE = RetryPolicy(attempts=1, total=10.0)
