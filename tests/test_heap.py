"""Full garbage collections wait for a quiet moment while the bot serves
(aibot.heap): when they are due, and the collector handed over and back."""

import asyncio
import gc

import pytest

from aibot.heap import IdleCollections


def test_a_full_collection_is_due_when_idle_or_late_and_only_with_something_to_walk() -> None:
    collections = IdleCollections(lambda: 0.0, quiet=1.0, at_most=60.0)
    assert collections.due(1.5, 2.0, promoted=3)  # idle long enough
    assert not collections.due(0.5, 2.0, promoted=3)  # commands keep coming
    assert collections.due(0.0, 61.0, promoted=3)  # busy, but the last is too old
    assert not collections.due(10.0, 600.0, promoted=0)  # nothing new since the last


async def test_it_takes_over_full_collections_then_gives_them_back() -> None:
    before = gc.get_threshold()
    collections = IdleCollections(lambda: 10.0, check_every=0.01)
    collections.start()
    try:
        assert gc.get_freeze_count() > 0  # the heap as it was at start is frozen
        assert gc.get_threshold()[:2] == before[:2]  # young collections as usual
        assert gc.get_threshold()[2] > 100_000  # no automatic full collection
        gc.collect(1)  # promotes into the oldest generation: a full one is due
        async with asyncio.timeout(30):
            while collections.collections == 0:
                await asyncio.sleep(0.01)
    finally:
        await collections.stop()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


async def test_stop_before_start_changes_nothing() -> None:
    before = gc.get_threshold()
    await IdleCollections(lambda: 0.0).stop()
    assert gc.get_threshold() == before


@pytest.fixture(autouse=True)
def _collector_as_found():
    """Whatever a test does, the process's collector is as it was after it."""
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)
    gc.unfreeze()
