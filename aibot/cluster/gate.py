"""The gate in Redis: cooldowns, daily quotas and budgets, exact across processes.

The same rules as the embedded gate (`aibot.store.gate`; its docstring says
what is counted): per pool (the command's role) and per local day, a
member's quota and cooldown, the guild's budget and the pool's budget from
settings, with guild overrides (`/admin quota`) stored field by field. Here
several gateway processes take at once, so each decision is one Lua script:
Redis runs a script whole, so no other take slips in between the check and
the count, and 100 simultaneous takes against a quota of 10 pass exactly 10
whichever processes they come through. One round trip per take.

Time. A cooldown is a Redis key holding the member's last take (Redis's `TIME`,
in ms), so it runs on Redis's clock and no process's clock can shorten one; the
wait is counted by the cooldown in force when the member asks next, so a cooldown
changed (or reset) applies at once, shorter or longer. The key is kept a day
(`_COOLDOWN_KEPT_MS`, the longest `/admin quota` sets) or the cooldown, if longer.
Days follow the settings' time zone through the `Calendar` (its clock
injectable, so tests move the day); machines agree on the day as far as their
clocks agree, which matters only in the seconds around midnight.

Redis keys (under `prefix`): `gate:used:<day>:<pool>`, a hash of the day's
counts (`m:<guild>:<user>`, `g:<guild>`, `all`), gone a day after the day
ends; `gate:cool:<pool>:<guild>:<user>`, a member's cooldown;
`gate:limits:<guild>:<pool>`, a guild's overrides; `gate:taken:<job id>`, the
day a job was counted on, kept for its refund until the day ends (as the
embedded gate keeps it: a video that queued and ran for over an hour and then
failed gives its use back too).

Unlike the embedded gate every method is a coroutine: even `limits` reads
the overrides another process may just have set. `spent` alone is not: it
answers from the counts the latest take here brought back (for the operators'
budget alert, `aibot.watch.WatchedGate`), so it sees other processes' uses as
of then.
"""

from __future__ import annotations

import math
from typing import Any

import redis.asyncio as redis
from redis.exceptions import NoScriptError
from redis.typing import EncodableT

from aibot.cluster.batch import Batched
from aibot.jobs import Job, LimitReached
from aibot.ports import Limits, limits_given
from aibot.settings import Settings
from aibot.store.days import Calendar
from aibot.store.gate import pool_of

__all__ = ["SharedGate"]

# How long after its day ends a day's counts stay readable.
_USED_KEPT = 86_400
# How long a member's last take is kept at least, in ms: a cooldown raised while
# they wait must still find it.
_COOLDOWN_KEPT_MS = 86_400_000
_FIELDS = ("cooldown", "daily_quota", "daily_budget")

# KEYS: the day's counts, the member's cooldown, the guild's overrides, the
# job's refund record. ARGV: member field, guild field, the pool's defaults
# (cooldown in seconds, quota, budget), the counts' lifetime (s), the refund
# record's value and lifetime (s), the last take's least lifetime (ms). Returns
# {0, guild's count, guild's budget, pool's count} taken (the counts with this
# take), {1, ms} cooldown, {2} quota, {3} budget. An override field left unset
# follows settings; the pool's own budget is never overridden (it protects the bill).
_TAKE = """
local override = redis.call('HMGET', KEYS[3], 'cooldown', 'daily_quota', 'daily_budget')
local cooldown = tonumber(override[1]) or tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
local last = tonumber(redis.call('GET', KEYS[2]))
if last and last + math.ceil(cooldown * 1000) > now then
  return {1, last + math.ceil(cooldown * 1000) - now}
end
local quota = tonumber(override[2]) or tonumber(ARGV[4])
local budget = tonumber(override[3]) or tonumber(ARGV[5])
local pool_budget = tonumber(ARGV[6])
local used = redis.call('HMGET', KEYS[1], ARGV[1], ARGV[2], 'all')
if quota > 0 and (tonumber(used[1]) or 0) >= quota then return {2} end
if budget > 0 and (tonumber(used[2]) or 0) >= budget then return {3} end
if pool_budget > 0 and (tonumber(used[3]) or 0) >= pool_budget then return {3} end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
redis.call('HINCRBY', KEYS[1], 'all', 1)
redis.call('EXPIRE', KEYS[1], ARGV[7])
redis.call('SET', KEYS[2], now, 'PX', math.max(math.ceil(cooldown * 1000), tonumber(ARGV[10])))
redis.call('SET', KEYS[4], ARGV[8], 'EX', ARGV[9])
return {0, (tonumber(used[2]) or 0) + 1, budget, (tonumber(used[3]) or 0) + 1}
"""

