"""The command line: `aibot`, `python -m aibot`, and `python3 run.py` (which adds
only setting itself up in `.venv` on a fresh clone).

    aibot            start the bot (settings from .env.multi, then the environment)
    aibot --sync     register the slash commands with Discord, then exit
    aibot --check    validate the configuration and show it, then exit
    aibot --demo     the real bot against a simulated Discord and fake providers
    aibot --demo --cluster   the same over Redis: a gateway, two workers, one killed

Exit status: 0 after a clean stop (SIGTERM or Ctrl-C, at any moment; a running bot
drains its pools first), 2 when the configuration is unusable (every problem is
printed), 1 when the bot failed (Discord unreachable, ...). Each ends with a
sentence, not a traceback.

Flags are read before anything outside the standard library is imported, so
`--help` works before aibot's dependencies are installed. A dependency that is
not installed raises `MissingDependency`: `run.py` answers it by installing, the
`aibot` command by saying what to install.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from aibot.settings_file import SettingsFile, SettingsFileError, find_settings_file

if TYPE_CHECKING:
    from aibot.discord.bot import AibotBot
    from aibot.settings import Settings
    from aibot.systemd import Notifier

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_OK",
    "MissingDependency",
    "main",
    "parse_args",
    "run",
    "say",
    "serve",
    "sync",
]

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
# `--sync` is one login and one request: a Discord that does not answer within
# this many seconds will not answer at all.
SYNC_TIMEOUT = 60.0
# After the pools drained, seconds the gateway gets to close before it is cut
# (a connection attempt to a Discord that does not answer would hold it 30 s).
CLOSE_GRACE = 5.0
# A standby gateway pushes systemd's start timeout this far ahead at each try
# for its shards (every second), so a long wait is not a failed start.
STANDBY_EXTEND_SECONDS = 30


class MissingDependency(Exception):
    """A package aibot needs is not installed: `module` (its import name) and
    `extra`, the pyproject extra that provides it ("" for aibot's own)."""

    def __init__(self, module: str, extra: str = "") -> None:
        self.module = module
        self.extra = extra
        super().__init__(f"the Python package {module!r} is not installed")

    @property
    def requirement(self) -> str:
        """What to install: `aibot` or `aibot[demo]`."""
        return f"aibot[{self.extra}]" if self.extra else "aibot"


def parse_args(argv: Sequence[str] | None = None, prog: str = "aibot") -> argparse.Namespace:
    """The flags (standard library only: `--help` needs no dependency)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="aibot: one Discord bot, four isolated AI worker pools (chat, image, "
        "video, admin). Settings come from the environment over the settings file.",
    )
    parser.add_argument(
        "--env-file",
        metavar="PATH",
        help="dotenv file with the settings; the environment wins (default: .env.multi in "
        "the working folder, else beside run.py; none is fine when the environment has "
        "them). A file named here must exist",
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
        "--migrate-to-redis",
        action="store_true",
        help="copy today's quotas, guild overrides, conversations and unfinished videos "
        "from the embedded store into the Redis of AIBOT_REDIS_URL (cluster mode), and exit",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="run the real bot against a simulated Discord and fake AI providers: no token, "
        "no keys (installs the demo extra on first use from run.py)",
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="with --demo: cluster mode instead, a gateway and two worker processes over a "
        "throwaway Redis (needs redis-server); one worker is killed in the middle of a job",
    )
    parser.add_argument(
        "--demo-rounds",
        type=int,
        default=12,
        metavar="N",
        help="with --demo: rounds of the scripted crowd (each about five commands; default 12)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """The `aibot` command and `python -m aibot`."""
    try:
        return run(argv)
    except MissingDependency as missing:
        say(f"{missing}; install it with: pip install '{missing.requirement}'")
        return EXIT_CONFIG


def run(argv: Sequence[str] | None = None, *, prog: str = "aibot", home: Path | None = None) -> int:
    """Parse `argv` and run the mode it asks for; the exit status. `home` is
    run.py's folder, where `.env.multi` is also looked for. Raises
    `MissingDependency` before doing anything when a dependency is not installed."""
    args = parse_args(argv, prog)
    try:
        return _run(args, prog, home)
    except KeyboardInterrupt:  # Ctrl-C before a running bot handles it (imports, --check)
        return EXIT_OK


def _run(args: argparse.Namespace, prog: str, home: Path | None) -> int:
    if args.cluster and not args.demo:
        say(f"--cluster goes with --demo: {_command(prog)} --demo --cluster")
        return EXIT_CONFIG
    if args.demo and args.cluster:
        return int(_module("aibot.demo.cluster", extra="demo").main(args))
    if args.demo:
        return int(_module("aibot.demo", extra="demo").main(args))
    try:
        found = find_settings_file(args.env_file, beside=home)
    except SettingsFileError as error:
        say(f"{error}.")
        return EXIT_CONFIG
    _work_beside(found)
    if args.check:
        return int(_module("aibot.check").main(args, settings_file=found))
    if args.migrate_to_redis:
        return int(_module("aibot.cluster.migrate").main(found))
    return _start(args, found, _command(prog))


def _start(args: argparse.Namespace, found: SettingsFile, command: str) -> int:
    """The bot (`--sync`: only its commands) with the settings of `found`."""
    app = _module("aibot.app")  # every dependency of the bot, before anything starts
    from aibot.check import unknown_variables
    from aibot.settings import Settings, SettingsError
    from aibot.settings_file import load_env

    env = load_env(found.path)
    for warning in unknown_variables(env):  # a misspelt name: its setting is not there
        say(f"warning: {warning}")
    try:
        settings = Settings.from_env(env)
    except SettingsError as error:
        say(str(error))
        print(f"({found.describe()})", file=sys.stderr)
        print("Fix the variables above (see .env.multi.example), then try again.", file=sys.stderr)
        return EXIT_CONFIG
    if not settings.discord_token:
        print(_no_token(found, command), file=sys.stderr, end="")
        return EXIT_CONFIG
    if not args.sync and (problem := _log_dir_problem(settings)):
        say(problem)
        return EXIT_CONFIG
    if settings.cluster is not None and not settings.cluster.gateway and not args.sync:
        from aibot.app_worker import create_worker
        from aibot.cli_worker import serve_worker

        return asyncio.run(serve_worker(create_worker(env), settings))
    bot = app.create_bot(env)
    if args.sync:
        return asyncio.run(sync(bot, settings))
    return asyncio.run(serve(bot, settings, panel=not args.no_panel))


def _work_beside(found: SettingsFile) -> None:
    """Settings found beside run.py, not in the working folder: work in their folder, so
    that their relative paths (`./data`, the logs, the backups) are the install's."""
    searched = found.looked_in  # empty for a file named with --env-file: left as it is
    if found.path is not None and searched and found.path.parent != Path.cwd().resolve():
        os.chdir(found.path.parent)


def _log_dir_problem(settings: Settings) -> str | None:
    """Why the log file cannot be written in `AIBOT_LOG_DIR` (made if missing)."""
    if settings.log_dir is None:
        return None
    try:
        settings.log_dir.mkdir(parents=True, exist_ok=True)
        (settings.log_dir / "aibot.log").open("a").close()
    except OSError as error:
        why = error.strerror or type(error).__name__
        return f"AIBOT_LOG_DIR: cannot write log files in {settings.log_dir} ({why})"
    return None


def _module(name: str, extra: str = "") -> ModuleType:
    """Import `name`; a dependency missing on the way is a `MissingDependency`."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name is None or error.name.split(".")[0] == "aibot":
            raise
        raise MissingDependency(error.name.split(".")[0], extra) from error


def _command(prog: str) -> str:
    """How the person typed us, for the advice in messages."""
    return f"python3 {prog}" if prog.endswith(".py") else prog


def say(sentence: str) -> None:
    """One sentence for the person at the terminal (stderr), never a traceback."""
    print(f"aibot: {sentence}", file=sys.stderr)


def _no_token(found: SettingsFile, command: str) -> str:
    return f"""\
DISCORD_TOKEN is not set, so aibot cannot connect to Discord.
({found.describe()})

  1. Copy .env.multi.example to .env.multi.
  2. Set DISCORD_TOKEN (Discord Developer Portal > your application > Bot > Token)
     and at least one API key per pool you use (OPENAI_API_KEY_1, MINIMAX_API_KEY_2, ...).
  3. Check it with:  {command} --check
     Register the commands once:  {command} --sync
     Then start:  {command}

To see aibot work without a token or any key:  {command} --demo
"""


# ------------------------------------------------------------------ Discord


async def sync(bot: AibotBot, settings: Settings) -> int:
    """Log in, register the commands, log out (within `SYNC_TIMEOUT`)."""
    from aibot.discord.failures import explain

    bot.sync_only = True
    try:
        async with asyncio.timeout(SYNC_TIMEOUT), bot:
            await bot.login(settings.discord_token or "")
            synced = await bot.sync_commands()
    except Exception as error:
        failure = explain(error, dev_guild=settings.dev_guild)
        if failure is None:
            raise
        say(failure.sentence)
        return EXIT_CONFIG if failure.config else EXIT_FAILED
    where = f"guild {settings.dev_guild}" if settings.dev_guild else "every guild (global)"
    names = ", ".join(f"/{command.name}" for command in synced)
    print(f"aibot: registered {len(synced)} commands for {where}: {names}")
    return EXIT_OK


async def serve(bot: AibotBot, settings: Settings, *, panel: bool) -> int:
    """Run until SIGTERM or Ctrl-C (at any moment, also while connecting) or until
    the gateway fails; then drain the pools and close."""
    from aibot.app import tune_gc_for_serving
    from aibot.discord.failures import explain
    from aibot.logs import setup_logging
    from aibot.snapshots import Connecting
    from aibot.status import StatusPanel
    from aibot.systemd import Notifier

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    connecting = Connecting(bot.status_source())
    screen = StatusPanel(connecting, enabled=panel)
    logs = setup_logging(
        settings,
        console=screen.console if screen.active else None,
        extra_handlers=[bot.events.handler],
    )
    notifier = Notifier.from_env()

    async def on_ready() -> None:
        if not connecting.connected:  # the first time only: later READYs are reconnections
            connecting.connected = True
            tune_gc_for_serving()
        notifier.ready(f"serving {len(bot.guilds)} guild(s), pools: {', '.join(bot.queue.pools())}")

    bot.add_listener(on_ready, "on_ready")
    lost: list[str] = []
    _watch_shards(bot, notifier, lost)
    screen.start()
    notifier.start_watchdog(loop)
    running = asyncio.create_task(bot.start(settings.discord_token or ""))
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        notifier.stopping("draining the pools")
        if not connecting.connected:
            # Still logging in or opening shards: nothing there to finish, and a
            # connection attempt would otherwise go on (and log) until its timeout.
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
        await bot.close()
        await _settle(running, CLOSE_GRACE)
        stopping.cancel()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        notifier.stop_watchdog()
        screen.stop()
        logs.close()
    error = None if running.cancelled() else running.exception()
    if lost and not stop.is_set():
        say(f"stopped: another gateway took over {lost[0]} (this one stalled past its claims)")
        return EXIT_FAILED
    if stop.is_set() or error is None:  # asked to stop: whatever connecting was doing
        return EXIT_OK
    if _shard_conflict(error, settings):
        say(f"this gateway may not start: {error}")
        return EXIT_CONFIG
    failure = explain(error)
    if failure is None:
        say(f"stopped: {type(error).__name__}: {error}")
        return EXIT_FAILED
    say(failure.sentence)
    return EXIT_CONFIG if failure.config else EXIT_FAILED


def _watch_shards(bot: AibotBot, notifier: Notifier, lost: list[str]) -> None:
    """Cluster gateways with `AIBOT_SHARD_IDS`: while a standby waits for its
    shards, systemd's start job goes on (READY=1 comes with Discord's READY, once
    it holds them) and `systemctl status` says whom it waits for; shards taken
    over by another gateway are noted in `lost` (the exit is then a failure)."""

    async def on_standing_by(held: str) -> None:
        # Each try pushes the start timeout on: a standby may wait for days.
        notifier.notify(
            f"EXTEND_TIMEOUT_USEC={STANDBY_EXTEND_SECONDS * 1_000_000}",
            f"STATUS=standing by: {' '.join(held.split())}",
        )

    async def on_shards_lost(words: str) -> None:
        lost.append(words)

    bot.add_listener(on_standing_by, "on_standing_by")
    bot.add_listener(on_shards_lost, "on_shards_lost")


def _shard_conflict(error: BaseException, settings: Settings) -> bool:
    """Another gateway holds this one's shards (cluster mode only: redis is
    imported only then)."""
    if settings.cluster is None:
        return False
    from aibot.cluster.shards import ShardConflict

    return isinstance(error, ShardConflict)


async def _settle(task: asyncio.Task[None], grace: float) -> None:
    """Let `task` end by itself within `grace` seconds, else cancel it."""
    done, _ = await asyncio.wait({task}, timeout=grace)
    if not done:
        task.cancel()
    await asyncio.gather(task, return_exceptions=True)
