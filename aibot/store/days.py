"""Local days: which day a moment belongs to, in the configured time zone.

Daily quotas, budgets and the usage ledger all count per day, and a day starts
at midnight in `AIBOT_TIMEZONE` (a server in Seoul resets at 00:00 KST, not at
09:00). The clock is injectable so tests move time instead of waiting for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

__all__ = ["Calendar", "Clock"]

Clock = Callable[[], float]
"""Returns unix seconds; `time.time` unless a test or the app passes another."""


class Calendar:
    """Turns the clock's unix seconds into local days ("2026-03-01")."""

    def __init__(self, timezone: ZoneInfo, clock: Clock = time.time) -> None:
        self.timezone = timezone
        self.clock = clock

    def now(self) -> float:
        return self.clock()

    def day(self, at: float | None = None) -> str:
        """The local date of `at` (default: now) as YYYY-MM-DD, which sorts as text."""
        moment = self.clock() if at is None else at
        return datetime.fromtimestamp(moment, self.timezone).date().isoformat()

    def span(self, at: float) -> tuple[str, float, float]:
        """(day, start, end) of the local day holding `at`; start <= at < end."""
        local = datetime.fromtimestamp(at, self.timezone)
        start = local.replace(hour=0, minute=0, second=0, microsecond=0, fold=0)
        # Adding a day to the local date (not 86,400 s) keeps DST days right.
        end = datetime.combine(start.date() + timedelta(days=1), start.timetz())
        return start.date().isoformat(), start.timestamp(), end.timestamp()

    def first_day(self, days: int) -> str:
        """The earliest day of a window of `days` local days ending today."""
        today = datetime.fromtimestamp(self.clock(), self.timezone).date()
        return (today - timedelta(days=max(days, 1) - 1)).isoformat()
