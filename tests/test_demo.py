"""The demo: the real bot in SimCord's Discord against the fake providers, driven by
a scripted crowd. It must show every kind of answer and leave nobody waiting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aibot.demo import run_demo, script

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
ROOT = Path(__file__).resolve().parents[1]


def test_the_script_uses_every_command_and_some_wrong_channels() -> None:
    scenes = [scene for round_ in script(12) for scene in round_]
    assert {s.command for s in scenes} == {"chat", "image", "video", "ping", "status", "instances"}
    wrong = [s for s in scenes if s.command == "chat" and not s.channel.startswith(("채팅", "ai"))]
    assert wrong, "the crowd never tries a wrong channel"


async def test_every_member_gets_an_answer() -> None:
    lines: list[str] = []
    summary = await run_demo(rounds=6, pause=0, say=lines.append, env={"AIBOT_HTTP": "off"})
    assert summary.commands == 30 and summary.answered == summary.commands
    assert summary.private >= 1  # redirects, said privately
    transcript = "\n".join(lines)
    assert "DEMO" in lines[0]
    assert "[1 file(s)]" in transcript  # an image
    assert "You said:" in transcript  # a streamed chat answer
    assert "privately:" in transcript and "#채팅방-1" in transcript  # a redirect, by name
    assert "(no answer yet)" not in transcript


def test_run_py_demo_runs_and_says_it_is_a_demo() -> None:
    done = subprocess.run(
        [sys.executable, "run.py", "--demo", "--demo-rounds", "1", "--no-panel"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "DEMO" in done.stdout and "demo done: 5 commands, 5 answered" in done.stdout
