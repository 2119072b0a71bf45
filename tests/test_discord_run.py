"""`python run.py`: its flags, what it says when something is missing, `--sync`, and
streaming kept to Discord's pace."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest
import simcord

from aibot import cli, create_bot
from aibot.app import SERVING_GC_THRESHOLD, tune_gc_for_serving
from aibot.sandbox.fake_discord import FakeDiscord, pointed_at
from tests.fixtures.discord import World
from tests.fixtures.run_py import run_py

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CPYTHON_GC_THRESHOLD = 700  # the young generation's, before a bot is set for serving


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """run.py in an empty folder, with none of the caller's aibot settings."""
    return run_py(tmp_path, *args, **env)


def test_help_lists_every_flag(tmp_path: Path) -> None:
    done = run(tmp_path, "--help")
    assert done.returncode == 0
    for flag in ("--env-file", "--sync", "--no-panel", "--check", "--demo"):
        assert flag in done.stdout


def test_without_a_token_it_says_what_to_set_and_how_to_try_the_demo(tmp_path: Path) -> None:
    done = run(tmp_path)
    assert done.returncode == 2
    assert "DISCORD_TOKEN is not set" in done.stderr
    assert ".env.multi.example" in done.stderr
    assert "python3 run.py --demo" in done.stderr
    assert "Traceback" not in done.stderr


def test_every_bad_setting_is_listed_at_once(tmp_path: Path) -> None:
    (tmp_path / ".env.multi").write_text(
        "DISCORD_TOKEN=abc\nAIBOT_CHAT_WORKERS=many\nAIBOT_POOLS=chat,music\n"
    )
    done = run(tmp_path, AIBOT_HTTP="nowhere")
    assert done.returncode == 2
    for name in ("AIBOT_CHAT_WORKERS", "AIBOT_POOLS", "AIBOT_HTTP"):
        assert name in done.stderr
    assert "abc" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_the_environment_wins_over_the_env_file(tmp_path: Path) -> None:
    (tmp_path / "custom.env").write_text("AIBOT_CHAT_WORKERS=many\n")
    done = run(tmp_path, "--env-file", "custom.env", AIBOT_CHAT_WORKERS="4")
    assert done.returncode == 2
    assert "AIBOT_CHAT_WORKERS" not in done.stderr  # valid from the environment
    assert "DISCORD_TOKEN is not set" in done.stderr


async def test_sync_registers_the_commands_with_the_dev_guild_and_starts_nothing(
    aibot_env: dict[str, str],
) -> None:
    dev_guild = 1456074443980801024
    bot = create_bot({**aibot_env, "AIBOT_DEV_GUILD": str(dev_guild)})
    bot.sync_only = True  # what `run.py --sync` sets before logging in
    async with simcord.run(bot) as env:
        env.create_guild("dev", id=dev_guild)
        synced = await bot.sync_commands()
        assert {"chat", "image", "video", "ping", "status", "instances"} <= {c.name for c in synced}
        [put] = [e for e in env.http_requests if e.method == "PUT"]
        assert put.path.endswith(f"/guilds/{dev_guild}/commands")
        assert not bot.store.path.exists(), "the store was never opened"
        await bot.close()


async def test_streaming_edits_keep_to_one_a_second(world: World) -> None:
    ticking = world.tick_reply_clock(0.25)
    world.fake.chat_reply = " ".join(f"word{i}" for i in range(200))
    result = await world.member.slash(world.channel("채팅방-1"), "chat", prompt="count")
    assert result.response.content == world.fake.chat_reply
    edits = [
        e.json if isinstance(e.json, dict) else json.loads(e.json)
        for e in world.env.http_requests
        if e.method == "PATCH"
    ]
    partial = [e for e in edits if e["content"].endswith("▌")]
    assert len(partial) >= 3  # it did stream
    assert len(partial) <= ticking.now / 1.0  # never twice within a second
    assert all(e["allowed_mentions"] == {"parse": []} for e in edits)


async def test_sigterm_drains_the_pools_and_exits_zero(aibot_env: dict[str, str]) -> None:
    """`serve` (what `python3 run.py` runs) over a real socket to the fake Discord."""
    env = {k: v for k, v in aibot_env.items() if k != "AIBOT_SHARD_COUNT"}
    fake = FakeDiscord(shard_count=1, guilds=1, token=env["DISCORD_TOKEN"])

    async def no_identify_wait(shard_id: int | None, *, initial: bool = False) -> None:
        return None  # real Discord spaces IDENTIFYs 5 s apart; the fake does not

    async with fake.running():
        with pointed_at(fake):
            bot = create_bot(env)
            bot.before_identify_hook = no_identify_wait  # type: ignore[method-assign]
            serving = asyncio.create_task(cli.serve(bot, bot.settings, panel=False))
            await fake.wait_ready(timeout=15)
            os.kill(os.getpid(), signal.SIGTERM)
            assert await asyncio.wait_for(serving, 15) == 0
    assert bot.draining and bot.is_closed()
    assert all(pool.snapshot().state == "stopped" for pool in bot.queue.worker.pools.values())


async def test_a_second_bot_whose_http_address_is_taken_stops_before_touching_anything(
    aibot_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`python3 run.py` by mistake beside the running service: it must not take up
    the service's jobs, nor say Discord cannot be reached."""
    env = {k: v for k, v in aibot_env.items() if k != "AIBOT_SHARD_COUNT"}
    fake = FakeDiscord(shard_count=1, guilds=1, token=env["DISCORD_TOKEN"])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env["AIBOT_HTTP"] = f"127.0.0.1:{taken.getsockname()[1]}"
        async with fake.running():
            with pointed_at(fake):
                bot = create_bot(env)
                status = await asyncio.wait_for(cli.serve(bot, bot.settings, panel=False), 15)
    assert status == cli.EXIT_CONFIG  # systemd does not restart it in a loop
    said = capsys.readouterr().err
    assert f"{env['AIBOT_HTTP']} is in use: is aibot already running here?" in said
    assert "Discord cannot be reached" not in said
    assert not bot.store.path.exists(), "its store was never opened, no job taken up"


def test_serving_freezes_the_startup_heap_and_collects_less_often() -> None:
    before = gc.get_threshold()
    # From CPython's own settings, whatever ran before in this process.
    gc.unfreeze()
    gc.set_threshold(CPYTHON_GC_THRESHOLD, *before[1:])
    try:
        tune_gc_for_serving()
        assert gc.get_threshold() == (SERVING_GC_THRESHOLD, *before[1:])
        assert CPYTHON_GC_THRESHOLD < SERVING_GC_THRESHOLD
        assert gc.get_freeze_count() > 0  # what is alive now is out of the collector's sight
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
