"""Pool status across processes: `PoolSnapshot`s as plain mappings in heartbeats,
and one snapshot per pool for the gateway's views, summed over every live node;
each live node itself as a `NodeSnapshot` (`node_snapshot`).

A worker process puts its pools' snapshots in its heartbeat (`NodeInfo.snapshots`);
the gateway reads every live heartbeat and shows each pool once, as the sum of
its workers wherever they run: `/status`, the panel, `/health` and `/metrics`
then see the whole bot, not only the gateway's own process. Every node holds a
copy of the same keys, paced and disabled as one through Redis: each key is shown
once, in its worst state on any node (a node that has not used a key since another
disabled it still holds it as ready).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from aibot.cluster.heartbeat import NodeInfo
from aibot.snapshots import KeyRingSnapshot, KeySnapshot, NodeSnapshot, PoolSnapshot

__all__ = ["merged_snapshots", "node_snapshot", "snapshot_from_dict", "snapshot_to_dict"]

_STATES = ("running", "paused", "draining", "stopped")  # the first one any node has wins
# A key's state over its copies, the first one any node has winning: busy last, as a
# node whose own calls fill the key says nothing of the others.
_KEY_STATES = ("disabled", "cooling", "ready", "busy")


def snapshot_to_dict(snapshot: PoolSnapshot) -> dict[str, Any]:
    """Plain JSON-ready data (keys are already redacted in a snapshot)."""
    return dataclasses.asdict(snapshot)


def snapshot_from_dict(data: Mapping[str, Any]) -> PoolSnapshot:
    """A snapshot from a heartbeat. Fields this version does not know (a newer
    node's, while a cluster is upgraded one process at a time) are left out."""
    rings = tuple(
        KeyRingSnapshot(
            pool=str(ring["pool"]),
            provider=str(ring["provider"]),
            keys=tuple(KeySnapshot(**_known(KeySnapshot, key)) for key in ring["keys"]),
        )
        for ring in data.get("rings", ())
    )
    return PoolSnapshot(**_known(PoolSnapshot, data, but="rings"), rings=rings)


def _known(cls: type, data: Mapping[str, Any], *, but: str = "") -> dict[str, Any]:
    """The items of `data` that are fields of the dataclass `cls` (but `but`)."""
    names = {field.name for field in dataclasses.fields(cls)} - {but}
    return {name: value for name, value in data.items() if name in names}


def merged_snapshots(nodes: Iterable[NodeInfo]) -> list[PoolSnapshot]:
    """One snapshot per pool over every node that runs it: counts summed,
    percentiles the worst node's, each key once (`_merged_rings`)."""
    by_pool: dict[str, list[PoolSnapshot]] = {}
    for node in nodes:
        for data in node.snapshots:
            snapshot = snapshot_from_dict(data)
            by_pool.setdefault(snapshot.name, []).append(snapshot)
    return [_merge(name, parts) for name, parts in by_pool.items()]


def _merge(name: str, parts: list[PoolSnapshot]) -> PoolSnapshot:
    if len(parts) == 1:
        return parts[0]
    states = {p.state for p in parts}
    return PoolSnapshot(
        name=name,
        state=next((s for s in _STATES if s in states), parts[0].state),
        workers_busy=sum(p.workers_busy for p in parts),
        workers_total=sum(p.workers_total for p in parts),
        queued=sum(p.queued for p in parts),
        queue_size=sum(p.queue_size for p in parts),
        done=sum(p.done for p in parts),
        failed=sum(p.failed for p in parts),
        p50_ms=max(p.p50_ms for p in parts),
        p95_ms=max(p.p95_ms for p in parts),
        p99_ms=max(p.p99_ms for p in parts),
        rings=_merged_rings(ring for p in parts for ring in p.rings),
    )


def _merged_rings(rings: Iterable[KeyRingSnapshot]) -> tuple[KeyRingSnapshot, ...]:
    """One ring per pool and provider, each key in it once, over every node's copy."""
    by_ring: dict[tuple[str, str], dict[str, list[KeySnapshot]]] = {}
    for ring in rings:
        keys = by_ring.setdefault((ring.pool, ring.provider), {})
        for key in ring.keys:
            keys.setdefault(key.fingerprint or key.key_id, []).append(key)
    return tuple(
        KeyRingSnapshot(pool, provider, tuple(_merged_key(copies) for copies in keys.values()))
        for (pool, provider), keys in by_ring.items()
    )


def _merged_key(copies: list[KeySnapshot]) -> KeySnapshot:
    """A key as the whole bot has it: its worst state (`_KEY_STATES`), the calls of
    every node summed, a call ready when one could start on some node."""
    worst = min(copies, key=lambda k: _KEY_STATES.index(k.state) if k.state in _KEY_STATES else 0)
    off = worst.state in ("disabled", "cooling")
    return dataclasses.replace(
        worst,
        inflight=sum(k.inflight for k in copies),
        calls=sum(k.calls for k in copies),
        rate_limited=sum(k.rate_limited for k in copies),
        failures=sum(k.failures for k in copies),
        cooling_for=max(k.cooling_for for k in copies),
        budget_left=0.0 if off else max(k.budget_left for k in copies),
        budget_limit=max(k.budget_limit for k in copies),
    )


def node_snapshot(info: NodeInfo, *, here: str = "") -> NodeSnapshot:
    """A heartbeat as the status views show it; `here` names the reading process."""
    return NodeSnapshot(
        name=info.node,
        pools=info.pools,
        free_slots=dict(info.free_slots),
        shards=info.shards,
        version=info.version,
        started_at=info.started_at,
        here=info.node == here,
    )
