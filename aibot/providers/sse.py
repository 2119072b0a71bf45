"""Server-sent events (`text/event-stream`), read by the rules of the HTML standard.

- A line ends with CR LF, LF or a bare CR (a CR at the end of one piece of the
  body may have its LF at the start of the next).
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

    __slots__ = ("_data", "_lf_ends_nothing", "_opened", "_pending")

    def __init__(self) -> None:
        self._pending = b""  # the start of a line whose end has not come yet
        self._data: list[str] = []  # the data lines of the event being read
        self._opened = False  # the start of the body (and its BOM) is past
        # The last piece ended in CR, which ended its line: an LF opening the
        # next piece is the rest of that CR LF, not another line end.
        self._lf_ends_nothing = False

    def feed(self, piece: bytes) -> list[str]:
        """The data of each event `piece` completes, in order."""
        if self._lf_ends_nothing and piece:
            self._lf_ends_nothing = False
            if piece[:1] == b"\n":
                piece = piece[1:]
        pending = self._pending + piece if self._pending else piece
        if not self._opened:
            if len(pending) < len(_BOM) and _BOM.startswith(pending):
                self._pending = pending  # perhaps a BOM, perhaps not: wait for more
                return []
            self._opened = True
            pending = pending.removeprefix(_BOM)
        if b"\r" in pending:
            self._lf_ends_nothing = pending.endswith(b"\r")
            pending = pending.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *lines, self._pending = pending.split(b"\n")
        return self._events(lines) if lines else []

    def end(self) -> list[str]:
        """The body ended: the data of the event left open, if any."""
        rest = self._pending if self._opened else self._pending.removeprefix(_BOM)
        self._pending, self._opened, self._lf_ends_nothing = b"", True, False
        return self._events([rest, b""] if rest else [b""])

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
