"""The ports: shared state the worker and the front use, one name per concept.

Each is a small async protocol so that a networked implementation (cluster mode,
on Redis) plugs in where the embedded one (SQLite, `aibot.store`) stands today:

- `Gate`: cooldowns, member quotas and daily budgets, decided before the defer;
- `Journal`: accepted jobs kept durable until answered, resumed after a restart,
  delivered once;
- `Memory`: a member's chat conversation;
- `Ledger`: what each finished job used, for `/stats` and cost estimates;
- `ReplyFactory`: makes a job's `Reply` from the job alone (the Discord side
  implements it over the interaction webhook).

A key's budget (the bucket each key is paced by) is behind `aibot.leases.Ring`
(`aibot.keys.KeyRing` in one process).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, TypedDict

from aibot.jobs import Job, Reply

__all__ = [
    "AboveBotBudget",
    "Conversations",
    "Gate",
    "Journal",
    "Ledger",
    "LimitChanges",
    "Limits",
    "Memory",
    "QuotaLimits",
    "Recalled",
    "ReplyFactory",
    "RoomRecords",
    "Unfinished",
    "limits_given",
]

# A job left unfinished by an earlier run: (job, provider task id, key fingerprint).
Unfinished = tuple[Job, str | None, str | None]


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits of one pool in one guild: seconds between a member's commands,
    commands per member per day, commands per guild per day (0 = unlimited)."""

    cooldown: float
    daily_quota: int
    daily_budget: int

    def overridden(
        self, cooldown: float | None, daily_quota: int | None, daily_budget: int | None
    ) -> Limits:
        """These limits with a guild's overrides laid over them (None: not overridden)."""
        return Limits(
            self.cooldown if cooldown is None else cooldown,
            self.daily_quota if daily_quota is None else daily_quota,
            self.daily_budget if daily_budget is None else daily_budget,
        )


class LimitChanges(TypedDict, total=False):
    """The limits a `set_limits` call overrides, by `Limits` field; the others stay."""

    cooldown: float
    daily_quota: int
    daily_budget: int


class AboveBotBudget(ValueError):
    """A server's daily budget above its pool's for the whole bot (settings'
    `AIBOT_<POOL>_DAILY_BUDGET`), which stays in force: it would be saved and shown,
    and never reached."""

    def __init__(self, pool: str, budget: int) -> None:
        super().__init__(f"{pool}: a server's daily budget is at most the bot's, {budget}")
        self.pool = pool
        self.budget = budget


def limits_given(
    pool: str,
    defaults: Mapping[str, Limits],
    cooldown: float | None,
    daily_quota: int | None,
    daily_budget: int | None,
) -> LimitChanges:
    """The overrides a `set_limits` call gives (the fields not None), by field name;
    ValueError for a pool not in `defaults` or a value below 0, `AboveBotBudget` for a
    daily budget above the pool's for the whole bot."""
    if pool not in defaults:
        raise ValueError(f"unknown pool {pool!r}")
    if any(value is not None and value < 0 for value in (cooldown, daily_quota, daily_budget)):
        raise ValueError("limits must be 0 or more")
    bot_budget = defaults[pool].daily_budget
    if bot_budget and daily_budget is not None and daily_budget > bot_budget:
        raise AboveBotBudget(pool, bot_budget)
    given = LimitChanges()
    if cooldown is not None:
        given["cooldown"] = cooldown
    if daily_quota is not None:
        given["daily_quota"] = daily_quota
    if daily_budget is not None:
        given["daily_budget"] = daily_budget
    return given


class Gate(Protocol):
    """Cooldowns, quotas and budgets. `take` raises `LimitReached` or counts one use;
    `refund` gives a use back when the provider failed the job (the cooldown stays:
    the job ran); `undo` takes back a take whose job never ran (its defer failed, or
    the queue refused it after all), the use and the cooldown it started."""

    async def take(self, job: Job) -> None: ...

    async def refund(self, job: Job) -> bool: ...

    async def undo(self, job: Job) -> bool: ...


class Journal(Protocol):
    """Durable jobs: journaled when accepted (`submitted`), the provider task kept
    once it exists (`accepted`), `finished` when answered; `unfinished` lists what a
    restart resumes; `mark_delivered` is True only for the first delivery (of this
    run: a run that died before its job was finished left the delivery unmade)."""

    async def submitted(self, job: Job) -> None: ...

    async def accepted(self, job: Job, task_id: str, key_fingerprint: str) -> None: ...

    async def progress(self, job_id: str, state: str) -> None: ...

    async def finished(self, job_id: str, outcome: str = "done") -> None: ...

    async def unfinished(self) -> list[Unfinished]: ...

    async def mark_delivered(self, job_id: str) -> bool: ...


class Recalled(Protocol):
    """A conversation so far (OpenAI-style messages), how many old turns were
    forgotten since the member was last told, and which of its lives this is (how
    many times /reset forgot it). Read-only: the stores give frozen values."""

    @property
    def messages(self) -> list[dict[str, str]]: ...

    @property
    def dropped(self) -> int: ...

    @property
    def resets(self) -> int: ...


class Memory(Protocol):
    """A member's conversation, for chat. `remember(..., resets=)` stores the turn
    only while the conversation is the one recalled (no /reset since)."""

    async def recall(self, job: Job) -> Recalled: ...

    async def remember(self, job: Job, prompt: str, answer: str, *, resets: int = 0) -> object: ...


class Ledger(Protocol):
    """Usage rows. `record` never blocks (the store writes behind)."""

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
    ) -> object: ...


class ReplyFactory(Protocol):
    """Makes the `Reply` of a job from the job alone (ids and token), so any
    process holding the job can answer it."""

    def make(self, job: Job) -> Reply: ...


class Conversations(Protocol):
    """What `/reset` forgets: the store's memory, or cluster mode's in Redis."""

    async def reset(self, channel_id: int, user_id: int) -> int: ...


class QuotaLimits(Protocol):
    """What `/admin quota` reads and sets: the store's gate (`StoreLimits`), or
    cluster mode's shared one, which every gateway process reads."""

    async def limits(self, guild_id: int | None, pool: str) -> Limits: ...

    async def set_limits(
        self,
        guild_id: int,
        pool: str,
        *,
        cooldown: float | None = None,
        daily_quota: int | None = None,
        daily_budget: int | None = None,
    ) -> Limits: ...

    async def clear_limits(self, guild_id: int, pool: str) -> Limits: ...


class RoomRecords(Protocol):
    """What the admin rooms (`aibot.discord.rooms`) keep: the message a room keeps
    edited in each server, and what is done once a day per server (claimed before it
    is done, given back when it failed). In cluster mode the gateways share them, so
    one that takes over edits the same message and posts no day's summary again."""

    async def message(self, room: str, guild_id: int) -> tuple[int, int] | None: ...

    async def keep_message(
        self, room: str, guild_id: int, channel_id: int, message_id: int
    ) -> None: ...

    async def claim(self, room: str, guild_id: int, day: str) -> bool: ...

    async def unclaim(self, room: str, guild_id: int, day: str) -> None: ...
