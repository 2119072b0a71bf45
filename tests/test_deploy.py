"""Deployment: the systemd units verify, and the bot speaks sd_notify."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aibot.settings import Settings
from aibot.systemd import Notifier

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "deploy" / "systemd"
VENV_PYTHON = "/opt/aibot/.venv/bin/python"


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (apt-get install -y systemd)",
)
def test_the_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify checks that ExecStart's program exists: point the copies at this
    # Python, while the shipped units keep the /opt/aibot install paths. Each
    # unit gets the local-Redis drop-in, as on the machine that runs Redis too;
    # the worker is verified as a single pool and as a group (chat,image).
    python = str(Path(sys.executable).resolve())
    for name in ("aibot.service", "aibot@.service"):
        text = (UNITS / name).read_text()
        assert VENV_PYTHON in text
        (tmp_path / name).write_text(text.replace(VENV_PYTHON, python))
        drop_ins = tmp_path / f"{name}.d"
        drop_ins.mkdir()
        shutil.copy(UNITS / "local-redis.conf", drop_ins)
    units = ["aibot.service", "aibot@video.service", r"aibot@chat\x2cimage.service"]
    result = subprocess.run(
        ["systemd-analyze", "verify", *(str(tmp_path / unit) for unit in units)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # Unknown or misspelt settings are only warnings: there must be none for ours.
    assert "aibot" not in output and "local-redis" not in output, output


def test_the_units_are_what_the_deploy_readme_promises() -> None:
    for name in ("aibot.service", "aibot@.service"):
        unit = (UNITS / name).read_text()
        for line in (
            "Type=notify",
            "User=aibot",
            "WorkingDirectory=/opt/aibot",  # where run.py finds .env.multi
            "Restart=on-failure",
            # Exit 2 (bad configuration, refused token): restarting cannot help.
            "RestartPreventExitStatus=2",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ReadWritePaths=/opt/aibot/data /opt/aibot/backups /opt/aibot/logs",
            "KillSignal=SIGTERM",
        ):
            assert f"\n{line}\n" in unit, f"{name}: {line}"
        # .env.multi is read by run.py, with --check's rules, not by systemd's.
        assert "EnvironmentFile=/opt/aibot/.env.multi" not in unit, name
        settings = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line[:40])
        # Above AIBOT_DRAIN_SECONDS' default of 30 s, with room to close the gateway.
        assert int(settings["TimeoutStopSec"]) > 30 + 15
    worker = (UNITS / "aibot@.service").read_text()
    # On the command line, where no environment file can override them.
    [start] = [line for line in worker.splitlines() if line.startswith("ExecStart=")]
    assert "AIBOT_GATEWAY=off AIBOT_POOLS=%I " in start


def test_the_daily_backup_goes_where_the_units_let_it_write() -> None:
    # The install block's folders, under /opt/aibot, as the units see them.
    settings = Settings.from_env({"AIBOT_DATA_DIR": "/opt/aibot/data"})
    readme = (ROOT / "deploy" / "README.md").read_text()
    [made] = re.findall(r"install -d -o aibot -g aibot -m 750 ([a-z ]+)", readme)
    assert settings.rooms.backup_dir.name in made.split()
    for name in ("aibot.service", "aibot@.service"):
        [writable] = re.findall(r"\nReadWritePaths=(.+)\n", (UNITS / name).read_text())
        assert str(settings.rooms.backup_dir) in writable.split(), name


def test_local_redis_is_an_ordering_dependency_only() -> None:
    drop_in = (UNITS / "local-redis.conf").read_text()
    settings = [line for line in drop_in.splitlines() if line and not line.startswith("#")]
    # Start after Redis, stop before it; a Redis restart neither stops nor restarts aibot.
    assert settings == ["[Unit]", "Wants=redis-server.service", "After=redis-server.service"]
    readme = (ROOT / "deploy" / "README.md").read_text()
    for unit in ("aibot.service", "aibot@.service"):
        assert f"/etc/systemd/system/{unit}.d/local-redis.conf" in readme


def test_the_install_block_runs_run_py_from_the_install_folder() -> None:
    # Word for word: run.py --check and --sync as the aibot user find .env.multi
    # and write ./data only when they run in /opt/aibot.
    readme = (ROOT / "deploy" / "README.md").read_text()
    block = readme.split("## Install", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    moved = commands.index("cd /opt/aibot")
    runs = [n for n, command in enumerate(commands) if "run.py" in command]
    assert len(runs) == 2 and min(runs) > moved
    assert "--constraint constraints.txt" in block
    assert (ROOT / "constraints.txt").is_file()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A stand-in for systemd's notification socket."""
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(10)
        yield sock, path


def received(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_ready_status_and_stopping_reach_systemd(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready("serving 4 pools")
    assert received(sock) == "READY=1\nSTATUS=serving 4 pools"
    assert notifier.status("draining:\n3 jobs left")
    assert received(sock) == "STATUS=draining: 3 jobs left"
    assert notifier.stopping()
    assert received(sock) == "STOPPING=1"


def test_the_abstract_namespace_is_supported() -> None:
    name = f"aibot-test-{os.getpid()}-{time.perf_counter_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        assert Notifier.from_env({"NOTIFY_SOCKET": "@" + name}).ready()
        assert received(sock) == "READY=1"


def test_outside_systemd_nothing_is_sent() -> None:
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    assert not notifier.ready()
    notifier.start_watchdog()
    notifier.stop_watchdog()


def test_the_watchdog_is_for_the_process_systemd_named() -> None:
    env = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "60000000"}
    assert Notifier.from_env(env).watchdog_interval == 30.0
    other = Notifier.from_env(env | {"WATCHDOG_PID": str(os.getpid() + 1)})
    assert other.watchdog_interval is None


def test_the_watchdog_pings_from_a_thread(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})
    notifier.start_watchdog()
    try:
        assert [received(sock) for _ in range(3)] == ["WATCHDOG=1"] * 3
    finally:
        notifier.stop_watchdog()


async def test_the_watchdog_stops_pinging_while_the_loop_is_stuck(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, path = notify_socket
    sock.setblocking(False)
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000"})
    notifier.start_watchdog(asyncio.get_running_loop())
    try:
        pings, deadline = 0, time.perf_counter() + 10
        while pings < 3 and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
            pings += drain(sock)
        assert pings >= 3  # a live loop: pings keep coming
        # The loop is stuck for some 60 intervals: the callback cannot run, so
        # at most the pings already on their way arrive, not one per interval.
        time.sleep(0.6)
        assert drain(sock) <= 2
    finally:
        notifier.stop_watchdog()


def drain(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            sock.recv(4096)
        except BlockingIOError:
            return count
        count += 1
