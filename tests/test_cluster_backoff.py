"""The pause between tries while Redis fails (`aibot.cluster.tasks.Backoff`): it
doubles with each failure in a row up to its longest, and starts over after a
success. Runs on a virtual clock."""

import asyncio

from aibot.cluster.tasks import Backoff
from tests.fixtures.engine import on_virtual_clock


async def paused(backoff: Backoff) -> float:
    """Seconds (virtual) that one `pause()` slept."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    await backoff.pause()
    return loop.time() - start


@on_virtual_clock
async def test_pauses_double_up_to_the_longest_and_start_over_after_a_success() -> None:
    backoff = Backoff(0.5, 5.0)
    assert [await paused(backoff) for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff.failures == 6
    backoff.reset()
    assert backoff.failures == 0
    assert backoff.seconds == 0.5
    assert await paused(backoff) == 0.5


@on_virtual_clock
async def test_the_next_pause_is_known_before_it_is_slept() -> None:
    # The loops log it: "Redis failed; again in 0.2s".
    backoff = Backoff(0.2, 1.0)
    assert backoff.seconds == 0.2
    await backoff.pause()
    assert backoff.seconds == 0.4
