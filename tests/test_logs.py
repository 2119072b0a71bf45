"""Logs: one tagged line per event, JSON on request, and never a secret."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from aibot.events import EventLog
from aibot.logs import LogSetup, log_context, setup_logging
from aibot.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
OPENAI_KEY = "sk-proj-" + "a1B2c3D4e5" * 4 + "QrSt"
MINIMAX_KEY = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9." + "Zm9v" * 10
TOKEN = "MTA5ODc2NTQzMjEwOTg3NjU0.GabCdE." + "x" * 38
SECRETS = (OPENAI_KEY, MINIMAX_KEY, TOKEN)


def settings(**env: str) -> Settings:
    base = {
        "DISCORD_TOKEN": TOKEN,
        "OPENAI_API_KEY_1": OPENAI_KEY,
        "MINIMAX_API_KEY_3": MINIMAX_KEY,
    }
    return Settings.from_env(base | env)


@pytest.fixture
def installed() -> Iterator[list[LogSetup]]:
    """Setups made by a test, removed after it (they live on the root logger)."""
    setups: list[LogSetup] = []
    yield setups
    for setup in setups:
        setup.close()


def install(setups: list[LogSetup], config: Settings, **kwargs: Any) -> io.StringIO:
    out = io.StringIO()
    setups.append(setup_logging(config, stream=out, **kwargs))
    return out


def test_a_line_is_tagged_with_pool_shard_and_job(installed: list[LogSetup]) -> None:
    out = install(installed, settings())
    with log_context(pool="chat", shard=0), log_context(job="9f3a2b"):
        logging.getLogger("aibot.pool.chat").info("answered in %.1fs", 2.4)
    logging.getLogger("aibot.app").info("ready")
    first, second = out.getvalue().splitlines()
    assert first.endswith(
        "INFO    [pool=chat shard=0 job=9f3a2b] aibot.pool.chat: answered in 2.4s"
    )
    assert second.endswith("INFO    aibot.app: ready")


def test_a_pool_logger_tags_its_pool_by_itself(installed: list[LogSetup]) -> None:
    out = install(installed, settings())
    logging.getLogger("aibot.pool.video").warning("task lost")
    assert "[pool=video] aibot.pool.video: task lost" in out.getvalue()


async def test_concurrent_jobs_keep_their_own_tags(installed: list[LogSetup]) -> None:
    out = install(installed, settings())
    log = logging.getLogger("aibot.pool.image")

    async def job(job_id: str) -> None:
        with log_context(pool="image", job=job_id):
            await asyncio.sleep(0)
            log.info("start")
            await asyncio.sleep(0)
            log.info("done")

    await asyncio.gather(job("aaa"), job("bbb"))
    lines = out.getvalue().splitlines()
    assert sum("job=aaa" in line for line in lines) == 2
    assert sum("job=bbb" in line for line in lines) == 2


def test_json_format_is_one_object_per_line(installed: list[LogSetup]) -> None:
    out = install(installed, settings(AIBOT_LOG_FORMAT="json"))
    with log_context(pool="video", job="77aa", shard=1):
        logging.getLogger("aibot.pool.video").info("polling\ntask %s", "t-1")
    (line,) = out.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "INFO" and entry["logger"] == "aibot.pool.video"
    assert entry["message"] == "polling\ntask t-1"
    assert (entry["pool"], entry["shard"], entry["job"]) == ("video", "1", "77aa")
    assert entry["time"].endswith("+00:00")


def test_log_level_is_honoured(installed: list[LogSetup]) -> None:
    out = install(installed, settings(LOG_LEVEL="WARNING"))
    logging.getLogger("aibot.app").info("quiet")
    logging.getLogger("aibot.app").warning("loud")
    assert "quiet" not in out.getvalue() and "loud" in out.getvalue()


def test_files_rotate_under_the_log_dir(installed: list[LogSetup], tmp_path: Path) -> None:
    install(installed, settings(AIBOT_LOG_DIR=str(tmp_path / "logs"), AIBOT_LOG_FORMAT="json"))
    logging.getLogger("aibot.app").info("to the file")
    for handler in installed[0].handlers:
        handler.flush()
    entry = json.loads((tmp_path / "logs" / "aibot.log").read_text().splitlines()[-1])
    assert entry["message"] == "to the file"


def log_every_mistake() -> None:
    """What careless code might do with a secret in hand."""
    log = logging.getLogger("aibot.providers.openai")
    log.error("request failed for key %s", OPENAI_KEY)
    log.warning(f"minimax said no to {MINIMAX_KEY}")
    log.info("login with %r", {"token": TOKEN})
    try:
        raise RuntimeError(f"401 Incorrect API key provided: {OPENAI_KEY}")
    except RuntimeError:
        log.exception("call failed")
    log.info("where am I", stack_info=True)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_configured_secret_ever_reaches_the_output(
    installed: list[LogSetup], tmp_path: Path, log_format: str
) -> None:
    events = EventLog()
    config = settings(AIBOT_LOG_DIR=str(tmp_path), AIBOT_LOG_FORMAT=log_format)
    out = install(installed, config, extra_handlers=[events.handler])
    log_every_mistake()
    for handler in installed[0].handlers:
        handler.flush()
    written = out.getvalue() + (tmp_path / "aibot.log").read_text()
    written += "\n".join(event.text for event in events.events())
    for secret in SECRETS:
        assert secret not in written
    assert "sk-...QrSt" in written  # the redacted form says which key it was
    assert "401 Incorrect API key provided" in written  # the rest of the message stays


def test_no_secret_on_the_panel_console_either(installed: list[LogSetup]) -> None:
    console = Console(file=io.StringIO(), width=100, record=True)
    installed.append(setup_logging(settings(), console=console))
    log_every_mistake()
    text = console.export_text()
    assert "request failed for key sk-...QrSt" in text
    for secret in SECRETS:
        assert secret not in text


def test_no_secret_through_a_handler_that_was_there_before(tmp_path: Path) -> None:
    # With OPENAI_LOG set, importing the openai SDK puts a handler of its own on the
    # root logger (`logging.basicConfig()`, to stderr), before aibot sets up its own.
    script = tmp_path / "openai_log.py"
    script.write_text(
        "import logging, sys\n"
        "import openai\n"
        "from aibot.logs import setup_logging\n"
        "from tests.test_logs import OPENAI_KEY, settings\n"
        "setup_logging(settings(), stream=sys.stdout)\n"
        "logging.getLogger('aibot.test').warning('refused: %s', OPENAI_KEY)\n"
    )
    env = {**os.environ, "OPENAI_LOG": "debug", "PYTHONPATH": str(ROOT)}
    ran = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    assert "refused: sk-...QrSt" in ran.stderr  # the SDK's handler wrote the line
    assert OPENAI_KEY not in ran.stderr + ran.stdout


def test_close_removes_the_handlers() -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    setup = setup_logging(settings(), stream=io.StringIO())
    assert len(root.handlers) == len(before) + 1
    setup.close()
    assert root.handlers == before


def test_the_panel_hears_notable_lines_below_log_level(installed: list[LogSetup]) -> None:
    events = EventLog()
    out = install(installed, settings(LOG_LEVEL="WARNING"), extra_handlers=[events.handler])
    log = logging.getLogger("aibot.pool.image")
    log.info("job 9f3a overflowed to admin")
    log.info("answered in 2.4s")
    log.warning("key sk-...ab01 disabled: 401")
    assert [e.text for e in events.events()] == [
        "job 9f3a overflowed to admin",
        "key sk-...ab01 disabled: 401",
    ]
    assert out.getvalue().splitlines()[0].endswith("key sk-...ab01 disabled: 401")
    assert len(out.getvalue().splitlines()) == 1  # LOG_LEVEL still rules the lines
