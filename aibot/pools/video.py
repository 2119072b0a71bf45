"""The video role: a clip from a prompt, made as a provider task that takes
minutes.

Create the task (journaled with the key that made it, since only that account
can see it), poll it every `video_poll_seconds` with the same key, telling the
member how far it got, give up after `video_timeout_seconds`, then download the
clip (or hand over its link when it is too large to upload). After a restart,
`resume(job, task_id, key_fingerprint)` gives the job to submit again: it polls
the journaled task instead of paying for a new one.

A clip from a picture (`job.args["picture"]`) starts from it (MiniMax
`first_frame_image`). The picture is downloaded once and journaled with the job as
a data URL until the task exists, so a restart in between needs the member's
link no more (Discord's links expire); then the task holds it and the journal
lets it go.

Once the task exists the provider makes the clip, and bills it, whether or not the
job still waits for it: `job.args[BILLED_BY]` names that provider from then on, so
a job cancelled by an admin or given up on still counts its clip's cost in the
ledger. The provider saying the task failed (nothing made) takes it away.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aibot.catalogue import FRAME_TYPES
from aibot.jobs import (
    Artifact,
    BadRequest,
    Job,
    KeysDown,
    NoKeyAvailable,
    Progress,
    Reply,
    Result,
    Unavailable,
)
from aibot.leases import Lease
from aibot.pools import PoolContext
from aibot.pools.base import Work
from aibot.pools.pictures import PICTURE_ARG, fetch_picture, picture_ref
from aibot.providers.minimax import VideoFile, VideoStatus
from aibot.providers.retry import with_keys

__all__ = ["BILLED_BY", "FRAME_ARG", "RESUME_KEY", "RESUME_TASK", "build_work", "resume"]

log = logging.getLogger("aibot.pools.video")

T = TypeVar("T")
RESUME_TASK = "resume_task_id"
RESUME_KEY = "resume_key_fingerprint"
# The downloaded first frame (a data URL), kept in the job until the task exists.
FRAME_ARG = "first_frame_image"
# The provider whose task makes the job's clip (see the module docstring).
BILLED_BY = "billed_by"
# MiniMax's status words -> Progress stages.
_STAGES = {"preparing": "preparing", "queueing": "queued", "processing": "processing"}


def resume(job: Job, task_id: str, key_fingerprint: str) -> Job:
    """The job to submit again after a restart to continue a journaled task."""
    args = {**job.args, RESUME_TASK: task_id, RESUME_KEY: key_fingerprint}
    return dataclasses.replace(job, args=args)


def build_work(ctx: PoolContext) -> Work:
    """The video work function for a pool."""

    async def work(job: Job, reply: Reply) -> Result:
        names = ctx.providers_for("video")
        if not names:
            raise NoKeyAvailable("no video provider has a key in this pool")
        return await _VideoRun(ctx, job, reply, names[0]).result()

    return work


class _VideoRun:
    """One job's task, from creation (or resumption) to the downloaded clip."""

    def __init__(self, ctx: PoolContext, job: Job, reply: Reply, provider: str) -> None:
        self.ctx, self.job, self.reply = ctx, job, reply
        self.client, self.ring = ctx.video[provider], ctx.rings[provider]
        self.loop = asyncio.get_running_loop()
        self.started = self.loop.time()

    async def result(self) -> Result:
        task_id = str(self.job.args.get(RESUME_TASK) or "")
        key = str(self.job.args.get(RESUME_KEY) or "")
        if task_id:
            self.job.args[BILLED_BY] = self.client.name  # an earlier run made the task
        else:
            task_id, key = await self._create()
        file = await self._wait(task_id, key)
        # A size of 0 is unknown: download() stops at the limit anyway.
        small = file.size <= self.client.max_bytes
        data = await self._download(file.download_url) if small else None
        meta = {
            "provider": self.client.name,
            "model": str(self.job.args.get("model") or self.client.model),
            "task_id": task_id,
            "key_id": file.key_id,
            "seconds": round(self._elapsed(), 3),
        }
        clip = Artifact("video.mp4", "video/mp4", data, file.download_url)
        return Result(files=(clip,), meta=meta)

    async def _download(self, url: str) -> bytes | None:
        """The clip's bytes, or None: its link goes to the member instead, when it is
        too large to upload, and when the bot could not fetch it (the clip is made
        and paid for, and its link may well work for the member)."""
        try:
            return await self.client.download(url)
        except Unavailable as error:
            log.info("job %s: %s, sending the link", self.job.id, error)
            return None

    async def _create(self) -> tuple[str, str]:
        """A new task: (task id, fingerprint of the key that made it)."""
        prompt = str(self.job.args.get("prompt") or "").strip()
        if not prompt:
            raise BadRequest("the prompt is empty")
        model = str(self.job.args.get("model") or "") or None
        try:
            duration = int(self.job.args.get("duration") or 6)
        except (TypeError, ValueError):
            raise BadRequest("the duration must be a whole number of seconds") from None
        frame = await self._first_frame()
        # Asking for the task and journaling its id go together: cancelled in between
        # (the drain's deadline), the job would leave a task paid for that the next
        # start does not know of, and that start would pay for another.
        asked = asyncio.ensure_future(self._ask_for_task(prompt, model, duration, frame))
        try:
            return await asyncio.shield(asked)
        except asyncio.CancelledError:
            await asked
            raise

    async def _ask_for_task(
        self, prompt: str, model: str | None, duration: int, frame: str | None
    ) -> tuple[str, str]:
        try:
            task = await with_keys(
                self.ring,
                lambda lease: self.client.create(
                    lease, prompt, model=model, duration=duration, first_frame=frame
                ),
                timeout=self.ctx.settings.request_timeout,
                idempotent=False,  # a lost answer may hide a task made, and billed
            )
        except NoKeyAvailable as err:
            if not self.ring.all_down:
                raise
            # No task exists yet: the admin pool may make it with a key of its own.
            raise KeysDown(f"every video key of the {self.ctx.pool.name} pool is down") from err
        self.job.args.pop(FRAME_ARG, None)  # the task has the picture now
        self.job.args[BILLED_BY] = self.client.name
        if self.ctx.journal:
            await self.ctx.journal.accepted(self.job, task.task_id, task.key_fingerprint)
        return task.task_id, task.key_fingerprint

    async def _first_frame(self) -> str | None:
        """The picture the clip starts from, as a data URL, or None: kept by an
        earlier run, or downloaded now and journaled before the task is asked for."""
        kept = self.job.args.get(FRAME_ARG)
        if kept:
            return str(kept)
        ref = picture_ref(self.job.args)
        if ref is None:
            return None
        settings = self.ctx.settings
        picture = await fetch_picture(
            ref,
            max_bytes=settings.attachment_max_bytes,
            timeout=settings.request_timeout,
            types=FRAME_TYPES,
        )
        frame = picture.data_url()
        self.job.args[FRAME_ARG] = frame
        del self.job.args[PICTURE_ARG]
        if self.ctx.journal:
            await self.ctx.journal.submitted(self.job)
        return frame

    async def _wait(self, task_id: str, key: str) -> VideoFile:
        """Polls until the task is done; returns its file. A finished clip whose file
        the provider cannot tell now is asked for again at the next poll, as a poll
        that failed is: the clip is made and paid for."""
        settings, state = self.ctx.settings, ""
        while True:
            if self._elapsed() + settings.video_poll_seconds > settings.video_timeout_seconds:
                raise self._provider_failed("the video took too long")
            await asyncio.sleep(settings.video_poll_seconds)
            status = await self._poll(task_id, key)
            if status is None:
                continue
            if status.done:
                if file := await self._file(status.file_id, key):
                    return file
                continue
            if status.failed:
                del self.job.args[BILLED_BY]  # nothing made, nothing billed
                raise self._provider_failed(f"the video task ended with {status.status}")
            if status.status != state and self.ctx.journal:
                await self.ctx.journal.progress(self.job.id, status.status)
            state = status.status
            stage = _STAGES.get(state.lower(), "processing")
            await self.reply.progress(Progress(stage, self._elapsed()))

    async def _poll(self, task_id: str, key: str) -> VideoStatus | None:
        """The task's status; None when this poll could not be made (the next may)."""
        try:
            return await self._call(lambda lease: self.client.query(lease, task_id), key)
        except Unavailable as err:
            self.ctx.log.info("video task poll failed (%s); polling on", err.detail)
        except NoKeyAvailable as err:
            if err.retry_after is None:  # the task's key is disabled: nobody can poll it
                raise
        return None

    async def _file(self, file_id: str, key: str) -> VideoFile | None:
        """The finished clip's file; None when the provider could not tell it now."""
        await self.reply.progress(Progress("downloading", self._elapsed()))
        try:
            return await self._call(lambda lease: self.client.retrieve(lease, file_id), key)
        except Unavailable as err:
            self.ctx.log.info("video file lookup failed (%s); asking again", err.detail)
            return None

    async def _call(self, call: Callable[[Lease], Awaitable[T]], key: str) -> T:
        """A call with the task's own key."""
        timeout = self.ctx.settings.request_timeout
        return await with_keys(self.ring, call, timeout=timeout, fingerprint=key)

    def _provider_failed(self, what: str) -> Unavailable:
        """The task's failure, counted against its provider in the ledger."""
        failed = Unavailable(f"{self.client.name}: {what}")
        failed.provider = self.client.name
        return failed

    def _elapsed(self) -> float:
        return self.loop.time() - self.started
