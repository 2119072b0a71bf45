"""The cluster demo, `python3 run.py --demo --cluster`: a throwaway Redis, a gateway
and two worker processes; a worker killed in the middle of an answer, the job
reclaimed by the other and answered once; every process it started gone after it
(checked by PID), also after Ctrl-C. Without redis-server it says how to install it."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from aibot.cli import EXIT_CONFIG, run

ROOT = Path(__file__).resolve().parents[1]
DEMO = [sys.executable, "run.py", "--demo", "--cluster", "--no-panel"]

needs_redis = pytest.mark.skipif(
    shutil.which("redis-server") is None and not os.environ.get("CI"),
    reason="redis-server is not installed (apt-get install redis-server)",
)


def _started(transcript: str) -> set[int]:
    """The PIDs of the processes the demo says it started: Redis and the workers."""
    return {int(pid) for pid in re.findall(r"pid (\d+)", transcript)}


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
@needs_redis
def test_a_worker_killed_mid_answer_is_replaced_and_the_member_answered_once() -> None:
    # The owner's own settings in the shell change nothing the demo does.
    owners = {**os.environ, "AIBOT_LEASE_SECONDS": "120", "AIBOT_HTTP": "127.0.0.1:1"}
    done = subprocess.run(DEMO, cwd=ROOT, capture_output=True, text=True, timeout=300, env=owners)

    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == "verdict: answered once, 0 lost", done.stdout[-3000:]
    flat = " ".join(done.stdout.split())
    held = re.search(r"(worker-[ab]) held the job .* kill -9 \d+", flat)
    assert held, flat
    reclaimed = re.search(r"(worker-[ab]) reclaimed it [\d.]+ s after the kill", flat)
    assert reclaimed and reclaimed[1] != held[1], flat
    assert "1 deferral, 1 whole answer, 0 channel messages" in flat
    alert = "the gateway posted in #🚨-알림-채널: 🔄 A `chat` worker stopped answering"
    assert alert in flat and f"{reclaimed[1]} took over 1 of its unfinished job(s)" in flat, flat
    redis_and_workers = _started(done.stdout)
    assert len(redis_and_workers) == 3, flat
    assert not [pid for pid in redis_and_workers if _running(pid)], "all stopped"
    assert "Traceback" not in done.stderr and "Unclosed" not in done.stderr, done.stderr[-3000:]


@pytest.mark.slow
@needs_redis
def test_ctrl_c_mid_job_stops_every_process_the_demo_started() -> None:
    demo = subprocess.Popen(
        DEMO,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    seen = ""
    try:
        assert demo.stdout is not None
        for line in demo.stdout:
            seen += line
            if line.startswith("alex in"):  # the job is on its way to a worker
                break
        demo.send_signal(signal.SIGINT)
        out, err = demo.communicate(timeout=60)
    finally:
        demo.kill()
    assert demo.returncode == 0, err[-3000:]
    assert "verdict" not in out
    redis_and_workers = _started(seen)
    assert len(redis_and_workers) == 3, seen
    assert not [pid for pid in redis_and_workers if _running(pid)], "all stopped"
    assert "Traceback" not in err and "Unclosed" not in err, err[-3000:]


def test_without_redis_server_it_says_how_to_install_it(tmp_path: Path) -> None:
    # A PATH with no redis-server on it (the demo runs with this very interpreter).
    done = subprocess.run(
        DEMO,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PATH": str(tmp_path)},
    )

    assert done.returncode != 0
    assert "sudo apt install redis-server" in done.stderr
    assert "brew install redis" in done.stderr
    assert "Traceback" not in done.stderr
    assert "DEMO" not in done.stdout, "nothing started"


def test_cluster_goes_only_with_demo(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--cluster"], prog="run.py") == EXIT_CONFIG
    assert "--cluster goes with --demo: python3 run.py --demo --cluster" in capsys.readouterr().err
