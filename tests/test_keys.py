"""Key rings: the soonest key makes the call, bad news moves work elsewhere,
and a key is never shown. Runs on a virtual clock: waits cost no real time."""

import asyncio
import itertools
import logging

import pytest

from aibot.jobs import NoKeyAvailable
from aibot.keys import KeyRing
from aibot.rate_headers import parse_duration
from aibot.secrets import fingerprint, redact
from tests.fixtures.engine import on_virtual_clock

KEY_A = "sk-proj-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1111"
KEY_B = "sk-proj-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb2222"
KEY_C = "sk-proj-cccccccccccccccccccccccccccccccccccc3333"


def ring(*keys: str, rpm: float = 600, concurrency: int = 4, burst: float | None = None):
    return KeyRing("chat", "openai", keys, rpm=rpm, concurrency=concurrency, burst=burst)


def now() -> float:
    return asyncio.get_running_loop().time()


def test_a_key_is_shown_only_redacted() -> None:
    assert redact(KEY_A) == "sk-...1111"
    assert redact("abcdefgh") == "...gh"
    assert redact("abc") == "..."
    assert fingerprint(KEY_A) == fingerprint(KEY_A) != fingerprint(KEY_B)
    assert len(fingerprint(KEY_A)) == 16 and KEY_A not in fingerprint(KEY_A)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("12ms", 0.012), ("1s", 1.0), ("6m0s", 360.0), ("1h2m3.5s", 3723.5), ("2.5", 2.5)],
)
def test_openai_durations_are_read(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "1x", "s1", None])
def test_unreadable_durations_are_none(text: str | None) -> None:
    assert parse_duration(text) is None


@on_virtual_clock
async def test_calls_are_spread_over_the_keys() -> None:
    keys = ring(KEY_A, KEY_B, KEY_C)
    leases = [await keys.acquire(timeout=1) for _ in range(3)]
    assert {lease.key for lease in leases} == {KEY_A, KEY_B, KEY_C}


@on_virtual_clock
async def test_a_429_moves_the_work_to_another_key() -> None:
    keys = ring(KEY_A, KEY_B)
    first = await keys.acquire(timeout=1)
    first.rate_limited(retry_after=30)
    for _ in range(3):
        async with await keys.acquire(timeout=1) as lease:
            assert lease.key != first.key
    cooling = next(k for k in keys.snapshot().keys if k.key_id == first.key_id)
    assert cooling.state == "cooling" and cooling.rate_limited == 1
    assert cooling.cooling_for == pytest.approx(30, abs=0.1)


@on_virtual_clock
async def test_a_429_without_retry_after_backs_off_exponentially() -> None:
    keys = ring(KEY_A)
    waits = []
    for _ in range(4):
        lease = await keys.acquire(timeout=120)
        lease.rate_limited(retry_after=None)
        waits.append(round(keys.snapshot().keys[0].cooling_for, 3))
    assert waits == [1, 2, 4, 8]
    (await keys.acquire(timeout=120)).ok()
    (await keys.acquire(timeout=120)).rate_limited(retry_after=None)
    assert keys.snapshot().keys[0].cooling_for == pytest.approx(1)


@on_virtual_clock
async def test_the_only_key_cooling_means_waiting_for_it() -> None:
    keys = ring(KEY_A)
    (await keys.acquire(timeout=1)).rate_limited(retry_after=5)
    with pytest.raises(NoKeyAvailable) as refused:
        await keys.acquire(timeout=2)
    assert refused.value.retry_after == pytest.approx(5)
    start = now()
    await keys.acquire(timeout=10)
    assert now() - start == pytest.approx(5, abs=0.06)


@on_virtual_clock
async def test_a_dead_key_is_disabled_after_one_report() -> None:
    keys = ring(KEY_A, KEY_B)
    lease = await keys.acquire(timeout=1)
    lease.bad_key(f"401 Incorrect API key provided: {lease.key}")
    dead = next(k for k in keys.snapshot().keys if k.key_id == lease.key_id)
    assert dead.state == "disabled" and "401 Incorrect API key" in dead.reason
    assert lease.key not in dead.reason
    assert keys.load() == (1, 2) and not keys.all_down
    for _ in range(3):
        async with await keys.acquire(timeout=1) as other:
            assert other.key != lease.key


@on_virtual_clock
async def test_all_keys_disabled_refuses_at_once() -> None:
    keys = ring(KEY_A, KEY_B)
    (await keys.acquire(timeout=1)).bad_key("401")
    (await keys.acquire(timeout=1)).bad_key("insufficient_quota")
    assert keys.all_down
    start = now()
    with pytest.raises(NoKeyAvailable):
        await keys.acquire(timeout=60)
    assert now() == start
    assert ring().all_down  # no keys at all


@on_virtual_clock
async def test_the_limiter_paces_each_key_evenly() -> None:
    keys = ring(KEY_A, rpm=60, burst=1)  # one call a second
    starts = []
    for _ in range(4):
        (await keys.acquire(timeout=5)).ok()
        starts.append(now())
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps == pytest.approx([1, 1, 1], abs=0.06)