# KEYS: the job's refund record, today's counts. ARGV: today, member field,
# guild field. Returns 1 when given back, 0 when there was nothing to give.
_REFUND = """
local day = redis.call('GETDEL', KEYS[1])
if day ~= ARGV[1] then return 0 end
for _, field in ipairs({ARGV[2], ARGV[3], 'all'}) do
  if redis.call('HINCRBY', KEYS[2], field, -1) < 0 then redis.call('HSET', KEYS[2], field, 0) end
end
return 1
"""


class SharedGate:
    """Cooldowns, quotas and budgets for every process of the bot, in Redis.

    `client` is a `redis.asyncio.Redis`; `prefix` names this bot's keys;
    `calendar` says which local day it is (the settings' time zone)."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        settings: Settings,
        calendar: Calendar,
        *,
        batched: Batched | None = None,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._calendar = calendar
        self._defaults = {
            name: Limits(pool.cooldown, pool.daily_quota, pool.daily_budget)
            for name, pool in settings.pools.items()
        }
        self._take = client.register_script(_TAKE)
        # Shared with the job queue's, when given: a turn's takes and appends go
        # to Redis as one pipeline.
        self._batched = batched if batched is not None else Batched(client)
        self._refund = client.register_script(_REFUND)
        self._day, self._start, self._end = calendar.span(calendar.now())
        # (used, budget) as the latest take here saw them: by pool, and by
        # (pool, guild); today's only.
        self._spent: dict[tuple[str, int | None], tuple[int, int]] = {}

    async def take(self, job: Job) -> None:
        """Count one use, or raise `LimitReached(scope, retry_after=seconds)`:
        scope cooldown (this member, this pool), quota (this member's day) or
        budget (the guild's or the pool's day). A refusal counts nothing."""
        now = self._today()
        pool = pool_of(job)
        guild = job.guild_id or 0
        default = self._defaults[pool]
        refund_for = max(1, math.ceil(self._end - now))
        keys = [
            self._used(pool),
            self._cooldown_key(job),
            self._limits_key(guild, pool),
            f"{self._prefix}:gate:taken:{job.id}",
        ]
        args: list[EncodableT] = [
            f"m:{guild}:{job.user_id}",
            f"g:{guild}",
            default.cooldown,
            default.daily_quota,
            default.daily_budget,
            default.daily_budget,
            math.ceil(self._end - now) + _USED_KEPT,
            self._day,
            refund_for,
            _COOLDOWN_KEPT_MS,
        ]
        try:
            # With the other takes of this turn of the loop, in one pipeline (each
            # script still runs whole): a burst's takes cost a fraction of lone calls.
            sha = self._take.sha
            answer = await self._batched.call(lambda pipe: pipe.evalsha(sha, 4, *keys, *args))
        except NoScriptError:  # Redis restarted empty: the script loads itself
            answer = await self._take(keys=keys, args=args)
        verdict = int(answer[0])
        if verdict == 0:
            self._spent[(pool, guild)] = (int(answer[1]), int(answer[2]))
            self._spent[(pool, None)] = (int(answer[3]), default.daily_budget)
            return
        if verdict == 1:
            raise LimitReached("cooldown", retry_after=int(answer[1]) / 1000)
        raise LimitReached("quota" if verdict == 2 else "budget", retry_after=self._end - now)

    def spent(self, pool: str, guild_id: int | None = None) -> tuple[int, int]:
        """(used today, daily budget) of a server in a pool, or of the whole pool
        everywhere (`guild_id` None), as the latest take here counted them (see
        the module docstring); budget 0 is unlimited."""
        self._today()
        key = (pool, None if guild_id is None else guild_id or 0)
        if key in self._spent:
            return self._spent[key]
        return 0, self._defaults[pool].daily_budget

    async def refund(self, job: Job) -> bool:
        """Give back the quota and budget a job took (the provider failed it).
        The cooldown stays. False when there is nothing to give back: the job
        was never taken, was already refunded, or was taken on an earlier day."""
        self._today()
        pool = pool_of(job)
        guild = job.guild_id or 0
        given = await self._refund(
            keys=[f"{self._prefix}:gate:taken:{job.id}", self._used(pool)],
            args=[self._day, f"m:{guild}:{job.user_id}", f"g:{guild}"],
        )
        return bool(int(given))

    async def undo(self, job: Job) -> bool:
        """Take back a take whose answer never reached its caller: the use, and the
        cooldown it set. False when there is none to take back (not counted, or
        already given back)."""
        if not await self.refund(job):
            return False
        await self._client.delete(self._cooldown_key(job))
        return True

    def _cooldown_key(self, job: Job) -> str:
        return f"{self._prefix}:gate:cool:{pool_of(job)}:{job.guild_id or 0}:{job.user_id}"

    async def usage(self, guild_id: int | None, user_id: int, pool: str) -> tuple[int, int]:
        """(used today, daily quota) of a member in a pool; quota 0 is unlimited."""
        self._today()
        guild = guild_id or 0
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.hget(self._used(pool), f"m:{guild}:{user_id}")
            pipe.hmget(self._limits_key(guild, pool), _FIELDS)
            used, override = await pipe.execute()
        return int(used or 0), self._merge(pool, override).daily_quota

    async def limits(self, guild_id: int | None, pool: str) -> Limits:
        """The limits that apply to `pool` in a guild (None or 0: direct messages)."""
        override = await self._client.hmget(self._limits_key(guild_id or 0, pool), _FIELDS)
        return self._merge(pool, override)

    async def set_limits(
        self,
        guild_id: int,
        pool: str,
        *,
        cooldown: float | None = None,
        daily_quota: int | None = None,
        daily_budget: int | None = None,
    ) -> Limits:
        """Override some of a guild's limits for a pool (None: leave as it is),
        for every process from the next take. Returns the new limits."""
        given = limits_given(pool, self._defaults, cooldown, daily_quota, daily_budget)
        key = self._limits_key(guild_id, pool)
        async with self._client.pipeline(transaction=True) as pipe:
            if given:
                pipe.hset(key, mapping={name: repr(value) for name, value in given.items()})
            pipe.hmget(key, _FIELDS)
            *_, override = await pipe.execute()
        return self._merge(pool, override)

    async def clear_limits(self, guild_id: int, pool: str) -> Limits:
        """Drop a guild's overrides for a pool: settings apply again."""
        await self._client.delete(self._limits_key(guild_id, pool))
        return self._defaults[pool]

    def _merge(self, pool: str, override: list[Any]) -> Limits:
        """The pool's defaults with a guild's stored fields laid over them."""
        cooldown, quota, budget = (_number(value) for value in override)
        return self._defaults[pool].overridden(
            cooldown, None if quota is None else int(quota), None if budget is None else int(budget)
        )

    def _today(self) -> float:
        """The calendar's now, moving to a new day when it has left the current one."""
        now = self._calendar.now()
        if not self._start <= now < self._end:
            self._day, self._start, self._end = self._calendar.span(now)
            self._spent = {}
        return now

    def _used(self, pool: str) -> str:
        return f"{self._prefix}:gate:used:{self._day}:{pool}"

    def _limits_key(self, guild: int, pool: str) -> str:
        return f"{self._prefix}:gate:limits:{guild}:{pool}"


def _number(value: Any) -> float | None:
    """A stored override field as a number; None when the field is unset."""
    if value is None:
        return None
    return float(value.decode() if isinstance(value, bytes) else value)
