"""The delivery guard of cluster mode: one answer per job, whichever worker runs it.

`Replies(delivery=StreamDeliveries(...), every_job=True)`: before a reply sends
its final answer or failure notice (a followup or a channel message is not
idempotent), it asks `mark_delivered(job_id)`, which claims the job's delivery
in Redis (`JobStream.claim_delivery`). Only the process that holds the job's
current delivery may claim: a job this process dropped (its lease was lost to
another worker) or never held answers False, so its reply sends nothing. The
claim is retried while Redis is away, for `patience` seconds.

`fenced(factory)`: the same replies, whose progress and streaming edits are
sent only while this process surely still holds the job's lease (`current`:
less than a lease since a take or renewal that Redis confirmed was sent). A
worker stopped (SIGSTOP, a long pause) past its lease wakes up with edits it
had prepared; sent, they would overwrite the answer the worker that reclaimed
the job gave. The final answer and failure notices go through unfenced: the
delivery claim guards them. (While Redis is away renewals fail too: the edits
pause, and the answer comes once the claim can be made.)

`posted(job_id, ids)`: the followups a long answer posted are kept in the journal
(`RedisJournal.posted`) while the lease is `current`, for a reclaimer to write over.

`fenced_memory(memory)`: the same conversation memory, which a chat job adds its
exchange to only while `current`: the worker that reclaimed the job remembers it,
and a stalled one waking up would make the member's conversation hold the prompt
twice, once with an answer they never saw.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from redis.exceptions import RedisError

from aibot.cluster.journal import RedisJournal
from aibot.cluster.streams import Delivery, JobStream
from aibot.cluster.tasks import Backoff
from aibot.jobs import AibotError, Job, Progress, Reply, Result
from aibot.ports import Memory, Recalled, ReplyFactory

__all__ = ["StreamDeliveries"]

log = logging.getLogger(__name__)


class StreamDeliveries:
    """The deliveries this process holds, and their claims (see the module docstring)."""

    def __init__(self, journal: RedisJournal, *, patience: float = 60.0) -> None:
        self.journal = journal
        self.patience = patience
        self._held: dict[str, tuple[JobStream, Delivery]] = {}
        self._committed: set[str] = set()
        self._claiming: set[str] = set()  # claims sent, their answer not yet back
        self._leased_until: dict[str, float] = {}  # time.monotonic(), by job id

    def hold(self, stream: JobStream, delivery: Delivery, *, since: float) -> None:
        """This process runs `delivery` of its job: its reply may claim. `since`:
        the `time.monotonic()` at which the take that delivered it was sent."""
        self._held[delivery.job.id] = (stream, delivery)
        self._leased_until[delivery.job.id] = since + stream.lease

    def renewed(self, job_id: str, *, since: float) -> None:
        """A renewal sent at `since` (`time.monotonic()`) kept the job's lease."""
        held = self._held.get(job_id)
        if held is not None:
            self._leased_until[job_id] = since + held[0].lease

    def current(self, job_id: str) -> bool:
        """Whether no other worker can have reclaimed the job yet: its lease,
        renewed at the latest confirmed take or renewal, has not run out."""
        return time.monotonic() < self._leased_until.get(job_id, 0.0)

    def release(self, job_id: str) -> None:
        """The job is done here, or lost: its reply may not claim any more."""
        self._held.pop(job_id, None)
        self._committed.discard(job_id)
        self._leased_until.pop(job_id, None)

    def fenced(self, factory: ReplyFactory) -> ReplyFactory:
        """`factory`'s replies, with progress and streaming edits sent only while
        `current` (see the module docstring)."""
        return _FencedReplies(factory, self)

    def fenced_memory(self, memory: Memory) -> Memory:
        """`memory`, remembering an exchange only while its job's lease is `current`."""
        return _FencedMemory(memory, self)

    async def posted(self, job_id: str, message_ids: Sequence[int]) -> None:
        """Keep the followups the job's answer posted, while its lease is ours."""
        if self.current(job_id):
            await self.journal.posted(job_id, message_ids)

    def committed(self, job_id: str) -> bool:
        """Whether this process won the job's delivery claim (it is sending)."""
        return job_id in self._committed

    def claiming(self, job_id: str) -> bool:
        """Whether this process claims the job's delivery now, or won it: then the
        claim, not a renewal that found the lease lost, decides whether the job
        stays here (a claim that wins takes the entry back)."""
        return job_id in self._claiming or job_id in self._committed

    async def mark_delivered(self, job_id: str) -> bool:
        """True when this process may send the job's answer (it won the claim)."""
        held = self._held.get(job_id)
        if held is None:
            return False
        stream, delivery = held
        loop = asyncio.get_running_loop()
        deadline, backoff = loop.time() + self.patience, Backoff(0.05, 1.0)
        self._claiming.add(job_id)
        try:
            while True:
                try:
                    won = await stream.claim_delivery(delivery)
                    break
                except RedisError as error:
                    if loop.time() >= deadline:
                        log.warning("job %s: delivery not claimed, Redis away (%r)", job_id, error)
                        return False
                    await backoff.pause()
                    if self._held.get(job_id) is not held:
                        return False  # dropped meanwhile
        finally:
            self._claiming.discard(job_id)
        if won:
            self._committed.add(job_id)
        return bool(won)


class _FencedReplies:
    """A reply factory whose replies edit only while their job's lease is current."""

    __slots__ = ("_deliveries", "_factory")

    def __init__(self, factory: ReplyFactory, deliveries: StreamDeliveries) -> None:
        self._factory = factory
        self._deliveries = deliveries

    def make(self, job: Job) -> Reply:
        return _FencedReply(self._factory.make(job), job.id, self._deliveries)


class _FencedReply:
    """A `Reply` that drops progress and streaming edits once its lease may be gone
    (the final answer catches up; a reclaimer answers a job that was lost)."""

    __slots__ = ("_deliveries", "_job_id", "_reply")

    def __init__(self, reply: Reply, job_id: str, deliveries: StreamDeliveries) -> None:
        self._reply = reply
        self._job_id = job_id
        self._deliveries = deliveries

    async def progress(self, update: Progress) -> None:
        if self._deliveries.current(self._job_id):
            await self._reply.progress(update)

    async def stream(self, text: str) -> None:
        if self._deliveries.current(self._job_id):
            await self._reply.stream(text)

    async def finish(self, result: Result) -> None:
        await self._reply.finish(result)

    async def fail(self, error: AibotError) -> None:
        await self._reply.fail(error)


class _FencedMemory:
    """A conversation memory that a job whose lease may be gone adds nothing to."""

    __slots__ = ("_deliveries", "_memory")

    def __init__(self, memory: Memory, deliveries: StreamDeliveries) -> None:
        self._memory = memory
        self._deliveries = deliveries

    async def recall(self, job: Job) -> Recalled:
        return await self._memory.recall(job)

    async def remember(self, job: Job, prompt: str, answer: str, *, resets: int = 0) -> object:
        if not self._deliveries.current(job.id):
            log.info("job %s: its lease may be gone, its exchange is not remembered", job.id)
            return 0
        return await self._memory.remember(job, prompt, answer, resets=resets)
