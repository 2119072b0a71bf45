"""A key's state in its ring, the lease one call holds on it, and what a lease
tells its ring.

`KeyState` is one key's health and counts; `Lease` reserves a key for one call
and reports the call's outcome (`ok`, `rate_limited`, `bad_key`, `failed`) to
its ring through `LeaseRing`. `Ring` is the whole of what the pools, the
provider calls (`aibot.providers.retry.with_keys`), the alerts and the status
views use of a ring: `aibot.keys.KeyRing` in one process, cluster mode's
`aibot.cluster.ring.SharedKeyRing` shared through Redis.

Keys are secrets: a lease holds the key for the Authorization header and shows
only `key_id`, its redacted form (`sk-...abcd`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol

from aibot.snapshots import KeyRingSnapshot, KeySnapshot

__all__ = ["KeyState", "Lease", "LeaseRing", "OnDisable", "Ring"]

# Told when a key is disabled: (ring, redacted key, reason). Never the key itself.
OnDisable = Callable[["Ring", str, str], None]

# Backoff after a 429 that gave no retry-after: 1 s, 2 s, 4 s, ... up to this.
_MAX_BACKOFF = 60.0


@dataclass(eq=False)
class KeyState:
    """One key's health and counts inside its ring: a `KeyRing`'s, or cluster mode's
    `SharedKeyRing`, which adds what it knows of the key's shared pace. Times are
    `loop.time()` values."""

    secret: str = field(repr=False)
    key_id: str = ""  # redacted (`sk-...abcd`), the only form ever shown
    fingerprint: str = ""
    inflight: int = 0
    calls: int = 0
    rate_limited: int = 0
    failures: int = 0
    strikes: int = 0  # 429s in a row, for the backoff
    cooling_until: float = 0.0  # after a 429 or headers saying little is left
    reason: str = ""
    disabled: bool = False

    def backoff(self, retry_after: float | None) -> float:
        """Count a 429 and return how long to cool: the provider's `retry_after`
        when it gave one, else 1 s, 2 s, 4 s, ... (429s in a row) up to a minute."""
        self.rate_limited += 1
        self.strikes += 1
        if retry_after is not None and retry_after > 0:
            return retry_after
        return min(_MAX_BACKOFF, 2.0 ** (self.strikes - 1))

    def hold(self, until: float, reason: str) -> None:
        """Cool until `until` (loop time) for `reason`, unless already held longer."""
        if until > self.cooling_until:
            self.cooling_until, self.reason = until, reason

    def state(self, now: float, *, busy: bool) -> str:
        """ready, busy (its ring says it cannot start now), cooling or disabled."""
        if self.disabled:
            return "disabled"
        if self.cooling_until > now:
            return "cooling"
        return "busy" if busy else "ready"

    def snapshot(self, state: str, now: float, *, room: float, burst: float) -> KeySnapshot:
        """Plain data for the status views; `room` of `burst`: calls it could start now
        (none while it cools down or once it is disabled)."""
        if state in ("cooling", "disabled"):
            room = 0.0
        return KeySnapshot(
            key_id=self.key_id,
            state=state,
            inflight=self.inflight,
            calls=self.calls,
            rate_limited=self.rate_limited,
            failures=self.failures,
            cooling_for=max(0.0, self.cooling_until - now),
            reason=self.reason if state in ("cooling", "disabled") else "",
            budget_left=room,
            budget_limit=burst,
            fingerprint=self.fingerprint,
        )


class LeaseRing(Protocol):
    """What a `Lease` tells its ring about the call it made: `KeyRing`, or cluster
    mode's `SharedKeyRing` (which tells every process through Redis)."""

    provider: str

    def tighten_key(self, key: KeyState, headers: Mapping[str, str]) -> None: ...

    def cool_key(self, key: KeyState, retry_after: float | None) -> None: ...

    def disable_key(self, key: KeyState, reason: str) -> None: ...


class Ring(LeaseRing, Protocol):
    """What the pools, the provider calls (`aibot.providers.retry.with_keys`), the
    alerts and the status views use of a key ring: `KeyRing` in one process,
    `aibot.cluster.ring.SharedKeyRing` in cluster mode."""

    pool: str
    all_down: bool  # every key is disabled, or there are none
    on_disable: OnDisable | None  # who hears of a key disabled here

    def load(self) -> tuple[int, int]: ...

    async def acquire(
        self,
        *,
        timeout: float | None = None,
        deadline: float | None = None,
        fingerprint: str | None = None,
    ) -> Lease: ...

    def try_acquire(self, fingerprint: str | None = None) -> Lease | None: ...

    def ready_in(self) -> float: ...

    def snapshot(self) -> KeyRingSnapshot: ...


class Lease:
    """One key reserved for one call. The lease ends (its concurrency slot is
    given back) at the first of: an outcome report (`ok`, `rate_limited`,
    `bad_key`, `failed`), `release()`, or leaving `async with lease:`.
    Outcomes may be reported after the lease ended; they still count."""

    __slots__ = ("_key", "_released", "_ring", "fingerprint", "key", "key_id", "provider")

    key: str  # the secret itself, for the Authorization header and nothing else
    key_id: str
    fingerprint: str
    provider: str

    def __init__(self, ring: LeaseRing, key: KeyState) -> None:
        self._ring = ring
        self._key = key
        self._released = False
        # Plain attributes rather than properties: a provider call reads them again
        # and again, and a property read costs a call each time. None ever changes.
        self.key = key.secret
        self.key_id = key.key_id
        self.fingerprint = key.fingerprint
        self.provider = ring.provider

    def ok(self, headers: Mapping[str, str] | None = None) -> None:
        """The call succeeded; `headers` (the response's) may tighten the pace."""
        self._key.strikes = 0
        if headers:
            self._ring.tighten_key(self._key, headers)
        self.release()

    def rate_limited(self, retry_after: float | None) -> None:
        """The provider said 429: cool this key for `retry_after` seconds, or an
        exponential backoff from 1 s when it did not say."""
        self._ring.cool_key(self._key, retry_after)
        self.release()

    def bad_key(self, reason: str) -> None:
        """The key is invalid, forbidden or out of quota: never use it again."""
        self._ring.disable_key(self._key, reason)
        self.release()

    def failed(self) -> None:
        """A transient failure (timeout, 5xx) not caused by the key's limits."""
        self._key.failures += 1
        self.release()

    def release(self) -> None:
        """Give the key's concurrency slot back; safe to call more than once."""
        if not self._released:
            self._released = True
            self._key.inflight -= 1

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"Lease(provider={self.provider!r}, key={self.key_id!r})"

    __str__ = __repr__
