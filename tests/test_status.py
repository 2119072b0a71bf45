"""The console status panel: what an operator sees at a glance."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace

import pytest
from rich.console import Console

from aibot.events import NOTABLE, EventLog
from aibot.logs import log_context
from aibot.snapshots import (
    BotInfo,
    Connecting,
    Event,
    KeyRingSnapshot,
    NodeSnapshot,
    PoolSnapshot,
    SourceFunctions,
)
from aibot.status import StatusPanel, render
from tests.fixtures import status as fixtures


def shown(source: SourceFunctions, width: int = 100) -> str:
    console = Console(record=True, width=width, file=io.StringIO())
    console.print(render(source))
    return console.export_text()


def test_every_pool_has_its_row_with_its_figures() -> None:
    text = shown(fixtures.source())
    rows = {line.split()[1]: line for line in text.splitlines() if len(line.split()) > 2}
    assert "12/32" in rows["chat"] and "3/256" in rows["chat"] and "850ms" in rows["chat"]
    assert "paused" in rows["image"] and "64/64" in rows["image"]
    assert "4/4" in rows["video"] and "31/32" in rows["video"] and "3m00s" in rows["video"]
    assert "draining" in rows["admin"] and "0/128" in rows["admin"]


def test_the_bot_line_shows_guilds_shards_and_uptime() -> None:
    text = shown(fixtures.source())
    assert "gateway up · 12 guilds · shards 0:45ms 1:down · up 1h02m" in text
    assert "gateway DOWN" in shown(fixtures.source(gateway_up=False))


@pytest.mark.parametrize("width", [80, 100])
def test_it_fits_80_and_100_columns_without_cutting_a_cell(width: int) -> None:
    text = shown(fixtures.source(), width=width)
    assert max(len(line) for line in text.splitlines()) <= width
    # No pool row was wrapped onto a second line, no cell cut short.
    assert sum(1 for line in text.splitlines() if "/256" in line) == 1
    rows = [line for line in text.splitlines() if "/256" in line or "/128" in line]
    assert all("…" not in row for row in rows)
    assert "running" in rows[0] and "draining" in rows[1] and "120/174" in rows[0]


def test_the_burst_column_says_what_it_counts() -> None:
    text = shown(fixtures.source(), width=80)
    assert "burst" in text.splitlines()[3]  # the pool table's header
    assert "burst: calls the keys can start right now / the most at once" in text


def test_while_connecting_the_bot_line_says_so_and_counts_up() -> None:
    now = [100.0]
    nothing_yet = BotInfo("aibot", 0, (), 0.0, gateway_up=False)
    connecting = Connecting(SourceFunctions(lambda: nothing_yet, list, list), clock=lambda: now[0])
    now[0] += 12
    assert "connecting… 12s" in shown(connecting, width=80)
    now[0] += 60
    text = shown(connecting, width=80)
    assert "connecting… 1m12s" in text and "gateway DOWN" not in text
    assert "no pools yet" in text
    connecting.connected = True
    assert "gateway DOWN" in shown(connecting)


def test_latencies_show_once_jobs_finished_even_at_zero_seconds() -> None:
    # Under SimCord's virtual clock no time passes while the bot works.
    chat = replace(fixtures.pools()[0], done=21, failed=0, p50_ms=0.0, p95_ms=0.0)
    idle = replace(fixtures.pools()[1], done=0, failed=0, p50_ms=0.0, p95_ms=0.0)
    source = fixtures.source()
    text = shown(SourceFunctions(source.bot_info, lambda: [chat, idle], source.events))
    rows = {line.split()[1]: line for line in text.splitlines() if len(line.split()) > 2}
    assert rows["chat"].count("<1ms") == 2
    assert "<1ms" not in rows["image"] and " - " in rows["image"]


def _cluster_source() -> SourceFunctions:
    """The fixtures' bot and pools, seen from a gateway with three live nodes."""
    now = time.time()
    nodes = [
        NodeSnapshot("gateway-1", shards=(0, 1), version="0.1.0", started_at=now - 3725, here=True),
        NodeSnapshot("worker-chat", ("chat", "image"), {"chat": 20, "image": 0}, (), "0.1.0", now),
        NodeSnapshot("worker-video", ("video",), {"video": 3}, (), "0.1.0", now - 125),
    ]
    base = fixtures.source()
    return SourceFunctions(base.bot_info, base.pools, base.events, lambda: nodes)


@pytest.mark.parametrize("width", [80, 100])
def test_in_cluster_mode_each_live_node_has_its_row(width: int) -> None:
    text = shown(_cluster_source(), width=width)
    assert "nodes (3 live)" in text
    rows = {
        line.strip("│ ").split()[0]: line for line in text.splitlines() if line.strip("│ ").strip()
    }
    assert "(here)" in rows["gateway-1"] and "0,1" in rows["gateway-1"]
    assert "1h02m" in rows["gateway-1"] and "0.1.0" in rows["gateway-1"]
    assert "chat(20) image(0)" in rows["worker-chat"]
    assert "video(3)" in rows["worker-video"] and "2m05s" in rows["worker-video"]
    lines = text.splitlines()
    assert lines.index(next(ln for ln in lines if "gateway-1" in ln)) < lines.index(
        next(ln for ln in lines if "worker-chat" in ln)
    ), "this process first"
    assert max(len(line) for line in lines) <= width


def test_in_embedded_mode_there_is_no_nodes_section() -> None:
    assert "nodes (" not in shown(fixtures.source())


