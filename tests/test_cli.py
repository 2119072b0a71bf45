"""The command line (`python3 run.py`, `aibot`, `python -m aibot`): which settings
file it reads, a sentence and exit 1 when Discord cannot be reached, Ctrl-C at any
moment, and `--help` before anything is installed.

Discord is always a loopback address here: a closed port (refused at once) or a
port that accepts connections and never answers.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aibot.settings_file import SettingsFileError, find_settings_file
from tests.fixtures.run_py import ROOT, child_env, copy_run_py, run_py

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# run.py, with discord.py's REST base and gateway pointed at 127.0.0.1:<port>
# (argv[1]), as `aibot.sandbox.fake_discord.pointed_at` does in-process.
POINTED = """\
import runpy, sys
import discord.gateway, discord.http, yarl
port, script, *args = sys.argv[1:]
discord.http.Route.BASE = f"http://127.0.0.1:{port}/api/v10"
discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(f"ws://127.0.0.1:{port}/")
sys.argv = [script, *args]
runpy.run_path(script, run_name="__main__")
"""
TOKEN = "MTIz.discord-token.value"
ONE_SENTENCE = "aibot: Discord cannot be reached: "


# ------------------------------------------------------------- settings file


def test_a_named_settings_file_that_does_not_exist_is_an_error_naming_it(
    tmp_path: Path,
) -> None:
    for mode in ((), ("--check",), ("--sync",)):
        done = run_py(tmp_path, "--env-file", "prod.env", *mode, DISCORD_TOKEN=TOKEN)
        assert done.returncode == 2, (mode, done.stderr)
        assert "settings file prod.env not found (--env-file)" in done.stderr + done.stdout
        assert "Traceback" not in done.stderr


def test_the_default_file_is_found_beside_run_py_from_any_folder(tmp_path: Path) -> None:
    script = copy_run_py(tmp_path)
    (script.parent / ".env.multi").write_text("AIBOT_CHAT_WORKERS=many\nAIBOT_HTTP=off\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = run_py(tmp_path, "--check", cwd=elsewhere, AIBOT_DATA_DIR=str(tmp_path / "data"))
    assert done.returncode == 2
    assert f"settings from {script.parent / '.env.multi'}" in done.stdout
    assert "AIBOT_CHAT_WORKERS" in done.stdout  # read from it


def test_found_beside_run_py_its_relative_paths_are_the_install_s(tmp_path: Path) -> None:
    script = copy_run_py(tmp_path)
    install = script.parent.resolve()
    key = "sk-proj-" + "k3y" * 10
    settings = f"DISCORD_TOKEN={TOKEN}\nOPENAI_API_KEY_1={key}\nAIBOT_HTTP=off\n"
    (install / ".env.multi").write_text(settings)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = run_py(tmp_path, "--check", cwd=elsewhere, COLUMNS="400")
    assert done.returncode == 0, done.stdout + done.stderr
    # The default ./data is the install's, not the folder the command was typed in.
    assert f"store {install / 'data' / 'aibot.db'}" in done.stdout
    assert not (elsewhere / "data").exists()


def test_without_a_settings_file_the_owner_is_told_where_aibot_looked(tmp_path: Path) -> None:
    done = run_py(tmp_path)
    assert done.returncode == 2
    assert "DISCORD_TOKEN is not set" in done.stderr
    assert f"no .env.multi in {tmp_path.resolve()} or {(tmp_path / 'app').resolve()}" in (
        done.stderr
    )


def test_a_misspelt_variable_is_pointed_at_as_the_bot_starts(tmp_path: Path) -> None:
    key = "sk-proj-" + "k3y" * 10
    done = run_py(tmp_path, OPENAI_API_KEY1=key)
    assert (
        "aibot: warning: OPENAI_API_KEY1: not a variable aibot reads "
        "(did you mean OPENAI_API_KEY_1?)" in done.stderr
    )
    assert key not in done.stderr + done.stdout


def test_the_working_folder_comes_before_run_py_s_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here, beside = tmp_path / "here", tmp_path / "beside"
    for folder in (here, beside):
        folder.mkdir()
        (folder / ".env.multi").write_text("LOG_LEVEL=INFO\n")
    monkeypatch.chdir(here)
    assert find_settings_file(None, beside=beside).path == here / ".env.multi"
    (here / ".env.multi").unlink()
    assert find_settings_file(None, beside=beside).path == beside / ".env.multi"
    with pytest.raises(SettingsFileError, match="settings file here is not a file"):
        find_settings_file("here", cwd=tmp_path)


# --------------------------------------------------- Discord cannot be reached


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: connecting is refused at once."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return int(sock.getsockname()[1])


@pytest.fixture
def silent() -> Iterator[socket.socket]:
    """A loopback socket that takes connections and never answers, as a Discord
    behind a broken network would."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        sock.settimeout(20)
        yield sock


