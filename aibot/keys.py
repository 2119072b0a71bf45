"""Key rings: which API key makes the next call, and how fast.

A `KeyRing` holds the keys of one (pool, provider). For each call it leases the
key that can start soonest: not disabled, not cooling down after a 429, with
room in its bucket and below its concurrency cap. The outcome reported on the
`Lease` feeds back into the ring: a 429 cools the key, a 401/403 or an
exhausted quota disables it for good, rate-limit headers tighten its pace.

Pacing. Each key has an `aibot.pacing.KeyBucket(rpm, burst)` (GCRA): `burst`
calls at once, then one every `60 / rpm` seconds. The default burst is one
second's worth of the key's RPM (at least 1), far below the ten seconds' worth
providers usually allow, so the ring itself never causes a 429. Cooling (after
a 429) and tightening (from `x-ratelimit-*` headers, read by
`aibot.rate_headers`) are the ring's, on top of the bucket.

Time is the event loop's (`loop.time()`, `asyncio.sleep`) so that a test, or
SimCord's virtual clock, controls it. Waiting is done in sleeps toward the
soonest start, never on an Event or Semaphore: an idle wait on those keeps
SimCord from ever settling.

A port. `KeyRing` implements `aibot.leases.Ring`, what the pools, the retry
policy and the alerts use of a ring; cluster mode's `SharedKeyRing` implements
it too, through Redis (one GCRA arrival time per key, cooling and disabling on
Redis's clock). The concurrency cap stays per process even then: it bounds the
calls this process has in flight, which only this process can count.

Keys are secrets: a key is only ever shown as `aibot.secrets.redact(key)`
(`sk-...abcd`), and journals refer to a key by `aibot.secrets.fingerprint(key)`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from aibot.jobs import NoKeyAvailable
from aibot.leases import KeyState, Lease, OnDisable
from aibot.pacing import KeyBucket
from aibot.rate_headers import requests_left
from aibot.secrets import fingerprint, redact
from aibot.snapshots import KeyRingSnapshot

__all__ = ["KeyRing"]

log = logging.getLogger("aibot.keys")

# A key held only by its concurrency cap is looked at again after this long: a
# slot freed by another call is noticed within this time.
_STEP = 0.05


@dataclass(eq=False)
class _Key(KeyState):
    """A key of a `KeyRing`: its own bucket paces it."""

    bucket: KeyBucket = field(kw_only=True, repr=False)
    last_used: int = 0  # order of the last lease, to spread ties


class KeyRing:
    """The keys of one (pool, provider), each with its own bucket, concurrency
    cap and health (ready, busy, cooling, disabled)."""

    def __init__(
        self,
        pool: str,
        provider: str,
        keys: Sequence[str],
        *,
        rpm: float,
        concurrency: int,
        burst: float | None = None,
        on_disable: OnDisable | None = None,
    ) -> None:
        if rpm <= 0 or concurrency < 1:
            raise ValueError("rpm must be above 0 and concurrency at least 1")
        self.pool = pool
        self.provider = provider
        self.rpm = rpm
        self.concurrency = concurrency
        self.burst = burst if burst is not None else max(1.0, rpm / 60)
        if self.burst < 1:
            raise ValueError("burst must be at least 1")
        self._keys = [self._new_key(secret) for secret in keys]
        self._healthy = len(self._keys)
        # Every key is disabled (or there are none). Kept up to date by `disable_key`:
        # every job and every routing decision asks, and a plain attribute answers
        # without a pass over the keys, or even a call.
        self.all_down = not self._keys
        self._order = itertools.count(1)
        # Who hears of a key disabled (the operators' alerts); may be set after building.
        self.on_disable = on_disable

    def _new_key(self, secret: str) -> _Key:
        return _Key(
            secret=secret,
            bucket=KeyBucket(self.rpm, self.burst),
            key_id=redact(secret),
            fingerprint=fingerprint(secret),
        )

    def load(self) -> tuple[int, int]:
        """(healthy, total): keys not disabled, and all keys."""
        return self._healthy, len(self._keys)

    async def acquire(
        self,
        *,
        timeout: float | None = None,
        deadline: float | None = None,
        fingerprint: str | None = None,
    ) -> Lease:
        """Lease the key that can start soonest, waiting up to `timeout` seconds
        (or until `deadline`, a loop time: exactly one of the two is given).

        `fingerprint` pins one key (a video task is polled with the key that
        made it), even a disabled one: what it made is paid for, and an account
        out of credit may still be asked about it (the call's answer decides).
        Raises `NoKeyAvailable` with `retry_after` when no key can start in time,
        and at once when every candidate is disabled.
        """
        loop = asyncio.get_running_loop()
        now = loop.time()
        if deadline is None:
            if timeout is None:
                raise TypeError("acquire() needs a timeout or a deadline")
            deadline = now + timeout
        while True:
            start, key = self._soonest(now, fingerprint)
            if key is None:
                raise NoKeyAvailable(f"no usable {self.provider} key in the {self.pool} pool")
            # A key whose start is now has room in its bucket at this same `now`.
            if start <= now and key.bucket.try_take(now):
                return self._lease(key)
            if start > deadline:
                raise NoKeyAvailable(
                    f"every {self.provider} key of the {self.pool} pool is busy",
                    retry_after=start - now,
                )
            # Exactly until the soonest start: a key held only by its concurrency cap
            # already reports `now + _STEP`, so freed slots are seen promptly, and a
            # time-gated wait is one timer (a virtual clock can jump over it).
            await asyncio.sleep(start - now)
            now = loop.time()

    def try_acquire(self, fingerprint: str | None = None) -> Lease | None:
        """`acquire`'s lease when a key can start a call right now, without waiting
        (and without a coroutine: the common case of every provider call); None
        when it would have to wait, or no key is usable."""
        now = asyncio.get_running_loop().time()
        start, key = self._soonest(now, fingerprint)
        if key is None or start > now or not key.bucket.try_take(now):
            return None
        return self._lease(key)

    def ready_in(self) -> float:
        """Seconds until some key could start a call: 0 now, inf when every key
        is disabled. Lets a pool prefer another provider over waiting on this one."""
        now = asyncio.get_running_loop().time()
        start, key = self._soonest(now, None)
        return math.inf if key is None else max(0.0, start - now)

    def _soonest(self, now: float, pinned: str | None) -> tuple[float, _Key | None]:
        """The earliest start time over usable keys, and that key: the least busy,
        then the least recently used, among those that start as soon."""
        best: tuple[float, int, int] | None = None
        chosen: _Key | None = None
        for key in self._keys:
            # A pinned key is asked for whatever its state (see `acquire`).
            usable = key.fingerprint == pinned if pinned is not None else not key.disabled
            if not usable:
                continue
            start = now + key.bucket.wait(now)
            if key.cooling_until > start:
                start = key.cooling_until
            if key.inflight >= self.concurrency and start < now + _STEP:
                # A slot frees when another call ends; look again shortly.
                start = now + _STEP
            rank = (start, key.inflight, key.last_used)
            if best is None or rank < best:
                best, chosen = rank, key
        return (best[0], chosen) if best is not None else (0.0, None)

    def _lease(self, key: _Key) -> Lease:
        """A lease on `key`, whose bucket room the caller has just taken."""
        key.inflight += 1
        key.calls += 1
        key.last_used = next(self._order)
        return Lease(self, key)

    # -- outcomes (from a lease) --------------------------------------------

    def cool_key(self, key: KeyState, retry_after: float | None) -> None:
        """The provider said 429: hold `key` for `retry_after` or a backoff."""
        cooling = key.backoff(retry_after)
        key.hold(asyncio.get_running_loop().time() + cooling, "rate limited")
        log.info(
            "%s/%s key %s rate limited, cooling %.1fs",
            self.pool,
            self.provider,
            key.key_id,
            cooling,
        )

    def disable_key(self, key: KeyState, reason: str) -> None:
        """The provider rejected `key` for good: never lease it again."""
        newly = not key.disabled
        if newly:
            key.disabled = True
            self._healthy -= 1
            self.all_down = self._healthy == 0
        # Some providers echo the key in their error text.
        key.reason = (reason or "rejected").replace(key.secret, key.key_id)
        log.warning("%s/%s key %s disabled: %s", self.pool, self.provider, key.key_id, key.reason)
        if newly and self.on_disable is not None:
            self.on_disable(self, key.key_id, key.reason)

    def tighten_key(self, key: KeyState, headers: Mapping[str, str]) -> None:
        """Honour `x-ratelimit-remaining-requests` / `-reset-requests`: with
        nothing left, wait for the reset; with little left, spread what is left
        evenly over the time until the reset."""
        left = requests_left(headers)
        if left is None:
            return
        remaining, reset = left
        if remaining >= 2 * self.burst:
            return
        wait = reset if remaining <= 0 else reset / (remaining + 1)
        key.hold(asyncio.get_running_loop().time() + wait, "provider budget low")

    def snapshot(self) -> KeyRingSnapshot:
        """Plain data for the status panel. `budget_left` / `budget_limit` are
        the key's bucket room vs its burst: calls it could start right now.
        Only reads the ring, so any thread running a loop may take it."""
        now = asyncio.get_running_loop().time()
        keys = []
        for key in self._keys:
            busy = key.inflight >= self.concurrency or key.bucket.wait(now) > 0
            state = key.state(now, busy=busy)
            keys.append(key.snapshot(state, now, room=key.bucket.room(now), burst=self.burst))
        return KeyRingSnapshot(pool=self.pool, provider=self.provider, keys=tuple(keys))

    def __repr__(self) -> str:
        return f"KeyRing(pool={self.pool!r}, provider={self.provider!r}, keys={len(self._keys)})"
