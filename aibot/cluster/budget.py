"""Shared key budgets: every process holding a key spends one budget, kept in Redis.

In cluster mode several processes lease the same provider keys. Each paced
alone, they would together push a key past its limit (three processes
sharing four keys got nothing but 429s), so a key's pace, cooling and health
live in Redis, in one hash per key named by `aibot.keys.fingerprint` (never
the key itself), and every decision about them is one Lua script on Redis's
own clock (`TIME`): a process whose clock is off cannot spend another's room.

Reserving. `reserve` runs one script over the keys of a ring: it skips
disabled keys, starts a cooling key no earlier than its cooling ends, and
paces each key with GCRA (a "theoretical arrival time" per key, moved one
emission interval on by every call). It reserves the key that can start
soonest (ties: the least recently used) and answers how long the caller must
wait before calling; the slot is the caller's, so waiters sleep once, exactly,
and are never left polling. One round trip per call.

Pacing rule. GCRA with a burst of `b` calls lets at most `b + W x pace / 60`
calls start in any closed window of `W` seconds; pacing at `rpm - b` per
minute keeps every 60 s window within `rpm`. Reserved slots need no burst to
use the whole budget (a waiter holds a later slot instead of being turned
away), so the default burst is 1: it costs `b / rpm` of the budget and buys
only simultaneous starts on one key.

Concurrency caps stay per process. A cap shared through Redis needs either a
notify-on-release (a Pub/Sub channel per ring, and care for the holders that
die without releasing) or waiters polling: measured at 25-28 round trips per
call when every key is at its cap, against one for a reservation. A process
therefore passes `reserve` only the keys below its own cap, and waits in
memory for one of its own calls to end when none is.

Outcomes are reported for every process: `cool` after a 429, `disable`
after a 401/403 or an exhausted quota (with the reason, which the caller
has already cleared of the key, as `KeyRing` does), `tighten` from the
provider's rate-limit headers. `states` reads every key for the status panel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import redis.asyncio as redis

__all__ = ["KeyState", "Reservation", "SharedBudgets", "pace"]

# Backoff after a 429 that gave no retry-after: 1 s, 2 s, 4 s, ... up to this.
_MAX_BACKOFF = 60.0
_MICRO = 1_000_000
_REASON_CHARS = 300

# Times are whole microseconds of Redis's clock, written with %.0f: Lua's own
# number-to-text keeps only 14 digits, and a unix time in microseconds has 16.
# KEYS: one hash per candidate key. ARGV: emission interval, burst tolerance
# (both microseconds), the longest wait the caller accepts (microseconds), 1 when
# the one key is pinned (asked for even when disabled).
# Returns {index of the reserved key (0: none), wait in microseconds, status}:
# status 0 reserved, 1 nothing within the wait (wait: the soonest), 2 all disabled.
_RESERVE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local best, best_start, best_tat = 0, 0, 0
for i, key in ipairs(KEYS) do
  local state = redis.call('HMGET', key, 'tat', 'cool', 'off')
  if state[3] ~= '1' or ARGV[4] == '1' then
    local tat = tonumber(state[1]) or 0
    local start = math.max(now, tat - tolerance, tonumber(state[2]) or 0)
    if best == 0 or start < best_start or (start == best_start and tat < best_tat) then
      best, best_start, best_tat = i, start, tat
    end
  end
end
if best == 0 then return {0, 0, 2} end
local wait = best_start - now
if wait > max_wait then return {0, wait, 1} end
local tat = math.max(best_tat, best_start) + interval
redis.call('HSET', KEYS[best], 'tat', string.format('%.0f', tat))
redis.call('HINCRBY', KEYS[best], 'calls', 1)
return {best, wait, 0}
"""

