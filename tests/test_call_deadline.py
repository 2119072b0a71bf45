"""One deadline bounds a provider call made through `with_keys`: a call still
running at it ends as a timeout, which the ring hears as a transient failure;
a cancellation from outside still cancels. Runs on a virtual clock."""

import asyncio

import pytest

from aibot.jobs import Unavailable
from aibot.keys import KeyRing
from aibot.leases import Lease
from aibot.providers.retry import ATTEMPTS, with_keys
from tests.fixtures.engine import on_virtual_clock

KEY = "sk-proj-deadline-aaaaaaaaaaaaaaaaaaaaaaaa0001"


def ring() -> KeyRing:
    return KeyRing("chat", "openai", [KEY], rpm=6000, concurrency=4)


def now() -> float:
    return asyncio.get_running_loop().time()


@on_virtual_clock
async def test_a_call_still_running_at_the_deadline_is_a_timeout() -> None:
    keys, calls = ring(), []

    async def hangs(lease: Lease) -> str:
        calls.append(now())
        await asyncio.sleep(3600)
        return "never"

    start = now()
    with pytest.raises(Unavailable, match="openai: timed out") as raised:
        await with_keys(keys, hangs, timeout=5)
    assert now() - start == pytest.approx(5)
    assert len(calls) == 1, "no time is left for another attempt"
    assert raised.value.key_id == "sk-...0001"
    snap = keys.snapshot().keys[0]
    assert snap.failures == 1 and snap.inflight == 0 and snap.state == "ready"


@on_virtual_clock
async def test_a_calls_own_timeout_is_retried_like_any_transient_failure() -> None:
    keys, calls = ring(), []

    async def times_out_then_answers(lease: Lease) -> str:
        calls.append(now())
        if len(calls) < ATTEMPTS:
            raise TimeoutError
        return "answer"

    assert await with_keys(keys, times_out_then_answers, timeout=60) == "answer"
    assert len(calls) == ATTEMPTS
    assert keys.snapshot().keys[0].failures == ATTEMPTS - 1


@on_virtual_clock
async def test_a_cancelled_call_is_cancelled_not_timed_out() -> None:
    keys = ring()
    started = asyncio.Event()

    async def hangs(lease: Lease) -> str:
        started.set()
        await asyncio.sleep(3600)
        return "never"

    job = asyncio.create_task(with_keys(keys, hangs, timeout=60))
    await started.wait()
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    snap = keys.snapshot().keys[0]
    assert snap.inflight == 0 and snap.failures == 0


@on_virtual_clock
async def test_calls_end_at_their_own_deadlines() -> None:
    keys, ended = ring(), {}

    async def hangs(lease: Lease) -> str:
        await asyncio.sleep(3600)
        return "never"

    async def one(timeout: float) -> None:
        start = now()
        with pytest.raises(Unavailable):
            await with_keys(keys, hangs, timeout=timeout)
        ended[timeout] = now() - start

    await asyncio.gather(*(one(timeout) for timeout in (7, 2, 4)))
    assert ended == pytest.approx({7: 7, 2: 2, 4: 4})
