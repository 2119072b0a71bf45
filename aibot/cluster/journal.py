"""Cluster mode's journal: what a job must not lose when its worker dies.

In cluster mode the job stream is the durable record of every accepted job (a
dead worker's entry is reclaimed by another worker), so `submitted` and
`unfinished` have nothing to do here. What the stream does not hold is a
video's provider task: `accepted` keeps its id and the fingerprint of the key
that made it under `{prefix}:task:{job id}`, so the worker that reclaims the
job polls the same task instead of paying for a second one; and `posted` keeps the
followups a long answer posted there, which the reclaimer writes over rather than
leave half-written (`left`, at each delivery after the first).

`accepted` is retried while Redis is away (a video without its task recorded
could be made twice); the other writes are best effort.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError

from aibot.jobs import FOLLOWUPS, Job
from aibot.pools.video import resume
from aibot.ports import Unfinished

__all__ = ["RedisJournal"]

log = logging.getLogger(__name__)


class RedisJournal:
    """`aibot.ports.Journal` for cluster mode (see the module docstring).
    `ttl`: seconds a task record outlives its job at most; `patience`: seconds
    `accepted` keeps trying while Redis is away."""

    def __init__(
        self, redis: Redis, *, prefix: str = "aibot", ttl: float = 86_400.0, patience: float = 60.0
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl = ttl
        self.patience = patience

    def key(self, job_id: str) -> str:
        return f"{self.prefix}:task:{job_id}"

    async def submitted(self, job: Job) -> None:
        """Nothing: the job's stream entry is its durable record."""

    async def accepted(self, job: Job, task_id: str, key_fingerprint: str) -> None:
        loop = asyncio.get_running_loop()
        deadline, backoff = loop.time() + self.patience, 0.05
        while True:
            try:
                await self.redis.hset(
                    self.key(job.id), mapping={"task": task_id, "key": key_fingerprint}
                )
                await self.redis.expire(self.key(job.id), int(self.ttl))
                return
            except RedisError:
                if loop.time() >= deadline:
                    raise
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)

    async def posted(self, job_id: str, message_ids: Sequence[int]) -> None:
        """The followups the job's answer posted so far (see `aibot.jobs.FOLLOWUPS`)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(self.key(job_id), FOLLOWUPS, json.dumps(list(message_ids)))
            pipe.expire(self.key(job_id), int(self.ttl))
            await pipe.execute()

    async def left(self, job: Job) -> Job:
        """`job`, reclaimed, as its earlier delivery left it: polling the provider
        task it made (a video), writing over the followups its answer posted."""
        record = await self.redis.hgetall(self.key(job.id))
        if record.get(FOLLOWUPS):
            job = dataclasses.replace(
                job, args={**job.args, FOLLOWUPS: json.loads(record[FOLLOWUPS])}
            )
        if job.command != "video" or not (record.get("task") and record.get("key")):
            return job
        log.info("job %s: reclaimed, polling its task", job.id)
        return resume(job, str(record["task"]), str(record["key"]))

    async def progress(self, job_id: str, state: str) -> None:
        """Nothing: a reclaimed video polls its task anew."""

    async def finished(self, job_id: str, outcome: str = "done") -> None:
        try:
            await self.redis.delete(self.key(job_id))
        except RedisError as error:  # it expires by itself
            log.info("job %s: task record not removed (%r)", job_id, error)

    async def unfinished(self) -> list[Unfinished]:
        """Nothing to resume at start: a dead worker's jobs are reclaimed from the streams."""
        return []

    async def mark_delivered(self, job_id: str) -> bool:
        """Unused in cluster mode (replies claim through `StreamDeliveries`)."""
        return True
