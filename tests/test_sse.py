"""The event-stream reader of chat answers: the same events whatever pieces the
body arrives in, by the HTML standard's rules (and the last event kept when a
server leaves off its blank line)."""

from __future__ import annotations

import pytest

from aibot.providers.sse import EventDecoder

CASES = [
    pytest.param(b"data: a\n\ndata: b\n\n", ["a", "b"], id="lf"),
    pytest.param(b"data: a\r\n\r\ndata: b\r\n\r\n", ["a", "b"], id="crlf"),
    pytest.param(b"data: a\r\rdata: b\r\r", ["a", "b"], id="cr"),
    pytest.param(b"data: a\r\n\rdata: b\n\r\n", ["a", "b"], id="mixed-line-ends"),
    pytest.param(b"\xef\xbb\xbfdata: a\n\n", ["a"], id="bom"),
    pytest.param(b"data: a\n\n\xef\xbb\xbfdata: b\n\n", ["a"], id="bom-only-at-the-start"),
    pytest.param(b"data: a\ndata: b\n\n", ["a\nb"], id="data-lines-join"),
    pytest.param(b"data:a\n\ndata:  b\n\n", ["a", " b"], id="one-space-dropped"),
    pytest.param(b": keep-alive\ndata: a\n\n:\n\n", ["a"], id="comments"),
    pytest.param(b"event: delta\nid: 7\nretry: 10\ndata: a\n\n", ["a"], id="other-fields"),
    pytest.param(b"data:\n\ndata\n\ndata: a\n\n", ["", "", "a"], id="empty-data"),
    pytest.param(b"\n\n\n\n", [], id="blank-lines-only"),
    pytest.param(b"data: a\n\ndata: b", ["a", "b"], id="last-event-unterminated"),
    pytest.param(b"data: a\n\ndata: b\n", ["a", "b"], id="last-event-without-blank-line"),
    pytest.param(b"data: a\r", ["a"], id="last-line-ends-in-cr"),
    pytest.param("data: 안녕 😀\n\n".encode(), ["안녕 😀"], id="utf-8"),
    pytest.param(b"data: \xff\xfe ok\n\n", ["\ufffd\ufffd ok"], id="bad-bytes-replaced"),
    pytest.param(b"\xef\xbb", [], id="a-body-of-half-a-bom"),
    pytest.param(b"\xef\xbbdata: a\n\n", [], id="half-a-bom-is-no-bom"),
]


def decode(pieces: list[bytes]) -> list[str]:
    decoder = EventDecoder()
    events = [event for piece in pieces for event in decoder.feed(piece)]
    return events + decoder.end()


@pytest.mark.parametrize(("body", "events"), CASES)
def test_the_events_are_the_same_whatever_the_pieces(body: bytes, events: list[str]) -> None:
    assert decode([body]) == events
    assert decode([body[i : i + 1] for i in range(len(body))]) == events
    for cut in range(len(body) + 1):
        assert decode([body[:cut], body[cut:]]) == events, cut


def test_an_event_is_handed_over_as_soon_as_its_blank_line_arrives() -> None:
    decoder = EventDecoder()
    assert decoder.feed(b"data: a\n") == []
    assert decoder.feed(b"\ndata: b\r") == ["a"]
    assert decoder.feed(b"\r") == ["b"]
    assert decoder.feed(b"\ndata: c\n\n") == ["c"]  # that LF ended nothing
    assert decoder.end() == []