def test_on_a_24_line_terminal_the_latest_events_that_fit_are_shown() -> None:
    many = [Event(time.time(), "WARNING", "chat", f"event {n}") for n in range(20)]
    console = Console(record=True, width=80, height=24, file=io.StringIO())
    console.print(render(fixtures.source(events=many)))
    text = console.export_text()
    assert len(text.splitlines()) <= 24
    assert "event 19" in text and "event 0 " not in text


def test_the_last_events_section_is_there_before_any_event() -> None:
    text = shown(fixtures.source(events=[]))
    assert "last events" in text and "none yet" in text


def test_keys_are_shown_redacted_with_their_health() -> None:
    text = shown(fixtures.source())
    assert "sk-...ab02 cooling 12s" in text
    assert "mm-...cd03 disabled (401 invalid key)" in text
    assert "chat/openai" in text and "image/stability" in text


def test_a_whole_key_in_a_snapshot_is_still_shown_redacted() -> None:
    secret = "sk-proj-" + "x" * 40 + "WXYZ"
    chat = fixtures.pools()[0]
    leaky = replace(chat, rings=(KeyRingSnapshot("chat", "openai", (fixtures.key(secret),)),))
    source = fixtures.source()
    text = shown(SourceFunctions(source.bot_info, lambda: [leaky], source.events))
    assert secret not in text
    assert "sk-...WXYZ" in text


def test_the_last_events_are_listed() -> None:
    text = shown(fixtures.source())
    assert "WARN  chat   chat/minimax key mm-...cd03 disabled: 401" in text
    assert "image queue full: job 9f3a overflowed to admin" in text


def test_names_from_discord_are_shown_as_written_never_read_as_styles() -> None:
    # A server owner names their guild, an operator their node, anything at all.
    said = "chat paused by boss in guild=Gamers [/r/gaming] [bold]"
    events = [Event(time.time(), "WARNING", "chat", said)]
    nodes = [NodeSnapshot("node-[/]", ("chat",), {"chat": 1}, (), "[red]0.1", time.time())]
    base = fixtures.source(events=events)
    info = replace(base.bot_info(), name="AI [helper]")
    source = SourceFunctions(lambda: info, base.pools, base.events, lambda: nodes)
    text = shown(source, width=120)
    assert said in text and "aibot · AI [helper]" in text
    assert "node-[/]" in text and "[red]0.1" in text


def test_event_log_keeps_only_the_last_n() -> None:
    events = EventLog(maxlen=3)
    for n in range(10):
        events.add(Event(float(n), "WARNING", "chat", f"event {n}"))
    assert [e.text for e in events.events()] == ["event 7", "event 8", "event 9"]


def test_event_log_keeps_warnings_and_notable_info_from_logging() -> None:
    events = EventLog()
    logger = logging.getLogger("aibot.test.status.events")
    logger.addHandler(events.handler)
    logger.setLevel(logging.DEBUG)
    try:
        logger.info("a chat answered")
        logger.debug("details nobody needs on the panel")
        with log_context(pool="image"):
            logger.info("job 9f3a sent to admin", extra=NOTABLE)
        logger.warning("chat/openai key sk-...ab01 disabled: 401")
        logging.getLogger("aibot.pool.video").addHandler(events.handler)
        logging.getLogger("aibot.pool.video").error("video task lost")
    finally:
        logger.removeHandler(events.handler)
        logging.getLogger("aibot.pool.video").removeHandler(events.handler)
    got = [(e.level, e.pool, e.text) for e in events.events()]
    assert got == [
        ("INFO", "image", "job 9f3a sent to admin"),
        ("WARNING", "", "chat/openai key sk-...ab01 disabled: 401"),
        ("ERROR", "video", "video task lost"),
    ]


def test_the_panel_is_off_when_stdout_is_not_a_terminal() -> None:
    out = io.StringIO()
    panel = StatusPanel(fixtures.source(), console=Console(file=out, force_terminal=False))
    assert not panel.active
    with panel:
        pass
    assert out.getvalue() == ""


def test_the_panel_is_off_with_no_panel() -> None:
    console = Console(file=io.StringIO(), force_terminal=True)
    assert not StatusPanel(fixtures.source(), console=console, enabled=False).active


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_the_panel_redraws_on_a_terminal() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    readings = []
    base = fixtures.source()

    def bot_info() -> BotInfo:
        readings.append(threading.get_ident())
        return base.bot_info()

    with StatusPanel(SourceFunctions(bot_info, base.pools, base.events), console=console):
        # Rich's thread redraws: more readings come without anyone asking.
        assert wait_for(lambda: len(readings) >= 3)
    assert "video" in out.getvalue() and "3/256" in out.getvalue()
    assert any(ident != threading.get_ident() for ident in readings)


async def test_started_from_the_loop_the_panel_reads_snapshots_on_the_loop() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    base = fixtures.source()
    loop_thread = threading.get_ident()
    threads: list[int] = []

    def pools() -> list[PoolSnapshot]:
        asyncio.get_running_loop()  # key rings need the loop, as the real ones do
        threads.append(threading.get_ident())
        return base.pools()

    panel = StatusPanel(SourceFunctions(base.bot_info, pools, base.events), console=console)
    panel.start()
    try:
        deadline = time.perf_counter() + 10
        while len(threads) < 3 and time.perf_counter() < deadline:
            await asyncio.sleep(0.02)
    finally:
        panel.stop()
    assert len(threads) >= 3
    assert set(threads) == {loop_thread}
    assert "chat" in out.getvalue() and "31/32" in out.getvalue()
