"""From a slash command to a submitted job: the request path every job command takes.

    job (plain data) -> router.decide (pure) -> gate (in memory)
      refused here: one ephemeral direct response (the wrong channel, busy, paused,
      a cooldown or quota), so the refusal stays private
      accepted: defer (public, "thinking...") -> pool.submit(job, reply)

Nothing between the interaction's arrival and the defer can wait: routing is pure and
the gate counts in memory. The command is foreground work until the defer is out;
handing the job to its pool then waits for its turn (`aibot.foreground`), in a small
task of its own: the command's task ends with the defer, and with it the interaction
and all discord.py made of it. After the defer the job's `Reply` owns the deferred
message, so every later failure (a rare full queue, the provider) edits it with words.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import discord

from aibot.discord.i18n import command_name, error_text, language, text
from aibot.discord.reply import NO_MENTIONS, Replies
from aibot.foreground import Foreground
from aibot.jobs import (
    AibotError,
    Job,
    LimitReached,
    Paused,
    Progress,
    QueueFull,
    ShuttingDown,
)
from aibot.logs import log_context
from aibot.pools.base import Pool
from aibot.router import Redirect, Router

__all__ = ["DURABLE_COMMANDS", "TOKEN_LIFETIME", "Gate", "Intake", "Journal", "job_for"]

# Seconds of expected wait from which a chat or image job is told its place in line.
QUEUE_NOTICE_SECONDS = 5.0

log = logging.getLogger("aibot.discord.intake")

# Discord keeps an interaction token for 15 minutes; stop trusting it a little earlier
# so a write never races its expiry.
TOKEN_LIFETIME = 15 * 60 - 20
# Jobs long enough to be journaled and resumed after a restart.
DURABLE_COMMANDS = frozenset({"video"})


class Gate(Protocol):
    """Cooldowns, quotas and budgets (the store): `take` raises `LimitReached`."""

    def take(self, job: Job) -> Any: ...

    def refund(self, job: Job) -> Any: ...


class Journal(Protocol):
    """Durable record of long jobs (the store), so a restart resumes them."""

    async def submitted(self, job: Job) -> Any: ...

    async def finished(self, job_id: str, outcome: str = "done") -> Any: ...


def job_for(interaction: discord.Interaction, command: str, args: Mapping[str, Any]) -> Job:
    """The plain-data job for one slash command: ids, token and its expiry, locale."""
    return Job(
        command=command,
        args={**args, "upload_limit": interaction.filesize_limit},
        user_id=interaction.user.id,
        channel_id=interaction.channel_id or 0,
        guild_id=interaction.guild_id,
        shard_id=interaction.guild.shard_id if interaction.guild else None,
        interaction_id=interaction.id,
        application_id=interaction.application_id,
        token=interaction.token,
        token_expires_at=interaction.created_at.timestamp() + TOKEN_LIFETIME,
        locale=language(interaction.locale),
    )


class Intake:
    """Takes each job command: routes it, gates it, defers and submits it."""

    def __init__(
        self,
        *,
        router: Router,
        pools: Mapping[str, Pool],
        replies: Replies,
        gate: Gate | None = None,
        journal: Journal | None = None,
        draining: Callable[[], bool] = lambda: False,
        foreground: Foreground | None = None,
    ) -> None:
        self.router = router
        self.pools = pools
        self.replies = replies
        self.gate = gate
        self.journal = journal
        self.draining = draining
        self.foreground = foreground
        # Tasks holding a taken job not yet in its pool: commands being answered,
        # and jobs waiting for their turn to be queued.
        self._taking: set[asyncio.Task[Any]] = set()

    async def submit(
        self, interaction: discord.Interaction, command: str, args: Mapping[str, Any]
    ) -> None:
        """Answer `interaction` exactly once: a private refusal now, or a deferred
        message that the job's reply fills in."""
        job = job_for(interaction, command, args)
        task = asyncio.current_task()
        assert task is not None
        self._taking.add(task)
        try:
            with log_context(job=job.id, shard=job.shard_id):
                await self._take(interaction, job)
        finally:
            self._taking.discard(task)

    async def _take(self, interaction: discord.Interaction, job: Job) -> None:
        refusal = self._refusal(interaction, job)
        if self.foreground is not None:
            # The answer is decided and about to go out: what is left is Discord's
            # round trip, when the loop is free for other work (the burst gap still
            # covers the request's own few steps).
            self.foreground.served()
        if refusal is not None:
            await interaction.response.send_message(
                refusal, ephemeral=True, allowed_mentions=NO_MENTIONS
            )
            return
        try:
            deferred = await interaction.response.defer(thinking=True)
        except discord.HTTPException as error:
            # Too late (over 3 s) or Discord said no: nobody is waiting for this job.
            log.warning("job %s: could not defer (HTTP %s)", job.id, error.status)
            self._refund(job)
            return
        if deferred is not None and deferred.message_id:
            # The reply edits this message by id, also after a restart.
            job.args["message_id"] = deferred.message_id
        if self.foreground is None:
            await self._start(job, self.pools[job.pool])
            return
        # The member has their first answer; queueing the job is the pools' work,
        # which waits for other members' commands like any other. It waits in a task
        # of its own, holding only the job: this command's task ends now, rather than
        # keeping the interaction and all discord.py made of it (some sixty objects,
        # thousands in a burst, for the garbage collector to walk) alive until then.
        task = asyncio.create_task(self._start_in_turn(job))
        self._taking.add(task)
        task.add_done_callback(self._taking.discard)

    async def _start_in_turn(self, job: Job) -> None:
        assert self.foreground is not None
        await self.foreground.turn()
        await self._start(job, self.pools[job.pool])

    @property
    def taking(self) -> int:
        """Jobs taken but not yet in a pool: being deferred, or waiting for their
        turn to be queued."""
        return len(self._taking)

    async def settle(self, timeout: float) -> None:
        """Until every job taken is in its pool (or its member was told why not),
        `timeout` seconds at most: the drain then finds them all there, none
        dropped between defer and queue."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._taking and (left := deadline - loop.time()) > 0:
            await asyncio.wait(set(self._taking), timeout=left)

    async def _start(self, job: Job, pool: Pool) -> None:
        """Hand the deferred job to its pool. When the pool refuses it after all (it
        filled up since the check, or began to drain), the deferred message says why,
        and the gate gives the use back; so it does for a failure nothing expected (a
        bug, the store), logged."""
        reply = self.replies.make(job)
        journal = self.journal if job.command in DURABLE_COMMANDS else None
        journaled = False
        try:
            if journal is not None:
                # Journaled before it runs: a restart from here on resumes it.
                await journal.submitted(job)
                journaled = True
            position = pool.submit(job, reply)
        except Exception as failure:
            error = failure if isinstance(failure, AibotError) else AibotError()
            if error is not failure:
                log.error("job %s: could not be queued\n%s", job.id, job.trace(failure))
            self._refund(job)
            if journaled:
                await journal.finished(job.id, error.kind)  # type: ignore[union-attr]
            await reply.fail(error)
            return
        # A video takes minutes: its place in line is shown at once. Other jobs wait
        # behind others only briefly, and "thinking..." says enough, unless the wait
        # is long; in a burst those edits would cost the most when time is shortest.
        if job.command in DURABLE_COMMANDS or (
            position > 1 and pool.wait_estimate() >= QUEUE_NOTICE_SECONDS
        ):
            await reply.progress(Progress("queued", position=position))

    def _refusal(self, interaction: discord.Interaction, job: Job) -> str | None:
        """Why this job cannot be taken, in the member's words; None to take it.
        Synchronous on purpose: it runs before the defer."""
        lang = job.locale
        if self.draining():
            return error_text(ShuttingDown(), lang, command=job.command)
        decision = self.router.decide(
            job.command,
            guild_id=job.guild_id,
            channel_name=_channel_name(interaction.channel),
            guild_channels=_ChannelNames(interaction.guild),
            load={name: pool.load() for name, pool in self.pools.items()},
        )
        if isinstance(decision, Redirect):
            return _redirect_text(interaction.guild, decision, job.command, lang)
        job.pool = decision.pool
        pool = self.pools.get(job.pool)
        if pool is None:
            return text(lang, "not_here", command=command_name(job.command, lang))
        load = pool.load()
        if load.paused:
            return error_text(Paused(), lang, command=job.command)
        if load.full:
            return error_text(QueueFull(retry_after=pool.wait_estimate()), lang)
        if self.gate is not None:
            try:
                self.gate.take(job)
            except LimitReached as limit:
                return error_text(limit, lang, command=job.command)
        return None

    def _refund(self, job: Job) -> None:
        if self.gate is not None:
            self.gate.refund(job)


def _channel_name(channel: Any) -> str | None:
    """The name routing goes by: a thread counts as its parent channel."""
    if isinstance(channel, discord.Thread):
        channel = channel.parent
    return getattr(channel, "name", None)


class _ChannelNames(Sequence[str]):
    """The guild's text channel names, listed only if the router asks (a redirect):
    most commands never need them, and a big guild has hundreds."""

    def __init__(self, guild: discord.Guild | None) -> None:
        self._guild = guild

    @functools.cached_property
    def _names(self) -> tuple[str, ...]:
        guild = self._guild
        return tuple(c.name for c in guild.text_channels) if guild is not None else ()

    def __getitem__(self, index: Any) -> Any:
        return self._names[index]

    def __len__(self) -> int:
        return len(self._names)


def _redirect_text(guild: discord.Guild | None, decision: Redirect, command: str, lang: str) -> str:
    name = command_name(command, lang)
    mentions = []
    for channel_name in decision.channels[:3]:
        channel = discord.utils.get(guild.text_channels, name=channel_name) if guild else None
        mentions.append(channel.mention if channel else f"#{channel_name}")
    if not mentions:
        return text(lang, "redirect_none", command=name)
    return text(lang, "redirect", command=name, channels=", ".join(mentions))
