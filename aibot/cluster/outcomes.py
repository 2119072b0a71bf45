"""Job outcomes from the worker processes to the gateway's ledger, over a Redis stream.

In cluster mode the usage ledger stays in the gateway's SQLite file, but the
jobs end on the workers. A worker's `OutcomePublisher` implements
`aibot.ports.Ledger`: `record(...)` never blocks; it queues the row, and a
`Sender` (bounded, in order, retried until Redis takes it) adds it to the
stream `<prefix>:outcomes`. The row holds the job's id, guild, member, pool,
command, provider, redacted key, outcome, latency, usage and end time: never
the interaction token. It travels as one JSON field, not a field per value:
redis-py parses a reply element by element in Python, and 30 rows of 14 fields
cost the gateway about 5 ms to read, against 1.3 ms as JSON.

On the gateway an `OutcomeFollower` reads the stream in a consumer group,
records each row with `aibot.store.Ledger.record` (the gateway's price table
makes the cost), waits until the rows are in the file, and only then
acknowledges them. Members first: each batch is read (a reply parsed whole,
in one go) and recorded in the background's turn (`aibot.foreground`), not in
the middle of a burst of commands. A row it cannot read (written by another
version) is logged and acknowledged, not retried forever. A crash between the
write and the acknowledgement delivers the rows again (the follower reads its
own pending entries first when it starts); the ledger counts a job id once, so
a reclaimed job answered once, or a row delivered twice, is counted once. While
rows come one by one (the jobs of a burst end one by one), the follower reads
at most every half second (`linger`): a row each time would cost the gateway a
read, a write to the file and an acknowledgement per job.

Redis down: the publisher keeps rows (up to its limit, then drops the oldest,
counted and logged) and sends them when Redis is back; the follower logs,
waits and reads again, creating its group anew if a restarted Redis lost it.

Several gateway processes keeping a ledger each: give each its own `group`
(its node name): every group sees every row. The stream is capped
(approximately) at `keep` rows, far more than a gateway away for a while
leaves unread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as redis
from redis.exceptions import ResponseError
from redis.typing import EncodableT, FieldT

from aibot.cluster.sender import FAILURES, Sender
from aibot.cluster.tasks import Backoff, LoopTask
from aibot.jobs import Job
from aibot.store.gate import pool_of
from aibot.store.ledger import Ledger

__all__ = ["OutcomeFollower", "OutcomePublisher", "outcomes_stream"]

log = logging.getLogger("aibot.cluster.outcomes")

_KEEP = 100_000


def outcomes_stream(prefix: str) -> str:
    """The stream's Redis key."""
    return f"{prefix}:outcomes"


