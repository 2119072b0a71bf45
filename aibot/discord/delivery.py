"""How a job's answer reaches Discord: the messages of one answer, written through the
interaction webhook while its token lives and as bot messages in the channel after.

The guarantees, write by write (what counts as which failure, and the retries, are
`aibot.discord.retries`'):

- A write that fails for a moment (429, a 5xx, a dropped connection, a timeout) is
  tried again within the `RetryPolicy`'s deadline.
- A token Discord no longer knows is not tried again: from then on the answer goes
  to the channel as a bot message with the bot token, mentioning the member and
  nobody else.
- The final answer (`AnswerWriter.put`) takes the webhook first, then the channel,
  then (the channel forbids the bot to post: 403) a direct message to the member;
  when none delivers it, `Undelivered`. A message Discord refuses as such (400,
  413: the same message would be refused any way) is raised to the caller as it came.
- An intermediate write (`AnswerWriter.update`: a streaming edit, a progress line) is
  tried once: the next one, or the final answer, catches up.
- The followups a long answer posts are journaled as they are posted (`posted`); a
  run of the job after a crash writes over them, and deletes those its answer does
  not need, instead of leaving the first run's half-written text.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import aiohttp
import discord

from aibot.discord.edits import EditBudget
from aibot.discord.i18n import command_name, text
from aibot.discord.render import MESSAGE_LIMIT
from aibot.discord.retries import (
    DELIVERY_ERRORS,
    INTERMEDIATE,
    RetryPolicy,
    Undelivered,
    describe,
    forbidden,
    refused,
    token_gone,
)
from aibot.jobs import FOLLOWUPS, Artifact, Job

__all__ = ["DEFAULT_UPLOAD_LIMIT", "NO_MENTIONS", "AnswerWriter", "Message"]

log = logging.getLogger("aibot.discord.delivery")

_Channel = discord.PartialMessageable | discord.DMChannel  # where a late answer goes

NO_MENTIONS = discord.AllowedMentions.none()
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024  # Discord's default when nothing better is known


@dataclass(frozen=True, slots=True)
class Message:
    """One message of an answer as it should look. `content` None removes the text;
    `clear` also removes embeds and files an earlier write left."""

    content: str | None
    embeds: Sequence[discord.Embed] = ()
    files: Sequence[Artifact] = ()
    clear: bool = False

    @property
    def plain(self) -> bool:
        """Text alone: rewriting the same text changes nothing."""
        return not (self.embeds or self.files or self.clear)


class AnswerWriter:
    """The messages of one job's answer and the ways they are written to Discord.

    Message 0 is the deferred one (its id comes with the job, and so do the followups
    an earlier run posted). `shown` is what each message shows now, so a write that
    changes nothing is skipped; `posted` is told the followups' ids as they come.
    Once the token is gone, the answer is written afresh as bot messages in the
    channel (or, where the bot may not post, in a direct message to the member), the
    first of which says whose answer it is (or, with `failing`, whose command did
    not work)."""

    def __init__(
        self,
        job: Job,
        *,
        client: discord.Client,
        session: Callable[[], aiohttp.ClientSession],
        edits: EditBudget,
        policy: RetryPolicy,
        posted: Callable[[Sequence[int]], Awaitable[None]] | None = None,
    ) -> None:
        self.job = job
        self._client = client
        self._session = session
        self._edits = edits
        self._policy = policy
        self._webhook: discord.Webhook | None = None
        self._posted = posted
        first = job.args.get("message_id")
        earlier = [int(i) for i in job.args.get(FOLLOWUPS) or ()]
        self._ids: list[int] = [int(first), *earlier] if first else []
        self.shown: list[str] = []
        self.by_channel = False
        self.failing = False
        self._head: str | None = None  # the line that introduces a late answer
        self._dm: discord.DMChannel | None = None  # the member's, once the channel refused

    @property
    def live(self) -> bool:
        """Whether intermediate writes still go out: past the token's life only the
        final answer is posted (to the channel)."""
        return not (self.by_channel or self.token_expired())

    def token_expired(self) -> bool:
        return discord.utils.utcnow().timestamp() >= self.job.token_expires_at

    def upload_limit(self) -> int:
        """The largest file the way this answer goes now accepts."""
        limit = int(self.job.args.get("upload_limit") or DEFAULT_UPLOAD_LIMIT)
        if self.by_channel or self.token_expired():
            guild = self._client.get_guild(self.job.guild_id or 0)
            limit = min(limit, guild.filesize_limit if guild else DEFAULT_UPLOAD_LIMIT)
        return limit

    async def update(self, index: int, message: Message, *, must: bool = False) -> bool:
        """An intermediate write of message `index`, once. `must` writes whatever the
        channel's budget says; otherwise it is skipped when the budget is dry. False
        when it was skipped or failed (logged)."""
        if not self.live:
            return False
        if must:
            self._edits.spend(self.job.channel_id)
        elif not self._edits.try_take(self.job.channel_id):
            return False
        try:
            await self._write(index, message, INTERMEDIATE)
        except DELIVERY_ERRORS as error:
            if token_gone(error):
                log.info("job %s: interaction gone, the answer goes to the channel", self.job.id)
                self._to_channel()
            else:
                what = describe(error)
                log.warning("job %s: an intermediate update failed: %s", self.job.id, what)
            return False
        return True

    async def put(self, parts: Sequence[Message]) -> None:
        """The final answer: messages 0..n show `parts`, whatever the channel's budget,
        through the webhook, else the channel, else (the bot may not post there) a
        direct message. Raises `Undelivered` when no way delivered it, or Discord's
        refusal of the message itself (see `refused`)."""
        if not self.by_channel and self.token_expired():
            self._to_channel()
        if not self.by_channel:
            try:
                await self._put_parts(parts)
                await self._delete_after(len(parts))
                return
            except DELIVERY_ERRORS as error:
                if refused(error):
                    raise
                what = describe(error)
                log.info(
                    "job %s: the webhook failed (%s), answering in the channel", self.job.id, what
                )
                # What the webhook's messages show already stays; the channel gets the rest.
                parts = parts[self._showing(parts) :]
                self._to_channel()
        try:
            await self._put_parts(parts)
            return
        except DELIVERY_ERRORS as error:
            if refused(error):
                raise
            if self._dm is not None or not forbidden(error):
                raise Undelivered(describe(error)) from None
            log.info(
                "job %s: the channel refused the bot (%s), answering in a direct message",
                self.job.id,
                describe(error),
            )
            parts = parts[self._showing(parts) :]
        try:
            self._dm = await self._client.create_dm(discord.Object(self.job.user_id))
            self._ids, self.shown, self._head = [], [], None
            await self._put_parts(parts)
        except DELIVERY_ERRORS as error:
            if refused(error):
                raise
            raise Undelivered(describe(error)) from None

    async def _put_parts(self, parts: Sequence[Message]) -> None:
        for index, part in enumerate(parts):
            if index < len(self.shown) and part.plain and self.shown[index] == part.content:
                continue
            self._edits.spend(self.job.channel_id)
            await self._write(index, part, self._policy)

    def _showing(self, parts: Sequence[Message]) -> int:
        """How many of `parts`, from the first, the messages show already."""
        count = 0
        for part, shown in zip(parts, self.shown, strict=False):
            if not (part.plain and part.content == shown):
                break
            count += 1
        return count

    async def _write(self, index: int, message: Message, policy: RetryPolicy) -> None:
        """Create or replace message `index`, the way the answer goes now."""
        write = self._write_channel if self.by_channel else self._write_webhook
        count = len(self._ids)
        await policy.run(lambda: write(index, message), job_id=self.job.id)
        while len(self.shown) <= index:
            self.shown.append("")
        self.shown[index] = message.content or ""
        if not self.by_channel and len(self._ids) > max(count, 1):
            await self._journal_followups()

    async def _journal_followups(self) -> None:
        """Tell `posted` the followups so far; a failure to is logged, and the answer
        goes on (a crash would then leave a followup as it was)."""
        if self._posted is None:
            return
        try:
            await self._posted(self._ids[1:])
        except Exception as error:
            log.warning(
                "job %s: its followups were not journaled (%s)", self.job.id, type(error).__name__
            )

    async def _delete_after(self, count: int) -> None:
        """Delete the webhook's messages past the first `count`: an earlier run's
        followups this answer does not need. Tried once each: one left over shows
        the earlier run's text, and the answer is out all the same."""
        if len(self._ids) <= count:
            return
        webhook = self._webhook_for_job()
        for message_id in self._ids[count:]:
            self._edits.spend(self.job.channel_id)
            try:
                await INTERMEDIATE.run(
                    partial(webhook.delete_message, message_id), job_id=self.job.id
                )
            except DELIVERY_ERRORS as error:
                log.info("job %s: an old followup was left (%s)", self.job.id, describe(error))
        del self._ids[count:]
        del self.shown[count:]

    def _to_channel(self) -> None:
        """From now on write new bot messages to the channel: the webhook's messages
        cannot be edited any more, and the member must be told something arrived."""
        self.by_channel = True
        self._ids = []
        self.shown = []

    async def _write_webhook(self, index: int, message: Message) -> None:
        webhook = self._webhook_for_job()
        files = _files(message)  # afresh for every try: a sent file is read to its end
        extra: dict[str, Any] = {}
        if index < len(self._ids):
            if message.embeds or message.clear:
                extra["embeds"] = list(message.embeds)
            if files or message.clear:
                extra["attachments"] = files
            await webhook.edit_message(
                self._ids[index], content=message.content, allowed_mentions=NO_MENTIONS, **extra
            )
            return
        # Without the deferred message's id, Discord makes the first followup an edit
        # of it; later ones are new messages.
        if message.content is not None:
            extra["content"] = message.content
        if message.embeds:
            extra["embeds"] = list(message.embeds)
        if files:
            extra["files"] = files
        sent = await webhook.send(wait=True, allowed_mentions=NO_MENTIONS, **extra)
        self._ids.append(sent.id)

    async def _write_channel(self, index: int, message: Message) -> None:
        """Message `index` as a bot message in the channel; the first one says whose
        answer it is and mentions the member (only them)."""
        channel: _Channel = self._dm or self._client.get_partial_messageable(
            self.job.channel_id, guild_id=self.job.guild_id
        )
        if not self._ids and self._head is None:
            await self._introduce(channel, message.content)
        content = message.content
        if index == 0 and self._head:
            content = f"{self._head}\n{content}" if content else self._head
        files = _files(message)
        extra: dict[str, Any] = {"embeds": list(message.embeds)} if message.embeds else {}
        if index < len(self._ids):
            if files:
                extra["attachments"] = files
            await channel.get_partial_message(self._ids[index]).edit(
                content=content, allowed_mentions=self._mention(), **extra
            )
            return
        if content is not None:
            extra["content"] = content
        if files:
            extra["files"] = files
        sent = await channel.send(allowed_mentions=self._mention(), **extra)
        self._ids.append(sent.id)

    async def _introduce(self, channel: _Channel, content: str | None) -> None:
        """Decide the line that introduces a late answer: inside its first message,
        or as a message of its own when both would not fit in one."""
        key = "failed_late" if self.failing else "delivered_late"
        lang = self.job.locale
        command = command_name(self.job.command, lang)
        head = text(lang, key, mention=f"<@{self.job.user_id}>", command=command)
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

    def _webhook_for_job(self) -> discord.Webhook:
        # Without `client=`: only the ids of the messages it returns are kept, so they
        # need none of the bot's connection state (its user cache). Every call passes
        # its own allowed_mentions, so the client's are not missed.
        session = self._session()
        if self._webhook is None or self._webhook.session is not session:
            self._webhook = discord.Webhook.partial(
                self.job.application_id, self.job.token, session=session
            )
        return self._webhook


def _files(message: Message) -> list[discord.File]:
    return [discord.File(io.BytesIO(a.data or b""), filename=a.filename) for a in message.files]
