"""Logging: one line per event, tagged with pool, shard and job, never a secret.

The engine tags its work with `log_context(pool=..., job=..., shard=...)` (a
context manager over context variables, so each asyncio task keeps its own
tags); `ContextFilter` copies the tags onto every record. `setup_logging`
installs the handlers `run.py` wants: plain lines (or one JSON object per line
with `AIBOT_LOG_FORMAT=json`) to stdout, or rich lines above the status panel,
and optionally rotating files under `AIBOT_LOG_DIR`. Every handler it installs
carries a `RedactingFilter`, so a configured key or token that reaches a log
call by mistake is printed only in its redacted form.
"""

from __future__ import annotations

import contextvars
import json
import logging
import logging.handlers
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO

from aibot.secrets import redact

if TYPE_CHECKING:
    from rich.console import Console

    from aibot.settings import Settings

__all__ = [
    "ContextFilter",
    "JsonFormatter",
    "LogSetup",
    "RedactingFilter",
    "TextFormatter",
    "current_log_context",
    "log_context",
    "setup_logging",
]

# Context variables are per asyncio task: a worker's tags never leak into
# another job's lines. "" means "not set".
_POOL: contextvars.ContextVar[str] = contextvars.ContextVar("aibot_log_pool", default="")
_JOB: contextvars.ContextVar[str] = contextvars.ContextVar("aibot_log_job", default="")
_SHARD: contextvars.ContextVar[str] = contextvars.ContextVar("aibot_log_shard", default="")
_TAGS = ("pool", "shard", "job")

LOG_FILE_BYTES = 10 * 1024 * 1024
LOG_FILE_COUNT = 5


def log_context(
    *, pool: str | None = None, job: str | None = None, shard: int | str | None = None
) -> _Tagged:
    """Tag every log line written inside the block (in this task) with the
    given pool, job id and shard; tags not given keep their outer value."""
    return _Tagged(((_POOL, pool), (_JOB, job), (_SHARD, shard)))


class _Tagged:
    """The `with` block of `log_context`. A class, not `@contextmanager`: every
    job enters one, and a generator-based manager costs several calls more."""

    __slots__ = ("_tags", "_tokens")

    def __init__(self, tags: tuple[tuple[contextvars.ContextVar[str], object], ...]) -> None:
        self._tags = tags
        self._tokens: list[tuple[contextvars.ContextVar[str], contextvars.Token[str]]] = []

    def __enter__(self) -> None:
        for var, value in self._tags:
            if value is not None:
                self._tokens.append((var, var.set(str(value))))

    def __exit__(self, *exc: object) -> None:
        for var, token in reversed(self._tokens):
            var.reset(token)


def current_log_context() -> dict[str, str]:
    """The tags in force here: {"pool": ..., "shard": ..., "job": ...} ("" if unset)."""
    return {"pool": _POOL.get(), "shard": _SHARD.get(), "job": _JOB.get()}


class ContextFilter(logging.Filter):
    """Puts `pool`, `shard`, `job` (and `tags`, their text form) on each record.
    A value given with `extra={"pool": ...}` wins over the context; records of
    `aibot.pool.<name>` loggers are tagged with their pool when nothing else is."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = current_log_context()
        if not context["pool"] and record.name.startswith("aibot.pool."):
            context["pool"] = record.name.removeprefix("aibot.pool.").split(".")[0]
        for name in _TAGS:
            if not getattr(record, name, ""):
                setattr(record, name, context[name])
        record.tags = _tags_text(record)
        return True


def _tags_text(record: logging.LogRecord) -> str:
    parts = [f"{name}={getattr(record, name)}" for name in _TAGS if getattr(record, name, "")]
    return f"[{' '.join(parts)}] " if parts else ""


# An interaction's token (it lets anyone post as the bot for 15 minutes), where
# discord.py logs it at DEBUG: in the URL of every callback and webhook request,
# and in the gateway's events as they came.
_INTERACTION_TOKEN = re.compile(
    r"(/(?:interactions|webhooks)/\d+/|['\"]token['\"]: ['\"])[\w.-]{20,}"
)


class RedactingFilter(logging.Filter):
    """Replaces every given secret in a record's final message, its formatted
    exception and stack with the secret's redacted form, and an interaction's token
    with `[token]`. Belt and braces: code should never log a key, but a provider's
    error text might quote one."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so a key that contains another is replaced whole.
        ordered = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._masks = {secret: redact(secret) for secret in ordered}
        self._pattern = (
            re.compile("|".join(re.escape(s) for s in self._masks)) if self._masks else None
        )

    def redact(self, text: str) -> str:
        """`text` with every secret replaced by its redacted form."""
        if not text:
            return text
        if self._pattern is not None:
            text = self._pattern.sub(lambda m: self._masks[m.group(0)], text)
        return _INTERACTION_TOKEN.sub(r"\1[token]", text)

    def filter(self, record: logging.LogRecord) -> bool:
        # Merge the args into the message first: a secret may sit in either.
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


