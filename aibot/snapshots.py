"""Read-only, plain-data views of the bot for the status panel, `/health`,
`/metrics` and the `/status` command (`PoolSnapshot`, `BotInfo`, `NodeSnapshot`,
`Event`), and the `StatusSource` they are read from. Built on demand; never hold
a key."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

__all__ = [
    "BotInfo",
    "Connecting",
    "Event",
    "KeyRingSnapshot",
    "KeySnapshot",
    "NodeSnapshot",
    "PoolSnapshot",
    "SourceFunctions",
    "StatusSource",
]


@dataclass(slots=True, frozen=True)
class KeySnapshot:
    """One key: `key_id` is the redacted form (`sk-...abcd`); `state` is one of
    ready, busy, cooling, disabled; `reason` says why it is cooling or disabled;
    `fingerprint` tells two keys of the same redacted form apart (a hash, never shown)."""

    key_id: str
    state: str
    inflight: int
    calls: int
    rate_limited: int
    failures: int
    cooling_for: float = 0.0
    reason: str = ""
    budget_left: float = 0.0
    budget_limit: float = 0.0
    fingerprint: str = ""


@dataclass(slots=True, frozen=True)
class KeyRingSnapshot:
    pool: str
    provider: str
    keys: tuple[KeySnapshot, ...]

    @property
    def healthy(self) -> int:
        return sum(1 for key in self.keys if key.state != "disabled")

    @property
    def total(self) -> int:
        return len(self.keys)


@dataclass(slots=True, frozen=True)
class PoolSnapshot:
    """One pool: `state` is running, paused, draining or stopped."""

    name: str
    state: str
    workers_busy: int
    workers_total: int
    queued: int
    queue_size: int
    done: int
    failed: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    rings: tuple[KeyRingSnapshot, ...] = field(default_factory=tuple)

    @property
    def keys_healthy(self) -> int:
        return sum(ring.healthy for ring in self.rings)

    @property
    def keys_total(self) -> int:
        return sum(ring.total for ring in self.rings)

    @property
    def budget_left(self) -> float:
        return sum(key.budget_left for ring in self.rings for key in ring.keys)

    @property
    def budget_limit(self) -> float:
        return sum(key.budget_limit for ring in self.rings for key in ring.keys)


@dataclass(slots=True, frozen=True)
class BotInfo:
    """The bot as a whole. `shards` holds (shard id, latency in ms or None while
    the shard is not connected); `mode` says which pools run here;
    `connecting_s` is set only before the bot was first ready."""

    name: str
    guilds: int
    shards: tuple[tuple[int, float | None], ...]
    uptime_s: float
    gateway_up: bool
    mode: str = "all pools"
    # Seconds spent connecting so far, from the start until the first READY
    # (the panel says "connecting… 12s"); None once connected.
    connecting_s: float | None = None
    # False for a worker-only process (cluster mode, AIBOT_GATEWAY=off): it has no
    # gateway to be down. `redis_up`: None where there is no Redis (embedded mode).
    gateway: bool = True
    redis_up: bool | None = None


@dataclass(slots=True, frozen=True)
class NodeSnapshot:
    """One live process of the bot, as its heartbeat shows it (cluster mode):
    `pools` it runs and their `free_slots`, the gateway `shards` it holds (none
    for a worker), the aibot `version`, when it started (`started_at`, unix
    seconds), and whether it is the process that reads it (`here`)."""

    name: str
    pools: tuple[str, ...] = ()
    free_slots: Mapping[str, int] = field(default_factory=dict)
    shards: tuple[int, ...] = ()
    version: str = ""
    started_at: float = 0.0
    here: bool = False

    def age(self, now: float | None = None) -> float:
        """Seconds since it started (`now`: unix seconds, default the present)."""
        return max(0.0, (time.time() if now is None else now) - self.started_at)


@dataclass(slots=True, frozen=True)
class Event:
    """Something an operator should see: `time` is unix seconds, `level` a
    logging level name, `pool` the pool concerned ("" for the bot)."""

    time: float
    level: str
    pool: str
    text: str


class StatusSource(Protocol):
    """Where the panel, `/health` and `/metrics` read from. Each call returns a
    fresh plain-data snapshot; none may block or hold a key."""

    def bot_info(self) -> BotInfo: ...

    def pools(self) -> list[PoolSnapshot]: ...

    def events(self) -> list[Event]: ...

    def nodes(self) -> list[NodeSnapshot]:
        """Every live process of the bot in cluster mode; none in embedded mode
        (the whole bot is this process)."""


@dataclass(slots=True)
class SourceFunctions:
    """A `StatusSource` made of callables, for the composition root:
    `SourceFunctions(bot_info=..., pools=lambda: [p.snapshot() for p in ...],
    events=event_log.events, nodes=queue.nodes)`."""

    bot_info: Callable[[], BotInfo]
    pools: Callable[[], list[PoolSnapshot]]
    events: Callable[[], list[Event]] = list
    nodes: Callable[[], list[NodeSnapshot]] = list


@dataclass(slots=True)
class Connecting:
    """A `StatusSource` over the bot's own that counts the seconds from its
    creation until `connected` is set (the first READY): while the bot logs in
    and opens its shards, the panel says "connecting… 12s" instead of
    "gateway DOWN · up 0s". The command line (`aibot.cli.serve`) wraps the
    bot's source in one."""

    source: StatusSource
    clock: Callable[[], float] = time.monotonic
    connected: bool = False
    since: float = field(init=False)

    def __post_init__(self) -> None:
        self.since = self.clock()

    def bot_info(self) -> BotInfo:
        info = self.source.bot_info()
        if self.connected or info.gateway_up or info.connecting_s is not None:
            return info
        return replace(info, connecting_s=self.clock() - self.since)

    def pools(self) -> list[PoolSnapshot]:
        return self.source.pools()

    def events(self) -> list[Event]:
        return self.source.events()

    def nodes(self) -> list[NodeSnapshot]:
        return self.source.nodes()
