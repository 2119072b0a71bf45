"""What the demo prints: what each member saw, as text a person can follow.

Everything is laid out at the terminal's width by rich, which measures text in
terminal cells: a Korean syllable takes two, so channel names in Korean keep the
columns straight, and long answers wrap between words, never cut.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import simcord
from rich.cells import cell_len, set_cell_size
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    import discord  # the embeds it prints, for their type only

__all__ = ["Transcript", "message_text", "seen"]

_INDENT = "    "


class Transcript:
    """Lines for `say`, `width` terminal cells wide; `names` turns channel mentions
    (`<#123>`) back into `#names`."""

    def __init__(self, say: Callable[[str], None], width: int = 100) -> None:
        self.say = say
        self.width = max(60, width)
        self.names: dict[int, str] = {}

    def heading(self, number: int, total: int, title: str) -> None:
        rule = f"── {number}/{total} {title} "
        self.say("")
        self.say(rule + "─" * max(0, self.width - cell_len(rule)))

    def note(self, words: str, *, aside: bool = False) -> None:
        """A sentence from the narrator, wrapped; an `aside` is indented below the
        member's answer."""
        self._print(Text(self.named(words)), indent=_INDENT if aside else "")

    def command(self, member: str, channel: str, command: str, **options: Any) -> None:
        """`member` runs `/command` in `#channel`."""
        args = " ".join(f'{k}:"{v}"' for k, v in options.items())
        self._print(Text(f"{member} in #{channel}: /{command} {args}".rstrip()), indent="")

    def answer(self, words: str, *, label: str = "") -> None:
        """What the member saw: wrapped below the command, indented."""
        text = Text(label + self.named(words).strip())
        self._print(text, indent=_INDENT)

    def result(self, result: simcord.InteractionResult, *, label: str = "") -> None:
        self.answer(seen(result), label=label)

    def table(self, embed: discord.Embed) -> None:
        """An embed as the member saw it: its title, then its fields as a table."""
        table = Table(title=embed.title, title_justify="left", show_lines=True)
        table.add_column("")
        table.add_column("", ratio=1)
        table.show_header = False
        for field in embed.fields:
            table.add_row(field.name or "", self.named(field.value or ""))
        self._print(table, indent=_INDENT)

    def row(self, cells: Mapping[str, int], values: Mapping[str, str]) -> str:
        """One line of fixed columns (widths in cells), for the crowd's lines."""
        return " ".join(set_cell_size(values[name], width) for name, width in cells.items())

    def clipped(self, words: str, cells: int) -> str:
        """`words` on one line of at most `cells` cells, cut between words ("…")."""
        if cell_len(words) <= cells:
            return words
        kept = ""
        for word in words.split(" "):
            if cell_len(f"{kept} {word} …") > cells:
                break
            kept = f"{kept} {word}" if kept else word
        return kept + " …"

    def named(self, words: str) -> str:
        return re.sub(r"<#(\d+)>", lambda m: "#" + self.names.get(int(m[1]), m[1]), words)

    def _print(self, renderable: RenderableType, *, indent: str) -> None:
        buffer = io.StringIO()
        width = self.width - len(indent)
        console = Console(file=buffer, width=width, color_system=None, legacy_windows=False)
        console.print(renderable, markup=False, highlight=False, crop=False)
        for line in buffer.getvalue().rstrip("\n").split("\n"):
            self.say((indent + line).rstrip())


def seen(result: simcord.InteractionResult) -> str:
    """What the member saw for one command: private or public, the last message's
    words, its files."""
    messages = [m for m in (result.response, *result.followups) if m is not None]
    if not messages:
        return "(no answer yet)"
    if result.response is not None and result.response.ephemeral:
        return "privately: " + message_text(messages[0])
    last = messages[-1]
    words = message_text(last)
    files = [f"{a.filename}, {a.size / 1024:.0f} KB" for m in messages for a in m.attachments]
    return words + "".join(f" [{f}]" for f in files)


def message_text(message: Any) -> str:
    """A message's words: its content, else its first embed's title and fields."""
    if message.content:
        return str(message.content)
    embed = message.embeds[0] if message.embeds else None
    if embed is None:
        return ""
    fields = " · ".join(f"{f.name} {f.value}" for f in embed.fields if f.value)
    return " — ".join(part for part in (embed.title or embed.description or "", fields) if part)
