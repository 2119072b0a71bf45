"""The Discord side of `Reply`: a job's answer, written into the interaction's deferred
message through the interaction webhook.

A reply is built from the `Job` alone (application id + interaction token), never from
the live interaction object, so a job resumed after a restart answers the same way.
Once the 15-minute token has expired (or Discord no longer knows it), the answer goes
to the channel as a bot message that mentions the member.

Discord limits message edits per channel (about 5 per 5 s) and the library would sit
out every 429, so a streaming answer edits at most once a second and only when the
channel's `EditBudget` has room; the final answer always gets through.

The webhook calls go out on an HTTP session of the answers' own; a bot message to the
channel (the token is gone) is sent by the bot's own client.
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import aiohttp
import discord

from aibot.discord.embeds import image_embed
from aibot.discord.i18n import duration, error_text, text
from aibot.discord.render import MESSAGE_LIMIT, split_message
from aibot.jobs import AibotError, Artifact, Job, Progress, Result

__all__ = ["EditBudget", "InteractionReply", "Replies"]

log = logging.getLogger("aibot.discord.reply")

NO_MENTIONS = discord.AllowedMentions.none()
STREAM_INTERVAL = 1.0  # seconds between two edits of one streaming answer
PROGRESS_INTERVAL = 10.0  # seconds between two progress edits of a long job
_SLACK = 0.05  # polls every 10 s must not miss their edit by a rounding error
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024  # Discord's default when nothing better is known
_CURSOR = " ▌"


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


class EditBudget:
    """A token bucket per channel for the messages the bot writes or edits there.

    `burst` writes at once, then `rate` per second, shared by every reply in the
    channel (Discord's edit limit is per channel, not per message or global). Writes
    that can be skipped (a streaming edit, a progress stage) `try_take` and give way
    when the bucket is dry; writes that must happen (a final answer, a place in line)
    `spend`, which may run the bucket into debt so the optional ones wait longer.
    The clock is the event loop's, so tests can move it.
    """

    def __init__(
        self, *, burst: float = 5.0, rate: float = 1.0, clock: Callable[[], float] = _loop_time
    ) -> None:
        self.burst = burst
        self.rate = rate
        self.clock = clock
        self._buckets: dict[int, tuple[float, float]] = {}  # channel -> (tokens, at)

    def _level(self, channel_id: int) -> float:
        tokens, at = self._buckets.get(channel_id, (self.burst, -math.inf))
        return min(self.burst, tokens + (self.clock() - at) * self.rate)

    def try_take(self, channel_id: int) -> bool:
        """Spend one write if the channel has one now."""
        if self._level(channel_id) < 1.0:
            return False
        self.spend(channel_id)
        return True

    def spend(self, channel_id: int) -> None:
        """Spend one write now, whatever the level (never below one burst of debt)."""
        level = max(-self.burst, self._level(channel_id) - 1.0)
        self._buckets[channel_id] = (level, self.clock())
        if len(self._buckets) > 4096:
            self._forget_idle()

    def _forget_idle(self) -> None:
        # A full bucket carries no information: drop it to keep memory bounded.
        for channel_id in [c for c in self._buckets if self._level(c) >= self.burst]:
            del self._buckets[channel_id]


class Delivery(Protocol):
    """Deliver-once guard of journaled jobs (the store's journal)."""

    async def mark_delivered(self, job_id: str) -> bool: ...


class Replies:
    """Makes the reply for each job (`aibot.ports.ReplyFactory`) and holds what all
    replies of one bot share: the client (for the channel fallback), the
    per-channel edit budget and the answers' HTTP session.

    `delivery`, when given, makes a durable job's answer (a video, which may be
    resumed after a restart) be delivered at most once."""

    def __init__(
        self,
        client: discord.Client,
        *,
        edits: EditBudget | None = None,
        delivery: Delivery | None = None,
    ) -> None:
        self.client = client
        self.edits = edits or EditBudget()
        self.delivery = delivery
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


class InteractionReply:
    """One job's answer: progress, a streaming text, the final result or the failure."""

    def __init__(self, job: Job, replies: Replies) -> None:
        self.job = job
        self._replies = replies
        self._lang = job.locale
        self._lock = asyncio.Lock()
        self._webhook: discord.Webhook | None = None
        self._by_channel = False  # the token is gone: write bot messages to the channel
        # Messages of this answer: index 0 is the deferred one (its id comes with the job).
        first = job.args.get("message_id")
        self._ids: list[int] = [int(first)] if first else []
        self._shown: list[str] = []  # their text, to skip edits that change nothing
        self._streamed = ""
        # The defer wrote the message a moment ago: its first edit waits a second like
        # any other, so an answer that comes within a second is written once.
        self._last_stream = replies.edits.clock()
        self._last_progress = -math.inf
        self._failing = False
        self._head: str | None = None  # the line that introduces a late answer
        self.closed = False

    # ---------------------------------------------------------------- Reply

    async def progress(self, update: Progress) -> None:
        # Past the token's life only the final answer is posted (to the channel).
        if self.closed or self._streamed or self._token_expired():
            return
        now = self._replies.edits.clock()
        # A place in line is shown at once; the stages of a long job every 10 s at most.
        if update.position is None and now - self._last_progress < PROGRESS_INTERVAL - _SLACK:
            return
        words = self._progress_text(update)
        if self._shown[:1] == [words]:
            return
        if update.position is not None:  # one per job, and the member waits for it
            self._replies.edits.spend(self.job.channel_id)
        elif not self._replies.edits.try_take(self.job.channel_id):
            return
        self._last_progress = now
        async with self._lock:
            await self._quietly(self._show(0, words))

    async def stream(self, text: str) -> None:
        if self.closed:
            return
        self._streamed = text
        if self._token_expired():
            return
        now = self._replies.edits.clock()
        if now - self._last_stream < STREAM_INTERVAL or self._lock.locked():
            return
        self._last_stream = now
        async with self._lock:
            await self._quietly(self._show_parts(_with_cursor(split_message(text)), final=False))

    async def finish(self, result: Result) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if await self._first_delivery():
                async with self._lock:
                    await self._deliver(result)
        except (TimeoutError, discord.HTTPException, OSError) as error:
            log.warning("job %s: could not deliver its answer: %s", self.job.id, _what(error))
            self._failing = True
            await self._tell_failure(AibotError("could not deliver"))

    async def fail(self, error: AibotError) -> None:
        if self.closed:
            return
        self.closed = True
        self._failing = True
        if await self._first_delivery():
            async with self._lock:
                await self._tell_failure(error)

    async def _first_delivery(self) -> bool:
        """False when a journaled job's answer was already delivered (a job resumed
        after a restart may finish twice; the member hears once)."""
        delivery = self._replies.delivery
        if delivery is None or self.job.command != "video":
            return True
        return await delivery.mark_delivered(self.job.id)

    # ------------------------------------------------------------- delivery

    async def _deliver(self, result: Result) -> None:
        images = [f for f in result.files if f.content_type.startswith("image/") and f.data]
        videos = [f for f in result.files if not f.content_type.startswith("image/")]
        if videos:
            await self._deliver_video(videos[0], result)
        elif images:
            await self._deliver_images(images, result)
        else:
            answer = result.text or self._streamed
            forgotten = int(result.meta.get("forgotten") or 0)
            if forgotten:
                answer += "\n\n" + text(self._lang, "memory_dropped", turns=forgotten)
            parts = split_message(answer) or [answer.strip() or "…"]
            await self._show_parts(parts, final=True)

    async def _deliver_images(self, images: Sequence[Artifact], result: Result) -> None:
        prompt = str(self.job.args.get("prompt", ""))
        files = [discord.File(io.BytesIO(a.data or b""), filename=a.filename) for a in images]
        embeds = [
            image_embed(result, self._lang, prompt=prompt, filename=a.filename) for a in images[:10]
        ]
        self._replies.edits.spend(self.job.channel_id)
        await self._write(0, content=None, embeds=embeds, files=files)

    async def _deliver_video(self, video: Artifact, result: Result) -> None:
        seconds = duration(float(result.meta.get("seconds") or 0.0), self._lang)
        prompt = _quote(str(self.job.args.get("prompt", "")))
        self._replies.edits.spend(self.job.channel_id)
        if video.data and video.size <= self._upload_limit():
            file = discord.File(io.BytesIO(video.data), filename=video.filename)
            content = text(self._lang, "video_done", seconds=seconds) + prompt
            try:
                await self._write(0, content=content, files=[file])
                return
            except discord.HTTPException as error:
                if error.status != 413 or not video.url:
                    raise
                log.info("job %s: upload refused as too large, sending the link", self.job.id)
        if video.url:
            content = text(self._lang, "video_link", seconds=seconds, url=video.url) + prompt
        else:
            content = text(self._lang, "video_too_large")
        await self._write(0, content=content)

    async def _tell_failure(self, error: AibotError) -> None:
        words = error_text(error, self._lang, command=self.job.command)
        self._replies.edits.spend(self.job.channel_id)
        try:
            if not self._streamed or not self._shown:
                await self._show(0, words, clear=True)
                return
            # Part of an answer is already shown: keep it and say why it stopped.
            last = len(self._shown) - 1
            shown = self._shown[last].removesuffix(_CURSOR)
            if len(shown) + len(words) + 2 <= MESSAGE_LIMIT:
                await self._show(last, f"{shown}\n\n{words}")
            else:
                await self._show(last + 1, words)
        except (TimeoutError, discord.HTTPException, OSError) as failure:
            log.warning(
                "job %s: could not tell the member it failed: %s", self.job.id, _what(failure)
            )

    # ----------------------------------------------------------- primitives

    async def _show_parts(self, parts: Sequence[str], *, final: bool) -> None:
        """Make messages 0..n show `parts`, writing only those that changed. A final
        answer is written whatever the channel's budget; a partial one stops where
        the budget runs dry (the next update or the final answer catches up)."""
        for index, part in enumerate(parts):
            if index < len(self._shown) and self._shown[index] == part:
                continue
            if final:
                self._replies.edits.spend(self.job.channel_id)
            elif not self._replies.edits.try_take(self.job.channel_id):
                return
            await self._show(index, part)

    async def _show(self, index: int, content: str, *, clear: bool = False) -> None:
        extra: dict[str, Any] = {"embeds": [], "attachments": []} if clear else {}
        await self._write(index, content=content, **extra)
        while len(self._shown) <= index:
            self._shown.append("")
        self._shown[index] = content

    async def _write(self, index: int, **message: Any) -> None:
        """Create or replace message `index` of this answer."""
        if not self._by_channel and self._token_expired():
            self._to_channel()
        if self._by_channel:
            await self._write_channel(index, **message)
            return
        try:
            await self._write_webhook(index, **message)
        except discord.NotFound:
            # Discord no longer knows the token (or the message was deleted).
            log.info("job %s: interaction gone, answering in the channel", self.job.id)
            self._to_channel()
            await self._write_channel(index, **message)

    def _to_channel(self) -> None:
        """From now on write new bot messages to the channel: the webhook's messages
        cannot be edited any more, and the member must be told something arrived."""
        self._by_channel = True
        self._ids = []
        self._shown = []

    async def _write_webhook(self, index: int, **message: Any) -> None:
        webhook = self._webhook_for_job()
        files = message.pop("files", None)
        if index < len(self._ids):
            if files is not None:
                message["attachments"] = files
            await webhook.edit_message(
                int(self._ids[index]), allowed_mentions=NO_MENTIONS, **message
            )
            return
        # Without the deferred message's id, Discord makes the first followup an edit
        # of it; later ones are new messages.
        message.pop("attachments", None)
        if files:
            message["files"] = files
        if message.get("content") is None:
            message.pop("content", None)
        sent = await webhook.send(wait=True, allowed_mentions=NO_MENTIONS, **message)
        self._ids.append(sent.id)

    async def _write_channel(self, index: int, **message: Any) -> None:
        """Message `index` as a bot message in the channel; the first one says whose
        answer it is and mentions the member (only them)."""
        channel = self._replies.client.get_partial_messageable(
            self.job.channel_id, guild_id=self.job.guild_id
        )
        files = message.pop("files", None)
        message.pop("attachments", None)
        if not message.get("embeds"):
            message.pop("embeds", None)
        if not self._ids and self._head is None:
            await self._introduce(channel, message.get("content"))
        if index == 0 and self._head:
            content = message.get("content")
            message["content"] = f"{self._head}\n{content}" if content else self._head
        if index < len(self._ids):
            if files is not None:
                message["attachments"] = files
            await channel.get_partial_message(self._ids[index]).edit(**message)
            return
        if message.get("content") is None:
            message.pop("content", None)
        if files:
            message["files"] = files
        sent = await channel.send(allowed_mentions=self._mention(), **message)
        self._ids.append(sent.id)

    async def _introduce(self, channel: discord.PartialMessageable, content: str | None) -> None:
        """Decide the line that introduces a late answer: inside its first message,
        or as a message of its own when both would not fit in one."""
        key = "failed_late" if self._failing else "delivered_late"
        head = text(self._lang, key, mention=f"<@{self.job.user_id}>", command=self.job.command)
        if content and len(head) + 1 + len(content) > MESSAGE_LIMIT:
            await channel.send(head, allowed_mentions=self._mention())
            self._head = ""
        else:
            self._head = head

    def _mention(self) -> discord.AllowedMentions:
        # The member whose answer it is, and nobody a prompt or an answer names.
        return discord.AllowedMentions(
            everyone=False, roles=False, users=[discord.Object(self.job.user_id)]
        )

    # -------------------------------------------------------------- helpers

    def _webhook_for_job(self) -> discord.Webhook:
        # Without `client=`: only the ids of the messages it returns are kept, so they
        # need none of the bot's connection state (its user cache). Every call passes
        # its own allowed_mentions, so the client's are not missed.
        session = self._replies.session()
        if self._webhook is None or self._webhook.session is not session:
            self._webhook = discord.Webhook.partial(
                self.job.application_id, self.job.token, session=session
            )
        return self._webhook

    def _token_expired(self) -> bool:
        return discord.utils.utcnow().timestamp() >= self.job.token_expires_at

    def _upload_limit(self) -> int:
        limit = int(self.job.args.get("upload_limit") or DEFAULT_UPLOAD_LIMIT)
        if self._by_channel or self._token_expired():
            guild = self._replies.client.get_guild(self.job.guild_id or 0)
            limit = min(limit, guild.filesize_limit if guild else DEFAULT_UPLOAD_LIMIT)
        return limit

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

    async def _quietly(self, write: Any) -> None:
        """Await an intermediate write; a failed one is logged, the final one matters."""
        try:
            await write
        except (TimeoutError, discord.HTTPException, OSError) as error:
            log.warning("job %s: an intermediate update failed: %s", self.job.id, _what(error))


_STAGES = frozenset({"queued", "running", "preparing", "processing", "downloading"})


def _what(error: BaseException) -> str:
    """An error for the log: its type and HTTP status, never its text, which for a
    webhook call can hold the URL and so the interaction token."""
    status = getattr(error, "status", None)
    return f"{type(error).__name__}" + (f" (HTTP {status})" if status else "")


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
