"""The capacity search of `bench.front`: its steps and its turns, with made-up tries
(no bot, no fake Discord, no clock)."""

import asyncio
from typing import Any

from bench.capacity import CAPACITY_PRECISION, CAPACITY_SECONDS, Try, searched_in_turns


def _bot(
    name: str, capacity: float, tries: list[tuple[str, float]], *, hiccup: float = 0, waits: int = 1
) -> Try:
    """A bot that keeps up with `capacity` interactions a second, but for the first
    try at the rate `hiccup` (a slow spell of the machine). A try waits `waits` turns
    of the loop, as a real one waits for its answers."""

    async def offer(count: int) -> dict[str, Any]:
        for _ in range(waits):
            await asyncio.sleep(0)
        rate = count / CAPACITY_SECONDS
        tries.append((name, rate))
        held = rate <= capacity and not (rate == hiccup and tries.count((name, rate)) == 1)
        return {"sent": count, "answered": count if held else count - 1, "p99_ms": 5.0}

    return offer


async def test_the_searches_take_turns_and_each_finds_its_bot_to_within_the_precision() -> None:
    tries: list[tuple[str, float]] = []
    # The floor's tries are quicker: only the turns keep it from trying more often.
    bots = {"aibot": _bot("aibot", 1700, tries, waits=5), "floor": _bot("floor", 3000, tries)}
    found = await searched_in_turns(bots, precision=CAPACITY_PRECISION)
    assert 1700 / CAPACITY_PRECISION <= found["aibot"] <= 1700
    assert 3000 / CAPACITY_PRECISION <= found["floor"] <= 3000
    names = [name for name, _ in tries]
    both = min(names.count("aibot"), names.count("floor"))
    assert both >= 5 and names[: 2 * both] == ["aibot", "floor"] * both


async def test_one_failed_try_is_tried_again_and_does_not_cut_the_search_short() -> None:
    tries: list[tuple[str, float]] = []
    found = await searched_in_turns(
        {"aibot": _bot("aibot", 1700, tries, hiccup=1000)}, precision=CAPACITY_PRECISION
    )
    assert tries.count(("aibot", 1000)) == 2
    assert 1700 / CAPACITY_PRECISION <= found["aibot"] <= 1700
