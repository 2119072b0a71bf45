"""From a slash command to a submitted job: the request path every job command takes.

    job (plain data) -> prompt check -> router.decide (pure) -> gate
      refused here: one ephemeral direct response (a blank prompt, the wrong
      channel, busy, paused, a cooldown or quota), so the refusal stays private
      accepted: defer (public, "thinking...") -> queue.submit(job)

Nothing between the interaction's arrival and the defer can wait: routing is pure and
the embedded gate counts in memory. The command is foreground work until the defer is
out; the job is then handed to the job transport (`aibot.transport`) in a small task
of its own: the command's task ends with the defer, and with it the interaction and
all discord.py made of it. With `hand_over_in_turn` (the in-process transport, whose
worker shares this loop) that task is made on the background's turn
(`Foreground.call_in_turn`): in a burst the deferred jobs wait as plain data, and the
worker starts on them once the burst's commands are answered. After the defer the
worker owns the job and its reply; if the transport refuses the job after all (a
rare full queue), the deferred message says why.

A burst of commands is routed before any of its jobs reaches a pool, so the intake
counts the jobs it accepted for each pool and has not handed over yet, and routes
as if they were there: past a pool's room the burst overflows to the admin pool,
and when that is full too the refusal is private, before the defer.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import discord

from aibot.discord.i18n import command_name, error_text, language, text
from aibot.discord.reply import NO_MENTIONS, Replies
from aibot.discord.retries import acknowledged_already
from aibot.foreground import Foreground
from aibot.jobs import (
    AibotError,
    Job,
    LimitReached,
    Paused,
    QueueFull,
    ShuttingDown,
    TemporarilyUnavailable,
)
from aibot.logs import log_context
from aibot.ports import Gate
from aibot.prompts import has_visible_character
from aibot.router import PoolLoad, Redirect, Router
from aibot.transport import JobQueue

__all__ = ["PROMPT_COMMANDS", "TOKEN_LIFETIME", "Intake", "job_for"]

log = logging.getLogger("aibot.discord.intake")

# Discord keeps an interaction token for 15 minutes; stop trusting it a little earlier
# so a write never races its expiry.
TOKEN_LIFETIME = 15 * 60 - 20
# Commands whose `prompt` must say something: a blank one is refused before the defer.
PROMPT_COMMANDS = frozenset({"chat", "image", "video"})


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
        queue: JobQueue,
        replies: Replies,
        gate: Gate | None = None,
        draining: Callable[[], bool] = lambda: False,
        foreground: Foreground | None = None,
        hand_over_in_turn: bool = False,
    ) -> None:
        self.router = router
        self.queue = queue
        self.replies = replies
        self.gate = gate
        self.draining = draining
        self.foreground = foreground
        self._in_turn = foreground.call_in_turn if foreground and hand_over_in_turn else None
        # Tasks holding a taken job not yet in its pool: commands being answered,
        # and jobs being handed over.
        self._taking: set[asyncio.Task[Any]] = set()
        # Deferred jobs waiting for their turn to be handed over (`hand_over_in_turn`),
        # and a future done once none is left (made when `settle` needs one).
        self._lined = 0
        self._lined_out: asyncio.Future[None] | None = None
        # Per pool, the jobs accepted for it and not yet handed over (see the
        # module docstring); a pool with none has no entry.
        self._handing: dict[str, int] = {}

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
        refusal = await self._refusal(interaction, job)
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
        except BaseException as error:
            if not acknowledged_already(error):
                # No job will run: the use and its cooldown go back, whatever stopped
                # the defer.
                self._handed(job.pool)
                await self._undo(job)
                if not isinstance(error, discord.HTTPException):
                    raise  # cut off on its way (a lost connection, a timeout), or closing
                # Too late (over 3 s) or Discord said no: nobody is waiting for this job.
                log.warning("job %s: could not defer (HTTP %s)", job.id, error.status)
                return
            # A first try reached Discord, its answer did not reach us (a 5xx, which
            # discord.py tries again): the member sees "thinking…", the job goes on.
            log.info("job %s: deferred by a try whose answer was lost", job.id)
            deferred = None
        if deferred is not None and deferred.message_id:
            # The reply edits this message by id, also after a restart.
            job.args["message_id"] = deferred.message_id
        # The member has their first answer. The job is handed over in a task of its
        # own, holding only the job: this command's task ends now, rather than keeping
        # the interaction and all discord.py made of it (some sixty objects, thousands
        # in a burst, for the garbage collector to walk) alive until then.
        if self._in_turn is None:
            self._hand_over(job)
        else:
            self._lined += 1
            self._in_turn(self._hand_over_in_turn, job)

    def _hand_over_in_turn(self, job: Job) -> None:
        self._lined -= 1
        if not self._lined and self._lined_out is not None:
            self._lined_out.set_result(None)
            self._lined_out = None
        self._hand_over(job)

    def _hand_over(self, job: Job) -> None:
        task = asyncio.create_task(self._start(job))
        self._taking.add(task)
        task.add_done_callback(self._taking.discard)

    @property
    def taking(self) -> int:
        """Jobs taken but not yet in a pool: being deferred, waiting for their turn
        to be handed over, or being handed over."""
        return len(self._taking) + self._lined

    async def settle(self, timeout: float) -> None:
        """Until every job taken is in its pool (or its member was told why not),
        `timeout` seconds at most: the drain then finds them all there, none
        dropped between defer and queue."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.taking and (left := deadline - loop.time()) > 0:
            waits: set[asyncio.Future[Any]] = set(self._taking)
            if self._lined:
                if self._lined_out is None:
                    self._lined_out = loop.create_future()
                waits.add(self._lined_out)
            await asyncio.wait(waits, timeout=left)

    async def _start(self, job: Job) -> None:
        """Hand the deferred job to the worker. When it is refused after all (its pool
        filled up since the check, or began to drain), the deferred message says why,
        and the gate takes the use and its cooldown back; so it does for a failure
        nothing expected (a bug, the store), logged."""
        pool = job.pool  # the worker may move it to the admin pool
        try:
            await self.queue.submit(job)
        except Exception as failure:
            error = failure if isinstance(failure, AibotError) else AibotError()
            if error is not failure:
                log.error("job %s: could not be queued\n%s", job.id, job.trace(failure))
            await self._undo(job)
            await self.replies.make(job).fail(error)
        finally:
            self._handed(pool)

    def _handed(self, pool: str) -> None:
        """One job accepted for `pool` is handed over (or given up)."""
        left = self._handing[pool] - 1
        if left:
            self._handing[pool] = left
        else:
            del self._handing[pool]

    async def _refusal(self, interaction: discord.Interaction, job: Job) -> str | None:
        """Why this job cannot be taken, in the member's words; None to take it.
        It runs before the defer: nothing in it waits (routing is pure, the pools'
        loads are plain data, the embedded gate counts in memory)."""
        lang = job.locale
        if self.draining():
            return error_text(ShuttingDown(), lang, command=job.command)
        if job.command in PROMPT_COMMANDS and not has_visible_character(
            str(job.args.get("prompt") or "")
        ):
            return text(lang, "empty_prompt")
        loads = self.queue.loads()
        if self._handing:
            loads = _with_handing(loads, self._handing)
        decision = self.router.decide(
            job.command,
            guild_id=job.guild_id,
            channel_name=_channel_name(interaction.channel),
            guild_channels=_ChannelNames(interaction.guild),
            load=loads,
        )
        if isinstance(decision, Redirect):
            return _redirect_text(interaction.guild, decision, job.command, lang)
        job.pool = decision.pool
        load = loads.get(job.pool)
        if load is None:
            return text(lang, "not_here", command=command_name(job.command, lang))
        if load.paused:
            return error_text(Paused(), lang, command=job.command)
        chosen = job.args.get("provider")
        offered = self.router.providers(job.pool, job.command) if chosen else ()
        if chosen and chosen not in offered:
            # Offered among the choices, but this bot has no key for it here.
            names = ", ".join(f"`{name}`" for name in offered) or "-"
            return text(lang, "provider_not_here", provider=chosen, offered=names)
        if load.full:
            return error_text(QueueFull(retry_after=self.queue.wait_estimate(job.pool)), lang)
        if self.gate is not None:
            try:
                await self.gate.take(job)
            except (LimitReached, TemporarilyUnavailable) as limit:
                return error_text(limit, lang, command=job.command)
        self._handing[job.pool] = self._handing.get(job.pool, 0) + 1
        return None

    async def _undo(self, job: Job) -> None:
        """The job will not run: its use and the cooldown it started go back."""
        if self.gate is not None:
            await self.gate.undo(job)


def _with_handing(loads: Mapping[str, PoolLoad], handing: Mapping[str, int]) -> dict[str, PoolLoad]:
    """Each pool's load as it will be once the jobs on their way reached it."""
    return {name: load.taking(handing.get(name, 0)) for name, load in loads.items()}


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
