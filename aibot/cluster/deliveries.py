"""The delivery guard of cluster mode: one answer per job, whichever worker runs it.

`Replies(delivery=StreamDeliveries(...), every_job=True)`: before a reply sends
its final answer or failure notice (a followup or a channel message is not
idempotent), it asks `mark_delivered(job_id)`, which claims the job's delivery
in Redis (`JobStream.claim_delivery`). Only the process that holds the job's
current delivery may claim: a job this process dropped (its lease was lost to
another worker) or never held answers False, so its reply sends nothing. The
claim is retried while Redis is away, for `patience` seconds.
"""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from aibot.cluster.streams import Delivery, JobStream

__all__ = ["StreamDeliveries"]

log = logging.getLogger(__name__)


class StreamDeliveries:
    """The deliveries this process holds, and their claims (see the module docstring)."""

    def __init__(self, *, patience: float = 60.0) -> None:
        self.patience = patience
        self._held: dict[str, tuple[JobStream, Delivery]] = {}
        self._committed: set[str] = set()

    def hold(self, stream: JobStream, delivery: Delivery) -> None:
        """This process runs `delivery` of its job: its reply may claim."""
        self._held[delivery.job.id] = (stream, delivery)

    def release(self, job_id: str) -> None:
        """The job is done here, or lost: its reply may not claim any more."""
        self._held.pop(job_id, None)
        self._committed.discard(job_id)

    def committed(self, job_id: str) -> bool:
        """Whether this process won the job's delivery claim (it is sending)."""
        return job_id in self._committed

    async def mark_delivered(self, job_id: str) -> bool:
        """True when this process may send the job's answer (it won the claim)."""
        held = self._held.get(job_id)
        if held is None:
            return False
        stream, delivery = held
        loop = asyncio.get_running_loop()
        deadline, backoff = loop.time() + self.patience, 0.05
        while True:
            try:
                won = await stream.claim_delivery(delivery)
                break
            except RedisError as error:
                if loop.time() >= deadline:
                    log.warning("job %s: delivery not claimed, Redis away (%r)", job_id, error)
                    return False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                if self._held.get(job_id) is not held:
                    return False  # dropped meanwhile
        if won:
            self._committed.add(job_id)
        return bool(won)
