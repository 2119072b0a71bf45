"""The job stream of one pool: a Redis Stream and its consumer group.

Every pool has one stream, `{prefix}:jobs:{pool}`, read by one consumer group
(`workers`); each worker process is a consumer of it. The life of an entry:

1. `add(job)`: the gateway appends the job (`XADD`).
2. `take(consumer, n)`: a worker with `n` free slots FIRST reclaims entries
   whose lease ran out (their worker died or stalled: `XAUTOCLAIM` with
   min-idle = the lease, looping on the cursor until `0-0`, since one call
   scans at most 10 x COUNT pending entries), THEN reads new ones
   (`XREADGROUP ... >`, blocking briefly). Reclaiming first matters: a busy
   survivor that reclaimed only in spare moments left a dead worker's jobs
   waiting 30 s. The scan runs at most every `reclaim_every` seconds (0.5):
   leases last seconds, and a scan at every take would cost a round trip a
   job at 1,000 jobs/s. Each `Delivery` carries how many times the entry
   has been delivered; past `max_deliveries` the entry is dead-lettered
   (copied to `{prefix}:dead:{pool}`, acknowledged and deleted) and handed
   back with `dead=True`, so the member can be told instead of the job
   crashing one worker after another. A reclaimed entry whose answer was
   marked sent (step 4: its worker died after answering, before step 5) is
   acknowledged and deleted, and handed back with `answered=True`. One whose
   delivery was claimed but not marked sent lost its worker while it was
   answering: the claim passes to the reclaiming delivery, which runs the job
   again and answers (otherwise the member would never hear).
3. `renew(consumer, entry_ids)`: while it works, the worker renews the
   leases of its jobs every lease/3 or so. A script checks each entry's
   owner in `XPENDING` and re-claims (`XCLAIM ... JUSTID`) only the ones it
   still owns: a plain claim-to-self would let a stalled worker take back a
   job another worker already reclaimed. It answers which entries are
   still owned; the worker drops the others. (A worker that stalled past
   the lease may reclaim an entry of its own: if the job still runs in
   that process, keep it running rather than starting it twice.)
4. `claim_delivery(delivery)`: before any send that is not idempotent (a
   followup, a channel message) the worker claims the job's delivery,
   `SET {prefix}:delivered:{job id} NX PX ...`. A late duplicate (the stalled
   worker waking up) loses and sends nothing. Winning also takes the entry's
   lease, so the winner's renewals hold and the other copy is dropped. A
   loser does not acknowledge: the winner does, once it has sent. The winner
   is committed: it finishes sending even if a renewal later finds the lease
   lost. `mark_sent(delivery)` once the non-idempotent sends are out: a
   reclaimer then finishes the entry instead of answering again (see step 2).
   aibot's runner only finishes the entry, right after sending (step 5); a
   job run again in between re-edits its deferred message, idempotent.
5. `finish(entry_id, sent=job_id)`: `XACK` then `XDEL`, after the reply is
   finished, marking the claim sent in the same step (step 2). The
   stream is never trimmed with `MAXLEN`: since Redis 7.0, `XAUTOCLAIM`
   silently drops pending entries whose stream entry is gone, so trimming
   would lose jobs; and `XACK` alone frees no memory.

Nothing here holds a lock around `XAUTOCLAIM`: its min-idle time is the guard.
The client may decode replies or not. A `TimeoutError` from the blocking read
(a worker stopped with SIGSTOP past redis-py's 5 s socket timeout wakes to one)
is taken as "nothing new"; anything the read delivered meanwhile is reclaimed
once its lease runs out. Other Redis errors reach the caller.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT, FieldT

from aibot.cluster.stream_scripts import CLAIM_DELIVERY, FINISH, MARK_SENT, RECLAIM, RENEW
from aibot.jobs import Job

__all__ = ["GROUP", "Delivery", "JobStream", "StreamLoad", "entry_fields", "stream_loads"]

GROUP = "workers"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One delivery of a stream entry to a consumer.

    `deliveries` counts this one (1 for a new entry). `dead` means the entry
    was delivered more than the stream's `max_deliveries` times: it has been
    dead-lettered and must not run; tell the member instead. `answered` means
    an earlier delivery had claimed the job's delivery: the entry has been
    finished; there is nothing to run and nothing to tell.
    """

    entry_id: str
    job: Job
    deliveries: int
    consumer: str
    dead: bool = False
    answered: bool = False

    @property
    def holder(self) -> str:
        """Who claims the job's delivery: this consumer, this delivery. A consumer
        that reclaimed its own stalled entry is another holder than its first try."""
        return f"{self.consumer}#{self.deliveries}"


