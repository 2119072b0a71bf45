"""Pool status across processes: `PoolSnapshot`s as plain mappings in heartbeats,
and one snapshot per pool for the gateway's views, summed over every live node;
each live node itself as a `NodeSnapshot` (`node_snapshot`).

A worker process puts its pools' snapshots in its heartbeat (`NodeInfo.snapshots`);
the gateway reads every live heartbeat and shows each pool once, as the sum of
its workers wherever they run: `/status`, the panel, `/health` and `/metrics`
then see the whole bot, not only the gateway's own process.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from aibot.cluster.heartbeat import NodeInfo
from aibot.snapshots import KeyRingSnapshot, KeySnapshot, NodeSnapshot, PoolSnapshot

__all__ = ["merged_snapshots", "node_snapshot", "snapshot_from_dict", "snapshot_to_dict"]

_STATES = ("running", "paused", "draining", "stopped")  # the first one any node has wins


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
    percentiles the worst node's, key rings listed per node."""
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
        rings=tuple(ring for p in parts for ring in p.rings),
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
