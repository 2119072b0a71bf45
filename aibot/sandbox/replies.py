"""`RecordingReply`: the Reply protocol in memory, for tests and benchmarks, and
`RecordingReplies`, the reply factory that makes them (`aibot.ports.ReplyFactory`).

It records every call in order and checks the protocol's promises (finish or
fail exactly once, and last); a broken promise is noted in `problems` rather
than raised, so the code under test runs on as it would in production.
`await reply.wait(timeout)` waits on a future, which suits tests that run on
a plain event loop (not under SimCord, where a bare future never settles).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..jobs import AibotError, Job, Progress, Result

__all__ = ["RecordingReplies", "RecordingReply"]


class RecordingReply:
    """An in-memory `aibot.jobs.Reply` that remembers everything it is told.

    `events` lists the calls in order (`progress`, `stream`, `finish`, `fail`);
    `updates` the progress updates; `texts` the streamed texts (cumulative, as
    given); `result` / `error` the outcome; `problems` any protocol breach.
    """

    def __init__(self) -> None:
        self.events: list[str] = []
        self.updates: list[Progress] = []
        self.texts: list[str] = []
        self.result: Result | None = None
        self.error: AibotError | None = None
        self.problems: list[str] = []
        self._waiters: list[asyncio.Future[None]] = []

    def __repr__(self) -> str:
        state = "finished" if self.result else f"failed ({self.error!r})" if self.error else "open"
        return f"<RecordingReply {state}, {len(self.events)} calls>"

    @property
    def done(self) -> bool:
        """finish() or fail() has been called."""
        return self.result is not None or self.error is not None

    @property
    def text(self) -> str:
        """The final text if finished, else the last streamed text."""
        if self.result is not None and self.result.text:
            return self.result.text
        return self.texts[-1] if self.texts else ""

    async def progress(self, update: Progress) -> None:
        self._record("progress")
        self.updates.append(update)

    async def stream(self, text: str) -> None:
        self._record("stream")
        self.texts.append(text)

    async def finish(self, result: Result) -> None:
        self._record("finish")
        if not self.done:
            self.result = result
        self._wake()

    async def fail(self, error: AibotError) -> None:
        self._record("fail")
        if not self.done:
            self.error = error
        self._wake()

    async def wait(self, timeout: float | None = None) -> Result | AibotError:
        """The outcome once the job finished or failed; TimeoutError after `timeout` s."""
        if not self.done:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, timeout)
            finally:
                self._waiters.remove(waiter)
        outcome = self.result if self.result is not None else self.error
        assert outcome is not None
        return outcome

    def summary(self) -> dict[str, Any]:
        """Plain facts for a benchmark line: outcome kind, calls, streamed updates."""
        kind = "ok" if self.result is not None else self.error.kind if self.error else "open"
        return {"outcome": kind, "calls": len(self.events), "streamed": len(self.texts)}

    def _record(self, event: str) -> None:
        if self.done:
            self.problems.append(f"{event} after the job had ended")
        self.events.append(event)

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)


class RecordingReplies:
    """Makes a `RecordingReply` for each job and keeps them by job id (`made`)."""

    def __init__(self) -> None:
        self.made: dict[str, RecordingReply] = {}

    def make(self, job: Job) -> RecordingReply:
        reply = self.made[job.id] = RecordingReply()
        return reply