def pointed(tmp_path: Path, port: int, *args: str) -> tuple[list[str], dict[str, str]]:
    """The command and environment of run.py with Discord at 127.0.0.1:`port`."""
    command = [sys.executable, "-c", POINTED, str(port), str(copy_run_py(tmp_path)), *args]
    env = child_env(DISCORD_TOKEN=TOKEN, AIBOT_HTTP="off", AIBOT_DATA_DIR=str(tmp_path / "d"))
    return command, env


@pytest.mark.parametrize("mode", [("--sync",), ("--no-panel",)], ids=["sync", "login"])
def test_an_unreachable_discord_is_one_sentence_and_exit_1(
    tmp_path: Path, closed_port: int, mode: tuple[str, ...]
) -> None:
    command, env = pointed(tmp_path, closed_port, *mode)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    [sentence] = [line for line in done.stderr.splitlines() if line.startswith("aibot:")]
    assert sentence.startswith(ONE_SENTENCE)
    assert f"127.0.0.1:{closed_port} failed (Connection refused)" in sentence
    assert "Traceback" not in done.stderr + done.stdout


def test_a_log_folder_that_cannot_be_written_is_one_sentence_and_exit_2(
    tmp_path: Path, closed_port: int
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    command, env = pointed(tmp_path, closed_port, "--no-panel")
    env["AIBOT_LOG_DIR"] = str(a_file / "logs")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr  # systemd does not restart it in vain
    [sentence] = [line for line in done.stderr.splitlines() if line.startswith("aibot:")]
    assert sentence.startswith(f"aibot: AIBOT_LOG_DIR: cannot write log files in {a_file / 'logs'}")
    assert "Traceback" not in done.stderr + done.stdout


@pytest.mark.parametrize("mode", [("--sync",), ("--no-panel",)], ids=["sync", "serve"])
def test_ctrl_c_while_connecting_to_a_silent_discord_exits_0(
    tmp_path: Path, silent: socket.socket, mode: tuple[str, ...]
) -> None:
    command, env = pointed(tmp_path, silent.getsockname()[1], *mode)
    child = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        connection, _ = silent.accept()  # the login request is on its way: no answer
        with connection:
            child.send_signal(signal.SIGINT)
            output, _ = child.communicate(timeout=20)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == 0, output
    assert "Traceback" not in output


# ------------------------------------------------------------- no dependencies


def test_help_needs_no_dependency(tmp_path: Path) -> None:
    # -S: no site-packages, like a fresh machine with only Python.
    done = run_py(tmp_path, "--help", python=("-S",))
    assert done.returncode == 0, done.stderr
    for flag in ("--env-file", "--sync", "--no-panel", "--check", "--demo"):
        assert flag in done.stdout


@pytest.mark.parametrize(
    ("args", "install"), [(("--check",), "aibot"), (("--demo",), "aibot[demo]")]
)
def test_the_aibot_command_says_what_to_install(
    tmp_path: Path, args: tuple[str, ...], install: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-S", "-m", "aibot", *args],
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "is not installed; install it with: pip install" in done.stderr
    assert f"'{install}'" in done.stderr
    assert "Traceback" not in done.stderr


def test_run_py_hands_over_to_its_venv_when_an_import_fails(tmp_path: Path) -> None:
    script = copy_run_py(tmp_path)
    venv_python = script.parent / ".venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    # A stand-in for the .venv's Python that says how it was started.
    venv_python.write_text('#!/bin/sh\necho "venv python: $*"\n')
    venv_python.chmod(0o755)
    done = run_py(tmp_path, "--demo", "--demo-rounds", "1", python=("-S",))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"venv python: {script} --demo --demo-rounds 1\n"


def test_python_dash_m_aibot_is_the_same_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "aibot", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert done.stdout.startswith("usage: aibot ")
