"""The console status panel: what each pool is doing, at a glance.

Everything shown comes from a `StatusSource` (`aibot.snapshots`): plain
snapshots of the bot (`BotInfo`), the pools (`PoolSnapshot`) and the recent
events (`Event`, kept by an `aibot.events.EventLog` that listens to logging), and
in cluster mode every live process (`NodeSnapshot`: a row per node with its
pools, free slots, shards, version and age). `render(source)`
turns one reading into a rich renderable laid out for the width it is drawn
at (80 columns and up); `StatusPanel`
redraws it with `rich.live.Live` at most twice a second, only on a terminal.
The same source feeds `/health` and `/metrics` (aibot/http.py).
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from rich import box
from rich.console import (
    Console,
    ConsoleOptions,
    Group,
    JustifyMethod,
    RenderableType,
    RenderResult,
)
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from aibot.secrets import redact
from aibot.snapshots import (
    BotInfo,
    Event,
    KeyRingSnapshot,
    KeySnapshot,
    NodeSnapshot,
    PoolSnapshot,
    StatusSource,
)

__all__ = ["StatusPanel", "render"]

_STATE_STYLE = {
    "running": "green",
    "ready": "green",
    "busy": "cyan",
    "paused": "yellow",
    "cooling": "yellow",
    "draining": "yellow",
    "stopped": "red",
    "disabled": "red",
}
_LEVEL_STYLE = {"WARNING": "yellow", "ERROR": "red", "CRITICAL": "bold red"}


def render(source: StatusSource, *, events: int = 8) -> RenderableType:
    """One reading of `source` as a panel: the bot line, a row per pool, a row
    per live node (cluster mode), key health per ring, and the last `events`
    events. The reading is taken now; the layout follows the width it is drawn
    at (80 columns and up)."""
    recent = source.events()[-events:] if events else []
    return _Screen(source.bot_info(), source.pools(), recent, source.nodes())


@dataclass(slots=True, frozen=True)
class _Screen:
    """One reading, laid out when rich draws it: below `_WIDE` columns the pool
    table takes its short headers, so no cell is ever cut; the events are the
    latest that fit the terminal's height (at least one)."""

    info: BotInfo
    pools: list[PoolSnapshot]
    events: list[Event]
    nodes: list[NodeSnapshot] = field(default_factory=list)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        wide = options.max_width >= _WIDE
        parts: list[RenderableType] = [_bot_line(self.info), Text("")]
        if self.pools:
            parts.append(_pool_table(self.pools, wide=wide))
        else:
            parts.append(Text("no pools yet: they start once the bot has logged in", "dim"))
        if any(pool.budget_limit > 0 for pool in self.pools):
            parts.append(Text(_BURST_LEGEND, "dim"))
        if self.nodes:
            parts += [Text(""), Text(f"nodes ({len(self.nodes)} live)", "bold dim")]
            parts.append(_node_table(self.nodes))
        rings = [ring for pool in self.pools for ring in pool.rings]
        if rings:
            parts += [Text(""), Text("keys", "bold dim"), _key_table(rings)]
        room = console.height - 4 - sum(_height(part) for part in parts)
        recent = self.events[-max(room, 1) :]
        parts += [Text(""), Text("last events", "bold dim"), _event_table(recent)]
        yield Panel(
            Group(*parts),
            title=Text(f"aibot · {self.info.name}"),
            title_align="left",
            border_style=_border_style(self.info),
            box=box.ROUNDED,
        )


def _height(part: RenderableType) -> int:
    """Lines a part takes (tables: a header and a line per row)."""
    return part.row_count + 1 if isinstance(part, Table) else 1


# Panel width from which the pool table has room for its long headers.
_WIDE = 90
# What "burst 120/174" means, in one line at 80 columns.
_BURST_LEGEND = "burst: calls the keys can start right now / the most at once (refill: RPM)"


def _bot_line(info: BotInfo) -> Text:
    line = Text()
    if info.connecting_s is not None:
        line.append(f"connecting… {_duration(info.connecting_s)}", "bold yellow")
        line.append(f" · {info.mode}")
        return line
    line.append("gateway up" if info.gateway_up else "gateway DOWN", _gateway_style(info))
    line.append(f" · {info.guilds} guilds · {_shards(info.shards)}")
    line.append(f" · up {_duration(info.uptime_s)} · {info.mode}")
    return line


