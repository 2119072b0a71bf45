"""A pool's figures: jobs done and failed, their latencies, and the service times
its wait estimate is made from."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

__all__ = ["Figures"]

_LATENCIES = 2048  # jobs kept for the percentiles
_SERVICE_TIMES = 64  # jobs kept for the wait estimate


class Figures:
    """What a pool counts of its finished jobs. `service_estimate` is the seconds a
    job is assumed to take until some have finished."""

    def __init__(self, service_estimate: float) -> None:
        self.done = 0
        self.failed = 0
        self._service_estimate = service_estimate
        self._latencies: deque[float] = deque(maxlen=_LATENCIES)
        self._percentiles: list[float] | None = None  # of _latencies, until the next job ends
        self._service: deque[float] = deque(maxlen=_SERVICE_TIMES)

    def count(self, failed: bool, seconds: float, service: float | None) -> None:
        """One job ended: `seconds` since its submit, `service` since its start (None
        when it never started, and then it counts in neither)."""
        if service is not None:
            self._latencies.append(seconds)
            self._service.append(service)
            self._percentiles = None
        if failed:
            self.failed += 1
        else:
            self.done += 1

    def service_time(self) -> float:
        """Seconds a job takes, on recent average."""
        service = self._service
        return sum(service) / len(service) if service else self._service_estimate

    def percentiles_ms(self) -> list[float]:
        """p50, p95, p99 of recent latencies in milliseconds, worked out once per
        finished job, not per call."""
        if self._percentiles is None:
            self._percentiles = _percentiles_ms(self._latencies, (0.50, 0.95, 0.99))
        return self._percentiles


def _percentiles_ms(seconds: deque[float], quantiles: Sequence[float]) -> list[float]:
    """Nearest-rank percentiles in milliseconds (0 when nothing finished yet)."""
    ordered = sorted(seconds)
    if not ordered:
        return [0.0 for _ in quantiles]
    return [ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000 for q in quantiles]
