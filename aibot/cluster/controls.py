"""The admin's controls across processes (cluster mode): list jobs, cancel one,
pause and resume a pool, wherever the jobs run.

What lives in Redis:

- `{prefix}:paused:{pool}`: set while an admin has `pool` paused (`/admin pause`),
  deleted by `/admin resume`; no expiry, so a pause outlasts a restart. Every
  worker's take loop honours it (a paused pool takes no new jobs; the ones
  running finish); the gateway refuses the pool's commands, as one process does.
- `{prefix}:cancels`: a hash, job id -> `{"pool", "entry", "at"}`: the cancel
  requests not yet carried out. The gateway writes one (`request_cancel`) only
  for a job whose stream entry exists, that no request names yet and whose
  answer is not being sent. Workers read them (`poll`, every fraction of a
  second): the one holding the job cancels it as one process does; a job no
  worker took yet is taken out of its stream by one worker (`drop_waiting`,
  atomic against every other worker's read), which tells its member. A
  request is removed once its entry is gone, and forgotten after `cancel_ttl`.

Listing reads the streams themselves (`jobs`): an entry delivered to a worker
(pending in the consumer group) is running, unless its lease ran out (its
worker died: it waits to be reclaimed); an entry after the group's
last-delivered id is queued. Only one server's jobs (the entry's `guild` field),
at most `limit` of each kind per pool, however many other servers' come first, in
one atomic script per pool, all pools in one round trip.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from aibot.cluster.streams import GROUP
from aibot.jobs import Job

__all__ = ["CANCEL_TTL", "CancelRequest", "ControlState", "Controls", "ListedJob"]

CANCEL_TTL = 86_400.0  # seconds a request waits for its job (a paused pool may hold it)
_LIST_LIMIT = 200  # entries of each kind (running, queued) read per pool

# Redis's clock in seconds, for the scripts below.
_NOW = """
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1e6
end
"""

# The field `id` (the job's id) of an entry's flat field list.
_JOB_ID = """
local function job_id(fields)
  for i = 1, #fields, 2 do
    if fields[i] == 'id' then return fields[i + 1] end
  end
end
"""

# Request the cancel of a job. KEYS: cancels hash, stream, the job's delivery claim.
# ARGV: job id, entry id, pool, ttl (s). Returns 1 when recorded, 0 when the entry
# is gone (or is another job's), already has a request, or its answer is being sent.
_REQUEST = (
    _NOW
    + _JOB_ID
    + """
local cancels, stream, delivered = KEYS[1], KEYS[2], KEYS[3]
local id, entry_id, pool, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local at = now()
local all = redis.call('HGETALL', cancels)
for i = 1, #all, 2 do
  local ok, record = pcall(cjson.decode, all[i + 1])
  if not ok or type(record) ~= 'table' or (tonumber(record.at) or 0) < at - ttl then
    redis.call('HDEL', cancels, all[i])
  end
end
if redis.call('HEXISTS', cancels, id) == 1 or redis.call('EXISTS', delivered) == 1 then
  return 0
end
local entry = redis.call('XRANGE', stream, entry_id, entry_id)[1]
if not entry or job_id(entry[2]) ~= id then return 0 end
redis.call('HSET', cancels, id, cjson.encode({pool = pool, entry = entry_id, at = at}))
return 1
"""
)

# Take a cancelled job out of its stream if no worker took it yet. KEYS: stream,
# cancels hash. ARGV: group, entry id, job id. Returns the entry's fields when
# taken out; nil when a worker holds it (that worker cancels it) or when it is
# gone (then the request is removed too).
_DROP = """
local stream, cancels = KEYS[1], KEYS[2]
local group, entry_id, id = ARGV[1], ARGV[2], ARGV[3]
local entry = redis.call('XRANGE', stream, entry_id, entry_id)[1]
if not entry then
  redis.call('HDEL', cancels, id)
  return nil
end
local ok, pending = pcall(redis.call, 'XPENDING', stream, group, entry_id, entry_id, 1)
if ok and pending[1] then return nil end
redis.call('XDEL', stream, entry_id)
redis.call('HDEL', cancels, id)
return entry[2]
"""

# A server's jobs in a pool. KEYS: stream, cancels hash. ARGV: group, limit, lease
# (ms), server id. Returns {state, entry id, consumer, fields} per job: pending
# entries first (by id), then the ones not yet delivered, up to `limit` (and less
# than a page more) of each; jobs with a cancel request are left out. An entry with
# no server field (an older version's) is listed: the caller reads its job.
_LIST = (
    _JOB_ID
    + """
local stream, cancels = KEYS[1], KEYS[2]
local group, limit, lease, guild = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
if redis.call('EXISTS', stream) == 0 then return {} end
local last
for _, info in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  local name, delivered
  for i = 1, #info, 2 do
    if info[i] == 'name' then name = info[i + 1] end
    if info[i] == 'last-delivered-id' then delivered = info[i + 1] end
  end
  if name == group then last = delivered end
end
local function server_of(fields)
  for i = 1, #fields, 2 do
    if fields[i] == 'guild' then return fields[i + 1] end
  end
