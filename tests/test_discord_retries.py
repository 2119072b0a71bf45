"""What each Discord failure means for a reply, and how a write is tried again: a
table of failures, and the retry policy run against writes that fail on cue."""

from __future__ import annotations

import asyncio
from typing import Any

import discord
import pytest

from aibot.discord.retries import (
    RetryPolicy,
    Undelivered,
    describe,
    refused,
    token_gone,
    transient,
)


class _Response:
    """What discord.HTTPException reads from an HTTP response."""

    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.reason = "Error"
        self.headers = headers or {}


def failure(status: int, code: int = 0, **headers: str) -> discord.HTTPException:
    message = {"code": code, "message": "https://discord.com/api/webhooks/1/secret-token"}
    response: Any = _Response(status, {k.replace("_", "-"): v for k, v in headers.items()})
    if status == 404:
        return discord.NotFound(response, message)
    return discord.HTTPException(response, message)


@pytest.mark.parametrize(
    ("error", "is_transient", "is_gone", "is_refused"),
    [
        (failure(429), True, False, False),
        (failure(500), True, False, False),
        (failure(502), True, False, False),
        (failure(503), True, False, False),
        (failure(504), True, False, False),
        (failure(401, 50027), False, True, False),
        (failure(404, 10015), False, True, False),
        (failure(404, 10062), False, True, False),
        (failure(404, 10008), False, True, False),
        (failure(400), False, False, True),
        (failure(413, 40005), False, False, True),
        (failure(403, 50013), False, False, False),
        (discord.RateLimited(2.0), True, False, False),
        (ConnectionResetError(), True, False, False),
        (TimeoutError(), True, False, False),
    ],
    ids=lambda v: describe(v) if isinstance(v, BaseException) else None,
)
def test_each_failure_means_one_thing(
    error: BaseException, is_transient: bool, is_gone: bool, is_refused: bool
) -> None:
    assert (transient(error), token_gone(error), refused(error)) == (
        is_transient,
        is_gone,
        is_refused,
    )


def test_a_failure_is_logged_without_its_text_which_can_hold_the_token() -> None:
    error = failure(401, 50027)
    assert "secret-token" in str(error)
    assert describe(error) == "HTTPException (HTTP 401, code 50027)"
    assert describe(Undelivered(describe(error))) == describe(error)


def test_discords_retry_after_is_honoured() -> None:
    policy = RetryPolicy()
    assert policy.wait_before(1, failure(429, Retry_After="2.5")) == 2.5
    assert policy.wait_before(1, failure(429, X_RateLimit_Reset_After="0.75")) == 0.75
    assert policy.wait_before(1, discord.RateLimited(4.0)) == 4.0


def test_the_backoff_doubles_with_jitter_up_to_its_longest_and_stops() -> None:
    policy = RetryPolicy(attempts=6, first_wait=1.0, longest_wait=4.0)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 4.0), (5, 4.0)]:
        wait = policy.wait_before(attempt, failure(503))
        assert wait is not None and ceiling / 2 <= wait <= ceiling
    assert policy.wait_before(6, failure(503)) is None  # out of tries
    assert policy.wait_before(1, failure(404, 10015)) is None  # never for a dead token


class Flaky:
    """A write that fails with `errors` in turn, then succeeds."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "written"


QUICK = RetryPolicy(attempts=4, first_wait=0.001, longest_wait=0.004, total=5.0)


async def test_a_write_is_tried_again_through_a_moment_of_trouble() -> None:
    write = Flaky(failure(429), failure(502), ConnectionResetError())
    assert await QUICK.run(write) == "written"
    assert write.calls == 4


async def test_a_write_is_not_tried_again_when_trying_cannot_help() -> None:
    for error in (failure(401, 50027), failure(400)):
        write = Flaky(error)
        with pytest.raises(discord.HTTPException):
            await QUICK.run(write)
        assert write.calls == 1


async def test_tries_stop_at_the_last_attempt_with_the_last_failure() -> None:
    write = Flaky(*(failure(503) for _ in range(10)))
    with pytest.raises(discord.HTTPException) as raised:
        await QUICK.run(write)
    assert raised.value.status == 503 and write.calls == QUICK.attempts


async def test_a_retry_after_past_the_deadline_gives_up_at_once() -> None:
    write = Flaky(failure(429, Retry_After="3600"))
    with pytest.raises(discord.HTTPException):
        await RetryPolicy(total=30.0).run(write)
    assert write.calls == 1  # not an hour's wait, nor a shorter one Discord did not ask for


async def test_a_write_that_hangs_is_cut_at_the_deadline() -> None:
    async def hang() -> None:
        await asyncio.Event().wait()

    with pytest.raises(TimeoutError):
        await RetryPolicy(total=0.05).run(hang)
