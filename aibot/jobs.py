"""Jobs, the Reply protocol and the typed errors: what crosses every boundary.

A `Job` is plain data (JSON-serialisable) so that it can be journaled to SQLite
and, in the split mode, sent to another machine. Whatever a job produces goes
through a `Reply`; the Discord front implements it, the engine never imports
discord. Every failure the engine knows is one of the `AibotError` kinds below;
the front turns each kind into words for the member in one place.
"""

from __future__ import annotations

import dataclasses
import random
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

__all__ = [
    "FOLLOWUPS",
    "AibotError",
    "Artifact",
    "BadAnswer",
    "BadKey",
    "BadRequest",
    "Cancelled",
    "GaveUp",
    "Incomplete",
    "Job",
    "KeysDown",
    "LimitReached",
    "Misconfigured",
    "NoKeyAvailable",
    "Paused",
    "Progress",
    "QueueFull",
    "RateLimited",
    "Rejected",
    "Reply",
    "Restarted",
    "Result",
    "ShuttingDown",
    "TemporarilyUnavailable",
    "ThoughtTooLong",
    "Unavailable",
]

# In `Job.args`: the ids of the messages a run of the job posted after the deferred
# one (a long answer's followups), journaled so that a run after a crash writes
# over them rather than leaving them half-written.
FOLLOWUPS = "followups"


def _new_id() -> str:
    # 48 random bits, like uuid4's first twelve hex digits, without uuid4's read of
    # os.urandom: a system call for every command on the gateway's path. An id needs
    # to be unique, not secret.
    return f"{random.getrandbits(48):012x}"


@dataclass(slots=True)
class Job:
    """One member's request, as plain values.

    `token` is the interaction token (valid for followups until
    `token_expires_at`, unix seconds); it is a secret and never printed.
    `pool` is the pool that runs the job, filled in by the router's decision.
    """

    command: str
    args: dict[str, Any]
    user_id: int
    channel_id: int
    guild_id: int | None = None
    shard_id: int | None = None
    interaction_id: int = 0
    application_id: int = 0
    token: str = field(default="", repr=False)
    token_expires_at: float = 0.0
    locale: str = "en"
    pool: str = ""
    id: str = field(default_factory=_new_id)
    submitted_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        """Every field by name, for JSON (`args` copied, its values shared: unlike
        `dataclasses.asdict`, no deep copy on the gateway's path)."""
        data = {name: getattr(self, name) for name in _JOB_FIELDS}
        data["args"] = dict(self.args)
        return data

    def trace(self, error: BaseException) -> str:
        """`error`'s traceback for the log, without this job's interaction token."""
        text = "".join(traceback.format_exception(error))
        return text.replace(self.token, "[token]") if self.token else text

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


_JOB_FIELDS = tuple(f.name for f in dataclasses.fields(Job))


@dataclass(slots=True, frozen=True)
class Progress:
    """A step of a long job: `stage` is a short code (queued, running, preparing,
    processing, downloading); `position` the place in line when queued."""

    stage: str
    elapsed: float = 0.0
    position: int | None = None


@dataclass(slots=True, frozen=True)
class Artifact:
    """A produced file: bytes to upload, or a URL when it is too large or remote."""

    filename: str
    content_type: str
    data: bytes | None = field(default=None, repr=False)
    url: str | None = None

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else 0


@dataclass(slots=True, frozen=True)
class Result:
    """What a finished job delivers: text (chat), files (image, video) and facts
    about how it was made (provider, model, seed, seconds, ...)."""

    text: str = ""
    files: tuple[Artifact, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)


class Reply(Protocol):
    """Where a job's answer goes. The Discord front implements it over the
    interaction webhook; tests and benchmarks implement it in memory."""

    async def progress(self, update: Progress) -> None:
        """A long job moved on (queued position, stage, elapsed time)."""

    async def stream(self, text: str) -> None:
        """The answer so far (cumulative, not a delta); called many times."""

    async def finish(self, result: Result) -> None:
        """The job succeeded; called once, last."""

    async def fail(self, error: AibotError) -> None:
        """The job failed; called once, last."""