@on_virtual_clock
async def test_a_short_deadline_is_refused_with_the_wait() -> None:
    keys = ring(KEY_A, rpm=6, burst=1)  # one call every 10 s
    (await keys.acquire(timeout=1)).ok()
    with pytest.raises(NoKeyAvailable) as refused:
        await keys.acquire(timeout=3)
    assert refused.value.retry_after == pytest.approx(10, abs=0.1)


@on_virtual_clock
async def test_the_concurrency_cap_waits_for_a_release() -> None:
    keys = ring(KEY_A, concurrency=1)
    held = await keys.acquire(timeout=1)
    assert keys.snapshot().keys[0].state == "busy"
    asyncio.get_running_loop().call_later(2, held.release)
    start = now()
    async with await keys.acquire(timeout=10):
        assert now() - start == pytest.approx(2, abs=0.06)


@on_virtual_clock
async def test_no_requests_left_waits_for_the_reset() -> None:
    keys = ring(KEY_A)
    (await keys.acquire(timeout=1)).ok(
        {"X-RateLimit-Remaining-Requests": "0", "X-RateLimit-Reset-Requests": "6m0s"}
    )
    assert keys.snapshot().keys[0].state == "cooling"
    start = now()
    await keys.acquire(timeout=400)
    assert now() - start == pytest.approx(360, abs=0.1)


@on_virtual_clock
async def test_few_requests_left_are_spread_until_the_reset() -> None:
    keys = ring(KEY_A)  # 600 rpm: 10 a second is "plenty"
    headers = {"x-ratelimit-remaining-requests": "3", "x-ratelimit-reset-requests": "8s"}
    (await keys.acquire(timeout=1)).ok(headers)
    start = now()
    (await keys.acquire(timeout=10)).ok()
    assert now() - start == pytest.approx(2, abs=0.06)  # 8 s over 3 left + 1
    plenty = {"x-ratelimit-remaining-requests": "500", "x-ratelimit-reset-requests": "1s"}
    (await keys.acquire(timeout=1)).ok(plenty)
    start = now()
    await keys.acquire(timeout=10)
    assert now() - start < 0.2


@on_virtual_clock
async def test_a_pinned_key_is_used_even_disabled_and_an_unknown_one_refused() -> None:
    keys = ring(KEY_A, KEY_B)
    for _ in range(3):
        async with await keys.acquire(timeout=1, fingerprint=fingerprint(KEY_B)) as lease:
            assert lease.key == KEY_B
    (await keys.acquire(timeout=1, fingerprint=fingerprint(KEY_B))).bad_key("insufficient balance")
    # What it made is paid for: asking about it is the call's to refuse.
    async with await keys.acquire(timeout=1, fingerprint=fingerprint(KEY_B)) as lease:
        assert lease.key == KEY_B
    for _ in range(3):  # unpinned, only the key still healthy
        async with await keys.acquire(timeout=1) as lease:
            assert lease.key == KEY_A
    with pytest.raises(NoKeyAvailable):
        await keys.acquire(timeout=5, fingerprint="0" * 16)


@on_virtual_clock
async def test_no_key_in_logs_reprs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    keys = ring(KEY_A, KEY_B, rpm=6, burst=1)
    shown: list[str] = [repr(keys), str(keys)]
    first = await keys.acquire(timeout=1)
    shown += [repr(first), str(first)]
    first.rate_limited(retry_after=None)
    second = await keys.acquire(timeout=1)
    second.bad_key(f"invalid key {second.key}")
    with pytest.raises(NoKeyAvailable) as refused:
        await keys.acquire(timeout=0)
    shown += [str(refused.value), repr(refused.value), repr(keys.snapshot())]
    shown += [record.getMessage() for record in caplog.records]
    assert caplog.records, "the ring logs cooling and disabling"
    for text in shown:
        for key in (KEY_A, KEY_B):
            assert key not in text
            assert key[8:-4] not in text


def test_a_burst_below_one_call_is_refused() -> None:
    with pytest.raises(ValueError):
        ring(KEY_A, burst=0.5)


@on_virtual_clock
async def test_the_snapshot_shows_the_room_left_in_each_bucket() -> None:
    keys = ring(KEY_A)  # 600 rpm: a burst of 10, refilled at 10 a second
    for _ in range(4):
        (await keys.acquire(timeout=1)).ok()
    snap = keys.snapshot().keys[0]
    assert snap.budget_limit == 10 and snap.budget_left == pytest.approx(6)
    await asyncio.sleep(0.2)
    assert keys.snapshot().keys[0].budget_left == pytest.approx(8)


@on_virtual_clock
async def test_a_key_cooling_or_disabled_has_no_call_ready() -> None:
    keys = ring(KEY_A, KEY_B)
    (await keys.acquire(timeout=1)).rate_limited(retry_after=30)
    (await keys.acquire(timeout=1)).bad_key("401 invalid key")
    shown = {key.state: key for key in keys.snapshot().keys}
    assert shown["cooling"].budget_left == 0 and shown["disabled"].budget_left == 0
    assert shown["cooling"].budget_limit == 10  # what it gets back once it cools down
