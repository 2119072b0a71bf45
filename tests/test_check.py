"""`python run.py --check`: every problem of a bad configuration at once, keys only
redacted; exit 0 when aibot would start."""

from __future__ import annotations

import argparse
import socket
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from rich.console import Console

from aibot.check import main
from tests.fixtures.redis_server import RedisServer
from tests.fixtures.run_py import child_env

SECRET = "sk-live-0123456789abcdefWXYZ"


def check(tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    for name in ("DISCORD_TOKEN", "OPENAI_API_KEY_1", "AIBOT_DATA_DIR", "AIBOT_HTTP"):
        monkeypatch.delenv(name, raising=False)
    env_file = tmp_path / ".env.multi"
    env_file.write_text(text)
    console = Console(record=True, width=120)
    status = main(argparse.Namespace(env_file=str(env_file)), console=console)
    return status, console.export_text()


def test_a_bad_file_lists_every_problem_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    status, out = check(
        tmp_path,
        f"OPENAI_API_KEY_1={SECRET}\nAIBOT_CHAT_WORKERS=lots\nAIBOT_TIMEZONE=Nowhere/City\n"
        f"AIBOT_DATA_DIR={tmp_path / 'data'}\nAIBOT_HTTP=off\n",
        monkeypatch,
    )
    assert status == 2
    for expected in (
        "AIBOT_CHAT_WORKERS",
        "AIBOT_TIMEZONE",
        "DISCORD_TOKEN: not set",
        "pools that will run: chat; off (no keys): image, video, admin",
    ):
        assert expected in out
    assert "3 problem(s)" in out
    assert SECRET not in out and "sk-...WXYZ" in out


def test_a_misspelt_name_is_pointed_at(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    status, out = check(
        tmp_path,
        f"DISCORD_TOKEN=abc.def.ghi\nMINIMAX_API_KEY_2={SECRET}\nOPENAI_API_KEY1={SECRET}\n"
        f"AIBOT_CHAT_COOLDWON=10\nAIBOT_NODE=gateway-1\n"
        f"AIBOT_DATA_DIR={tmp_path / 'data'}\nAIBOT_HTTP=off\n",
        monkeypatch,
    )
    assert "OPENAI_API_KEY1: not a variable aibot reads (did you mean OPENAI_API_KEY_1?)" in out
    assert (
        "AIBOT_CHAT_COOLDWON: not a variable aibot reads (did you mean AIBOT_CHAT_COOLDOWN?)"
        in (out)
    )
    assert "AIBOT_NODE" not in out  # cluster mode's: known, if unused here
    assert SECRET not in out
    assert status == 0  # a warning: the image pool has its key


def test_a_good_file_would_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = "\n".join(f"MINIMAX_API_KEY_{n}=mm-key-{n}-abcdefgh" for n in range(1, 5))
    status, out = check(
        tmp_path,
        f"DISCORD_TOKEN=token.value.secret\n{keys}\nAIBOT_DATA_DIR={tmp_path / 'd'}\n"
        "AIBOT_HTTP=off\n",
        monkeypatch,
    )
    assert status == 0, out
    assert "ok: aibot would start (4 keys; providers: minimax)" in out
    assert "token.value.secret" not in out and "mm-key-1-abcdefgh" not in out


def test_a_busy_http_port_and_a_foreign_database_are_problems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "aibot.db").write_bytes(b"not a database at all")
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        status, out = check(
            tmp_path,
            f"DISCORD_TOKEN=t\nOPENAI_API_KEY_4=sk-a\nAIBOT_DATA_DIR={data}\n"
            f"AIBOT_HTTP=127.0.0.1:{port}\nAIBOT_POOLS=admin\n",
            monkeypatch,
        )
    assert status == 2
    assert f"cannot listen on 127.0.0.1:{port}" in out
    assert "is not a SQLite database" in out


def test_a_pool_subset_without_shards_of_its_own_is_warned_about(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    status, out = check(
        tmp_path,
        f"DISCORD_TOKEN=t\nMINIMAX_API_KEY_3=mm-v\nAIBOT_POOLS=video\nAIBOT_HTTP=off\n"
        f"AIBOT_DATA_DIR={tmp_path / 'd'}\n",
        monkeypatch,
    )
    assert status == 0, out
    assert "warning: AIBOT_POOLS runs only video here" in out


def test_a_chat_only_owner_gives_chat_keys_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    status, out = check(
        tmp_path,
        f"DISCORD_TOKEN=t\nOPENAI_API_KEY_1=sk-chat-abcdefgh\nAIBOT_HTTP=off\n"
        f"AIBOT_DATA_DIR={tmp_path / 'd'}\n",
        monkeypatch,
    )
    assert status == 0, out
    assert (
        "pools that will run: chat; off (no keys): image, video, admin, so nothing "
        "overflows to the admin pool. /ping, /status and /instances always answer."
    ) in " ".join(out.split())
    assert out.count("off: no keys") == 3  # the pools table's "here" column
    assert "warning" not in out  # off is not a pool subset run elsewhere


def test_no_key_at_all_would_not_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    status, out = check(
        tmp_path, f"DISCORD_TOKEN=t\nAIBOT_HTTP=off\nAIBOT_DATA_DIR={tmp_path / 'd'}\n", monkeypatch
    )
    assert status == 2
    assert "no pool has a key" in out and "pools that will run: none" in out


def test_a_cluster_gateway_may_run_no_pool_and_a_worker_may_go_without_its_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer
) -> None:
    common = f"DISCORD_TOKEN=t\nAIBOT_REDIS_URL={redis_server.url}\nAIBOT_DATA_DIR={tmp_path}\n"
    status, out = check(tmp_path, common + "AIBOT_POOLS=none\nAIBOT_HTTP=off\n", monkeypatch)
    assert status == 0, out
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        status, out = check(
            tmp_path,
            common + f"AIBOT_GATEWAY=off\nMINIMAX_API_KEY_3=mm-v\nAIBOT_POOLS=video\n"
            f"AIBOT_HTTP=127.0.0.1:{port}\n",
            monkeypatch,
        )
    assert status == 0, out
    assert f"warning: AIBOT_HTTP: cannot listen on 127.0.0.1:{port}" in " ".join(out.split())


def test_log_and_backup_folders_that_cannot_be_written_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    status, out = check(
        tmp_path,
        f"DISCORD_TOKEN=t\nOPENAI_API_KEY_1=sk-chat-abcdefgh\nAIBOT_HTTP=off\n"
        f"AIBOT_DATA_DIR={tmp_path / 'd'}\nAIBOT_LOG_DIR={a_file / 'logs'}\n"
        f"AIBOT_BACKUP_DIR={a_file / 'backups'}\n",
        monkeypatch,
    )
    assert status == 2
    said = " ".join(out.split())
    assert f"AIBOT_LOG_DIR: cannot create or write {a_file / 'logs'}" in said
    assert f"warning: AIBOT_BACKUP_DIR: cannot create or write {a_file / 'backups'}" in said


# `--check` as another user than the files'. Run as root (who may write any file),
# it becomes `nobody`: first it runs the check once as root to import all it needs,
# since the interpreter may be in root's own folder, out of nobody's reach.
CHECK_AS_ANOTHER_USER = """
import argparse, io, os, sys
from rich.console import Console
from aibot.check import main

args = argparse.Namespace(env_file=sys.argv[1])
if os.geteuid() == 0:
    main(args, console=Console(file=io.StringIO()))
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
sys.exit(main(args, console=Console(width=200)))
"""


def test_files_another_user_made_are_named() -> None:
    """`python3 run.py` once as root, then the service as its own user: the folders
    are the service's to write, the store and the log file are not."""
    with tempfile.TemporaryDirectory() as where:  # not tmp_path: its folders are root's only
        root = Path(where)
        data, logs = root / "data", root / "logs"
        for folder in (root, data, logs):
            folder.mkdir(exist_ok=True)
            folder.chmod(0o777)
        sqlite3.connect(data / "aibot.db").close()
        (logs / "aibot.log").write_text("")
        settings = root / ".env.multi"
        settings.write_text(
            f"DISCORD_TOKEN=t\nOPENAI_API_KEY_1=sk-chat-abcdefgh\nAIBOT_HTTP=off\n"
            f"AIBOT_DATA_DIR={data}\nAIBOT_LOG_DIR={logs}\n"
        )
        for file in (data / "aibot.db", logs / "aibot.log", settings):
            file.chmod(0o444)
        done = subprocess.run(
            [sys.executable, "-c", CHECK_AS_ANOTHER_USER, str(settings)],
            env=child_env(),
            capture_output=True,
            text=True,
        )
    said = " ".join(done.stdout.split())
    assert done.returncode == 2, said + done.stderr
    for variable, file in (
        ("AIBOT_DATA_DIR", data / "aibot.db"),
        ("AIBOT_LOG_DIR", logs / "aibot.log"),
    ):
        assert f"{variable}: cannot write {file}: another user's?" in said
