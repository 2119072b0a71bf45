"""What the fake Discord saw the bot do, and the API tests and benchmarks read it with.

Every request the bot makes is kept as a `Record` with its arrival time
(`time.perf_counter`: real time, whatever clock the bot runs on), body and
uploaded files; every INTERACTION_CREATE the fake dispatched as a
`SentInteraction`. `Recorder.results()` turns them into the front benchmark's
figures: INTERACTION_CREATE sent -> callback arrived.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .wire import Files

__all__ = ["Record", "Recorder", "SentInteraction"]

SLOWEST = 10  # interactions `results()` names as the slowest


@dataclass(frozen=True, slots=True)
class SentInteraction:
    """One INTERACTION_CREATE the fake dispatched (the token is a secret: no repr)."""

    id: int
    command: str
    guild_id: int
    channel_id: int
    user_id: int
    shard_id: int
    sent_at: float
    token: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Record:
    """One request the bot made.

    `kind`: gateway_bot, login, application, sync, callback, followup, edit,
    fetch, delete, message, message_edit, unknown. `at` is `time.perf_counter()` on arrival;
    `status` what the fake answered; `body` the JSON (or multipart
    `payload_json`); `files` the uploads as (filename, size).
    """

    kind: str
    at: float
    status: int = 200
    interaction_id: int = 0
    body: Mapping[str, Any] = field(default_factory=dict)
    files: Files = ()
    message_id: int | None = None

    @property
    def callback_type(self) -> int | None:
        """The interaction response type of a callback (4 = message, 5 = deferred)."""
        return self.body.get("type")


class Recorder:
    """The records, the shards identified, and the interactions sent and answered.

    Tests wait on it (`wait_for`, `wait_until`) and read it (`records`,
    `records_of`, `identified`); a benchmark reads `results()` and calls
    `reset()` between measurements.
    """

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.identified: list[tuple[int, int]] = []
        self._sent: dict[int, SentInteraction] = {}  # since the last reset()
        self._by_token: dict[str, SentInteraction] = {}
        self._answered: dict[int, Record] = {}
        # Which client connections carried callbacks: a bot that reuses its HTTP
        # connections needs few; one that opens one per answer pays a TCP handshake.
        self._callback_peers: set[object] = set()
        self._late_ms = 0.0  # the latest send of a burst behind its schedule
        self._changed: asyncio.Event | None = None

    def reset(self) -> None:
        """Start a new measurement: forget the records and what `results()` counts.

        Interactions already sent stay valid, as on Discord: a job of an earlier
        burst still answers through its token.
        """
        self.records.clear()
        self.identified.clear()
        self._sent.clear()
        self._callback_peers.clear()
        self._late_ms = 0.0

    # ----- what tests wait for ---------------------------------------------

    async def wait_for(
        self, kind: str, *, interaction_id: int | None = None, count: int = 1, timeout: float = 10.0
    ) -> list[Record]:
        """The first `count` records of `kind` (for one interaction), waiting up to `timeout`."""

        def wanted(r: Record) -> bool:
            return r.kind == kind and interaction_id in (None, r.interaction_id)

        return await self.wait_until(wanted, count=count, timeout=timeout)

    async def wait_until(
        self, wanted: Callable[[Record], bool], *, count: int = 1, timeout: float = 10.0
    ) -> list[Record]:
        """The first `count` records that satisfy `wanted`, waiting up to `timeout`."""
        await self.until(lambda: sum(map(wanted, self.records)) >= count, timeout)
        return [r for r in self.records if wanted(r)][:count]

    def records_of(self, kind: str, interaction_id: int | None = None) -> list[Record]:
        """The records of `kind` so far (for one interaction)."""
        return [
            r for r in self.records if r.kind == kind and interaction_id in (None, r.interaction_id)
        ]

    async def until(self, done: Callable[[], bool], timeout: float) -> None:
        """Until `done()` holds, checked after each `changed()`; TimeoutError after `timeout`."""
        async with asyncio.timeout(timeout):
            while not done():
                if self._changed is None:
                    self._changed = asyncio.Event()
                await self._changed.wait()

    def changed(self) -> None:
        """Wake whoever waits in `until`: something was recorded or a shard came or went."""
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    # ----- what the fake records -------------------------------------------

    def record(self, kind: str, *, at: float | None = None, **fields: Any) -> Record:
        """Keep one request of the bot; `at` defaults to now."""
        record = Record(kind, time.perf_counter() if at is None else at, **fields)
        self.records.append(record)
        self.changed()
        return record

    def note_sent(self, sent: SentInteraction) -> None:
        """An INTERACTION_CREATE went out: its token is valid from now on."""
        self._sent[sent.id] = sent
        self._by_token[sent.token] = sent

    def sent_with(self, token: str) -> SentInteraction | None:
        """The interaction an interaction token belongs to, if the fake sent it."""
        return self._by_token.get(token)

    def is_answered(self, interaction_id: int) -> bool:
        """Whether the interaction already has an accepted callback."""
        return interaction_id in self._answered

    def note_answered(self, callback: Record, peer: object) -> None:
        """`callback` was accepted; it came over the client connection `peer`."""
        self._answered[callback.interaction_id] = callback
        self._callback_peers.add(peer)

    def note_late(self, late_ms: float) -> None:
        """A burst sent an interaction `late_ms` behind its schedule (negative: early)."""
        self._late_ms = max(self._late_ms, late_ms)

    def results(self) -> dict[str, Any]:
        """What the bot did with the interactions sent since the last `reset()`.

        `latencies_ms`: sorted, from the INTERACTION_CREATE frame sent to the
        first accepted callback arriving, one per answered interaction;
        `callback_types`: {"5": deferred, "4": answered at once};
        `callback_connections`: client connections that carried those callbacks;
        `late_send_ms`: how far behind its schedule a `burst` sent its latest
        interaction (the fake's own hiccups: the ones after it arrive together);
        `cpu_seconds`: CPU time of this process so far (what the fake costs);
        `slowest`: the `SLOWEST` slowest answered interactions, slowest first, as
        [command, ms after the first one was sent, latency ms]: whether a burst's
        tail is one command or one moment.
        """
        latencies = []
        types: dict[str, int] = {}
        timed = []
        first = min((sent.sent_at for sent in self._sent.values()), default=0.0)
        for sent in self._sent.values():
            record = self._answered.get(sent.id)
            if record is not None:
                latency = (record.at - sent.sent_at) * 1000.0
                latencies.append(latency)
                timed.append((latency, sent.command, (sent.sent_at - first) * 1000.0))
                types[str(record.callback_type)] = types.get(str(record.callback_type), 0) + 1
        slowest = sorted(timed, reverse=True)[:SLOWEST]
        return {
            "sent": len(self._sent),
            "answered": len(latencies),
            "latencies_ms": sorted(latencies),
            "callback_types": types,
            "refused_callbacks": sum(1 for r in self.records_of("callback") if r.status >= 400),
            "followups": len(self.records_of("followup")),
            "edits": len(self.records_of("edit")),
            "callback_connections": len(self._callback_peers),
            "late_send_ms": round(self._late_ms, 2),
            "cpu_seconds": time.process_time(),
            "slowest": [[command, round(at, 1), round(ms, 2)] for ms, command, at in slowest],
        }
