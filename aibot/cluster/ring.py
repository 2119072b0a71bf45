"""A key ring whose budgets every process shares through Redis: `SharedKeyRing`.

`aibot.keys.KeyRing`'s public surface (the pools and `with_keys` use it
unchanged) on `aibot.cluster.budget.SharedBudgets`, whose module doc says how
a key's pace, cooling and health live in Redis (by fingerprint, never the key).

A call. `acquire` passes `reserve` the keys this process may use now (not
disabled, not known to be cooling, below this process's concurrency cap) and
sleeps the wait it answers: one round trip per call. `try_acquire` is always
None (every start takes that round trip). Concurrency caps stay per process
(the budget module says why): when every key is at its cap here, the caller
looks again every `_STEP` seconds, in memory, with no round trip.

Outcomes. The lease's reports are plain methods, as in `KeyRing`: each holds
in this process at once (a 429 cools the key here, a 401/403 disables it,
its reason cleared of the key) and is queued for Redis on the ring's
`Sender`, which sends in order from a task that exists only while reports
wait. A report Redis refuses is tried again twice (0.2 s, 1 s), then dropped
with a warning: this process still honours it, and another process meets
the same provider answer at worst once itself. At most `reports` wait; past
that the oldest goes (`reports_dropped`).

Other processes' news comes from Redis: a key disabled elsewhere is learned
when `reserve` says every offered key is disabled; `refresh()` (one round
trip, for the status beat) reads every key's shared state. `ready_in` and
`snapshot` answer from what this process knows. Redis unreachable while
reserving is `Unavailable`: the pools try the next provider or tell the member.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from aibot.cluster.budget import Reservation, SharedBudgets, pace
from aibot.cluster.sender import FAILURES, Sender
from aibot.jobs import NoKeyAvailable, Unavailable
from aibot.leases import KeyState, Lease, OnDisable
from aibot.rate_headers import requests_left
from aibot.secrets import fingerprint, redact, scrub
from aibot.snapshots import KeyRingSnapshot

__all__ = ["SharedKeyRing", "shared_rings"]

log = logging.getLogger("aibot.cluster.ring")

# A key held only by this process's concurrency cap is looked at again after this long.
_STEP = 0.05
_ELSEWHERE = "disabled by another process"


@dataclass(eq=False)
class _Key(KeyState):
    """A key as this process knows it."""

    free_at: float = 0.0  # when its next paced slot starts, as far as this process knows


class SharedKeyRing:
    """The keys of one (pool, provider), paced, cooled and disabled for every
    process through `budgets`; see the module docstring."""

    def __init__(
        self,
        pool: str,
        provider: str,
        keys: Sequence[str],
        *,
        rpm: float,
        concurrency: int,
        budgets: SharedBudgets,
        burst: float = 1.0,
        reports: int = 1000,
        on_disable: OnDisable | None = None,
    ) -> None:
        if rpm <= 0 or concurrency < 1:
            raise ValueError("rpm must be above 0 and concurrency at least 1")
        self.pool = pool
        self.provider = provider
        self.rpm = rpm
        self.concurrency = concurrency
        self.burst = burst
        self._budgets = budgets
        self._interval = 60.0 / pace(rpm, burst)[0]
        self._keys = [
            _Key(secret=secret, key_id=redact(secret), fingerprint=fingerprint(secret))
            for secret in dict.fromkeys(keys)
        ]
        self._by_fingerprint = {key.fingerprint: key for key in self._keys}
        self._healthy = len(self._keys)
        self.all_down = not self._keys
        self._reports = Sender(f"{pool}/{provider} key reports", limit=reports)
        # Keys disabled here whose report has not reached Redis (on its way, or
        # dropped): a refresh reading them healthy there must not enable them.
        self._unreported: set[str] = set()
        # Who hears of a key this process disabled (the operators' alerts), as in
        # `KeyRing`; may be set after building. A key learned disabled from Redis
        # was told about by the process that disabled it.
        self.on_disable = on_disable

    @property
    def reports_dropped(self) -> int:
        """Outcome reports that never reached Redis (queue full, or Redis failing)."""
        return self._reports.dropped

    def load(self) -> tuple[int, int]:
        """(healthy, total): keys not disabled (as far as this process knows), and all."""
        return self._healthy, len(self._keys)

    def try_acquire(self, fingerprint: str | None = None) -> Lease | None:
        """None: every start takes a round trip to Redis (`acquire`)."""
        return None

    async def acquire(
        self,
        *,
        timeout: float | None = None,
        deadline: float | None = None,
        fingerprint: str | None = None,
    ) -> Lease:
        """Lease the key that can start soonest across every process, waiting up
        to `timeout` seconds (or until `deadline`, a loop time). `fingerprint`
        pins one key. Raises `NoKeyAvailable` (with `retry_after`) when no key
        can start in time, at once when every candidate is disabled, and
        `Unavailable` when Redis cannot be reached."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if deadline is None:
            if timeout is None:
                raise TypeError("acquire() needs a timeout or a deadline")
            deadline = now + timeout
        while True:
            usable = [k for k in self._keys if _usable(k, fingerprint)]
            if not usable:
                raise NoKeyAvailable(f"no usable {self.provider} key in the {self.pool} pool")
            free = [k for k in usable if k.inflight < self.concurrency and k.cooling_until <= now]
            if not free:
                start = min(self._local_start(k, now) for k in usable)
                if start > deadline:
                    raise self._busy(start - now)
                await asyncio.sleep(start - now)
                now = loop.time()
                continue
            reservation = await self._reserve(free, deadline - now, pinned=fingerprint is not None)
            now = loop.time()
            if reservation.all_disabled:
                for key in free:
                    self._mark_disabled(key, _ELSEWHERE)
                continue
            if not reservation.reserved:
                raise self._busy(reservation.wait)
            key = self._by_fingerprint[reservation.fingerprint]  # type: ignore[index]
            return await self._lease(key, now + reservation.wait, deadline)

    def ready_in(self) -> float:
        """Seconds until some key could start, as far as this process knows: 0
        now, inf when every key is disabled. Other processes' use is not seen
        here, so a reservation may still wait."""
        now = asyncio.get_running_loop().time()
        starts = [self._local_start(k, now) for k in self._keys if not k.disabled]
        return max(0.0, min(starts) - now) if starts else math.inf

    async def forgive(self) -> None:
        """Clear the disabled marks of this ring's keys for every process: a
        process starting gives its keys another chance, as a restart does in one
        process (an account topped up; a key still refused is disabled again by
        its next call)."""
        for key in self._keys:
            await self._budgets.enable(key.fingerprint)

    async def refresh(self) -> None:
        """Read every key's shared state (one round trip): keys disabled or
        cooling because of other processes, and keys enabled again (but not one
        disabled here whose report has not reached Redis). Not their
        pace: each reservation learns it as it is then, where a wait read up to a
        beat ago would turn jobs away to the next provider for nothing."""
        states = await self._budgets.states(
            [k.fingerprint for k in self._keys], rpm=self.rpm, burst=self.burst
        )
        now = asyncio.get_running_loop().time()
        for state in states:
            key = self._by_fingerprint[state.fingerprint]
            if state.state == "disabled":
                self._mark_disabled(key, state.reason or _ELSEWHERE)
                continue
            if key.disabled and key.fingerprint not in self._unreported:
                key.disabled, key.reason = False, ""
                self._healthy += 1
                self.all_down = False
            if state.state == "cooling":
                key.cooling_until = max(key.cooling_until, now + state.cooling_for)
                key.reason = state.reason

    async def flush(self) -> None:
        """Wait until the outcome reports made so far reached Redis (or were given up)."""
        await self._reports.flush()

    # -- reserving ----------------------------------------------------------

    async def _reserve(self, keys: list[_Key], max_wait: float, *, pinned: bool) -> Reservation:
        try:
            return await self._budgets.reserve(
                [k.fingerprint for k in keys],
                rpm=self.rpm,
                burst=self.burst,
                max_wait=max_wait,
                pinned=pinned,
            )
        except FAILURES as err:
            # The type only: a connection error may name the server's address.
            raise Unavailable(f"shared key budgets unreachable ({type(err).__name__})") from None

    async def _lease(self, key: _Key, start: float, deadline: float) -> Lease:
        """The lease on `key`, whose slot starting at `start` (loop time) is
        reserved in Redis; sleeps until then. Should another call of this
        process have taken the key's last concurrency slot meanwhile, waits in
        memory for one (the reserved slot only gets later, never earlier)."""
        loop = asyncio.get_running_loop()
        while key.inflight >= self.concurrency:
            if loop.time() + _STEP > deadline:
                raise self._busy(_STEP)
            await asyncio.sleep(_STEP)
        key.inflight += 1
        key.calls += 1
        key.free_at = max(key.free_at, start + self._interval)
        lease = Lease(self, key)
        wait = start - loop.time()
        if wait > 0:
            try:
                await asyncio.sleep(wait)
            except BaseException:
                lease.release()
                raise
        return lease

    def _local_start(self, key: _Key, now: float) -> float:
        start = max(now, key.cooling_until, key.free_at)
        if key.inflight >= self.concurrency and start < now + _STEP:
            start = now + _STEP  # a slot frees when one of this process's calls ends
        return start

    def _busy(self, wait: float) -> NoKeyAvailable:
        return NoKeyAvailable(
            f"every {self.provider} key of the {self.pool} pool is busy", retry_after=wait
        )

    # -- outcomes (from a lease) --------------------------------------------

    def cool_key(self, key: KeyState, retry_after: float | None) -> None:
        """The provider said 429: hold `key` here at once, and for every process
        as Redis answers (a backoff shared by all of them)."""
        guess = key.backoff(retry_after)  # until Redis answers with the shared backoff
        self._hold(key, guess, "rate limited")
        log.info(
            "%s/%s key %s rate limited, cooling %.1fs", self.pool, self.provider, key.key_id, guess
        )
        fp, given = key.fingerprint, retry_after if retry_after and retry_after > 0 else None
        self._reports.send(lambda: self._held(key, "rate limited", self._budgets.cool(fp, given)))

    def tighten_key(self, key: KeyState, headers: Mapping[str, str]) -> None:
        """`x-ratelimit-*` headers saying little is left (below twice the burst,
        as `KeyRing`): hold the key for every process until they allow more."""
        left = requests_left(headers)
        if left is None or left[0] >= 2 * self.burst:
            return
        remaining, reset = left
        self._hold(key, reset if remaining <= 0 else reset / (remaining + 1), "provider budget low")
        fp = key.fingerprint
        self._reports.send(
            lambda: self._held(
                key, "provider budget low", self._budgets.tighten(fp, remaining, reset)
            )
        )

    def disable_key(self, key: KeyState, reason: str) -> None:
        """The provider rejected `key` for good, for every process."""
        # Some providers echo the key in their error text.
        text = scrub((reason or "rejected").replace(key.secret, key.key_id), key.secret)
        newly = self._mark_disabled(key, text)
        log.warning("%s/%s key %s disabled: %s", self.pool, self.provider, key.key_id, text)
        fp = key.fingerprint
        self._unreported.add(fp)
        self._reports.send(lambda: self._reported_disabled(fp, text))
        if newly and self.on_disable is not None:
            self.on_disable(self, key.key_id, text)

    async def _reported_disabled(self, fingerprint: str, reason: str) -> None:
        await self._budgets.disable(fingerprint, reason)
        self._unreported.discard(fingerprint)

    def _hold(self, key: KeyState, seconds: float, reason: str) -> None:
        key.hold(asyncio.get_running_loop().time() + seconds, reason)

    async def _held(self, key: KeyState, reason: str, sent: Awaitable[float]) -> None:
        """Await a cool/tighten report; the hold Redis answers (shared by every
        process, e.g. a longer backoff) holds here too."""
        left = await sent
        self._hold(key, float(left), reason)

    def _mark_disabled(self, key: KeyState, reason: str) -> bool:
        """True when `key` was not disabled before."""
        newly = not key.disabled
        if newly:
            key.disabled = True
            self._healthy -= 1
            self.all_down = self._healthy == 0
        key.reason = reason
        return newly

    # -- views ----------------------------------------------------------------

    def snapshot(self) -> KeyRingSnapshot:
        """Plain data for the status panel, from what this process knows (see
        `refresh`). `budget_left` is 1 when a key could start now, else 0."""
        now = asyncio.get_running_loop().time()
        keys = []
        for key in self._keys:
            state = key.state(now, busy=key.inflight >= self.concurrency or key.free_at > now)
            room = 1.0 if state == "ready" else 0.0
            keys.append(key.snapshot(state, now, room=room, burst=self.burst))
        return KeyRingSnapshot(pool=self.pool, provider=self.provider, keys=tuple(keys))

    def __repr__(self) -> str:
        return (
            f"SharedKeyRing(pool={self.pool!r}, provider={self.provider!r}, keys={len(self._keys)})"
        )


def _usable(key: _Key, pinned: str | None) -> bool:
    """Whether `key` may start the call: a pinned key whatever its state (see
    `KeyRing.acquire`), else any key not disabled."""
    return key.fingerprint == pinned if pinned is not None else not key.disabled


def shared_rings(budgets: SharedBudgets) -> Callable[..., SharedKeyRing]:
    """A ring factory for `aibot.pools.build_pools(..., ring=...)`: made like a
    `KeyRing` (pool, provider, keys, rpm=, concurrency=), shared through `budgets`."""
    return functools.partial(SharedKeyRing, budgets=budgets)
