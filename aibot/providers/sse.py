"""Server-sent events (`text/event-stream`), read by the rules of the HTML standard.

- A line ends with CR LF, LF or a bare CR (a CR at the end of one piece of the
  body may have its LF in the next piece).
- One UTF-8 byte-order mark at the start of the body is dropped.
- A line `data: x` adds `x` (one space after the colon dropped) to the event's
  data; several data lines join with LF; `data` alone adds an empty line.
- A line starting with a colon is a comment; other fields (`event`, `id`,
  `retry`) say nothing a chat answer needs and are skipped.
- A blank line ends an event. When the body ends, an event still open is
  handed over too (`end`): the standard drops it, but servers that omit the
  last blank line mean it.

Events are handed over as their data, decoded as UTF-8 (a bad byte becomes
U+FFFD, as the standard says). An event with no data line is no event; one
whose data is empty is handed over, and it is the reader's to skip.
"""

from __future__ import annotations

__all__ = ["EventDecoder"]

_BOM = b"\xef\xbb\xbf"


class EventDecoder:
    """Turns the pieces of a body, as they come, into each event's data."""

    __slots__ = ("_data", "_opened", "_pending")

    def __init__(self) -> None:
        self._pending = b""  # the start of a line whose end has not come yet
        self._data: list[str] = []  # the data lines of the event being read
        self._opened = False  # the start of the body (and its BOM) is past

    def feed(self, piece: bytes) -> list[str]:
        """The data of each event `piece` completes, in order."""
        pending = self._pending + piece if self._pending else piece
        if not self._opened:
            if len(pending) < len(_BOM) and _BOM.startswith(pending):
                self._pending = pending  # perhaps a BOM, perhaps not: wait for more
                return []
            self._opened = True
            pending = pending.removeprefix(_BOM)
        held = b""
        if b"\r" in pending:
            if pending.endswith(b"\r"):
                # Its LF may be the next piece's first byte: hold it until then.
                pending, held = pending[:-1], b"\r"
            pending = pending.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *lines, rest = pending.split(b"\n")
        self._pending = rest + held
        return self._events(lines) if lines else []

    def end(self) -> list[str]:
        """The body ended: the data of the event left open, if any."""
        rest = self._pending.removeprefix(_BOM) if not self._opened else self._pending
        self._pending, self._opened = b"", True
        lines = [rest.removesuffix(b"\r")] if rest else []
        return self._events([*lines, b""])

    def _events(self, lines: list[bytes]) -> list[str]:
        events: list[str] = []
        data = self._data
        for line in lines:
            if not line:
                if data:
                    events.append("\n".join(data))
                    data.clear()
            elif line.startswith(b"data:"):
                value = line[6:] if line[5:6] == b" " else line[5:]
                data.append(value.decode("utf-8", "replace"))
            elif line == b"data":
                data.append("")
        return events
