"""Alerts: the events an operator must act on, as plain data, folded against floods.

The engine (key rings, the ledger and gate it writes to, the admin commands, the
backups) raises an `Alert` through the `Alerts` port; it never knows where the
alert goes. The Discord side (`aibot.discord.room_alerts`) listens to the
`AlertHub` and posts what it hands out into each server's alert channel.

Kinds (`ALERT_KINDS`): a key disabled (redacted, with the reason), a pool with
no usable key left, a pool paused or resumed (and by whom), a provider failing
for more than a minute, a daily budget 90% spent, the bot restarted with jobs
resumed (in cluster mode: a worker took over the jobs of one that stopped), a
backup that failed. Nothing else: an alert channel that talks about
everything is a channel nobody reads.

Folding. Repeats of one event (same kind, pool and server) are folded: the
first goes out at once, the next ones within `window` seconds (10 minutes) only
count, and when the window ends one more alert says how many there were. That
count is a message too, so a kind and pool never get more than one message per
window. `AlertFolder` holds this rule and nothing else; it is pure and reads no
clock, so tests drive it with made-up times.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

__all__ = ["ALERT_KINDS", "FOLD_WINDOW", "Alert", "AlertFolder", "AlertHub", "Alerts"]

log = logging.getLogger("aibot.alerts")

ALERT_KINDS = (
    "key_disabled",
    "no_keys",
    "paused",
    "resumed",
    "provider_failing",
    "budget",
    "restarted",
    "reclaimed",
    "backup_failed",
)
FOLD_WINDOW = 600.0  # seconds: at most one message per kind, pool and server


@dataclass(frozen=True, slots=True)
class Alert:
    """One event for the operators. `guild_id` None: every server's alert channel
    (the bot's own trouble); a number: that server only (its own budget).
    `detail` fills the words (`key_id`, `reason`, `by`, `provider`, ...): plain text,
    never a secret. `folded` > 0: this alert stands for that many repeats."""

    kind: str
    pool: str = ""
    guild_id: int | None = None
    detail: Mapping[str, str] = field(default_factory=dict)
    folded: int = 0

    @property
    def fold_key(self) -> tuple[str, str, int | None]:
        return self.kind, self.pool, self.guild_id


class Alerts(Protocol):
    """Where the engine raises alerts. Never blocks, never raises."""

    def alert(self, alert: Alert) -> None: ...


@dataclass(slots=True)
class _Window:
    ends: float
    count: int = 0
    last: Alert | None = None


class AlertFolder:
    """Decides which alerts go out now and which are only counted (module docstring).
    Times are plain seconds handed in by the caller."""

    def __init__(self, window: float = FOLD_WINDOW) -> None:
        self.window = window
        self._windows: dict[tuple[str, str, int | None], _Window] = {}

    def offer(self, alert: Alert, now: float) -> list[Alert]:
        """What goes out now because `alert` happened: the alert itself when its
        window is over (after the count of the window that just ended, if any),
        nothing when it is folded into the current window."""
        key = alert.fold_key
        current = self._windows.get(key)
        if current is not None and now < current.ends:
            current.count += 1
            current.last = alert
            return []
        out = self._closed(current)
        self._windows[key] = _Window(ends=now + self.window)
        return [*out, alert]

    def due(self, now: float) -> list[Alert]:
        """The counts of windows that ended by `now`; each count opens a new window
        (it was a message), so a steady flood gives one message per window."""
        out: list[Alert] = []
        for key, current in list(self._windows.items()):
            if now < current.ends:
                continue
            counted = self._closed(current)
            if counted:
                out.extend(counted)
                self._windows[key] = _Window(ends=now + self.window)
            else:
                del self._windows[key]
        return out

    def next_due(self) -> float | None:
        """When the next count falls due (None: nothing is being counted)."""
        return min((w.ends for w in self._windows.values() if w.count), default=None)

    @staticmethod
    def _closed(current: _Window | None) -> list[Alert]:
        if current is None or not current.count or current.last is None:
            return []
        return [replace(current.last, folded=current.count)]


class AlertHub:
    """The `Alerts` port of this process: folds (`AlertFolder`), logs every alert,
    and keeps what is to be sent until a listener `take`s it. Listeners are told
    (synchronously, on the caller's thread) after each alert: there is something to
    take now, or a folded count to take when it falls due (`next_due`)."""

    def __init__(self, clock: Callable[[], float], *, window: float = FOLD_WINDOW) -> None:
        self._clock = clock
        self._folder = AlertFolder(window)
        self._outbox: list[Alert] = []
        self._listeners: list[Callable[[], None]] = []

    def alert(self, alert: Alert) -> None:
        where = f" ({alert.pool} pool)" if alert.pool else ""
        log.warning("alert: %s%s%s", alert.kind, where, _describe(alert.detail))
        self._outbox.extend(self._folder.offer(alert, self._clock()))
        # Told even when folded: a count now falls due, and someone must take it then.
        self._tell()

    def listen(self, listener: Callable[[], None]) -> None:
        """Call `listener()` whenever alerts are waiting to be taken."""
        self._listeners.append(listener)

    def take(self) -> list[Alert]:
        """Every alert to send now (including the counts that fell due), once."""
        out = [*self._outbox, *self._folder.due(self._clock())]
        self._outbox.clear()
        return out

    def next_due(self) -> float | None:
        """Clock time at which a folded count falls due (None: none pending)."""
        return self._folder.next_due()

    def now(self) -> float:
        return self._clock()

    def _tell(self) -> None:
        for listener in self._listeners:
            try:
                listener()
            except Exception:  # an alert must never break the code that raised it
                log.exception("an alert listener failed")


def _describe(detail: Mapping[str, str]) -> str:
    return "".join(f" {name}={value}" for name, value in detail.items())
