"""The per-channel edit budget, on a clock the test moves."""

from __future__ import annotations

from aibot.discord.edits import EditBudget


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_edit_budget_is_per_channel_and_refills() -> None:
    clock = _Clock()
    budget = EditBudget(burst=5, rate=1.0, clock=clock)
    assert [budget.try_take(1) for _ in range(6)] == [True] * 5 + [False]
    assert budget.try_take(2)  # another channel has its own bucket
    clock.now = 2.0
    assert budget.try_take(1) and budget.try_take(1)
    assert not budget.try_take(1)


def test_writes_that_must_happen_run_the_budget_into_debt() -> None:
    clock = _Clock()
    budget = EditBudget(burst=2, rate=1.0, clock=clock)
    for _ in range(4):
        budget.spend(1)  # four final answers at once: none waits
    clock.now = 3.0  # 2 of debt + 3 refilled = 1 write
    assert budget.try_take(1)
    assert not budget.try_take(1)
    for _ in range(10):
        budget.spend(1)
    clock.now = 6.0  # the debt is bounded by one burst: -2 + 3 s of refill
    assert budget.try_take(1)


def test_idle_channels_are_forgotten_so_memory_stays_bounded() -> None:
    clock = _Clock()
    budget = EditBudget(burst=5, rate=1.0, clock=clock)
    for channel in range(4096):
        budget.spend(channel)
    assert budget.tracked() == 4096
    clock.now = 10.0  # every bucket has refilled: they carry nothing any more
    budget.spend(-1)  # one channel over the bound: the full ones go
    assert budget.tracked() == 1
    assert [budget.try_take(-1) for _ in range(5)] == [True] * 4 + [False]