class TextFormatter(logging.Formatter):
    """`2025-01-02 03:04:05,678 INFO    [pool=chat shard=0 job=ab12] aibot.pool.chat: text`."""

    def __init__(self, *, with_time: bool = True) -> None:
        time = "%(asctime)s " if with_time else ""
        super().__init__(f"{time}%(levelname)-7s %(tags)s%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "tags"):
            record.tags = ""
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601, UTC), level, logger, message,
    pool, shard, job, and exc (the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({name: getattr(record, name, "") for name in _TAGS})
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False)


class _RichLineFormatter(TextFormatter):
    """The text line without time and level, which the rich handler shows itself."""

    def __init__(self) -> None:
        logging.Formatter.__init__(self, "%(tags)s%(name)s: %(message)s")


@dataclass
class LogSetup:
    """The handlers `setup_logging` installed; `close()` removes them again
    (tests build many worlds in one process)."""

    logger: logging.Logger
    redactor: RedactingFilter
    previous_level: int = logging.NOTSET
    handlers: list[logging.Handler] = field(default_factory=list)
    # Handlers someone else had put there, which the redaction was added to.
    others: list[logging.Handler] = field(default_factory=list)

    def close(self) -> None:
        for handler in self.handlers:
            self.logger.removeHandler(handler)
            handler.close()
        self.handlers.clear()
        for handler in self.others:
            handler.removeFilter(self.redactor)
        self.others.clear()
        self.logger.setLevel(self.previous_level)


def setup_logging(
    settings: Settings,
    *,
    console: Console | None = None,
    stream: TextIO | None = None,
    extra_handlers: Sequence[logging.Handler] = (),
    logger: logging.Logger | None = None,
) -> LogSetup:
    """Install aibot's handlers on `logger` (default: the root logger).

    - `console` given (the status panel is on): rich lines on that console, so
      they scroll above the live panel; otherwise plain lines (or JSON objects,
      `AIBOT_LOG_FORMAT=json`) to `stream` (default stdout).
    - `settings.log_dir`: also a rotating file `aibot.log` there.
    - `extra_handlers` (e.g. the panel's `EventLog.handler`) get the same
      context and redaction filters, and keep their own level: the lines
      below `LOG_LEVEL` they want still reach them.
    """
    target = logger if logger is not None else logging.getLogger()
    setup = LogSetup(target, RedactingFilter(settings.secrets()), target.level)
    # A handler already there writes every line too: it gets the redaction as well.
    # (`OPENAI_LOG` set, importing the openai SDK calls `logging.basicConfig()`.)
    for handler in target.handlers:
        handler.addFilter(setup.redactor)
        setup.others.append(handler)
    level = logging.getLevelName(settings.log_level)
    # The extra handlers (the panel's events) keep their own level, which may be
    # below LOG_LEVEL: notable INFO lines reach the panel at LOG_LEVEL=WARNING too.
    lowest = min([level, *(handler.level or level for handler in extra_handlers)])
    target.setLevel(lowest)
    handlers = [_console_handler(settings, console, stream)]
    if settings.log_dir is not None:
        settings.log_dir.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(
            settings.log_dir / "aibot.log",
            maxBytes=LOG_FILE_BYTES,
            backupCount=LOG_FILE_COUNT,
            encoding="utf-8",
        )
        file_handler.setFormatter(_formatter(settings))
        handlers.append(file_handler)
    for handler in handlers:
        handler.setLevel(level)
    handlers.extend(extra_handlers)
    for handler in handlers:
        # Context first, so tags are there; redaction before any formatter runs.
        handler.addFilter(ContextFilter())
        handler.addFilter(setup.redactor)
        target.addHandler(handler)
        setup.handlers.append(handler)
    return setup


def _formatter(settings: Settings) -> logging.Formatter:
    return JsonFormatter() if settings.log_format == "json" else TextFormatter()


def _console_handler(
    settings: Settings, console: Console | None, stream: TextIO | None
) -> logging.Handler:
    if console is None:
        handler = logging.StreamHandler(stream or sys.stdout)
        handler.setFormatter(_formatter(settings))
        return handler
    from rich.logging import RichHandler

    # Lines on the panel's console are for a person watching (JSON still goes to
    # the files). rich_tracebacks stays off: rich would render the traceback from
    # the live exception, past the redaction filter; the formatted one is redacted.
    rich_handler = RichHandler(
        console=console, show_path=False, markup=False, log_time_format="[%H:%M:%S]"
    )
    rich_handler.setFormatter(_RichLineFormatter())
    return rich_handler