def _border_style(info: BotInfo) -> str:
    if info.connecting_s is not None:
        return "yellow"
    return "blue" if info.gateway_up else "red"


def _gateway_style(info: BotInfo) -> str:
    return "bold green" if info.gateway_up else "bold red"


def _shards(shards: tuple[tuple[int, float | None], ...]) -> str:
    if not shards:
        return "no shards"
    if len(shards) <= 6:
        return "shards " + " ".join(f"{sid}:{_latency(ms)}" for sid, ms in shards)
    known = [ms for _, ms in shards if ms is not None]
    down = len(shards) - len(known)
    worst = f", worst {_latency(max(known))}" if known else ""
    return f"{len(shards)} shards{worst}" + (f", {down} down" if down else "")


def _latency(ms: float | None) -> str:
    return "down" if ms is None else f"{ms:.0f}ms"


# (long header, short header) of the pool table's columns.
_POOL_COLUMNS = (
    ("pool", "pool"),
    ("state", "state"),
    ("workers", "busy"),
    ("queue", "queue"),
    ("done", "done"),
    ("failed", "fail"),
    ("p50", "p50"),
    ("p95", "p95"),
    ("keys", "keys"),
    ("burst", "burst"),
)


def _pool_table(pools: list[PoolSnapshot], *, wide: bool) -> Table:
    table = Table(box=None, expand=False, padding=(0, 1), pad_edge=False)
    for long, short in _POOL_COLUMNS:
        justify: JustifyMethod = "left" if long in ("pool", "state") else "right"
        table.add_column(long if wide else short, justify=justify, no_wrap=True, style="")
    for pool in pools:
        finished = pool.done + pool.failed
        table.add_row(
            Text(pool.name, "bold"),
            Text(pool.state, _STATE_STYLE.get(pool.state, "")),
            f"{pool.workers_busy}/{pool.workers_total}",
            f"{pool.queued}/{pool.queue_size}",
            _count(pool.done),
            Text(_count(pool.failed), "red" if pool.failed else ""),
            _ms(pool.p50_ms, finished),
            _ms(pool.p95_ms, finished),
            Text(f"{pool.keys_healthy}/{pool.keys_total}", "red" if pool.keys_healthy == 0 else ""),
            _burst(pool),
        )
    return table


def _burst(pool: PoolSnapshot) -> str:
    """Calls the pool's keys could start right now, of their burst."""
    if pool.budget_limit <= 0:
        return "-"
    return f"{_count(pool.budget_left)}/{_count(pool.budget_limit)}"


def _node_table(nodes: list[NodeSnapshot]) -> Table:
    """A row per live process, this one first: pools with their free slots."""
    table = Table(box=None, padding=(0, 1), pad_edge=False)
    table.add_column("node", no_wrap=True, style="bold")
    table.add_column("pools (free)", overflow="fold")
    table.add_column("shards", no_wrap=True)
    table.add_column("version", no_wrap=True)
    table.add_column("up", no_wrap=True, justify="right")
    now = time.time()
    for node in sorted(nodes, key=lambda node: (not node.here, node.name)):
        pools = " ".join(f"{pool}({node.free_slots.get(pool, 0)})" for pool in node.pools)
        table.add_row(
            Text(node.name + (" (here)" if node.here else "")),
            pools or "-",
            _shard_ids(node.shards),
            Text(node.version or "?"),
            _duration(node.age(now)),
        )
    return table


def _shard_ids(shards: tuple[int, ...]) -> str:
    if len(shards) > 4:
        return f"{shards[0]}…{shards[-1]} ({len(shards)})"
    return ",".join(map(str, shards)) or "-"


def _key_table(rings: list[KeyRingSnapshot]) -> Table:
    table = Table(box=None, show_header=False, padding=(0, 1), pad_edge=False)
    table.add_column("ring", no_wrap=True, style="bold")
    table.add_column("ok", no_wrap=True, justify="right")
    table.add_column("keys", overflow="fold")
    for ring in rings:
        keys = Text(" ").join(_key_text(key) for key in ring.keys) if ring.keys else Text("-")
        table.add_row(f"{ring.pool}/{ring.provider}", f"{ring.healthy}/{ring.total}", keys)
    return table


def _key_text(key: KeySnapshot) -> Text:
    text = Text(_shown_id(key.key_id))
    detail = key.state
    if key.state == "cooling" and key.cooling_for > 0:
        detail += f" {key.cooling_for:.0f}s"
    if key.state == "disabled" and key.reason:
        detail += f" ({key.reason})"
    text.append(f" {detail}", _STATE_STYLE.get(key.state, ""))
    return text


