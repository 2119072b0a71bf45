"""`/health` and `/metrics` over HTTP, for monitors and Prometheus.

Both read the same `StatusSource` as the console panel, at request time, on
the event loop. `/health` answers 200 when the gateway is up and every pool
that runs here has a usable key, 503 otherwise, with the reasons listed. In
cluster mode both list every live process (node) with its pools and free
slots; a worker-only process (no gateway) serves them too, for its own pools,
with Redis's reachability (`probe`, awaited before each answer) instead of the
gateway's state.
`/metrics` is the Prometheus text format from a `CollectorRegistry` of the
app's own (tests build many worlds in one process, so never the global one):
a collector turns snapshots into metric families at scrape time, and a
latency histogram is fed by the worker after every job (`Metrics.observe`), and a
counter by the replies for each answer no way to Discord delivered
(`Metrics.delivery_failed`).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from aibot.catalogue import POOLS
from aibot.snapshots import BotInfo, NodeSnapshot, PoolSnapshot, StatusSource

if TYPE_CHECKING:
    from aibot.jobs import AibotError, Job

__all__ = [
    "CannotListen",
    "Check",
    "HttpServer",
    "Metrics",
    "Probe",
    "build_app",
    "health",
    "start_http",
]

KEY_STATES = ("ready", "busy", "cooling", "disabled")
POOL_STATES = ("running", "paused", "draining", "stopped")
# From a quick chat answer to a long video render, in seconds.
# A further health check: the problem it finds, in words, or None.
Check = Callable[[], "str | None"]
# Brings a source's readings up to date before an answer (a worker's Redis PING).
Probe = Callable[[], Awaitable[object]]
LATENCY_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1200)


class CannotListen(OSError):
    """`AIBOT_HTTP`'s address cannot be listened on: taken (most often by another
    aibot on this machine), not one of this machine's, or not this user's to use.
    A setting to change, not a network problem to wait out."""


def health(source: StatusSource, checks: Sequence[Check] = ()) -> tuple[int, dict[str, Any]]:
    """The `/health` answer: (HTTP status, JSON body). 503 when the gateway is
    down, a pool that runs here has no usable key, or a check names a problem
    (cluster mode: Redis unreachable); `problems` says which."""
    info = source.bot_info()
    pools = source.pools()
    problems = [] if info.gateway_up or not info.gateway else ["gateway down"]
    problems += [] if info.redis_up is not False else ["redis unreachable"]
    problems += [problem for check in checks if (problem := check()) is not None]
    problems += [f"pool {p.name}: no usable key" for p in pools if p.keys_healthy == 0]
    body: dict[str, Any] = {
        "status": "degraded" if problems else "ok",
        "problems": problems,
        "name": info.name,
        "pid": os.getpid(),
        "mode": info.mode,
        "uptime_s": round(info.uptime_s, 1),
        "gateway": _gateway(info.gateway, info.gateway_up),
        "guilds": info.guilds,
        "shards": [{"id": sid, "latency_ms": ms} for sid, ms in info.shards],
        "pools": {pool.name: _pool_health(pool) for pool in pools},
    }
    if info.redis_up is not None:
        body["redis"] = "reachable" if info.redis_up else "unreachable"
    nodes = source.nodes()
    if nodes:
        body["nodes"] = [_node_health(node) for node in nodes]
    return (503 if problems else 200), body


def _gateway(held: bool, up: bool) -> str:
    if not held:
        return "none"  # a worker-only process
    return "up" if up else "down"


def _node_health(node: NodeSnapshot) -> dict[str, Any]:
    return {
        "node": node.name,
        "here": node.here,
        "pools": list(node.pools),
        "free_slots": dict(node.free_slots),
        "shards": list(node.shards),
        "version": node.version,
        "age_s": round(node.age(), 1),
    }


def _pool_health(pool: PoolSnapshot) -> dict[str, Any]:
    return {
        "state": pool.state,
        "queued": pool.queued,
        "queue_size": pool.queue_size,
        "workers_busy": pool.workers_busy,
        "workers_total": pool.workers_total,
        "done": pool.done,
        "failed": pool.failed,
        "p50_ms": round(pool.p50_ms, 1),
        "p95_ms": round(pool.p95_ms, 1),
        "keys_healthy": pool.keys_healthy,
        "keys_total": pool.keys_total,
        "rings": {ring.provider: [ring.healthy, ring.total] for ring in pool.rings},
    }


class _SnapshotCollector(Collector):
    """Reads the source at scrape time: nothing is copied between scrapes."""

    def __init__(self, source: StatusSource) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        info = self.source.bot_info()
        if info.gateway:
            yield from _gateway_metrics(info)
        yield _gauge("aibot_uptime_seconds", "Seconds since start.", [], [([], info.uptime_s)])
        if info.redis_up is not None:
            yield _gauge("aibot_redis_up", "1 when Redis answers.", [], [([], info.redis_up)])
        yield from _pool_metrics(self.source.pools())
        nodes = self.source.nodes()
        if nodes:
            yield from _node_metrics(nodes)


def _gateway_metrics(info: BotInfo) -> Iterator[Metric]:
    yield _gauge(
        "aibot_gateway_up", "1 when the gateway is connected.", [], [([], info.gateway_up)]
    )
    yield _gauge("aibot_guilds", "Guilds the bot is in.", [], [([], info.guilds)])
    yield _gauge(
        "aibot_shard_latency_seconds",
        "Gateway heartbeat latency per connected shard.",
        ["shard"],
        [([str(sid)], ms / 1000) for sid, ms in info.shards if ms is not None],
    )


def _node_metrics(nodes: list[NodeSnapshot]) -> Iterator[Metric]:
    """Every live process (cluster mode): one series per node, per pool it runs."""
    yield _gauge(
        "aibot_node_up",
        "1 for each live process of the bot (its heartbeat has not expired).",
        ["node", "version"],
        [([n.name, n.version], 1) for n in nodes],
    )
    yield _gauge(
        "aibot_node_free_slots",
        "Jobs a live process could start at once, per pool it runs.",
        ["node", "pool"],
        [([n.name, pool], n.free_slots.get(pool, 0)) for n in nodes for pool in n.pools],
    )
    yield _gauge(
        "aibot_node_shards",
        "Gateway shards a live process holds.",
        ["node"],
        [([n.name], len(n.shards)) for n in nodes],
    )


def _pool_metrics(pools: list[PoolSnapshot]) -> Iterator[Metric]:
    def per_pool(name: str, doc: str, value: Any, kind: type = GaugeMetricFamily) -> Metric:
        family = kind(name, doc, labels=["pool"])
        for pool in pools:
            family.add_metric([pool.name], value(pool))
        return family

    yield per_pool("aibot_requests_done", "Jobs finished.", lambda p: p.done, CounterMetricFamily)
    yield per_pool("aibot_requests_failed", "Jobs failed.", lambda p: p.failed, CounterMetricFamily)
    yield per_pool("aibot_queue_depth", "Jobs waiting in the queue.", lambda p: p.queued)
    yield per_pool("aibot_queue_size", "Queue capacity.", lambda p: p.queue_size)
    yield per_pool("aibot_workers_busy", "Workers running a job.", lambda p: p.workers_busy)
    yield per_pool("aibot_workers_total", "Worker limit.", lambda p: p.workers_total)
    yield _gauge(
        "aibot_pool_state",
        "1 for the state each pool is in.",
        ["pool", "state"],
        [([p.name, s], p.state == s) for p in pools for s in POOL_STATES],
    )
    yield _gauge(
        "aibot_request_latency_seconds",
        "Latency quantiles over each pool's recent jobs.",
        ["pool", "quantile"],
        [
            ([p.name, q], ms / 1000)
            for p in pools
            for q, ms in (("0.5", p.p50_ms), ("0.95", p.p95_ms), ("0.99", p.p99_ms))
        ],
    )
    yield from _key_metrics(pools)


def _key_metrics(pools: list[PoolSnapshot]) -> Iterator[Metric]:
    rings = [ring for pool in pools for ring in pool.rings]
    labels = ["pool", "provider"]
    yield _gauge(
        "aibot_keys",
        "Keys per state, per pool and provider.",
        [*labels, "state"],
        [
            ([r.pool, r.provider, s], sum(k.state == s for k in r.keys))
            for r in rings
            for s in KEY_STATES
        ],
    )
    yield _gauge(
        "aibot_key_budget_left",
        "Calls the keys could start right now.",
        labels,
        [([r.pool, r.provider], sum(k.budget_left for k in r.keys)) for r in rings],
    )
    yield _gauge(
        "aibot_key_budget_limit",
        "Calls the keys can start at once (their burst).",
        labels,
        [([r.pool, r.provider], sum(k.budget_limit for k in r.keys)) for r in rings],
    )
    calls = CounterMetricFamily("aibot_key_calls", "Calls made with the keys.", labels=labels)
    limited = CounterMetricFamily(
        "aibot_key_rate_limited", "429 answers to the keys.", labels=labels
    )
    for r in rings:
        calls.add_metric([r.pool, r.provider], sum(k.calls for k in r.keys))
        limited.add_metric([r.pool, r.provider], sum(k.rate_limited for k in r.keys))
    yield calls
    yield limited


def _gauge(
    name: str, doc: str, labels: list[str], samples: list[tuple[list[str], float]]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for values, value in samples:
        family.add_metric(values, float(value))
    return family


class Metrics:
    """One world's Prometheus registry: the snapshot collector, a latency histogram
    per pool and outcome, fed by `observe` after every job, and the answers lost
    per pool, counted by `delivery_failed`."""

    def __init__(self, source: StatusSource) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_SnapshotCollector(source))
        self.latency = Histogram(
            "aibot_job_seconds",
            "Seconds from a job's start to its end, per pool and outcome.",
            ["pool", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.deliveries_failed = Counter(
            "aibot_deliveries_failed",
            "Answers (or failure notices) that no way to Discord delivered, per pool.",
            ["pool"],
            registry=self.registry,
        )
        for pool in POOLS:  # a series from the start, so a rate over it is never empty
            self.deliveries_failed.labels(pool)

    def observe(self, job: Job, error: AibotError | None, seconds: float) -> None:
        """A finished job: its seconds into the histogram of its pool and outcome."""
        outcome = "ok" if error is None else error.kind
        self.latency.labels(job.pool, outcome).observe(max(seconds, 0.0))

    def delivery_failed(self, job: Job) -> None:
        """A job whose answer reached nobody: one more in its pool's count."""
        self.deliveries_failed.labels(job.pool).inc()

    def text(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)