class OutcomePublisher:
    """A worker's ledger: rows go to the gateway through Redis (`aibot.ports.Ledger`).

    `limit` rows wait at most while Redis is away; `clock` gives unix seconds."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        *,
        limit: int = 10_000,
        keep: int = _KEEP,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._stream = outcomes_stream(prefix)
        self._keep = keep
        self._clock = clock
        self._sender = Sender(
            "ledger rows", limit=limit, pauses=(0.2, 0.5, 1.0, 2.0, 5.0), persist=True
        )

    @property
    def dropped(self) -> int:
        """Rows given up because too many waited for Redis."""
        return self._sender.dropped

    def record(
        self,
        job: Job,
        *,
        provider: str,
        key_id: str,
        outcome: str,
        latency: float,
        tokens_in: int = 0,
        tokens_out: int = 0,
        images: int = 0,
        video_seconds: float = 0.0,
    ) -> None:
        """Queue one job's row for the gateway's ledger; never waits."""
        row = {
            "job": job.id,
            "guild": job.guild_id or 0,
            "user": job.user_id,
            "pool": job.pool or pool_of(job),
            "command": job.command,
            "provider": provider,
            "key_id": _shown(key_id),
            "outcome": outcome,
            "latency": latency,
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "images": images,
            "video_seconds": video_seconds,
            "at": self._clock(),
        }
        fields: dict[FieldT, EncodableT] = {"row": json.dumps(row)}
        self._sender.send(
            lambda: self._client.xadd(self._stream, fields, maxlen=self._keep, approximate=True)
        )

    async def flush(self) -> None:
        """Wait until every row queued so far is in the stream."""
        await self._sender.flush()


class OutcomeFollower(LoopTask):
    """The gateway's reader of the outcomes stream into its SQLite `ledger`.

    `run()` follows until cancelled (or `start()` / `stop()` a task doing so);
    `step()` handles what is there once, for tests. `count` rows are read at
    most at once; a read waits `block` seconds at most for a first row, and
    after a batch of fewer than `count`, `run` waits `linger` seconds before
    reading again."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        ledger: Ledger,
        *,
        group: str = "ledger",
        consumer: str = "gateway",
        count: int = 200,
        block: float = 0.5,
        linger: float = 0.5,
        turn: Callable[[], Awaitable[None]] | None = None,
        watch: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self._client = client
        # Told each row's (pool, provider, outcome): the operators' alert of a
        # provider failing on the workers (`aibot.watch.ProviderWatch.seen`).
        self._watch = watch
        # Members first: each batch waits for the background's turn (aibot.foreground).
        self._turn = turn
        self._stream = outcomes_stream(prefix)
        self._ledger = ledger
        self._group = group
        self._consumer = consumer
        self._count = count
        self._block_ms = max(1, round(block * 1000))
        self._linger = linger
        self._ready = False  # the group exists and our own pending rows were read
        self.recorded = 0  # rows handed to the ledger (a repeat is ignored there)

    async def run(self) -> None:
        """Follow the stream until cancelled; Redis failing is waited out."""
        backoff = Backoff(0.2, 5.0)
        while True:
            try:
                recorded = await self.step()
                backoff.reset()
                if 0 < recorded < self._count:
                    # Rows are not urgent: let the next ones gather, so that a burst's
                    # rows cost one read, one write and one acknowledgement, not one
                    # each (the jobs of a burst end one by one).
                    await asyncio.sleep(self._linger)
            except FAILURES as err:
                self._ready = False
                if _lost_group(err):
                    continue
                log.warning(
                    "outcomes: Redis failed (%s); again in %.1fs",
                    type(err).__name__,
                    backoff.seconds,
                )
                await backoff.pause()

    async def step(self, *, block: bool = True) -> int:
        """Record one batch, in the background's turn: at start our own
        unacknowledged rows (delivered before a crash), then new ones (waiting up
        to the block time when `block` and none is there: the first row of a quiet
        spell comes alone). Returns how many rows were recorded."""
        if self._turn is not None:
            await self._turn()
        if not self._ready:
            await self._create_group()
            pending = await self._read("0", block=False)
            if pending:
                return await self._record(pending)
            self._ready = True
        return await self._record(await self._read(">", block=block))

    async def _create_group(self) -> None:
        try:
            await self._client.xgroup_create(self._stream, self._group, id="0", mkstream=True)
        except ResponseError as err:
            if "BUSYGROUP" not in str(err):
                raise

    async def _read(self, start: str, *, block: bool) -> list[tuple[str, dict[str, Any]]]:
        # [(stream, [(id, fields), ...])]: redis-py's decoded reply.
        answer: Any = await self._client.xreadgroup(
            self._group,
            self._consumer,
            {self._stream: start},
            count=self._count,
            block=self._block_ms if block else None,
        )
        return [
            (entry_id, fields)
            for _, entries in answer or []
            for entry_id, fields in entries
            if fields
        ]

    async def _record(self, entries: list[tuple[str, dict[str, Any]]]) -> int:
        """Into the ledger, into the file, then acknowledged."""
        if not entries:
            return 0
        for entry_id, fields in entries:
            try:
                row = json.loads(fields["row"])
                _to_ledger(self._ledger, row)
            except (KeyError, TypeError, ValueError) as error:
                log.warning("outcomes: row %s unreadable (%r), skipped", entry_id, error)
                continue
            if self._watch is not None:
                self._watch(row["pool"], row["provider"], row["outcome"])
        await self._ledger.flush()
        await self._client.xack(self._stream, self._group, *(entry_id for entry_id, _ in entries))
        self.recorded += len(entries)
        return len(entries)


def _to_ledger(ledger: Ledger, row: dict[str, Any]) -> None:
    job = Job(
        command=row["command"],
        args={},
        user_id=row["user"],
        channel_id=0,
        guild_id=row["guild"] or None,
        pool=row["pool"],
        id=row["job"],
    )
    ledger.record(
        job,
        provider=row["provider"],
        key_id=row["key_id"],
        outcome=row["outcome"],
        latency=row["latency"],
        tokens_in=row["tokens_in"],
        tokens_out=row["tokens_out"],
        images=row["images"],
        video_seconds=row["video_seconds"],
        at=row["at"],
    )


def _lost_group(err: Exception) -> bool:
    """Redis restarted without its data: the group must be made again."""
    return isinstance(err, ResponseError) and "NOGROUP" in str(err)


def _shown(key_id: str) -> str:
    # Rows cross machines: should a caller pass a whole key by mistake, only its
    # last four characters travel.
    if "..." in key_id or len(key_id) <= 8:
        return key_id
    return "..." + key_id[-4:]
