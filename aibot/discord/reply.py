"""The Discord side of `Reply`: what a job's answer means on Discord, from the place
in line to the last word.

A reply is built from the `Job` alone (application id + interaction token), never from
the live interaction object, so a job resumed after a restart answers the same way.
It decides what the member sees: a place in line, the stages of a long job, a
streaming text with a cursor, the final answer (text split into messages, images in
embeds, a video or its link) or the words for a failure. How each message gets to
Discord (retries, the channel once the token is gone) is `aibot.discord.delivery`'s.

Discord limits message edits per channel (about 5 per 5 s) and the library would sit
out every 429, so a streaming answer edits at most once a second and only when the
channel's `EditBudget` has room; the final answer always gets through.

The answer and a failure notice are one message each, never both: a failure notice is
written only for a job that failed, never in place of an answer the bot has.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Protocol

import aiohttp
import discord

from aibot.discord.delivery import NO_MENTIONS, AnswerWriter, Message
from aibot.discord.edits import EditBudget
from aibot.discord.embeds import image_embed
from aibot.discord.i18n import duration, error_text, text
from aibot.discord.render import MESSAGE_LIMIT, fences_closed, split_message
from aibot.discord.retries import DELIVERY_ERRORS, RetryPolicy, Undelivered, describe
from aibot.jobs import AibotError, Artifact, Job, Progress, Result

__all__ = ["NO_MENTIONS", "InteractionReply", "Replies"]

log = logging.getLogger("aibot.discord.reply")

STREAM_INTERVAL = 1.0  # seconds between two edits of one streaming answer
PROGRESS_INTERVAL = 10.0  # seconds between two progress edits of a long job
_SLACK = 0.05  # polls every 10 s must not miss their edit by a rounding error
_CURSOR = " ▌"
# What a final write raises when the member did not get it.
_UNDELIVERED: tuple[type[BaseException], ...] = (Undelivered, *DELIVERY_ERRORS)


class Delivery(Protocol):
    """Deliver-once guard of journaled jobs (the store's journal), which also keeps
    the followups an answer posted (`aibot.jobs.FOLLOWUPS`) for a run after a crash."""

    async def mark_delivered(self, job_id: str) -> bool: ...

    async def posted(self, job_id: str, message_ids: Sequence[int]) -> None: ...


class Replies:
    """Makes the reply for each job (`aibot.ports.ReplyFactory`) and holds what all
    replies of one bot share: the client (for the channel fallback), the
    per-channel edit budget, the retry policy and the answers' HTTP session.

    `delivery`, when given, makes a durable job's answer (a video, which may be
    resumed after a restart) be delivered at most once; with `every_job`, every
    job's (cluster mode: any job may run again on another worker). `on_lost` is
    called once for each job whose answer (or failure notice) no way to Discord
    delivered."""

    def __init__(
        self,
        client: discord.Client,
        *,
        edits: EditBudget | None = None,
        delivery: Delivery | None = None,
        policy: RetryPolicy | None = None,
        on_lost: Callable[[Job], None] | None = None,
        every_job: bool = False,
    ) -> None:
        self.client = client
        self.every_job = every_job
        self.edits = edits or EditBudget()
        self.delivery = delivery
        self.policy = policy or RetryPolicy()
        self.on_lost = on_lost
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        """Make the session now rather than at the first answer."""
        self.session()

    def session(self) -> aiohttp.ClientSession:
        """The answers' HTTP session, made on first use. Every defer goes out on the
        client's session; thousands of streaming edits on the same connections would
        make a new command's defer wait for a free one, or open a new one."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def make(self, job: Job) -> InteractionReply:
        return InteractionReply(job, self)

    def writer(self, job: Job) -> AnswerWriter:
        """The messages of `job`'s answer, written the ways this bot has."""
        delivery = self.delivery
        return AnswerWriter(
            job,
            client=self.client,
            session=self.session,
            edits=self.edits,
            policy=self.policy,
            posted=None if delivery is None else partial(delivery.posted, job.id),
        )

    def lost(self, job: Job) -> None:
        """`job`'s answer reached nobody: counted (the metrics), never retried."""
        if self.on_lost is not None:
            self.on_lost(job)