# Hold a key back: after a 429 (ARGV[3] = 1: counted, backoff when ARGV[1] < 0)
# or from headers (ARGV[3] = 0). ARGV: seconds in microseconds, reason, is_429,
# the longest backoff (microseconds). Returns the cooling left, microseconds.
_COOL = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local hold = tonumber(ARGV[1])
local until_ = tonumber(redis.call('HGET', KEYS[1], 'cool')) or 0
if ARGV[3] == '1' then
  redis.call('HINCRBY', KEYS[1], 'limited', 1)
  local longest = tonumber(ARGV[4])
  -- A 429 long after the last cooling ended starts the backoff over.
  local strikes = tonumber(redis.call('HGET', KEYS[1], 'strikes')) or 0
  if now > until_ + longest then strikes = 0 end
  strikes = strikes + 1
  redis.call('HSET', KEYS[1], 'strikes', strikes)
  if hold < 0 then hold = math.min(longest, 1000000 * 2 ^ (strikes - 1)) end
end
if now + hold > until_ then
  until_ = now + hold
  redis.call('HSET', KEYS[1], 'cool', string.format('%.0f', until_), 'why', ARGV[2])
end
return until_ - now
"""

# Every key's fields at one moment of Redis's clock, for `states`.
_READ = """
local clock = redis.call('TIME')
local out = {clock[1], clock[2]}
for _, key in ipairs(KEYS) do
  local state = redis.call('HMGET', key, 'tat', 'cool', 'off', 'reason', 'why', 'calls', 'limited')
  for _, value in ipairs(state) do out[#out + 1] = value or '' end
end
return out
"""
_READ_FIELDS = 7


def pace(rpm: float, burst: float) -> tuple[float, float]:
    """(calls per minute to pace at, burst) for a key of `rpm` so that no 60 s
    window holds more than `rpm` calls: `rpm - burst`, the burst at least 1 and
    at most half the rpm. Below 2 rpm a burst of 1 leaves little room: then
    `rpm - 1`, or half the rpm at 1 rpm or less."""
    if rpm <= 0:
        raise ValueError("rpm must be above 0")
    burst = max(1.0, min(burst, rpm / 2))
    return (rpm - burst if rpm > burst else rpm / 2), burst


@dataclass(frozen=True, slots=True)
class Reservation:
    """The answer of `SharedBudgets.reserve`.

    Reserved: `fingerprint` names the key and `wait` is the seconds to sleep
    before the call (0: call now); the slot is held, whatever the caller does.
    Not reserved: `fingerprint` is None and `wait` the seconds until the
    soonest key could start (over `max_wait`), or infinite when every key is
    disabled.
    """

    fingerprint: str | None
    wait: float

    @property
    def reserved(self) -> bool:
        return self.fingerprint is not None

    @property
    def all_disabled(self) -> bool:
        return self.fingerprint is None and math.isinf(self.wait)


@dataclass(frozen=True, slots=True)
class KeyState:
    """One key as every process sees it, for the status panel. `state` is
    ready, busy (paced: `wait` seconds until its next start), cooling
    (`cooling_for` seconds, `reason`) or disabled (`reason`)."""

    fingerprint: str
    state: str
    wait: float = 0.0
    cooling_for: float = 0.0
    reason: str = ""
    calls: int = 0
    rate_limited: int = 0


class SharedBudgets:
    """The budgets of every key, shared by all processes through one Redis.

    `client` is a `redis.asyncio.Redis` (over a `BlockingConnectionPool`, so a
    burst waits for a connection rather than failing); `prefix` names this
    bot's keys in Redis (`aibot` gives `aibot:key:<fingerprint>`).
    """

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._reserve = client.register_script(_RESERVE)
        self._cool = client.register_script(_COOL)
        self._read = client.register_script(_READ)

    def _key(self, fingerprint: str) -> str:
        return f"{self._prefix}:key:{fingerprint}"

    async def reserve(
        self,
        fingerprints: Sequence[str],
        *,
        rpm: float,
        burst: float = 1.0,
        max_wait: float = 0.0,
        pinned: bool = False,
    ) -> Reservation:
        """Reserve the key of `fingerprints` (a ring's usable keys, or one pinned
        key, reserved even when disabled) that can start soonest, if it can within
        `max_wait` seconds. `rpm` is the keys' limit per minute; see the module doc
        for `burst`."""
        if not fingerprints:
            return Reservation(None, math.inf)
        per_minute, burst = pace(rpm, burst)
        interval = math.ceil(60 * _MICRO / per_minute)
        tolerance = math.floor((burst - 1) * interval)
        index, wait, status = await self._reserve(
            keys=[self._key(fp) for fp in fingerprints],
            args=[interval, tolerance, math.floor(max(0.0, max_wait) * _MICRO), int(pinned)],
        )
        if int(status) == 2:
            return Reservation(None, math.inf)
        chosen = fingerprints[int(index) - 1] if int(status) == 0 else None
        return Reservation(chosen, int(wait) / _MICRO)

    async def cool(self, fingerprint: str, seconds: float | None) -> float:
        """The provider answered 429: hold the key back from every process for
        `seconds` (its retry-after), or a backoff from 1 s doubling with each
        429 in a row when it did not say. Returns the cooling left, seconds."""
        hold = -1 if seconds is None or seconds <= 0 else math.ceil(seconds * _MICRO)
        left = await self._cool(
            keys=[self._key(fingerprint)],
            args=[hold, "rate limited", 1, math.floor(_MAX_BACKOFF * _MICRO)],
        )
        return int(left) / _MICRO

    async def tighten(self, fingerprint: str, remaining: int, reset_seconds: float) -> float:
        """The provider's headers say `remaining` calls are left until a reset in
        `reset_seconds`: with none left, hold the key until the reset; with some,
        spread them evenly (one gap of `reset / (remaining + 1)`), as `KeyRing`
        does. A round trip each: call it when little is left (below twice the
        burst, as `KeyRing` does), not after every call. Returns the hold left."""
        reset = max(0.0, reset_seconds)
        wait = reset if remaining <= 0 else reset / (remaining + 1)
        left = await self._cool(
            keys=[self._key(fingerprint)],
            args=[math.ceil(wait * _MICRO), "provider budget low", 0, 0],
        )
        return int(left) / _MICRO

    async def disable(self, fingerprint: str, reason: str) -> None:
        """Never use the key again, in any process (401/403, quota exhausted).
        `reason` is stored for the panel: it must not hold the key (clear it
        first, as `KeyRing` does with the key's redacted form)."""
        text = (reason or "rejected")[:_REASON_CHARS]
        await self._client.hset(self._key(fingerprint), mapping={"off": "1", "reason": text})

    async def enable(self, fingerprint: str) -> None:
        """Use a disabled key again (its quota was topped up): in embedded mode a
        restart forgets a disabled key; in Redis it stays disabled until this,
        which a process holding the key does as it starts (`SharedKeyRing.forgive`)."""
        await self._client.hdel(self._key(fingerprint), "off", "reason", "strikes")

    async def states(
        self, fingerprints: Sequence[str], *, rpm: float, burst: float = 1.0
    ) -> list[KeyState]:
        """Every key's shared state at one moment, in the order given."""
        if not fingerprints:
            return []
        raw = await self._read(keys=[self._key(fp) for fp in fingerprints])
        values = [_text(value) for value in raw]
        now = int(values[0]) * _MICRO + int(values[1])
        per_minute, burst = pace(rpm, burst)
        tolerance = (burst - 1) * 60 * _MICRO / per_minute
        states = []
        for n, fp in enumerate(fingerprints):
            start = 2 + n * _READ_FIELDS
            states.append(_state(fp, values[start : start + _READ_FIELDS], now, tolerance))
        return states


def _state(fp: str, fields: list[str], now: int, tolerance: float) -> KeyState:
    tat, cool, off, reason, why, calls, limited = fields
    key = KeyState(fp, "ready", calls=int(calls or 0), rate_limited=int(limited or 0))
    if off == "1":
        return replace(key, state="disabled", reason=reason)
    cooling = (int(cool or 0) - now) / _MICRO
    if cooling > 0:
        return replace(key, state="cooling", wait=cooling, cooling_for=cooling, reason=why)
    wait = max(0.0, (int(tat or 0) - tolerance - now) / _MICRO)
    return replace(key, state="busy" if wait > 0 else "ready", wait=wait)


def _text(value: Any) -> str:
    """A reply value as text, whether the client decodes responses or not."""
    return value.decode() if isinstance(value, bytes) else str(value)
