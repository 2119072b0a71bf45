#!/usr/bin/env python3
"""Run aibot from the command line.

    python run.py            start the bot (settings from .env.multi, then the environment)
    python run.py --sync     register the slash commands with Discord, then exit
    python run.py --check    validate the configuration and show it, then exit
    python run.py --demo     the real bot against a simulated Discord and fake providers

Exit status: 0 after a clean stop (SIGTERM or Ctrl-C drain the pools first), 2 when
the configuration is unusable (every problem is printed), 1 when the bot failed.
Only the standard library is imported at the top, so the error for a missing
dependency or setting is a sentence, not a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aibot.discord.bot import AibotBot
    from aibot.settings import Settings

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
ROOT = Path(__file__).resolve().parent
# What `import aibot` needs (pyproject.toml's dependencies, by import name).
REQUIRED = ("discord", "openai", "aiohttp", "tenacity", "rich", "dotenv")
REQUIRED += ("prometheus_client", "simcord")

NO_TOKEN = """\
DISCORD_TOKEN is not set, so aibot cannot connect to Discord.

  1. Copy .env.multi.example to .env.multi.
  2. Set DISCORD_TOKEN (Discord Developer Portal > your application > Bot > Token)
     and at least one API key per pool you use (OPENAI_API_KEY_1, MINIMAX_API_KEY_2, ...).
  3. Check it with:  python run.py --check
     Register the commands once:  python run.py --sync
     Then start:  python run.py

To see aibot work without a token or any key:  python run.py --demo
"""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="run.py",
        description="aibot: one Discord bot, four isolated AI worker pools (chat, image, "
        "video, admin). Settings come from the environment over the --env-file.",
    )
    parser.add_argument(
        "--env-file",
        default=".env.multi",
        metavar="PATH",
        help="dotenv file with the settings; the environment wins (default: .env.multi)",
    )
    parser.add_argument(
        "--sync",
        action="store_true",
        help="register the slash commands with Discord (globally, or with AIBOT_DEV_GUILD "
        "only) and exit; needed once, and after an update changes the commands",
    )
    parser.add_argument(
        "--no-panel",
        action="store_true",
        help="no live status panel; log lines go to stdout (also when stdout is not a terminal)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="validate the configuration, show pools, keys (redacted) and routes, and exit",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="run the real bot against a simulated Discord and fake AI providers: no token, "
        "no keys",
    )
    parser.add_argument(
        "--demo-rounds",
        type=int,
        default=12,
        metavar="N",
        help="with --demo: rounds of the scripted crowd (each about five commands; default 12)",
    )
    return parser.parse_args(argv)


def ensure_environment(argv: Sequence[str]) -> None:
    """On a fresh machine (the README's first command): create `.venv`, install aibot
    into it, and run again inside it. Does nothing when the dependencies import."""
    if all(importlib.util.find_spec(name) for name in REQUIRED):
        return
    venv = ROOT / ".venv"
    python = venv / "bin" / "python"
    if Path(sys.prefix).resolve() == venv.resolve():
        missing = [name for name in REQUIRED if not importlib.util.find_spec(name)]
        print(f"aibot: missing {', '.join(missing)}; run: {python} -m pip install -e .")
        sys.exit(EXIT_CONFIG)
    if not python.exists():
        print("aibot: first run: creating .venv and installing aibot into it ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    probe = "import " + ", ".join(REQUIRED)
    if subprocess.run([python, "-c", probe], capture_output=True).returncode != 0:
        pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, "-e", str(ROOT)], check=True)
    os.execv(python, [str(python), str(ROOT / "run.py"), *argv])


def main(argv: Sequence[str] | None = None) -> int:
    ensure_environment(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.demo:
        return _hand_over("aibot.demo", args)
    if args.check:
        return _hand_over("aibot.check", args)
    from aibot.settings import Settings, SettingsError, load_env

    env = load_env(args.env_file)
    try:
        settings = Settings.from_env(env)
    except SettingsError as error:
        print(f"aibot: {error}", file=sys.stderr)
        print("Fix the variables above (see .env.multi.example), then try again.", file=sys.stderr)
        return EXIT_CONFIG
    if not settings.discord_token:
        print(NO_TOKEN, file=sys.stderr, end="")
        return EXIT_CONFIG
    from aibot import create_bot

    bot = create_bot(env)
    try:
        if args.sync:
            return asyncio.run(sync(bot, settings))
        return asyncio.run(serve(bot, settings, panel=not args.no_panel))
    except KeyboardInterrupt:  # a second Ctrl-C while draining
        return EXIT_OK


def _hand_over(module: str, args: argparse.Namespace) -> int:
    """Run `module.main(args)`: the demo and the check live in modules of their own
    (issue 5); until one exists, say so instead of failing with a traceback."""
    if importlib.util.find_spec(module) is None:
        print(f"aibot: {module} is not available in this version.", file=sys.stderr)
        return EXIT_CONFIG
    return int(importlib.import_module(module).main(args))


async def sync(bot: AibotBot, settings: Settings) -> int:
    """Log in, register the commands, log out."""
    import discord

    bot.sync_only = True
    async with bot:
        try:
            await bot.login(settings.discord_token or "")
        except discord.LoginFailure:
            print("aibot: Discord refused DISCORD_TOKEN; check it.", file=sys.stderr)
            return EXIT_CONFIG
        synced = await bot.sync_commands()
    where = f"guild {settings.dev_guild}" if settings.dev_guild else "every guild (global)"
    names = ", ".join(f"/{command.name}" for command in synced)
    print(f"aibot: registered {len(synced)} commands for {where}: {names}")
    return EXIT_OK


async def serve(bot: AibotBot, settings: Settings, *, panel: bool) -> int:
    """Run until the gateway fails or SIGTERM / Ctrl-C; then drain and close."""
    import discord

    from aibot.app import freeze_startup_heap
    from aibot.logs import setup_logging
    from aibot.status import StatusPanel
    from aibot.systemd import Notifier

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    screen = StatusPanel(bot.status_source(), enabled=panel)
    logs = setup_logging(
        settings,
        console=screen.console if screen.active else None,
        extra_handlers=[bot.events.handler],
    )
    notifier = Notifier.from_env()

    frozen = False

    async def on_ready() -> None:
        nonlocal frozen
        if not frozen:  # the first time only: later READYs are reconnections
            frozen = True
            freeze_startup_heap()
        notifier.ready(f"serving {len(bot.guilds)} guild(s), pools: {', '.join(bot.pools)}")

    bot.add_listener(on_ready, "on_ready")
    screen.start()
    notifier.start_watchdog(loop)
    running = asyncio.create_task(bot.start(settings.discord_token or ""))
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        notifier.stopping("draining the pools")
        await bot.close()
        await asyncio.gather(running, return_exceptions=True)
        stopping.cancel()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        notifier.stop_watchdog()
        screen.stop()
        logs.close()
    if running.done() and not running.cancelled() and running.exception() is not None:
        error = running.exception()
        if isinstance(error, discord.LoginFailure):
            print("aibot: Discord refused DISCORD_TOKEN; check it.", file=sys.stderr)
            return EXIT_CONFIG
        print(f"aibot: stopped: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
