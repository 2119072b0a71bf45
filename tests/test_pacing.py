"""A key's bucket: `burst` calls at once, then `rpm` a minute. Pure and
synchronous, so time here is whatever number the test passes as `now`."""

import random

import pytest

from aibot.pacing import KeyBucket


def starts(bucket: KeyBucket, until: float, *, now: float = 0.0) -> list[float]:
    """When calls start if a caller takes every call's room as soon as there
    is some, sleeping exactly the wait it is told in between."""
    started = []
    while now <= until:
        if bucket.try_take(now):
            started.append(now)
        else:
            now += bucket.wait(now)
    return started


def test_a_full_bucket_starts_its_burst_at_once_then_one_call_per_interval() -> None:
    bucket = KeyBucket(rpm=60, burst=3)
    assert starts(bucket, until=4) == pytest.approx([0, 0, 0, 1, 2, 3, 4])


def test_an_empty_bucket_says_how_long_until_room() -> None:
    bucket = KeyBucket(rpm=6, burst=1)  # one call every 10 s
    assert bucket.wait(100) == 0
    assert bucket.try_take(100)
    assert not bucket.try_take(100)
    assert bucket.wait(100) == pytest.approx(10)
    assert bucket.wait(104) == pytest.approx(6)
    assert not bucket.try_take(109.9)
    assert bucket.try_take(110)


def test_a_fractional_burst_starts_the_second_call_early() -> None:
    bucket = KeyBucket(rpm=60, burst=1.5)
    assert starts(bucket, until=3.5) == pytest.approx([0, 0.5, 1.5, 2.5, 3.5])


def test_room_left_drains_back_to_the_burst() -> None:
    bucket = KeyBucket(rpm=600, burst=10)  # ten at once, then ten a second
    assert bucket.room(0) == 10
    for _ in range(4):
        assert bucket.try_take(0)
    assert bucket.room(0) == pytest.approx(6)
    assert bucket.room(0.25) == pytest.approx(8.5)
    assert bucket.room(5) == 10


def test_reading_the_bucket_changes_nothing() -> None:
    bucket = KeyBucket(rpm=60, burst=2)
    assert bucket.try_take(0) and bucket.try_take(0)
    for now in (0.0, 0.3, 0.6, 0.9):
        bucket.wait(now), bucket.room(now)
    assert not bucket.try_take(0.9)
    assert bucket.try_take(1.0)


def test_an_idle_bucket_fills_only_to_its_burst() -> None:
    bucket = KeyBucket(rpm=60, burst=2)
    bucket.try_take(0)
    assert starts(bucket, until=1001, now=1000) == pytest.approx([1000, 1000, 1001])


def test_sleeping_exactly_the_wait_always_finds_room_on_a_large_clock() -> None:
    # Awkward intervals on a clock days from its origin: rounding must never leave
    # a caller that slept its whole wait without room (it would spin on tiny waits).
    bucket = KeyBucket(rpm=7, burst=1.3)
    now = 987_654.321
    for _ in range(1000):
        now += bucket.wait(now)
        assert bucket.try_take(now)


def test_over_any_span_no_more_than_burst_plus_the_rate_start() -> None:
    rpm, burst = 600.0, 10.0
    bucket = KeyBucket(rpm, burst)
    chance = random.Random(7)
    now, started = 0.0, []
    while now < 120:
        now += chance.expovariate(30)  # asked three times as often as the rate allows
        if bucket.try_take(now):
            started.append(now)
    for i, first in enumerate(started):
        for span in (0.5, 1.0, 10.0, 60.0):
            inside = sum(1 for t in started[i:] if t - first <= span)
            assert inside <= burst + span * rpm / 60 + 1e-9
    assert len(started) == pytest.approx(burst + 120 * rpm / 60, abs=2)


def test_it_decides_as_a_leaky_bucket_as_a_meter_would() -> None:
    """GCRA and the level-and-last-check bucket (aiolimiter's) agree call for call."""
    rpm, burst = 90.0, 2.5
    bucket = KeyBucket(rpm, burst)
    rate, level, last = rpm / 60, 0.0, 0.0
    chance = random.Random(11)
    now = 0.0
    for _ in range(5000):
        now += chance.uniform(0, 1.5)
        level = max(level - (now - last) * rate, 0.0)
        last = now
        room = level + 1 <= burst
        assert bucket.room(now) == pytest.approx(burst - level, abs=1e-9)
        assert bucket.try_take(now) is room
        if room:
            level += 1


@pytest.mark.parametrize(("rpm", "burst"), [(0, 1), (-5, 1), (60, 0.5), (60, 0)])
def test_a_bucket_that_could_never_start_a_call_is_refused(rpm: float, burst: float) -> None:
    with pytest.raises(ValueError):
        KeyBucket(rpm, burst)
