"""The pace of one API key: `burst` calls at once, then `rpm` a minute.

`KeyBucket` is the Generic Cell Rate Algorithm (GCRA), the "virtual scheduling"
form of a leaky bucket. It keeps one number, the theoretical arrival time
(`tat`): when the bucket would be empty again if no further call came. Each
call moves it one `interval` (`60 / rpm` s) later, counting from now when the
bucket had drained. A call conforms, and may start, when `tat` is at most
`(burst - 1) * interval` ahead of now: the bucket then holds at most `burst - 1`
calls, so there is room for one more.

That is exactly the leaky bucket as a meter (a level that drains at `rpm / 60`
calls a second, capacity `burst`) for the same `burst` and `rpm`, which is
what aiolimiter implements. Why GCRA rather than the level-and-last-check pair:

- one number of state, moved only when a call is taken: reading the room left
  (for the status panel) or the wait for room writes nothing;
- the wait for room is a subtraction, not a division;
- it is the form a shared ring can keep in Redis (one `tat` per key, updated
  by a script on Redis's clock), so a cluster ring paces the same way.

Limits, by design:

- Synchronous and clock-free: every method takes `now`, the caller's clock (the
  ring passes `loop.time()`), so tests drive it on a virtual clock. A bucket
  never sleeps and never wakes anyone: the caller decides how to wait.
- One call at a time: there is no "take n", no refund of a call not made, and
  no queue, so no fairness between callers; the ring chooses who goes next.
- `burst` is at least 1 and may be fractional (a burst of 1.5 at 60 rpm starts
  one call now, the next after 0.5 s, then one a second).
- Room is judged with a microsecond's tolerance (`_SLACK`): a caller that slept
  exactly the wait it was given always finds room, whatever the floating-point
  rounding of `now`. The schedule itself does not drift: `tat` moves by whole
  intervals, so over any span no more than `burst + span / interval` calls start.
- Not thread-safe, like the ring that owns it: one event loop uses it.
"""

from __future__ import annotations

__all__ = ["KeyBucket"]

# Seconds a call may start ahead of its exact turn: far below any pace a provider
# counts, far above the rounding of a clock in the millions of seconds.
_SLACK = 1e-6


class KeyBucket:
    """The pace of one key: `burst` calls at once, then one every `60 / rpm`
    seconds (GCRA, see the module docstring). Times are the caller's clock."""

    __slots__ = ("_tat", "_tolerance", "burst", "interval")

    def __init__(self, rpm: float, burst: float) -> None:
        if rpm <= 0 or burst < 1:
            raise ValueError("a bucket needs rpm above 0 and a burst of at least 1")
        self.burst = burst
        self.interval = 60.0 / rpm  # seconds one call takes to drain
        # How far ahead of now `tat` may be for one more call to fit: `burst - 1`
        # calls still in the bucket.
        self._tolerance = (burst - 1) * self.interval
        self._tat = float("-inf")  # never used: empty since forever

    def try_take(self, now: float) -> bool:
        """Take one call's room if there is room at `now`; False (nothing
        taken) when the call would have to wait."""
        if self._tat - self._tolerance - now > _SLACK:
            return False
        self._tat = (self._tat if self._tat > now else now) + self.interval
        return True

    def wait(self, now: float) -> float:
        """Seconds from `now` until there is room for one call: 0 when there is."""
        wait = self._tat - self._tolerance - now
        return wait if wait > _SLACK else 0.0

    def room(self, now: float) -> float:
        """Calls that could start at `now`, from 0 to `burst` (fractional: the
        part of the next call's room that has drained so far)."""
        ahead = self._tat - now
        if ahead <= 0:
            return self.burst
        return max(0.0, self.burst - ahead / self.interval)

    def __repr__(self) -> str:
        return f"KeyBucket(burst={self.burst:g}, interval={self.interval:g}s)"
