"""Read-only, plain-data views of the engine for the status panel, `/health`,
`/metrics` and the `/status` command. Built on demand; never hold a key."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["KeyRingSnapshot", "KeySnapshot", "PoolSnapshot"]


@dataclass(slots=True, frozen=True)
class KeySnapshot:
    """One key: `key_id` is the redacted form (`sk-...abcd`); `state` is one of
    ready, busy, cooling, disabled; `reason` says why it is cooling or disabled."""

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
