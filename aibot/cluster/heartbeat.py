"""Heartbeats: every process of the bot says it is alive, and what it runs.

Each process writes `{prefix}:node:{name}` (its `NodeInfo` as JSON) with an
expiry of `ttl` seconds, renewed every `interval`, and keeps its name in the
set `{prefix}:nodes`. A process that dies stops renewing and its key expires
on Redis's own clock; readers drop the names whose key is gone. A clean stop
deletes the key at once. `live_nodes` reads every live process in one round
trip (no `SCAN` over a keyspace full of delivery claims), and `pool_served`
answers "does any live process run this pool?" (a pool nobody serves is down:
its jobs overflow to the admin pool or are refused with words).

The heartbeat is also the clock other leases ride on: `on_beat` callables run
after each beat (the gateway's shard claims renew there). A beat that fails
because Redis is away is logged once and retried at the next interval; the
heartbeat resumes by itself when Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from aibot.cluster.tasks import stop_tasks

__all__ = ["VERSION", "Heartbeat", "NodeInfo", "live_nodes", "pool_served"]

log = logging.getLogger(__name__)

VERSION = "0.1.0"  # the aibot version heartbeats show (pyproject's)

# The values of every live name in {prefix}:nodes; forgets the names whose key
# expired. KEYS: the set of names. ARGV: the node key prefix.
_LIVE = """
local out = {}
for _, name in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local info = redis.call('GET', ARGV[1] .. name)
  if info then out[#out + 1] = info else redis.call('SREM', KEYS[1], name) end
end
return out
"""


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What one process runs: its name, its pools and their free worker slots,
    the aibot version, the gateway shards it holds (none for a pure worker) and
    when it started (unix seconds), and its pools' status (`PoolSnapshot`s as
    plain mappings, `aibot.cluster.views`) for the gateway's status views."""

    node: str
    pools: tuple[str, ...] = ()
    free_slots: Mapping[str, int] = field(default_factory=dict)
    version: str = ""
    shards: tuple[int, ...] = ()
    started_at: float = 0.0
    snapshots: tuple[Mapping[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "pools": list(self.pools),
            "free_slots": dict(self.free_slots),
            "version": self.version,
            "shards": list(self.shards),
            "started_at": self.started_at,
            "snapshots": list(self.snapshots),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NodeInfo:
        return cls(
            node=str(data["node"]),
            pools=tuple(data.get("pools", ())),
            free_slots={str(k): int(v) for k, v in data.get("free_slots", {}).items()},
            version=str(data.get("version", "")),
            shards=tuple(int(s) for s in data.get("shards", ())),
            started_at=float(data.get("started_at", 0.0)),
            snapshots=tuple(data.get("snapshots", ())),
        )


def _keys(prefix: str) -> tuple[str, str]:
    """The set of names and the prefix of node keys."""
    return f"{prefix}:nodes", f"{prefix}:node:"


class Heartbeat:
    """Keeps one process's `NodeInfo` alive in Redis while it runs.

    `info` is called at every beat, so free slots and shards are current.
    Use `async with heartbeat:` (or `start()` / `stop()`); `start` writes the
    first beat before it returns and raises if Redis cannot be reached.
    """

    def __init__(
        self,
        redis: Redis,
        info: Callable[[], NodeInfo],
        *,
        prefix: str = "aibot",
        interval: float = 1.0,
        ttl: float = 5.0,
        on_beat: Sequence[Callable[[], Awaitable[object]]] = (),
    ) -> None:
        if ttl <= interval:
            raise ValueError(f"heartbeat ttl ({ttl} s) must exceed its interval ({interval} s)")
        self.redis = redis
        self.info = info
        self.prefix = prefix
        self.interval = interval
        self.ttl = ttl
        self.on_beat = tuple(on_beat)
        self._names, self._node_prefix = _keys(prefix)
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        # Tells this process's beats from those of another given the same name.
        self._instance = uuid.uuid4().hex
        self._beaten = False
        self._told_twice_named = False

    async def beat(self) -> None:
        """Write this process's info once, with its expiry, then run `on_beat`."""
        info = self.info()
        beat = {**info.to_dict(), "instance": self._instance}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self._node_prefix + info.node, json.dumps(beat), px=self._ttl_ms, get=True)
            pipe.sadd(self._names, info.node)
            before, _ = await pipe.execute()
        self._check_name(info.node, before)
        for renew in self.on_beat:
            await renew()

    def _check_name(self, node: str, before: str | None) -> None:
        """Says so (once) when another live process beats under this one's name: its
        beat replaced ours since our last. (At the first beat, the beat there may be
        this process's own before a restart.)"""
        other = _instance_of(before)
        twice_named = self._beaten and other is not None and other != self._instance
        self._beaten = True
        if twice_named and not self._told_twice_named:
            self._told_twice_named = True
            log.error(
                "another live process is also named %s (AIBOT_NODE): give each process "
                "a name of its own; until then the two share one heartbeat, and the "
                "gateway sees one of them at a time",
                node,
            )

    @property
    def _ttl_ms(self) -> int:
        return int(self.ttl * 1000)

    async def start(self) -> None:
        await self.beat()
        self._task = asyncio.create_task(self._beat_forever(), name="aibot-heartbeat")

    async def stop(self) -> None:
        """Stop beating and remove this process's key, so readers see it gone at once."""
        if self._task is not None:
            await stop_tasks([self._task])
            self._task = None
        node = self.info().node
        with contextlib.suppress(RedisError):
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(self._node_prefix + node)
                pipe.srem(self._names, node)
                await pipe.execute()

    async def __aenter__(self) -> Heartbeat:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.beat()
            except Exception as error:  # Redis away, or an on_beat hook failing: beat on
                if not self._failing:
                    log.warning("heartbeat failed, retrying every %.1f s: %r", self.interval, error)
                self._failing = True
                continue
            if self._failing:
                log.info("heartbeat back")
            self._failing = False


def _instance_of(beat: str | None) -> str | None:
    if beat is None:
        return None
    try:
        instance = json.loads(beat).get("instance")
    except (ValueError, AttributeError):
        return None
    return instance if isinstance(instance, str) else None


async def live_nodes(redis: Redis, *, prefix: str = "aibot") -> list[NodeInfo]:
    """Every process whose heartbeat has not expired, by name."""
    names, node_prefix = _keys(prefix)
    values = await redis.register_script(_LIVE)(keys=[names], args=[node_prefix])
    nodes = [NodeInfo.from_dict(json.loads(value)) for value in values]
    return sorted(nodes, key=lambda n: n.node)


async def pool_served(redis: Redis, pool: str, *, prefix: str = "aibot") -> bool:
    """Whether some live process runs `pool`."""
    return any(pool in node.pools for node in await live_nodes(redis, prefix=prefix))
