"""Per-key rate limits of the fake providers: one token bucket per (provider, key).

A bucket holds `rpm / 6` tokens (ten seconds' worth, at least one) and refills
`rpm / 60` tokens per second, which is how the real providers behave closely
enough for a key ring to be tested against: a burst of ten seconds' worth
passes, then requests pass at the steady rate. A refused request spends a
token too, as the real providers count failed requests, but the bucket never
sinks below `-capacity`, so a client that hammers a key is locked out for at
most twenty seconds' worth of refill.

Time is `time.perf_counter`: SimCord replaces `time.monotonic` with a virtual
clock, and the fakes must keep real time whatever the bot's clock says.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Buckets", "TokenBucket", "Verdict", "format_duration"]

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Verdict:
    """One request's answer from a bucket, with what the rate-limit headers say.

    `remaining` is whole tokens left; `reset` seconds until the bucket is full
    again (OpenAI's `x-ratelimit-reset-requests`); `retry_after` seconds until
    the next request would pass (0 when this one passed).
    """

    allowed: bool
    limit: int
    remaining: int
    reset: float
    retry_after: float


class TokenBucket:
    """A token bucket for one key at `rpm` requests per minute (see the module doc)."""

    def __init__(self, rpm: float, clock: Clock = time.perf_counter) -> None:
        if rpm <= 0:
            raise ValueError("rpm must be positive")
        self.rpm = rpm
        self.capacity = max(1.0, rpm / 6)
        self.rate = rpm / 60
        self._clock = clock
        self._tokens = self.capacity
        self._stamp = clock()

    @property
    def tokens(self) -> float:
        """Tokens now (may be negative after refused requests)."""
        self._refill()
        return self._tokens

    def take(self, *, force_refusal: bool = False) -> Verdict:
        """Spend a token for one request; refuse when less than one is left.

        `force_refusal` refuses whatever the budget (an injected 429) and
        still spends the token, as any refused request does.
        """
        self._refill()
        allowed = self._tokens >= 1 and not force_refusal
        self._tokens = max(self._tokens - 1, -self.capacity)
        retry_after = 0.0 if allowed else max(1 - self._tokens, 0.0) / self.rate
        return Verdict(
            allowed=allowed,
            limit=round(self.rpm),
            remaining=max(math.floor(self._tokens), 0),
            reset=(self.capacity - self._tokens) / self.rate,
            retry_after=retry_after,
        )

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now


class Buckets:
    """Every (provider, key) bucket of a fake world, created on first use.

    The caller says the key's current rate on each request, so a test may
    change it at any time; a changed rate starts a fresh, full bucket.
    """

    def __init__(self, clock: Clock = time.perf_counter) -> None:
        self._clock = clock
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._lock = threading.Lock()

    def take(
        self, provider: str, key: str, rpm: float | None, *, force_refusal: bool = False
    ) -> Verdict | None:
        """Spend a token of `key` at `provider`; None when the key is unlimited (no rpm)."""
        if not rpm or rpm <= 0:
            return Verdict(False, 0, 0, 1.0, 1.0) if force_refusal else None
        with self._lock:
            bucket = self._buckets.get((provider, key))
            if bucket is None or bucket.rpm != rpm:
                bucket = self._buckets[provider, key] = TokenBucket(rpm, self._clock)
            return bucket.take(force_refusal=force_refusal)

    def clear(self) -> None:
        """Forget every bucket: each key starts full again."""
        with self._lock:
            self._buckets.clear()


def format_duration(seconds: float) -> str:
    """OpenAI's duration format for reset headers: `12ms`, `1s`, `1.5s`, `6m0s`, `1h2m3s`."""
    if seconds < 1:
        return f"{max(math.ceil(seconds * 1000), 0)}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{secs:.3f}".rstrip("0").rstrip(".") + "s"
    if hours >= 1:
        return f"{int(hours)}h{int(minutes)}m{text}"
    if minutes >= 1:
        return f"{int(minutes)}m{text}"
    return text
