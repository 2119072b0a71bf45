"""The engine benchmark's scenarios run end to end at a tiny scale.

Only the shape of each JSON line is checked (fields present, numbers sane),
never a timing: the figures themselves belong to `python -m bench.engine`.
"""

from __future__ import annotations

import json

from bench.engine import Scale, budget, isolation, overhead

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


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


async def test_budget_reports_both_designs_and_aibot_causes_no_429() -> None:
    line = await budget(TINY)

    assert line["scenario"] == "budget"
    # The baseline has no limiter: in a window this short, the fake's burst allowance
    # can let it through at a multiple of the rate, so only its shape is checked.
    assert _is_number(line["baseline_achieved_ratio"])
    assert _is_number(line["achieved_ratio"]) and 0 < line["achieved_ratio"] <= 2.0
    for name in ("rate_limited", "baseline_rate_limited"):
        assert isinstance(line[name], int) and line[name] >= 0
    # The ring paces every key below the fake's bucket: never a 429.
    assert line["rate_limited"] == 0
    json.dumps(line)


async def test_isolation_reports_chat_p99_alone_and_loaded() -> None:
    line = await isolation(TINY)

    assert line["scenario"] == "isolation"
    assert line["chat_p99_ms_alone"] > 0 and line["chat_p99_ms_loaded"] > 0
    expected = line["chat_p99_ms_loaded"] / line["chat_p99_ms_alone"]
    assert abs(line["p99_ratio"] - expected) < 0.01 * expected + 0.01
    json.dumps(line)


async def test_overhead_reports_engine_and_floor_cpu_per_job() -> None:
    line = await overhead(TINY)

    assert line["scenario"] == "overhead"
    assert line["ms_per_job"] > 0 and line["floor_ms_per_job"] > 0
    assert line["jobs_per_s"] > 0
    expected = line["ms_per_job"] / line["floor_ms_per_job"]
    assert abs(line["overhead_ratio"] - expected) < 0.01 * expected + 0.01
    json.dumps(line)
