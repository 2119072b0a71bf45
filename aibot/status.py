"""The console status panel: what each pool is doing, at a glance.

Everything shown comes from a `StatusSource`: plain snapshots of the bot
(`BotInfo`), the pools (`aibot.snapshots.PoolSnapshot`) and the recent events
(`Event`, kept by an `EventLog` that listens to logging). `render(source)`
turns one reading into a rich renderable that fits 100 columns; `StatusPanel`
redraws it with `rich.live.Live` at most twice a second, only on a terminal.
The same source feeds `/health` and `/metrics` (aibot/http.py).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from aibot.logs import ContextFilter
from aibot.secrets import redact
from aibot.snapshots import KeyRingSnapshot, KeySnapshot, PoolSnapshot

__all__ = [
    "NOTABLE",
    "BotInfo",
    "Event",
    "EventLog",
    "SourceFunctions",
    "StatusPanel",
    "StatusSource",
    "render",
]

# Pass as `extra=NOTABLE` to make an INFO line an event of the panel
# (overflow, restart, pool paused...); WARNING and above always are.
NOTABLE = {"notable": True}
# INFO lines from code that does not know NOTABLE, recognised by these words.
_NOTABLE_WORDS = ("disabled", "overflow", "restart", "paused", "resumed", "draining", "ready")

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


@dataclass(slots=True, frozen=True)
class BotInfo:
    """The bot as a whole. `shards` holds (shard id, latency in ms or None while
    the shard is not connected); `mode` says which pools run here."""

    name: str
    guilds: int
    shards: tuple[tuple[int, float | None], ...]
    uptime_s: float
    gateway_up: bool
    mode: str = "all pools"


@dataclass(slots=True, frozen=True)
class Event:
    """Something an operator should see: `time` is unix seconds, `level` a
    logging level name, `pool` the pool concerned ("" for the bot)."""

    time: float
    level: str
    pool: str
    text: str


class StatusSource(Protocol):
    """Where the panel, `/health` and `/metrics` read from. Each call returns a
    fresh plain-data snapshot; none may block or hold a key."""

    def bot_info(self) -> BotInfo: ...

    def pools(self) -> list[PoolSnapshot]: ...

    def events(self) -> list[Event]: ...


@dataclass(slots=True)
class SourceFunctions:
    """A `StatusSource` made of three callables, for the composition root:
    `SourceFunctions(bot_info=..., pools=lambda: [p.snapshot() for p in ...],
    events=event_log.events)`."""

    bot_info: Callable[[], BotInfo]
    pools: Callable[[], list[PoolSnapshot]]
    events: Callable[[], list[Event]] = list


class _EventHandler(logging.Handler):
    """Feeds an EventLog with WARNING+ records and notable INFO ones."""

    def __init__(self, log: EventLog) -> None:
        super().__init__(logging.INFO)
        self.log = log
        self.addFilter(ContextFilter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if record.levelno < logging.WARNING and not _notable(record):
                return
            text = record.getMessage().splitlines()[0] if record.msg else ""
            if record.exc_info and record.exc_info[0] is not None:
                text = f"{text} ({record.exc_info[0].__name__})"
            pool = getattr(record, "pool", "")
            self.log.add(Event(record.created, record.levelname, pool, text))
        except Exception:
            self.handleError(record)


def _notable(record: logging.LogRecord) -> bool:
    if getattr(record, "notable", False):
        return True
    message = str(record.msg).lower()
    return any(word in message for word in _NOTABLE_WORDS)


class EventLog:
    """The last `maxlen` events, oldest first. Attach `handler` to a logger (or
    pass it to `setup_logging(extra_handlers=...)`, which also redacts it)."""

    def __init__(self, maxlen: int = 100) -> None:
        self._events: deque[Event] = deque(maxlen=maxlen)
        self.handler: logging.Handler = _EventHandler(self)

    def add(self, event: Event) -> None:
        self._events.append(event)

    def events(self) -> list[Event]:
        return list(self._events)


def render(source: StatusSource, *, events: int = 8) -> RenderableType:
    """One reading of `source` as a panel: the bot line, a row per pool, key
    health per ring, and the last `events` events."""
    info = source.bot_info()
    pools = source.pools()
    parts: list[RenderableType] = [_bot_line(info), _pool_table(pools)]
    rings = [ring for pool in pools for ring in pool.rings]
    if rings:
        parts += [Text("keys", "bold dim"), _key_table(rings)]
    recent = source.events()[-events:] if events else []
    if recent:
        parts += [Text("events", "bold dim"), _event_table(recent)]
    return Panel(
        Group(*parts),
        title=f"aibot · {info.name}",
        title_align="left",
        border_style="blue" if info.gateway_up else "red",
        box=box.ROUNDED,
    )


def _bot_line(info: BotInfo) -> Text:
    line = Text()
    line.append("gateway up" if info.gateway_up else "gateway DOWN", _gateway_style(info))
    line.append(f" · {info.guilds} guilds · {_shards(info.shards)}")
    line.append(f" · up {_duration(info.uptime_s)} · {info.mode}")
    return line


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


def _pool_table(pools: list[PoolSnapshot]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, expand=False, padding=(0, 1), pad_edge=False)
    for name in ("pool", "state", "workers", "queue", "done", "failed", "p50", "p95", "keys"):
        table.add_column(name, justify="left" if name in ("pool", "state") else "right")
    table.add_column("budget", justify="right")
    for pool in pools:
        keys_style = "red" if pool.keys_healthy == 0 else ""
        table.add_row(
            Text(pool.name, "bold"),
            Text(pool.state, _STATE_STYLE.get(pool.state, "")),
            f"{pool.workers_busy}/{pool.workers_total}",
            f"{pool.queued}/{pool.queue_size}",
            _count(pool.done),
            Text(_count(pool.failed), "red" if pool.failed else ""),
            _ms(pool.p50_ms),
            _ms(pool.p95_ms),
            Text(f"{pool.keys_healthy}/{pool.keys_total}", keys_style),
            _budget(pool),
        )
    return table


def _budget(pool: PoolSnapshot) -> str:
    if pool.budget_limit <= 0:
        return "-"
    used = max(pool.budget_limit - pool.budget_left, 0.0)
    return f"{_count(used)} of {_count(pool.budget_limit)}"


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


def _event_table(events: list[Event]) -> Table:
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
            event.text,
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


def _ms(value: float) -> str:
    if value <= 0:
        return "-"
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
