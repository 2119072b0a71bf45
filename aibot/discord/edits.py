"""The per-channel budget of message writes: Discord limits the messages a bot writes
or edits in one channel (about 5 per 5 s), so every reply in a channel shares one
`EditBudget`."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

__all__ = ["EditBudget"]

# Buckets kept before the full (idle) ones are forgotten.
_MAX_CHANNELS = 4096


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
        if len(self._buckets) > _MAX_CHANNELS:
            self._forget_idle()

    def tracked(self) -> int:
        """How many channels have a bucket now (the others are full)."""
        return len(self._buckets)

    def _forget_idle(self) -> None:
        # A full bucket carries no information: drop it to keep memory bounded.
        for channel_id in [c for c in self._buckets if self._level(c) >= self.burst]:
            del self._buckets[channel_id]