@dataclass(frozen=True, slots=True)
class StreamLoad:
    """A pool's stream at a glance: `length` entries in it, of which `pending`
    are delivered and not yet finished, and `waiting` not yet delivered."""

    pool: str
    length: int
    pending: int

    @property
    def waiting(self) -> int:
        return max(0, self.length - self.pending)


class JobStream:
    """The job stream of one pool (see the module docstring for an entry's life).

    `lease` (seconds) is how long an entry may go without renewal before
    another consumer reclaims it; `block` how long `take` waits for new
    entries; `reclaim_every` how often `take` scans for idle entries (so a
    dead worker's job is reclaimed within lease + reclaim_every of its last
    renewal); `delivery_ttl` how long a delivery claim is kept, the window in
    which a late duplicate is still recognised.
    """

    def __init__(
        self,
        redis: Redis,
        pool: str,
        *,
        prefix: str = "aibot",
        lease: float = 3.0,
        max_deliveries: int = 3,
        block: float = 0.5,
        reclaim_every: float = 0.5,
        delivery_ttl: float = 3600.0,
        dead_letters_kept: int = 10_000,
    ) -> None:
        self.redis = redis
        self.pool = pool
        self.prefix = prefix
        self.key = f"{prefix}:jobs:{pool}"
        self.dead_key = f"{prefix}:dead:{pool}"
        self.lease = lease
        self.max_deliveries = max_deliveries
        self.block = block
        self.reclaim_every = reclaim_every
        self._next_reclaim = 0.0  # time.monotonic() of the next scan
        self.delivery_ttl = delivery_ttl
        self.dead_letters_kept = dead_letters_kept
        self._reclaim = redis.register_script(RECLAIM)
        self._renew = redis.register_script(RENEW)
        self._claim_delivery = redis.register_script(CLAIM_DELIVERY)
        self._mark_sent = redis.register_script(MARK_SENT)
        self._finish = redis.register_script(FINISH)
        self._group_ready = False

    async def ensure_group(self) -> None:
        """Create the stream and its consumer group if they do not exist yet."""
        try:
            await self.redis.xgroup_create(self.key, GROUP, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        self._group_ready = True

    async def add(self, job: Job) -> str:
        """Append `job`; returns its entry id."""
        entry_id = await self.redis.xadd(self.key, entry_fields(job))
        return _text(entry_id)

    async def take(self, consumer: str, count: int) -> list[Delivery]:
        """Up to `count` jobs for `consumer`: reclaimed ones first, then new ones
        (waiting up to `block` seconds when nothing was reclaimed). Deliveries
        marked `dead` or `answered` come back too (the entry is already
        finished) and do not count toward `count`."""
        if count <= 0:
            return []
        if not self._group_ready:
            await self.ensure_group()
        try:
            reclaimed = await self._reclaim_due(consumer, count)
        except ResponseError as error:
            if "NOGROUP" not in str(error):
                raise
            await self.ensure_group()  # Redis lost its data (a restart without persistence)
            reclaimed = []
        room = count - sum(not (d.dead or d.answered) for d in reclaimed)
        if room <= 0:
            return reclaimed
        return reclaimed + await self._read_new(consumer, room, wait=not reclaimed)

    async def _reclaim_due(self, consumer: str, count: int) -> list[Delivery]:
        now = time.monotonic()
        if now < self._next_reclaim:
            return []
        self._next_reclaim = now + self.reclaim_every
        return await self._reclaim_idle(consumer, count)

    async def _reclaim_idle(self, consumer: str, count: int) -> list[Delivery]:
        rows = await self._reclaim(
            keys=[self.key, self.dead_key],
            args=[
                GROUP,
                consumer,
                int(self.lease * 1000),
                count,
                self.max_deliveries,
                self.dead_letters_kept,
                self.delivered_key(""),
            ],
        )
        return [
            Delivery(
                _text(entry_id),
                _job(fields),
                int(times),
                consumer,
                dead=int(state) == 1,
                answered=int(state) == 2,
            )
            for entry_id, fields, times, state in rows
        ]

    async def _read_new(self, consumer: str, count: int, *, wait: bool) -> list[Delivery]:
        block = int(self.block * 1000) if wait else None
        try:
            reply = await self.redis.xreadgroup(
                GROUP, consumer, {self.key: ">"}, count=count, block=block
            )
        except RedisTimeoutError:
            return []  # woken from a stall: what the read delivered is reclaimed later
        except ResponseError as error:
            if "NOGROUP" not in str(error):
                raise
            await self.ensure_group()
            return []
        return [
            Delivery(_text(entry_id), _job(fields), 1, consumer)
            for _, entries in _stream_rows(reply)
            for entry_id, fields in entries
        ]

    async def renew(self, consumer: str, entry_ids: Iterable[str]) -> set[str]:
        """Renew the leases of those of `entry_ids` that `consumer` still owns;
        returns them. A job whose entry is missing from the answer was lost
        (reclaimed by another consumer, or finished by the winner of its
        delivery claim): drop it without acknowledging."""
        ids = list(entry_ids)
        if not ids:
            return set()
        owned = await self._renew(keys=[self.key], args=[GROUP, consumer, *ids])
        return {_text(entry_id) for entry_id in owned}

    async def claim_delivery(self, delivery: Delivery) -> bool:
        """Claim the right to send `delivery`'s answer; False means another
        delivery of the job claimed it first: send nothing. Repeating the
        claim for the same delivery answers True again."""
        won = await self._claim_delivery(
            keys=[self.delivered_key(delivery.job.id), self.key],
            args=[
                delivery.holder,
                int(self.delivery_ttl * 1000),
                GROUP,
                delivery.consumer,
                delivery.entry_id,
            ],
        )
        return bool(won)

    async def mark_sent(self, delivery: Delivery) -> bool:
        """`delivery`, which holds its job's claim, has sent what is not idempotent:
        a reclaimer finishes the entry rather than answering again. False when
        the claim is not this delivery's (it passed to a reclaimer)."""
        marked = await self._mark_sent(
            keys=[self.delivered_key(delivery.job.id)], args=[delivery.holder]
        )
        return bool(marked)

    def delivered_key(self, job_id: str) -> str:
        return f"{self.prefix}:delivered:{job_id}"

    async def finish(self, entry_id: str, *, sent: str | None = None) -> None:
        """Acknowledge and delete the entry, after the job's reply is finished.
        `sent`: the id of the job whose answer this worker sent, to mark its
        claim sent too in the same step (a worker that acknowledges late, after
        Redis was away, keeps a reclaimer that took over meanwhile from sending)."""
        keys = [self.key] if sent is None else [self.key, self.delivered_key(sent)]
        await self._finish(keys=keys, args=[GROUP, entry_id])

    async def load(self) -> StreamLoad:
        """This pool's length and pending count."""
        return (await stream_loads(self.redis, [self.pool], prefix=self.prefix))[self.pool]

    async def dead_letters(self, count: int = 100) -> list[tuple[str, Mapping[str, str]]]:
        """The most recent dead letters, newest first: (id, fields) with the job's
        JSON under `job` (it holds the interaction token: never log it whole)."""
        # [(id, fields), ...]: redis-py's reply, its types wider than what it holds.
        rows: Any = await self.redis.xrevrange(self.dead_key, count=count)
        return [
            (_text(entry_id), {_text(k): _text(v) for k, v in fields.items()})
            for entry_id, fields in rows
        ]


async def stream_loads(
    redis: Redis, pools: Sequence[str], *, prefix: str = "aibot"
) -> dict[str, StreamLoad]:
    """Length and pending count of each pool's stream, in one round trip.
    A pool whose stream or group does not exist yet reads as empty."""
    async with redis.pipeline(transaction=False) as pipe:
        for pool in pools:
            pipe.xlen(f"{prefix}:jobs:{pool}")
            pipe.xpending(f"{prefix}:jobs:{pool}", GROUP)
        replies = await pipe.execute(raise_on_error=False)
    loads = {}
    for i, pool in enumerate(pools):
        length, pending = replies[2 * i], replies[2 * i + 1]
        length = 0 if isinstance(length, Exception) else int(length)
        pending = 0 if isinstance(pending, Exception) else int(pending["pending"])
        loads[pool] = StreamLoad(pool, length, pending)
    return loads


def entry_fields(job: Job) -> dict[FieldT, EncodableT]:
    """A job's stream entry: its id and server apart too (the reclaim script looks
    up the delivery claim by the id; `/admin jobs` lists one server's jobs) and the
    job as JSON, not ASCII-escaped (a Korean prompt costs 3 bytes a character, not 6)."""
    return {
        "id": job.id,
        "guild": job.guild_id or 0,
        "job": json.dumps(job.to_dict(), ensure_ascii=False),
    }


def _job(fields: Any) -> Job:
    """The job in an entry's fields: a flat [name, value, ...] list from a script,
    a mapping from redis-py."""
    if isinstance(fields, Mapping):
        values = {_text(k): v for k, v in fields.items()}
    else:
        values = {_text(fields[i]): fields[i + 1] for i in range(0, len(fields), 2)}
    return Job.from_dict(json.loads(_text(values["job"])))


def _stream_rows(reply: Any) -> list[tuple[str, list[tuple[Any, Any]]]]:
    """XREADGROUP's reply as (stream, entries) pairs, whether RESP2 (a list) or
    RESP3 (a mapping)."""
    if not reply:
        return []
    if isinstance(reply, Mapping):
        return [(_text(name), entries) for name, entries in reply.items()]
    return [(_text(name), entries) for name, entries in reply]
