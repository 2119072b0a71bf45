"""The engine benchmark's scenarios run end to end at a tiny scale.

Only what holds whatever the machine's speed is checked: the one JSON line each
scenario prints, its keys and their types, and counts that are exact by construction
(the scale's settings echoed back, every chat job answered, no 429 from the fake for
aibot's paced keys). Never a ratio or a latency: at this scale they swing with the
machine's noise, and the figures themselves belong to `python -m bench.engine`.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from bench.engine import Scale, run

# The quickest settings that still run every part of each scenario.
TINY = Scale(
    budget_keys=2,
    budget_rpm=600.0,
    budget_warmup=0.5,
    budget_window=1.0,
    chat_rate=20.0,
    isolation_seconds=0.6,
    isolation_round=0.3,
    image_delay=0.2,
    video_poll=0.1,
    overhead_jobs=60,
    overhead_rounds=2,
    overhead_concurrency=4,
)

NUMBER = (int, float)


async def printed_line(name: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """Runs one scenario as `python -m bench.engine --scenario NAME` would; the one
    line it printed on stdout, parsed."""
    await run(TINY, [name])
    [line] = capsys.readouterr().out.splitlines()
    parsed = json.loads(line)
    assert isinstance(parsed, dict) and parsed["scenario"] == name
    return parsed


def assert_types(line: dict[str, Any], types: dict[str, type | tuple[type, ...]]) -> None:
    """`line` has exactly these keys, each of its type (a bool is no number)."""
    assert set(line) == {"scenario", *types}
    for key, kind in types.items():
        assert isinstance(line[key], kind) and not isinstance(line[key], bool), key


async def test_budget_prints_both_designs_and_aibot_causes_no_429(
    capsys: pytest.CaptureFixture[str],
) -> None:
    line = await printed_line("budget", capsys)

    assert_types(
        line,
        {
            "achieved_ratio": NUMBER,
            "rate_limited": int,
            "baseline_achieved_ratio": NUMBER,
            "baseline_rate_limited": int,
            "keys": int,
            "rpm_per_key": NUMBER,
            "window_s": NUMBER,
        },
    )
    assert line["achieved_ratio"] >= 0 and line["baseline_achieved_ratio"] >= 0
    assert line["baseline_rate_limited"] >= 0
    # The ring paces every key below the fake's bucket: never a 429.
    assert line["rate_limited"] == 0
    assert (line["keys"], line["rpm_per_key"], line["window_s"]) == (2, 600.0, 1.0)


async def test_isolation_prints_chat_p99_alone_and_loaded(
    capsys: pytest.CaptureFixture[str],
) -> None:
    line = await printed_line("isolation", capsys)

    assert_types(
        line,
        {
            "p99_ratio": NUMBER,
            "chat_p99_ms_alone": NUMBER,
            "chat_p99_ms_loaded": NUMBER,
            "chat_jobs": int,
            "chat_failed": int,
            "chat_rate": NUMBER,
        },
    )
    assert line["chat_p99_ms_alone"] > 0 and line["chat_p99_ms_loaded"] > 0
    assert line["chat_jobs"] > 0 and line["chat_failed"] == 0  # every chat job answered
    assert line["chat_rate"] == 20.0


async def test_overhead_prints_engine_and_floor_cpu_per_job(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The scenario raises if any job fails: that it prints at all means every job
    # through the engine was answered.
    line = await printed_line("overhead", capsys)

    assert_types(
        line,
        {
            "ms_per_job": NUMBER,
            "jobs_per_s": int,
            "floor_ms_per_job": NUMBER,
            "overhead_ratio": NUMBER,
            "call": str,
            "jobs": int,
        },
    )
    assert line["ms_per_job"] > 0 and line["floor_ms_per_job"] > 0
    assert line["call"] == "minimax image-01"
    assert line["jobs"] == 60  # 30 a round, two rounds
