"""The recent events an operator should see (the panel's "last events"), taken from
the logs: WARNING and above, and INFO lines marked notable."""

from __future__ import annotations

import logging
from collections import deque

from aibot.logs import ContextFilter
from aibot.snapshots import Event

__all__ = ["NOTABLE", "EventLog"]

# Pass as `extra=NOTABLE` to make an INFO line an event of the panel
# (overflow, restart, pool paused...); WARNING and above always are.
NOTABLE = {"notable": True}
# INFO lines from code that does not know NOTABLE, recognised by these words.
_NOTABLE_WORDS = ("disabled", "overflow", "restart", "paused", "resumed", "draining", "ready")


class _EventHandler(logging.Handler):
    """Feeds an EventLog with WARNING+ records and notable INFO ones."""

    def __init__(self, log: EventLog) -> None:
        super().__init__(logging.INFO)
        self.log = log
        self.addFilter(ContextFilter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if record.levelno < logging.WARNING and not _notable(record):
                return
            text = record.getMessage().splitlines()[0] if record.msg else ""
            if record.exc_info and record.exc_info[0] is not None:
                text = f"{text} ({record.exc_info[0].__name__})"
            pool = getattr(record, "pool", "")
            self.log.add(Event(record.created, record.levelname, pool, text))
        except Exception:
            self.handleError(record)


def _notable(record: logging.LogRecord) -> bool:
    if getattr(record, "notable", False):
        return True
    message = str(record.msg).lower()
    return any(word in message for word in _NOTABLE_WORDS)


class EventLog:
    """The last `maxlen` events, oldest first. Attach `handler` to a logger (or
    pass it to `setup_logging(extra_handlers=...)`, which also redacts it)."""

    def __init__(self, maxlen: int = 100) -> None:
        self._events: deque[Event] = deque(maxlen=maxlen)
        self.handler: logging.Handler = _EventHandler(self)

    def add(self, event: Event) -> None:
        self._events.append(event)

    def events(self) -> list[Event]:
        return list(self._events)