class InteractionReply:
    """One job's answer: progress, a streaming text, the final result or the failure."""

    def __init__(self, job: Job, replies: Replies) -> None:
        self.job = job
        self._replies = replies
        self._lang = job.locale
        self._lock = asyncio.Lock()
        self._out = replies.writer(job)
        self._streamed = ""
        self._partial = False  # part of a streaming answer is shown
        # The defer wrote the message a moment ago: its first edit waits a second like
        # any other, so an answer that comes within a second is written once.
        self._last_stream = replies.edits.clock()
        self._last_progress = -math.inf
        self.closed = False

    # ---------------------------------------------------------------- Reply

    async def progress(self, update: Progress) -> None:
        if self.closed or self._streamed or not self._out.live:
            return
        now = self._replies.edits.clock()
        # A place in line is shown at once; the stages of a long job every 10 s at most.
        if update.position is None and now - self._last_progress < PROGRESS_INTERVAL - _SLACK:
            return
        words = self._progress_text(update)
        if self._out.shown[:1] == [words]:
            return
        async with self._lock:
            # A place in line comes once per job, and the member waits for it.
            if await self._out.update(0, Message(words), must=update.position is not None):
                self._last_progress = now

    async def stream(self, text: str) -> None:
        if self.closed:
            return
        self._streamed = text
        if not self._out.live:
            return
        now = self._replies.edits.clock()
        if now - self._last_stream < STREAM_INTERVAL or self._lock.locked():
            return
        self._last_stream = now
        async with self._lock:
            # Only the parts that changed; where the budget runs dry the next update
            # or the final answer catches up.
            shown = self._out.shown
            for index, part in enumerate(_with_cursor(split_message(text))):
                if index < len(shown) and shown[index] == part:
                    continue
                if not await self._out.update(index, Message(part)):
                    return
                self._partial = True

    async def finish(self, result: Result) -> None:
        if self.closed:
            return
        self.closed = True
        if not await self._first_delivery():
            return
        async with self._lock:
            try:
                await self._deliver(result)
            except _UNDELIVERED as error:
                self._lost("answer", error)
            except Exception:
                # The answer could not be built (a fault of the bot's own): the
                # delivery is this reply's, so the member reads that it failed rather
                # than "thinking…" for good; the pool logs the fault.
                await self._tell_failure(AibotError("internal"))
                raise

    async def fail(self, error: AibotError) -> None:
        if self.closed:
            return
        self.closed = True
        if not await self._first_delivery():
            return
        async with self._lock:
            await self._tell_failure(error)

    async def _first_delivery(self) -> bool:
        """False when a journaled job's answer was already delivered (a job resumed
        after a restart may finish twice; the member hears once). When the record
        cannot be kept (the store failing), the answer goes out all the same: a
        finished job lost is worse than one answered twice."""
        delivery = self._replies.delivery
        if delivery is None or not (self._replies.every_job or self.job.command == "video"):
            return True
        try:
            return await delivery.mark_delivered(self.job.id)
        except Exception as error:
            log.warning(
                "job %s: its delivery could not be recorded (%s); answering anyway",
                self.job.id,
                type(error).__name__,
            )
            return True

    def _lost(self, what: str, error: BaseException) -> None:
        """Every way failed: said once in the log (the job id, never the token) and
        counted."""
        log.warning(
            "job %s: its %s could not be delivered, every way failed: %s",
            self.job.id,
            what,
            describe(error),
        )
        self._replies.lost(self.job)

    # ------------------------------------------------------------ the answer

    async def _deliver(self, result: Result) -> None:
        images = [f for f in result.files if f.content_type.startswith("image/") and f.data]
        videos = [f for f in result.files if not f.content_type.startswith("image/")]
        if videos:
            await self._deliver_video(videos[0], result)
        elif images:
            await self._deliver_images(images, result)
        else:
            answer = fences_closed(result.text or self._streamed)
            if result.meta.get("cut_short"):
                answer += "\n\n" + text(self._lang, "answer_cut_short")
            forgotten = int(result.meta.get("forgotten") or 0)
            if forgotten:
                answer += "\n\n" + text(self._lang, "memory_dropped", turns=forgotten)
            parts = split_message(answer) or [answer.strip() or "…"]
            await self._out.put([Message(part) for part in parts])

    async def _deliver_images(self, images: Sequence[Artifact], result: Result) -> None:
        prompt = str(self.job.args.get("prompt", ""))
        embeds = [
            image_embed(result, self._lang, prompt=prompt, filename=a.filename) for a in images[:10]
        ]
        await self._out.put([Message(None, embeds=embeds, files=images)])

    async def _deliver_video(self, video: Artifact, result: Result) -> None:
        seconds = duration(float(result.meta.get("seconds") or 0.0), self._lang)
        prompt = _quote(str(self.job.args.get("prompt", "")))
        if video.data and video.size <= self._out.upload_limit():
            content = text(self._lang, "video_done", seconds=seconds) + prompt
            try:
                await self._out.put([Message(content, files=[video])])
                return
            except _UNDELIVERED as error:
                # Too large after all (413), no right to attach files there (403), an
                # upload that outlasted its time: the provider's link still works.
                if not video.url:
                    raise
                log.info(
                    "job %s: the upload failed (%s), sending the link", self.job.id, describe(error)
                )
        if video.url:
            content = text(self._lang, "video_link", seconds=seconds, url=video.url) + prompt
        else:
            content = text(self._lang, "video_too_large")
        await self._out.put([Message(content)])

    async def _tell_failure(self, error: AibotError) -> None:
        self._out.failing = True
        try:
            await self._out.put(self._failure_messages(error))
        except _UNDELIVERED as failure:
            self._lost("failure notice", failure)

    def _failure_messages(self, error: AibotError) -> list[Message]:
        words = error_text(error, self._lang, command=self.job.command)
        shown = self._out.shown
        if not self._partial or not shown:
            return [Message(words, clear=True)]
        # Part of an answer is already shown: keep it and say why it stopped.
        kept = [Message(part) for part in shown[:-1]]
        last = fences_closed(shown[-1].removesuffix(_CURSOR))
        if len(last) + len(words) + 2 <= MESSAGE_LIMIT:
            return [*kept, Message(f"{last}\n\n{words}")]
        return [*kept, Message(last), Message(words)]

    def _progress_text(self, update: Progress) -> str:
        video = self.job.command == "video"
        if update.position is not None:  # the place in line, when the job was accepted
            position = update.position
            if not video:
                return text(self._lang, "queued", position=position)
            key = "video_starting" if position <= 1 else "video_queued"
            return text(self._lang, key, position=position)
        stage = text(self._lang, f"stage_{update.stage}") if update.stage in _STAGES else "…"
        elapsed = duration(update.elapsed, self._lang)
        return text(self._lang, "video_progress", stage=stage, elapsed=elapsed)


_STAGES = frozenset({"queued", "running", "preparing", "processing", "downloading"})


def _with_cursor(parts: list[str]) -> list[str]:
    """Mark the last part as still being written, when there is room for the mark."""
    if parts and len(parts[-1]) + len(_CURSOR) <= MESSAGE_LIMIT:
        parts[-1] += _CURSOR
    return parts


def _quote(prompt: str) -> str:
    prompt = " ".join(prompt.split())
    if not prompt:
        return ""
    return "\n> " + (prompt if len(prompt) <= 300 else prompt[:299] + "…")
