"""The one call policy: how a provider call uses a pool's keys.

- RateLimited: that key cools down (`lease.rate_limited`) and the call moves
  to another key at once; BadKey: that key is disabled for good and the call
  moves on. Neither counts as an attempt: the ring decides when no key is left
  (`NoKeyAvailable`, which propagates).
- Unavailable (connection, timeout, 5xx): retried with tenacity, jittered
  exponential waits, a few attempts, never past the deadline; except for a call
  that is not `idempotent` (a video task: a lost answer may hide a task made,
  and billed, and asking again would pay for a second one), raised at once.
- BadRequest, Rejected and ThoughtTooLong (a reasoning model's answer with no
  words): raised at once; asking again gives the same answer.
- One deadline (`timeout` seconds from the call) bounds waiting for a key,
  every attempt (`asyncio.timeout_at`; a timeout is `Unavailable`) and every
  wait in between.

A streamed answer follows the same policy only until its first item arrived:
what a member has already seen cannot be replayed on another key.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping
from typing import Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception
from tenacity.wait import wait_random_exponential

from aibot.jobs import (
    AibotError,
    BadKey,
    BadRequest,
    Misconfigured,
    RateLimited,
    Rejected,
    ThoughtTooLong,
    Unavailable,
)
from aibot.leases import Lease, Ring

__all__ = ["ATTEMPTS", "stream_with_keys", "with_keys"]

T = TypeVar("T")
S = TypeVar("S", bound=AsyncIterable[Any])

ATTEMPTS = 3  # tries for a transient failure (the first one included)
_FIRST_WAIT = 0.5  # the longest (jittered) wait before the second try, in seconds
_log = logging.getLogger("aibot.providers.retry")


class _Committed(Exception):
    """A stream failed after its first item: settle the key, never retry."""

    def __init__(self, error: AibotError) -> None:
        super().__init__(error.kind)
        self.error = error


def with_keys(
    ring: Ring,
    call: Callable[[Lease], Awaitable[T]],
    *,
    timeout: float,
    fingerprint: str | None = None,
    idempotent: bool = True,
) -> Awaitable[T]:
    """`call(lease)` on the ring's keys under the policy above, to be awaited.
    `fingerprint` pins one key (a video task is polled with the key that created
    it). `idempotent` False: a transient failure is not tried again (a 429 or a
    bad key still moves on: the provider said no, nothing was made). A result
    with a `headers` mapping (rate-limit headers) tightens the key's budget
    through `lease.ok`. A plain function handing back the policy's coroutine: one
    coroutine fewer on every provider call."""
    deadline = asyncio.get_running_loop().time() + timeout
    return _on_some_key(ring, call, deadline, fingerprint, True, True, retry=idempotent)


async def stream_with_keys(
    ring: Ring,
    open_stream: Callable[[Lease], S],
    each: Callable[[Any], Awaitable[None]],
    *,
    timeout: float,
) -> S:
    """Reads `open_stream(lease)` to its end, handing every item to `each`.
    Until the first item the deadline and the whole policy apply; after it the
    client's own read timeout guards stalls and any error ends the stream.
    Returns the stream object (its usage and headers are read afterwards)."""
    deadline = _now() + timeout

    async def streamed(lease: Lease) -> S:
        stream = open_stream(lease)
        started = False
        try:
            async with asyncio.timeout_at(deadline) as scope:
                async for item in stream:
                    if not started:
                        started = True
                        scope.reschedule(None)
                    await each(item)
        except (TimeoutError, AibotError) as caught:
            # A timeout: the deadline's, a read's, or one in `each` (a write to
            # Discord). After the first item any error ends the stream: retried,
            # the answer would begin again on another key.
            err = (
                Unavailable(f"{ring.provider}: timed out")
                if isinstance(caught, TimeoutError)
                else caught
            )
            if started:
                raise _Committed(err) from None
            if err is caught:
                raise
            raise err from None
        return stream

    return await _on_some_key(ring, streamed, deadline, None, False, True)


async def _retries(
    ring: Ring,
    call: Callable[[Lease], Awaitable[T]],
    deadline: float,
    fingerprint: str | None,
    bounded: bool,
    failure: Unavailable,
) -> T:
    """After the first attempt failed with `failure`: jittered retries with
    tenacity for the rest, never past the deadline. Unwraps a committed failure."""
    pause = random.uniform(0, _FIRST_WAIT)
    if ATTEMPTS < 2 or _now() + pause >= deadline:
        raise failure
    await asyncio.sleep(pause)
    try:
        async for attempt in _transient_retries(deadline):
            with attempt:
                return await _on_some_key(ring, call, deadline, fingerprint, bounded, False)
    except _Committed as committed:
        raise committed.error from None
    raise AssertionError("tenacity ended without an outcome")  # pragma: no cover


def _transient_retries(deadline: float) -> AsyncRetrying:
    """The attempts after the first failed one: waits go on doubling from twice
    `_FIRST_WAIT` (jittered, at most 8 s)."""

    def out_of_time_or_tries(state: RetryCallState) -> bool:
        tries = state.attempt_number + 1  # the first attempt came before tenacity
        return tries >= ATTEMPTS or _now() + state.upcoming_sleep >= deadline

    return AsyncRetrying(
        retry=retry_if_exception(_transient),
        wait=wait_random_exponential(multiplier=2 * _FIRST_WAIT, max=8.0),
        stop=out_of_time_or_tries,
        sleep=asyncio.sleep,
        reraise=True,
    )


async def _on_some_key(
    ring: Ring,
    call: Callable[[Lease], Awaitable[T]],
    deadline: float,
    fingerprint: str | None,
    bounded: bool,
    first: bool,
    *,
    retry: bool = True,
) -> T:
    """One attempt: on a 429 or a bad key the call moves to another key.
    `bounded`: the deadline bounds the call too (a stream bounds its own, only
    until its first item). The `first` attempt is the policy's own coroutine,
    so the common case costs no retry machinery: it unwraps a committed failure
    and, after an Unavailable (unless not to `retry`), hands over to `_retries`."""
    while True:
        lease = ring.try_acquire(fingerprint) or await ring.acquire(
            deadline=deadline, fingerprint=fingerprint
        )
        # try/finally rather than `async with lease`: the same release, without two
        # coroutine calls per provider call.
        try:
            if bounded:
                try:
                    async with asyncio.timeout_at(deadline):
                        result = await call(lease)
                except TimeoutError:
                    # The deadline's, or the call's own: a transient failure either way.
                    raise Unavailable(f"{ring.provider}: timed out") from None
            else:
                result = await call(lease)
        except _Committed as committed:
            _settle(lease, committed.error)
            if first:
                raise committed.error from None
            raise
        except AibotError as err:
            _settle(lease, err)
            if isinstance(err, RateLimited | BadKey):
                continue
            if not (first and retry) or not isinstance(err, Unavailable) or not _transient(err):
                raise
            failure = err
        else:
            lease.ok(_headers_of(result))
            return result
        finally:
            lease.release()
        return await _retries(ring, call, deadline, fingerprint, bounded, failure)


def _settle(lease: Lease, error: AibotError) -> None:
    """Tell the ring what an error says about the key that made the call, and
    the error which key that was."""
    if not error.provider:
        error.provider, error.key_id = lease.provider, lease.key_id
    if isinstance(error, RateLimited):
        lease.rate_limited(error.retry_after)  # the ring logs it
    elif isinstance(error, BadKey):
        lease.bad_key(error.detail or error.kind)  # the ring logs it
    elif isinstance(error, BadRequest | Rejected | Misconfigured | ThoughtTooLong):
        lease.ok()  # the key did its job; the request (or the settings) was at fault
    elif isinstance(error, Unavailable):
        _log.info("%s key %s: %s", lease.provider, lease.key_id, error.detail or error.kind)
        lease.failed()


def _transient(error: BaseException) -> bool:
    """A failure worth trying again on the same provider."""
    return isinstance(error, Unavailable) and not isinstance(error, ThoughtTooLong)


def _headers_of(result: object) -> Mapping[str, str] | None:
    headers = getattr(result, "headers", None)
    if not headers:  # the common case; spares the abstract Mapping check
        return None
    return headers if isinstance(headers, Mapping) else None


def _now() -> float:
    return asyncio.get_running_loop().time()
