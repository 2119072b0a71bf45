"""`python -m bench.front --cluster` end to end at a tiny scale.

Only what holds whatever the machine's speed is checked: the JSON line's keys and
types, every interaction answered, the deferred jobs gone over Redis, and a ratio
that is a positive number. Never a latency or the ratio's value: those belong to
the benchmark itself. Slow: it starts Redis, the fakes and a worker process.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import front
from bench.front_cluster import MISSING_REDIS, Size, front_cluster

pytestmark = pytest.mark.slow

TINY = Size(count=100, warmup=20, rounds=1)
NUMBER = (int, float)


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    """The benchmark sets the garbage collector for serving, as `python run.py`
    does; the tests after it in this process get the collector they had."""
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


@pytest.fixture
def redis_installed() -> None:
    if shutil.which("redis-server") is None and not os.environ.get("CI"):
        pytest.skip("redis-server is not installed (apt-get install redis-server)")


async def test_front_cluster_answers_every_interaction_through_redis(
    redis_installed: None,
) -> None:
    line: dict[str, Any] = await front_cluster(TINY)
    json.dumps(line)  # printable as the one JSON line

    assert set(line) == {
        "scenario",
        "interactions",
        "answered",
        "deferred",
        "jobs_over_redis",
        "defer_p50_ms",
        "defer_p99_ms",
        "floor_defer_p99_ms",
        "defer_p99_ratio",
        "peak_rss_mb",
    }
    assert line["scenario"] == "front_cluster"
    assert line["interactions"] == line["answered"] == TINY.count
    # The job commands are deferred and their jobs appended to the pools' streams
    # (a Redis call slower than the gateway's limit would refuse a few: never more).
    assert 0 <= line["jobs_over_redis"] <= line["deferred"] <= TINY.count
    for key in ("defer_p50_ms", "defer_p99_ms", "floor_defer_p99_ms", "peak_rss_mb"):
        assert isinstance(line[key], NUMBER) and line[key] >= 0, key
    assert isinstance(line["defer_p99_ratio"], NUMBER) and line["defer_p99_ratio"] > 0


def test_without_redis_server_it_says_so_and_fails(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nowhere to find redis-server

    with pytest.raises(SystemExit) as exit_:
        front.main(["--cluster", "--quick"])

    assert exit_.value.code == MISSING_REDIS  # printed on stderr, exit status 1
    assert "redis-server" in MISSING_REDIS
