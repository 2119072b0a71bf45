"""Running the demo: `run_demo` (the tour, the crowd, the way to run it for real)
and `main`, what `python3 run.py --demo` calls (the status panel on a terminal,
the transcript scrolling above it, Ctrl-C at any moment)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import simcord

from aibot.app import create_bot
from aibot.demo.crowd import play_crowd
from aibot.demo.stage import DEMO_ENV, Stage
from aibot.demo.tour import STEPS, Step
from aibot.demo.transcript import Transcript
from aibot.discord.bot import AibotBot
from aibot.sandbox import FakeProviders
from aibot.sandbox.cdn import LoopbackCdn
from aibot.snapshots import SourceFunctions, StatusSource

__all__ = ["FOR_REAL", "DemoSummary", "main", "run_demo"]

# The way from the demo to a real server (README.md, "To run for real").
FOR_REAL = (
    "cp .env.multi.example .env.multi   # set DISCORD_TOKEN and your pools' keys",
    "python3 run.py --check             # exit 0: it would start",
    "python3 run.py --sync && python3 run.py   # register the commands, then run",
)

# Real seconds SimCord waits for the bot to settle after each command. Below the
# video poll interval, so a command does not wait for a video's next poll: the
# demo moves the simulated clock itself to let videos run.
SETTLE_SECONDS = 2.0

OnBot = Callable[[AibotBot, StatusSource], contextlib.AbstractContextManager[Any]]


@dataclass(slots=True)
class DemoSummary:
    """What the demo did: commands run, answered, answered privately."""

    commands: int = 0
    answered: int = 0
    private: int = 0


async def run_demo(
    *,
    rounds: int = 12,
    say: Callable[[str], None] = print,
    env: Mapping[str, str] | None = None,
    on_bot: OnBot | None = None,
    pause: float = 1.0,
    width: int = 100,
    steps: tuple[Step, ...] = STEPS,
) -> DemoSummary:
    """Play the tour's `steps`, then `rounds` rounds of the crowd; what happened.

    `env` adds to or overrides the demo settings (e.g. AIBOT_HTTP); `on_bot` wraps
    the run once the bot exists, with a status source that follows the bot across
    the restart (the command line attaches the status panel there); `pause` real
    seconds after each step let a person read it; lines are `width` cells wide.
    """
    out = Transcript(say, width)
    with (
        tempfile.TemporaryDirectory(prefix="aibot-demo-") as folder,
        FakeProviders(video_polls=2, chunk_delay=0.01) as fake,
    ):
        # The daily backup goes beside the data folder by default: both stay inside
        # the demo's own folder, so demos running side by side never share one.
        folders = {"AIBOT_DATA_DIR": f"{folder}/data", "AIBOT_BACKUP_DIR": f"{folder}/backups"}
        settings = {**DEMO_ENV, **fake.env(), **folders, **(env or {})}
        first = create_bot(settings)
        # Said before the simulated Discord starts, which takes a couple of seconds.
        out.note(
            "aibot DEMO: a simulated Discord and fake AI providers; nothing leaves this machine."
        )
        out.note(
            "The real bot runs here (pools, router, store, replies); only Discord and the "
            "providers are simulated. Members with Korean clients see Korean answers."
        )
        stage: Stage | None = None
        try:
            async with simcord.run(first, shard_count=2, settle_timeout=SETTLE_SECONDS) as world:
                # The members' attachments, where the bot's worker can download them.
                with LoopbackCdn(world) as cdn:
                    stage = Stage(world, first, fake, cdn, settings, out)
                    await _run_stage(stage, rounds, pause, steps, on_bot)
        finally:
            if stage is None:  # Ctrl-C as it started: the bot has opened its clients
                await first.stop_at_once()
    return DemoSummary(stage.commands, stage.answered, stage.private)


async def _run_stage(
    stage: Stage, rounds: int, pause: float, steps: tuple[Step, ...], on_bot: OnBot | None
) -> None:
    """Play the demo on `stage` (inside `on_bot`), then close whichever bot runs then."""
    first = stage.bot
    source = SourceFunctions(
        lambda: stage.bot.bot_info(),
        lambda: stage.bot.pool_snapshots(),
        first.events.events,
    )
    try:
        with on_bot(first, source) if on_bot else contextlib.nullcontext():
            await _play(stage, rounds, pause, steps)
        await stage.bot.close()
    finally:
        # Ctrl-C (a cancellation) skips the close: stop the jobs and let go of the
        # clients anyway, so no HTTP session is left unclosed.
        await stage.bot.stop_at_once()


async def _play(stage: Stage, rounds: int, pause: float, steps: tuple[Step, ...]) -> None:
    out = stage.out
    await stage.open()
    if stage.bot.http_server is not None:
        url = stage.bot.http_server.url
        out.say(f"health: {url}/health   metrics: {url}/metrics")
    total = len(steps) + bool(rounds)
    for number, step in enumerate(steps, start=1):
        out.heading(number, total, step.title)
        await step.play(stage)
        await asyncio.sleep(pause)
    if rounds:
        out.heading(total, total, f"A crowd: {rounds} round(s) of five members (--demo-rounds)")
        await play_crowd(stage, rounds, pause / 3)
        # The crowd's last videos: their provider tasks need a few more polls.
        for _ in range(30):
            if not stage.bot.queue.jobs():
                break
            await stage.wait(2)
    out.say("")
    out.say(
        f"demo done: {stage.commands} commands, {stage.answered} answered "
        f"({stage.private} privately: redirects and limits)."
    )
    out.say("To run aibot for real (README.md, Quick start), in this folder:")
    for number, command in enumerate(FOR_REAL, start=1):
        out.note(f"  {number}. {command}")


def main(args: argparse.Namespace) -> int:
    """`python3 run.py --demo`: the demo with the status panel (on a terminal) and
    the transcript scrolling above it. Ctrl-C ends it at once, exit 0."""
    from rich.console import Console

    from aibot.logs import setup_logging
    from aibot.settings import Settings
    from aibot.status import StatusPanel

    console = Console()

    @contextlib.contextmanager
    def panel(bot: AibotBot, source: StatusSource) -> Iterator[None]:
        screen = StatusPanel(source, console=console, enabled=not args.no_panel)
        logs = setup_logging(
            Settings.from_env({"LOG_LEVEL": "WARNING"}),
            # On the console even without the panel: rich fits each line to the
            # terminal's width, as the transcript's are.
            console=console,
            extra_handlers=[bot.events.handler],
        )
        screen.start()
        try:
            yield
        finally:
            screen.stop()
            logs.close()

    def say(line: str) -> None:
        # Lines come at the console's width; rich wraps any that would not fit, so
        # the live panel below always knows how many rows the transcript took.
        console.print(line, markup=False, highlight=False)

    try:
        summary = asyncio.run(
            run_demo(say=say, on_bot=panel, rounds=args.demo_rounds, width=console.width)
        )
    except KeyboardInterrupt:
        return 0
    return 0 if summary.answered == summary.commands else 1
