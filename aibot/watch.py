"""Where the engine's own observation points raise operators' alerts (`aibot.alerts`).

Nothing here changes what the engine does; each watcher listens where the
engine already reports, and the composition root (`aibot.app`) puts it there:

- `watch_rings`: each key ring's on-disable callback: a key disabled, and the
  pool left with no usable key;
- `ProviderWatch`: every job's outcome, as the worker writes it to the `Ledger`
  port (`WatchedLedger`) or, in cluster mode, as the gateway reads the workers'
  rows (`aibot.cluster.outcomes.OutcomeFollower`): a provider whose jobs keep
  failing for more than a minute;
- `WatchedGate`: the `Gate` port the intake takes every job through: a daily
  budget (the pool's, or a server's) 90% spent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from aibot.alerts import Alert, Alerts
from aibot.jobs import Job
from aibot.leases import Ring
from aibot.ports import Gate, Ledger

__all__ = [
    "BUDGET_SHARE",
    "FAILING_AFTER",
    "BudgetCounts",
    "ProviderWatch",
    "WatchedGate",
    "WatchedLedger",
    "watch_rings",
]

# Seconds a provider keeps failing, with no success in between, before an alert.
FAILING_AFTER = 60.0
# The share of a daily budget spent at which the operators are told.
BUDGET_SHARE = 0.9
# Outcomes that say the provider is in trouble (not the member, not our keys' limits).
_PROVIDER_TROUBLE = frozenset({"unavailable", "incomplete", "bad_answer", "misconfigured"})


class _Pool(Protocol):
    name: str
    rings: tuple[Ring, ...]


def watch_rings(pools: Iterable[_Pool], alerts: Alerts) -> None:
    """Alert when a key of these pools is disabled, and when that leaves its pool
    with no usable key at all."""
    for pool in pools:
        rings = pool.rings

        def disabled(ring: Ring, key_id: str, reason: str, rings: Any = rings) -> None:
            detail = {"provider": ring.provider, "key_id": key_id, "reason": reason}
            alerts.alert(Alert("key_disabled", ring.pool, detail=detail))
            if all(other.all_down for other in rings):
                alerts.alert(Alert("no_keys", ring.pool))

        for ring in rings:
            ring.on_disable = disabled


class ProviderWatch:
    """Watches each provider's outcomes per pool: failures with no success for
    `after` seconds raise `provider_failing` (again at each later failure: the
    alerts fold them)."""

    def __init__(
        self, alerts: Alerts, clock: Callable[[], float], *, after: float = FAILING_AFTER
    ) -> None:
        self._alerts = alerts
        self._clock = clock
        self._after = after
        self._failing_since: dict[tuple[str, str], tuple[float, int]] = {}

    def seen(self, pool: str, provider: str, outcome: str) -> None:
        """One job of `pool` ended with `outcome` at `provider`."""
        key = (pool, provider)
        if outcome == "ok":
            self._failing_since.pop(key, None)
            return
        if outcome not in _PROVIDER_TROUBLE or provider in ("", "-"):
            return
        now = self._clock()
        since, failures = self._failing_since.get(key, (now, 0))
        self._failing_since[key] = (since, failures + 1)
        if now - since >= self._after:
            detail = {
                "provider": provider,
                "seconds": f"{now - since:.0f}",
                "failures": str(failures + 1),
                "reason": outcome,
            }
            self._alerts.alert(Alert("provider_failing", pool, detail=detail))


class WatchedLedger:
    """A `Ledger` that also tells `watch` every outcome."""

    def __init__(self, ledger: Ledger, watch: ProviderWatch) -> None:
        self._ledger = ledger
        self._watch = watch

    def record(self, job: Job, *, provider: str, outcome: str, **usage: Any) -> object:
        self._watch.seen(job.pool or "", provider, outcome)
        return self._ledger.record(job, provider=provider, outcome=outcome, **usage)


class BudgetCounts(Protocol):
    """What the watcher reads of the gate: today's count against a daily budget."""

    def spent(self, pool: str, guild_id: int | None = None) -> tuple[int, int]: ...


class WatchedGate:
    """A `Gate` that tells the operators, once a day each, when a pool's daily
    budget, or a server's, is `BUDGET_SHARE` spent. It reads the counts the gate
    keeps anyway: a couple of dictionary lookups per job."""

    def __init__(
        self,
        gate: Gate,
        counts: BudgetCounts,
        alerts: Alerts,
        *,
        day: Callable[[], str],
        pool_of: Callable[[Job], str],
    ) -> None:
        self._gate = gate
        self._counts = counts
        self._alerts = alerts
        self._day = day
        self._pool_of = pool_of
        self._told: set[tuple[str, str, int | None]] = set()

    async def take(self, job: Job) -> None:
        await self._gate.take(job)
        pool = self._pool_of(job)
        everywhere = self._check(pool, None, 0)
        if job.guild_id:
            # A server's budget is worth its own alert only when it is its own.
            self._check(pool, job.guild_id, everywhere)

    async def refund(self, job: Job) -> bool:
        return await self._gate.refund(job)

    async def undo(self, job: Job) -> bool:
        return await self._gate.undo(job)

    def _check(self, pool: str, guild_id: int | None, same_as: int) -> int:
        """Alert when this budget (unless it is `same_as`) is spent enough; its size."""
        used, budget = self._counts.spent(pool, guild_id)
        if not budget or budget == same_as or used < BUDGET_SHARE * budget:
            return budget
        day = self._day()
        told = (day, pool, guild_id)
        if told in self._told:
            return budget
        self._told = {t for t in self._told if t[0] == day} | {told}
        detail = {"used": str(used), "budget": str(budget)}
        self._alerts.alert(Alert("budget", pool, guild_id=guild_id, detail=detail))
        return budget
