"""What every engine scenario (`bench.engine`) shares: its sizes and
durations (`Scale`, `FULL`, `QUICK`), the prompt it sends, the rpm that never
makes a ring wait, and how a run's tally reads in a log line."""

from __future__ import annotations

from dataclasses import dataclass

from bench.world import Tally

__all__ = ["FULL", "PROMPT", "QUICK", "UNLIMITED", "Scale", "failures"]

PROMPT = "파이썬에서 리스트를 뒤집는 방법은?"
UNLIMITED = 1e9  # rpm that never makes a ring wait


@dataclass(frozen=True)
class Scale:
    """Sizes and durations of one run (`FULL`, `QUICK`, or tiny ones in tests)."""

    budget_keys: int = 4
    budget_rpm: float = 600.0
    budget_demand: float = 2.0  # x the keys' summed rate
    budget_warmup: float = 10.0
    budget_window: float = 60.0
    chat_rate: float = 50.0  # chat jobs per second in `isolation`
    isolation_seconds: float = 30.0  # per condition, over all rounds
    isolation_round: float = 1.0  # seconds of one condition before switching
    image_delay: float = 1.0
    video_poll: float = 0.5
    overhead_jobs: int = 20_000  # per side (engine, floor)
    overhead_rounds: int = 5
    overhead_concurrency: int = 8  # the image pool's default workers
    overhead_call: str = "image"


FULL = Scale()
QUICK = Scale(
    budget_window=10.0,
    isolation_seconds=8.0,
    overhead_jobs=6_000,
    overhead_rounds=3,
)


def failures(tally: Tally) -> str:
    """`12 ok, failures {...}`: how the jobs of a run ended, for a log line."""
    return f"{len(tally.finished)} ok, failures {dict(tally.failures)}"
