"""What providers' answers say about rate limits: durations, retry-after and
the x-ratelimit headers, whatever the case of their names."""

import email.utils
import time

import pytest

from aibot.rate_headers import header, parse_duration, rate_headers, requests_left, retry_after


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("12ms", 0.012),
        ("1s", 1.0),
        ("0.5s", 0.5),
        ("6m0s", 360.0),
        ("1m", 60.0),
        ("1h2m3.5s", 3723.5),
        ("2h", 7200.0),
        ("1s500ms", 1.5),
        (" 20s ", 20.0),
        ("2.5", 2.5),
        ("-3", 0.0),
    ],
)
def test_durations_are_read(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", None, "soon", "1x", "s1", "1s soon", "1 s", "inf", "nan"])
def test_unreadable_durations_are_none(text: str | None) -> None:
    assert parse_duration(text) is None


def test_retry_after_in_seconds_or_milliseconds() -> None:
    assert retry_after({"retry-after": "3"}) == 3.0
    assert retry_after({"retry-after": "1.5"}) == 1.5
    assert retry_after({"retry-after-ms": "250"}) == 0.25
    assert retry_after({"retry-after-ms": "1500", "retry-after": "2"}) == 1.5  # finer wins
    assert retry_after({"retry-after-ms": "soon", "retry-after": "2"}) == 2.0


def test_retry_after_as_an_http_date() -> None:
    later = email.utils.formatdate(time.time() + 120, usegmt=True)
    assert retry_after({"Retry-After": later}) == pytest.approx(120, abs=5)
    earlier = email.utils.formatdate(time.time() - 120, usegmt=True)
    assert retry_after({"Retry-After": earlier}) == 0.0


@pytest.mark.parametrize(
    "headers",
    [None, {}, {"retry-after": "soon"}, {"retry-after": "inf"}, {"x-other": "3"}],
)
def test_retry_after_that_says_nothing_is_none(headers: dict[str, str] | None) -> None:
    assert retry_after(headers) is None


@pytest.mark.parametrize("name", ["retry-after", "Retry-After", "RETRY-AFTER"])
def test_header_names_match_whatever_their_case(name: str) -> None:
    assert header({name: "7"}, "retry-after") == "7"
    assert retry_after({name: "7"}) == 7.0


def test_only_the_rate_limit_headers_are_kept_lower_cased() -> None:
    answer = {
        "Content-Type": "application/json",
        "X-RateLimit-Remaining-Requests": "9",
        "x-ratelimit-reset-requests": "6ms",
        "x-request-id": "req_1",
    }
    assert rate_headers(answer) == {
        "x-ratelimit-remaining-requests": "9",
        "x-ratelimit-reset-requests": "6ms",
    }
    assert rate_headers(None) == rate_headers({}) == {}


def test_requests_left_and_their_reset() -> None:
    headers = {"X-RateLimit-Remaining-Requests": "3", "X-RateLimit-Reset-Requests": "6m0s"}
    assert requests_left(headers) == (3, 360.0)
    assert requests_left({**headers, "X-RateLimit-Remaining-Requests": "-1"}) == (0, 360.0)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-ratelimit-remaining-requests": "3"},
        {"x-ratelimit-reset-requests": "1s"},
        {"x-ratelimit-remaining-requests": "many", "x-ratelimit-reset-requests": "1s"},
        {"x-ratelimit-remaining-requests": "3", "x-ratelimit-reset-requests": "later"},
    ],
)
def test_requests_left_needs_both_headers_readable(headers: dict[str, str]) -> None:
    assert requests_left(headers) is None