end
local out = {}
local function add(state, entry, consumer)
  local id, server = job_id(entry[2]), server_of(entry[2])
  if id and (server == nil or server == guild) and redis.call('HEXISTS', cancels, id) == 0 then
    out[#out + 1] = {state, entry[1], consumer, entry[2]}
    return 1
  end
  return 0
end
if last then
  local start, found, rows = '-', 0
  repeat
    rows = redis.call('XPENDING', stream, group, start, '+', limit)
    for _, row in ipairs(rows) do
      local entry = redis.call('XRANGE', stream, row[1], row[1])[1]
      if entry then found = found + add(row[3] < lease and 'running' or 'queued', entry, row[2]) end
      start = '(' .. row[1]
    end
  until #rows < limit or found >= limit
end
local start, found, entries = '(' .. (last or '0-0'), 0
repeat
  entries = redis.call('XRANGE', stream, start, '+', 'COUNT', limit)
  for _, entry in ipairs(entries) do
    found = found + add('queued', entry, '')
    start = '(' .. entry[1]
  end
until #entries < limit or found >= limit
return out
"""
)


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """An admin asked to cancel job `job_id`, entry `entry_id` of `pool`'s stream."""

    job_id: str
    pool: str
    entry_id: str


@dataclass(frozen=True, slots=True)
class ControlState:
    """What every worker honours: the paused pools and the open cancel requests
    (by job id)."""

    paused: frozenset[str]
    cancels: Mapping[str, CancelRequest]


@dataclass(frozen=True, slots=True)
class ListedJob:
    """A job in `pool`'s stream: `state` running (held by `consumer`) or queued."""

    pool: str
    job: Job
    state: str
    entry_id: str
    consumer: str


class Controls:
    """The admin's controls in Redis (see the module docstring). `lease` (seconds)
    is the streams' lease: a delivered entry idle longer waits to be reclaimed."""

    def __init__(
        self,
        redis: Redis,
        prefix: str = "aibot",
        *,
        lease: float = 3.0,
        cancel_ttl: float = CANCEL_TTL,
        limit: int = _LIST_LIMIT,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.lease = lease
        self.cancel_ttl = cancel_ttl
        self.limit = limit
        self.cancels_key = f"{prefix}:cancels"
        self._request = redis.register_script(_REQUEST)
        self._drop = redis.register_script(_DROP)
        self._list = redis.register_script(_LIST)

    def stream_key(self, pool: str) -> str:
        return f"{self.prefix}:jobs:{pool}"

    def paused_key(self, pool: str) -> str:
        return f"{self.prefix}:paused:{pool}"

    # ------------------------------------------------------------------ pause

    async def pause(self, pool: str, *, by: str = "") -> None:
        """Every worker stops taking `pool`'s jobs (within a poll)."""
        await self.redis.set(self.paused_key(pool), by or "admin")

    async def unpause(self, pool: str) -> None:
        await self.redis.delete(self.paused_key(pool))

    async def paused(self, pools: Iterable[str]) -> frozenset[str]:
        """Which of `pools` are paused."""
        names = list(pools)
        if not names:
            return frozenset()
        values = await self.redis.mget([self.paused_key(p) for p in names])
        return frozenset(p for p, v in zip(names, values, strict=True) if v is not None)

    # ----------------------------------------------------------------- cancel

    async def request_cancel(self, pool: str, entry_id: str, job_id: str) -> bool:
        """Record that an admin cancels `job_id` (entry `entry_id` of `pool`'s stream):
        True when the job is still there to cancel (see `_REQUEST`)."""
        recorded = await self._request(
            keys=[self.cancels_key, self.stream_key(pool), f"{self.prefix}:delivered:{job_id}"],
            args=[job_id, entry_id, pool, self.cancel_ttl],
        )
        return bool(recorded)

    async def poll(self, pools: Iterable[str]) -> ControlState:
        """The paused pools among `pools` and every open cancel request, in one round trip."""
        names = list(pools)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.cancels_key)
            if names:
                pipe.mget([self.paused_key(p) for p in names])
            replies = await pipe.execute()
        values = replies[1] if names else []
        paused = frozenset(p for p, v in zip(names, values, strict=True) if v is not None)
        return ControlState(paused, _requests(replies[0]))

    async def drop_waiting(self, request: CancelRequest) -> Job | None:
        """Take the cancelled job out of its stream if no worker took it yet: the
        job (the caller tells its member), else None."""
        fields = await self._drop(
            keys=[self.stream_key(request.pool), self.cancels_key],
            args=[GROUP, request.entry_id, request.job_id],
        )
        return _job(fields) if fields else None

    # ------------------------------------------------------------------- list

    async def jobs(self, pools: Iterable[str], guild_id: int) -> list[ListedJob]:
        """A server's running then queued jobs in every pool (module docstring)."""
        names = list(pools)
        async with self.redis.pipeline(transaction=False) as pipe:
            for pool in names:
                await self._list(
                    keys=[self.stream_key(pool), self.cancels_key],
                    args=[GROUP, self.limit, int(self.lease * 1000), guild_id],
                    client=pipe,
                )
            replies = await pipe.execute()
        listed = [
            ListedJob(pool, _job(fields), _text(state), _text(entry_id), _text(consumer))
            for pool, rows in zip(names, replies, strict=True)
            for state, entry_id, consumer, fields in rows
        ]
        return [entry for entry in listed if entry.job.guild_id == guild_id]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _job(fields: Any) -> Job:
    """The job in an entry's flat [name, value, ...] field list."""
    values = {_text(fields[i]): fields[i + 1] for i in range(0, len(fields), 2)}
    return Job.from_dict(json.loads(_text(values["job"])))


def _requests(raw: Mapping[Any, Any]) -> dict[str, CancelRequest]:
    requests = {}
    for job_id, value in raw.items():
        try:
            record = json.loads(_text(value))
            request = CancelRequest(_text(job_id), str(record["pool"]), str(record["entry"]))
        except (ValueError, KeyError, TypeError):
            continue  # not ours: the request script removes it at the next write
        requests[request.job_id] = request
    return requests
