"""Cluster mode by environment: `--check` validates it (and pings Redis), and
without AIBOT_REDIS_URL nothing changes: redis is not even imported."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from aibot.check import main
from tests.cluster_processes import ROOT
from tests.fixtures.redis_server import RedisServer

KEYS = "\n".join(f"MINIMAX_API_KEY_{n}=mm-key-{n}-abcdefgh" for n in range(1, 5))
ISOLATED = ("DISCORD_TOKEN", "AIBOT_DATA_DIR", "AIBOT_HTTP", "AIBOT_REDIS_URL", "AIBOT_POOLS")


def check(tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    for name in ISOLATED:
        monkeypatch.delenv(name, raising=False)
    env_file = tmp_path / ".env.multi"
    env_file.write_text(f"DISCORD_TOKEN=t\n{KEYS}\nAIBOT_DATA_DIR={tmp_path / 'd'}\n{text}")
    console = Console(record=True, width=160)
    status = main(argparse.Namespace(env_file=str(env_file)), console=console)
    return status, console.export_text()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_worker_process_with_redis_answering_would_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer
) -> None:
    status, out = check(
        tmp_path,
        f"AIBOT_HTTP=off\nAIBOT_REDIS_URL={redis_server.url}\nAIBOT_GATEWAY=off\n"
        "AIBOT_POOLS=video\nAIBOT_NODE=video-1\n",
        monkeypatch,
    )
    assert status == 0, out
    assert "cluster mode: node video-1, worker (no gateway), pools here: video" in out
    assert "warning" not in out, "a pool subset is how cluster mode splits the work"


def test_redis_not_answering_is_a_problem_and_its_url_is_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"redis://:hunter2-password@127.0.0.1:{_closed_port()}/0"
    status, out = check(tmp_path, f"AIBOT_HTTP=off\nAIBOT_REDIS_URL={url}\n", monkeypatch)
    assert status == 2
    assert "AIBOT_REDIS_URL: Redis does not answer" in out
    assert "hunter2" not in out


def test_a_worker_without_redis_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    status, out = check(tmp_path, "AIBOT_HTTP=off\nAIBOT_GATEWAY=off\n", monkeypatch)
    assert status == 2
    assert "AIBOT_GATEWAY: off (a worker process) needs AIBOT_REDIS_URL" in out


def test_no_pool_at_all_is_only_for_a_cluster_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    status, out = check(tmp_path, "AIBOT_HTTP=off\nAIBOT_POOLS=none\n", monkeypatch)
    assert status == 2
    assert "AIBOT_POOLS: none runs no pool" in out


def test_without_a_redis_url_the_bot_never_imports_redis(tmp_path: Path) -> None:
    program = (
        "import sys\n"
        "from aibot.app import create_bot\n"
        f"create_bot({{'DISCORD_TOKEN': 't', 'AIBOT_DATA_DIR': {str(tmp_path)!r}}})\n"
        "print('redis' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"


def test_check_prints_brackets_in_settings_as_they_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # rich would read "[ab]" as a style tag (and fail on "[/x]").
    status, out = check(tmp_path, "AIBOT_HTTP=off\nAIBOT_CHAT_CHANNELS=채팅방-[ab]\n", monkeypatch)
    assert status == 0, out
    assert "채팅방-[ab]" in out