def _shown_id(key_id: str) -> str:
    # Snapshots carry redacted ids already; never trust that with a whole key.
    return key_id if "..." in key_id else redact(key_id)


def _event_table(events: list[Event]) -> RenderableType:
    if not events:
        return Text("none yet: warnings, errors, overflows, disabled keys and restarts", "dim")
    table = Table(box=None, show_header=False, padding=(0, 1), pad_edge=False, expand=True)
    table.add_column("time", width=8, no_wrap=True, style="dim")
    table.add_column("level", width=4, no_wrap=True)
    table.add_column("pool", width=5, no_wrap=True)
    table.add_column("text", ratio=1, no_wrap=True, overflow="ellipsis")
    for event in events:
        table.add_row(
            time.strftime("%H:%M:%S", time.localtime(event.time)),
            Text(event.level[:4], _LEVEL_STYLE.get(event.level, "")),
            event.pool or "-",
            Text(event.text),  # as written: a guild's name is anyone's text
        )
    return table


def _duration(seconds: float) -> str:
    s = int(max(seconds, 0))
    if s >= 86400:
        return f"{s // 86400}d{s % 86400 // 3600:02d}h"
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def _ms(value: float, finished: int) -> str:
    """A latency; "-" until a job finished. Under a virtual clock (SimCord, the
    demo) no time passes while the bot works: those jobs took "<1ms"."""
    if not finished:
        return "-"
    if value < 1:
        return "<1ms"
    if value < 1000:
        return f"{value:.0f}ms"
    if value < 60_000:
        return f"{value / 1000:.1f}s"
    return _duration(value / 1000)


def _count(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    if value >= 1000:
        return f"{value / 1000:.1f}k"
    return f"{value:.0f}"


@dataclass
class StatusPanel:
    """The live panel on the terminal. It is `active` only when `enabled` and
    the console is a terminal (`--no-panel`, or stdout piped to a file or the
    journal, turns it off).

    Rich's own thread redraws it, not an asyncio task, so a virtual-clock loop
    (SimCord) still settles. Snapshots belong to the event loop (key rings read
    `loop.time()`), so when `start()` is called from a running loop, each
    redraw takes its reading there with `call_soon_threadsafe`; a reading that
    does not come within `READ_TIMEOUT` (a busy loop) keeps the last picture.
    """

    READ_TIMEOUT = 1.0

    source: StatusSource
    console: Console = field(default_factory=Console)
    enabled: bool = True
    refresh_per_second: float = 2.0
    _live: Live | None = field(default=None, init=False, repr=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, init=False, repr=False)
    _loop_thread: int | None = field(default=None, init=False, repr=False)
    _pending: Future[RenderableType] | None = field(default=None, init=False, repr=False)
    _last: RenderableType = field(default_factory=Text, init=False, repr=False)

    @property
    def active(self) -> bool:
        return self.enabled and self.console.is_terminal

    def start(self) -> None:
        """Show the panel (no-op when not active or already shown)."""
        if not self.active or self._live is not None:
            return
        try:
            self._loop = asyncio.get_running_loop()
            self._loop_thread = threading.get_ident()
        except RuntimeError:
            self._loop = None
        self._live = Live(
            console=self.console,
            get_renderable=self._renderable,
            refresh_per_second=self.refresh_per_second,
            auto_refresh=True,
            transient=False,
        )
        self._live.start(refresh=True)

    def stop(self) -> None:
        """Draw the last reading and leave it on screen."""
        if self._live is not None:
            self._live.stop()
            self._live = None

    def __enter__(self) -> StatusPanel:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _renderable(self) -> RenderableType:
        try:
            if self._loop is None or self._loop_thread == threading.get_ident():
                self._last = render(self.source)
            else:
                self._last = self._render_on_loop(self._loop)
        except Exception:  # a busy or closed loop, a reading that failed: try next tick
            pass
        return self._last

    def _render_on_loop(self, loop: asyncio.AbstractEventLoop) -> RenderableType:
        if self._pending is None or self._pending.done():
            future: Future[RenderableType] = Future()

            def take() -> None:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(render(self.source))
                    except Exception as error:
                        future.set_exception(error)

            loop.call_soon_threadsafe(take)
            self._pending = future
        return self._pending.result(timeout=self.READ_TIMEOUT)