_SOURCE = web.AppKey("source", StatusSource)
_METRICS = web.AppKey("metrics", Metrics)
_CHECKS = web.AppKey("checks", Sequence)
_PROBE = web.AppKey("probe", object)


def build_app(
    source: StatusSource,
    metrics: Metrics | None = None,
    checks: Sequence[Check] = (),
    probe: Probe | None = None,
) -> web.Application:
    """The web app with `/health` and `/metrics`; `probe`, when given, is awaited
    before each answer."""
    app = web.Application()
    app[_SOURCE] = source
    app[_METRICS] = metrics if metrics is not None else Metrics(source)
    app[_CHECKS] = checks
    app[_PROBE] = probe
    app.router.add_get("/health", _health)
    app.router.add_get("/metrics", _metrics)
    return app


async def _probed(app: web.Application) -> None:
    probe = app[_PROBE]
    if probe is not None:
        await probe()  # type: ignore[operator]


async def _health(request: web.Request) -> web.Response:
    await _probed(request.app)
    status, body = health(request.app[_SOURCE], request.app[_CHECKS])
    return web.json_response(body, status=status)


async def _metrics(request: web.Request) -> web.Response:
    await _probed(request.app)
    body = request.app[_METRICS].text()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@dataclass(slots=True)
class HttpServer:
    """A running server; `port` is the bound one (useful with port 0)."""

    runner: web.AppRunner
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_http(
    source: StatusSource,
    host: str,
    port: int,
    *,
    metrics: Metrics | None = None,
    checks: Sequence[Check] = (),
    probe: Probe | None = None,
) -> HttpServer:
    """Serve `/health` and `/metrics` on host:port (port 0: any free port);
    `checks` are further reasons for `/health` to answer 503; `probe` is awaited
    before each answer."""
    # No access log: a scrape every few seconds would drown the useful lines.
    runner = web.AppRunner(build_app(source, metrics, checks, probe), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as error:
        await runner.cleanup()
        if error.errno == errno.EADDRINUSE:
            why = "is in use: is aibot already running here? Stop it, or give this one"
        else:
            why = f"cannot be listened on ({error.strerror or error}): give it"
        raise CannotListen(
            error.errno,
            f"AIBOT_HTTP {host}:{port} {why} another address of this machine (or AIBOT_HTTP=off)",
        ) from None
    bound = runner.addresses[0][1] if runner.addresses else port
    return HttpServer(runner, host, bound)