class AibotError(Exception):
    """Base of every failure the engine reports. `kind` names it for the words
    shown to members and for metrics; `detail` is safe to show (never a key).
    `provider` and `key_id` (redacted) name the key whose call failed, when one
    did: the ledger counts the failure against them."""

    kind: ClassVar[str] = "internal"

    def __init__(self, detail: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(detail or self.kind)
        self.detail = detail
        self.retry_after = retry_after
        self.provider = ""
        self.key_id = ""


class BadRequest(AibotError):
    """The request itself is wrong (bad parameter, prompt too long). `words` names
    the member's text for it (`aibot.discord.i18n`, filled in with `params`) when
    it has one in every language: the detail is English."""

    kind = "bad_request"

    def __init__(self, detail: str = "", *, words: str = "", **params: object) -> None:
        super().__init__(detail)
        self.words = words
        self.params = params


class Rejected(AibotError):
    """The provider's safety system refused the prompt or the output."""

    kind = "rejected"


class RateLimited(AibotError):
    """The provider said 429 (or its equivalent) for one key."""

    kind = "rate_limited"


class BadKey(AibotError):
    """The key is invalid, forbidden, or out of credit: disable it."""

    kind = "bad_key"


class Unavailable(AibotError):
    """Connection error, timeout or 5xx: worth a bounded retry."""

    kind = "unavailable"


class Incomplete(Unavailable):
    """The provider's answer stopped before its end: a stream with no finish
    reason and no `[DONE]`, or cut after its first words. What arrived is
    partial; the provider is at fault, so the job is not charged. Retried like
    any transient failure until the first words were shown, ended after."""

    kind = "incomplete"


class ThoughtTooLong(Incomplete):
    """A reasoning model spent the whole token limit (`AIBOT_CHAT_MAX_TOKENS`)
    thinking: not one word of the answer. The same request would do the same, so
    it is not tried again on that provider (another may answer); the key did its
    job."""


class BadAnswer(Unavailable):
    """The provider answered something its API does not promise: an event that
    is not JSON, a body that is not an image. Its fault, not the bot's, and
    worth a retry, like a 5xx."""

    kind = "bad_answer"


class Misconfigured(AibotError):
    """The provider does not know what the bot asked for (HTTP 404: a model
    retired or misspelled in the settings, a wrong base URL). Nothing a member
    types causes it and another key would not help: the pool's next provider
    may, and the operators need to fix the settings."""

    kind = "misconfigured"


class NoKeyAvailable(AibotError):
    """No key of the pool can start the call within its deadline."""

    kind = "no_key"


class KeysDown(NoKeyAvailable):
    """Every key of the pool that ran the job is down (disabled after 401s or 403s),
    found out by this very job, before anything of an answer was shown. The
    worker may move the job to the admin pool, which has keys of its own; when
    it cannot, the member reads what `NoKeyAvailable` says."""


class QueueFull(AibotError):
    """The pool's queue is full; `retry_after` is the estimated wait in seconds."""

    kind = "busy"


class LimitReached(AibotError):
    """A cooldown, a member's daily quota or a pool's daily budget says no.
    `scope` is cooldown, quota or budget; `retry_after` seconds until it lifts."""

    kind = "limit"

    def __init__(self, scope: str, *, retry_after: float) -> None:
        super().__init__(scope, retry_after=retry_after)
        self.scope = scope


class Paused(AibotError):
    """An admin paused the pool."""

    kind = "paused"


class ShuttingDown(AibotError):
    """The bot is restarting and takes no new jobs."""

    kind = "shutting_down"


class Cancelled(AibotError):
    """An admin cancelled the job."""

    kind = "cancelled"


class Restarted(AibotError):
    """The bot restarted while the job was running, and the job cannot run again
    (its interaction token is too old to answer with): the member is asked to
    ask again."""

    kind = "restarted"


class TemporarilyUnavailable(AibotError):
    """The bot's shared state (cluster mode's Redis) cannot be reached: nothing
    was taken; the member may try again shortly."""

    kind = "unreachable"


class GaveUp(AibotError):
    """The job was tried too many times (each try's worker died): it is dropped."""

    kind = "gave_up"
