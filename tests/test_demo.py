"""The demo: the real bot in SimCord's Discord against the fake providers. A tour
shows every capability once with what the member saw, then a scripted crowd; nobody
is left waiting, and the way to run it for real comes last."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from rich.cells import cell_len

from aibot.demo import STEPS, run_demo, script

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
ROOT = Path(__file__).resolve().parents[1]

# What the transcript must show for each capability of the tour.
MARKERS = {
    "a streamed chat answer, whole": (
        "streamed into one message, written as it grew",
        "You said: 오늘 저녁 메뉴 추천해줘",
        "so that clients can be tested end to end.",
    ),
    "an image": ("Your image", "[image.png,"),
    "an image made from an attached picture": (
        'picture:"scene.png"',
        "Your image — Provider stability · Model",
        "the fake Stability got it at",
        "image/png, 426 bytes, the very bytes attached, with mode image-to-image and strength 0.4.",
    ),
    "a video delivered": ("🎬 Here is your video", "[video.mp4, 32 KB]"),
    "a wrong-channel redirect": ("privately: `/이미지` 명령은 #이미지생성-1, #갤러리에서",),
    "a cooldown": ("privately: ⏱️ Slow down a little: try again in 1 s.",),
    "a 429 moving to another key": ("got the 429", "the call moved to key sk-...ch-"),
    "an overflow to the admin pool": ("at once (admin pool): 🎬",),
    "the /status table": ("│ video │ running · workers", "│ admin │ running"),
    "the /instances table (Korean)": ("풀이 도는 곳", "│ admin │ 명령: /ping, /status, /instances"),
    "a restart that resumes a video": (
        "restarted: a new bot, the same data folder.",
        "new provider tasks after the restart: 0",
    ),
    "an alert in the alert channel": (
        "posted in #🚨-알림-채널",
        "🚨 🔑 A key of the `chat` pool (`openai`) was disabled: `sk-...ch-",
        "Replace it in the settings and restart.",
    ),
    "the way to run it for real": (
        "cp .env.multi.example .env.multi",
        "python3 run.py --check",
        "python3 run.py --sync && python3 run.py",
    ),
}


async def test_the_tour_shows_every_capability_with_what_the_member_saw() -> None:
    lines: list[str] = []
    summary = await run_demo(
        rounds=1, pause=0, width=90, say=lines.append, env={"AIBOT_HTTP": "off"}
    )
    transcript = "\n".join(lines)
    flat = " ".join(transcript.split())  # wrapped lines joined again
    assert "DEMO" in lines[0]
    missing = {
        capability: [marker for marker in markers if " ".join(marker.split()) not in flat]
        for capability, markers in MARKERS.items()
    }
    assert {c: m for c, m in missing.items() if m} == {}, transcript
    assert all(f"/{len(STEPS) + 1} {step.title} " in transcript for step in STEPS)
    assert summary.answered == summary.commands and summary.commands >= 19
    assert "(no answer yet)" not in transcript
    # Every line fits the terminal, counted in cells (a Korean syllable takes two).
    assert max(cell_len(line) for line in lines) <= 90


async def test_korean_channel_names_keep_the_crowd_columns_straight() -> None:
    lines: list[str] = []
    await run_demo(rounds=2, pause=0, say=lines.append, env={"AIBOT_HTTP": "off"}, steps=())
    crowd = [line for line in lines if line.startswith("[round")]
    assert len(crowd) == 10 and any("#이미지생성-1" in line for line in crowd)
    assert len({cell_len(line.split("→")[0]) for line in crowd}) == 1


def test_the_crowd_uses_every_command_and_some_wrong_channels() -> None:
    scenes = [scene for round_ in script(12) for scene in round_]
    assert {s.command.split()[0] for s in scenes} == {
        "chat",
        "image",
        "video",
        *("ping", "status", "instances", "stats", "reset", "admin"),
    }
    wrong = [s for s in scenes if s.command == "chat" and not s.channel.startswith(("채팅", "ai"))]
    assert wrong, "the crowd never tries a wrong channel"


def test_run_py_demo_runs_and_says_it_is_a_demo() -> None:
    done = subprocess.run(
        [sys.executable, "run.py", "--demo", "--demo-rounds", "1", "--no-panel"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "DEMO" in done.stdout
    assert re.search(r"demo done: (\d+) commands, \1 answered", done.stdout), done.stdout[-2000:]
    assert "Unclosed" not in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "moment",
    [
        "aibot DEMO",  # its first line: the simulated Discord and the bot are starting
        "A video, delivered",  # well inside the tour
    ],
)
def test_ctrl_c_ends_the_demo_at_once_and_cleanly(moment: str) -> None:
    demo = subprocess.Popen(
        [sys.executable, "run.py", "--demo", "--no-panel"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert demo.stdout is not None
        for line in demo.stdout:
            if moment in line:
                break
        demo.send_signal(signal.SIGINT)
        out, err = demo.communicate(timeout=60)
    finally:
        demo.kill()
    assert demo.returncode == 0, err[-2000:]
    assert "demo done" not in out
    assert "Unclosed" not in err and "Traceback" not in err, err[-2000:]
