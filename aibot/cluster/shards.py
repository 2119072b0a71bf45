"""Gateway shards spread over several processes, and the IDENTIFY lock they share.

`ShardClaims`: a gateway process started with `AIBOT_SHARD_IDS` and
`AIBOT_SHARD_COUNT` claims its shard ids before it connects (one without them
runs every shard, Discord's recommended count, and claims the whole bot: below):

- The shard count is pinned in `{prefix}:shards:count` by the first gateway
  (`SET NX`, then compare): a gateway with another count refuses to start,
  saying both counts. The pin lives as long as some gateway renews it, so the
  count can change once every gateway has been stopped for the claim expiry.
- Each shard id is `{prefix}:shard:{id}`, holding the node name, set with an
  expiry (15 s) that the heartbeat renews (`renew` is an `on_beat` hook). An
  overlap refuses to start and names the holder. Count and ids are checked
  and claimed in one script, so a refusal leaves nothing half-claimed.
- `release` on a clean stop frees the ids at once; a process that dies frees
  them when they expire, and a standby started with the same ids
  (`claim(wait=True)`) takes over then.
- The whole bot (no ids): the count pinned is `every` and the one claim is
  `{prefix}:shard:every`, so a second gateway without ids is refused naming the
  first (or, as a standby, takes over when it ends), and gateways with ids and
  one without never run side by side (their counts differ). Its release frees
  the pin too.

`IdentifyLock`: Discord allows `max_concurrency` IDENTIFYs per 5 s, one in
each bucket `shard_id % max_concurrency`. discord.py's default
`before_identify_hook` sleeps 5 s between one process's shards and knows
nothing of other processes. This lock is one Redis key per bucket,
`SET {prefix}:identify:{bucket} NX PX 5500`; when it is taken the caller
waits its PTTL and tries again. It is never released early: the window is
Discord's, not ours. An `IdentifyLock` instance is itself a suitable
`before_identify_hook(shard_id, *, initial=False)`; it takes the lock for the
initial IDENTIFY too, since another process may have just identified.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError
from redis.typing import EncodableT

__all__ = ["IdentifyLock", "ShardClaims", "ShardConflict", "shard_words"]

log = logging.getLogger(__name__)

# Check the pinned count and every shard id, then claim them all, or nothing.
# KEYS: count key, shard keys. ARGV: node, count, expiry ms.
# Returns {'ok'}, {'count', pinned} or {'held', index, holder, index, holder, ...}.
_CLAIM = """
local node, count, ttl = ARGV[1], ARGV[2], ARGV[3]
local pinned = redis.call('GET', KEYS[1])
if pinned and pinned ~= count then return {'count', pinned} end
local held = {'held'}
for i = 2, #KEYS do
  local holder = redis.call('GET', KEYS[i])
  if holder and holder ~= node then
    held[#held + 1] = i - 2
    held[#held + 1] = holder
  end
end
if #held > 1 then return held end
redis.call('SET', KEYS[1], count, 'PX', ttl)
for i = 2, #KEYS do redis.call('SET', KEYS[i], node, 'PX', ttl) end
return {'ok'}
"""

# Renew this node's claims, taking back any that expired meanwhile (a stall, or
# Redis restarted); returns the indexes of the shards someone else holds now,
# or {-1} when the pinned count changed (every shard is lost).
_RENEW = """
local node, count, ttl = ARGV[1], ARGV[2], ARGV[3]
local pinned = redis.call('GET', KEYS[1])
if pinned and pinned ~= count then return {-1} end
redis.call('SET', KEYS[1], count, 'PX', ttl)
local lost = {}
for i = 2, #KEYS do
  local holder = redis.call('GET', KEYS[i])
  if holder and holder ~= node then
    lost[#lost + 1] = i - 2
  else
    redis.call('SET', KEYS[i], node, 'PX', ttl)
  end
end
return lost
"""

# Free the shard keys this node still holds. KEYS: shard keys, then the count key.
# ARGV: node, the whole bot's count (`EVERY`). That pin goes with the whole bot's
# one claim: no other gateway shares it, and a gateway with ids may start at once.
_RELEASE = """
local released = false
for i = 1, #KEYS - 1 do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('DEL', KEYS[i])
    released = true
  end
end
if released and redis.call('GET', KEYS[#KEYS]) == ARGV[2] then redis.call('DEL', KEYS[#KEYS]) end
return 1
"""

# Take an IDENTIFY bucket for ARGV[2] ms. Returns {1, seconds, microseconds} of
# Redis's clock when taken, else {0, the lock's PTTL in ms}.
_IDENTIFY = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local now = redis.call('TIME')
  return {1, now[1], now[2]}
end
return {0, redis.call('PTTL', KEYS[1])}
"""


# The shard count pinned, and the one shard key claimed, by a gateway that runs
# every shard (no AIBOT_SHARD_IDS).
EVERY = "every"


def shard_words(ids: Sequence[int]) -> str:
    """`shard 1`, `shards 0, 1`: shard ids in a sentence; none: `every shard` (the
    whole bot)."""
    if not ids:
        return "every shard"
    return f"shard{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))}"


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ShardConflict(RuntimeError):
    """This gateway must not start: its shard count or ids clash with a running
    gateway's. The message says what clashed and with whom; `holder` names the
    process holding the first clashing shard (empty for a count mismatch)."""

    def __init__(self, message: str, *, holder: str = "") -> None:
        super().__init__(message)
        self.holder = holder


class ShardClaims:
    """The shard ids one gateway process holds, claimed in Redis; no ids (None):
    the whole bot, whatever the count.

    `on_lost` is called with the ids a renewal found held by another process
    (this one stalled past the expiry and a standby took over; none: the whole
    bot): the gateway must close those shards.
    """

    def __init__(
        self,
        redis: Redis,
        node: str,
        shard_ids: Sequence[int] | None,
        shard_count: int | None,
        *,
        prefix: str = "aibot",
        ttl: float = 15.0,
        on_lost: Callable[[tuple[int, ...]], object] | None = None,
    ) -> None:
        self.whole = shard_ids is None
        self.shard_ids: tuple[int, ...] = ()  # none: the whole bot
        # The count every claim pins: `EVERY` for the whole bot's claim.
        self._pinned_count: EncodableT = EVERY
        if shard_ids is not None:
            if shard_count is None:
                raise ValueError("shard ids need the shard count")
            bad = [s for s in shard_ids if not 0 <= s < shard_count]
            if bad:
                raise ValueError(f"shard ids {bad} are outside 0..{shard_count - 1}")
            self.shard_ids = tuple(sorted(set(shard_ids)))
            self._pinned_count = shard_count
        self.redis = redis
        self.node = node
        self.shard_count = shard_count
        self.prefix = prefix
        self.ttl = ttl
        self.on_lost = on_lost
        self.count_key = f"{prefix}:shards:count"
        shards = [EVERY] if self.whole else self.shard_ids
        self.keys = [f"{prefix}:shard:{shard}" for shard in shards]
        self._claim = redis.register_script(_CLAIM)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    @property
    def _args(self) -> list[EncodableT]:
        return [self.node, self._pinned_count, int(self.ttl * 1000)]

    async def claim(
        self,
        *,
        wait: bool = False,
        poll: float = 1.0,
        waiting: Callable[[ShardConflict], object] | None = None,
    ) -> None:
        """Claim every shard id, or raise `ShardConflict` naming the holder.
        With `wait` (a standby), wait instead until the holder's claims end (it
        stopped cleanly, or they expired), trying every `poll` seconds; who holds
        them is logged once (again only if that changes), and `waiting` is told
        at every try. A count mismatch still raises."""
        said = ""
        while True:
            reply = [_text(v) for v in await self._claim(keys=self._claim_keys, args=self._args)]
            if reply[0] == "ok":
                if said:
                    log.warning("took over %s", shard_words(self.shard_ids))
                return
            if reply[0] == "count":
                raise self._count_conflict(reply[1])
            conflict = self._held_conflict(reply[1:])
            if not wait:
                raise conflict
            if str(conflict) != said:
                said = str(conflict)
                log.warning("standing by: %s", self._standby_sentence(reply[1:]))
            if waiting is not None:
                waiting(conflict)
            await asyncio.sleep(poll)

    def _count_conflict(self, pinned: str) -> ShardConflict:
        where = f"pinned in Redis at {self.count_key} while any gateway runs"
        if pinned == EVERY:
            return ShardConflict(
                f"a gateway without AIBOT_SHARD_IDS runs every shard ({where}); this "
                "process has AIBOT_SHARD_IDS: stop that gateway, or give every gateway "
                "its AIBOT_SHARD_IDS"
            )
        if self.whole:
            return ShardConflict(
                f"the bot's gateways run {pinned} shards, each its AIBOT_SHARD_IDS ({where}); "
                "this process has none (it would run every shard): give it AIBOT_SHARD_IDS "
                f"and AIBOT_SHARD_COUNT={pinned}, or stop them"
            )
        return ShardConflict(
            f"the bot's gateways run {pinned} shards ({where}); this process has "
            f"AIBOT_SHARD_COUNT={self.shard_count}: give every gateway the same "
            "count, or stop them all to change it"
        )

    def _standby_sentence(self, pairs: list[str]) -> str:
        holders = sorted(set(pairs[1::2]))
        return (
            f"{shard_words(self.shard_ids)} held by {', '.join(holders)}; "
            f"taking them over when its claims end (a clean stop, or {self.ttl:g} s after it dies)"
        )

    @property
    def _claim_keys(self) -> list[str]:
        return [self.count_key, *self.keys]

    def _held_conflict(self, pairs: list[str]) -> ShardConflict:
        holders: dict[str, list[int]] = {}
        for i in range(0, len(pairs), 2):
            ids = holders.setdefault(pairs[i + 1], [])
            if not self.whole:
                ids.append(self.shard_ids[int(pairs[i])])
        said = "; ".join(f"{shard_words(ids)} held by {holder}" for holder, ids in holders.items())
        other = "" if self.whole else "give this gateway other AIBOT_SHARD_IDS, "
        return ShardConflict(
            f"{said}: {other}stop that process, or start this one as its standby "
            f"(AIBOT_GATEWAY=standby; its claims expire {self.ttl:g} s after it stops)",
            holder=next(iter(holders)),
        )

    async def renew(self) -> tuple[int, ...] | None:
        """Extend the claims (a heartbeat `on_beat` hook); returns the ids lost to
        another process (none: the whole bot's claim), after telling `on_lost`;
        None when nothing was lost."""
        reply = await self._renew(keys=self._claim_keys, args=self._args)
        indexes = [int(i) for i in reply]
        if not indexes:
            return None
        if self.whole or indexes == [-1]:
            lost = self.shard_ids
        else:
            lost = tuple(self.shard_ids[i] for i in indexes)
        log.warning("%s held by another gateway now", shard_words(lost))
        if self.on_lost is not None:
            self.on_lost(lost)
        return lost

    async def release(self) -> None:
        """Free the ids this process still holds (a clean stop). With Redis away
        they expire by themselves instead."""
        try:
            await self._release(keys=[*self.keys, self.count_key], args=[self.node, EVERY])
        except RedisError as error:
            log.warning(
                "%s not freed (%r): free in %g s", shard_words(self.shard_ids), error, self.ttl
            )


class IdentifyLock:
    """The IDENTIFY window of each `max_concurrency` bucket, shared through Redis.

    Pass the instance as discord.py's hook (`bot.before_identify_hook = lock`,
    or call it from an override). `holder` is written into the lock for
    whoever inspects it (the node name).
    """

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = "aibot",
        max_concurrency: int = 1,
        window: float = 5.5,
        holder: str = "",
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.redis = redis
        self.prefix = prefix
        self.max_concurrency = max_concurrency
        self.window = window
        self.holder = holder
        self._take = redis.register_script(_IDENTIFY)

    def bucket(self, shard_id: int | None) -> int:
        return (shard_id or 0) % self.max_concurrency

    async def acquire(self, shard_id: int | None) -> float:
        """Wait for `shard_id`'s bucket and take it for the window; returns the
        time on Redis's clock (unix seconds) at which it was taken."""
        key = f"{self.prefix}:identify:{self.bucket(shard_id)}"
        value = f"{self.holder}:{shard_id}"
        while True:
            reply = await self._take(keys=[key], args=[value, int(self.window * 1000)])
            if int(reply[0]) == 1:
                return int(reply[1]) + int(reply[2]) / 1_000_000
            pttl = int(reply[1])
            # A few ms past the expiry, so the retry finds the key gone.
            await asyncio.sleep(max(pttl, 0) / 1000 + 0.005)

    async def __call__(self, shard_id: int | None, *, initial: bool = False) -> None:
        """discord.py's `before_identify_hook`: returns once this shard may IDENTIFY."""
        await self.acquire(shard_id)
