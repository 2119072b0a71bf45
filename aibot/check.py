"""`python run.py --check`: would aibot start with this configuration?

Prints which settings file it read, what it would run (pools, keys per pool
and provider, redacted, routes, store path, HTTP address), which pools will run
and which are off (a pool with no key at all is off), and every problem at once:
bad variables, a missing token, no pool with a key, a pool with keys none of
which does its work, a data folder or file it cannot write, an HTTP address it cannot
bind. Exit status 0 when it would start, 2 otherwise. What it prints comes from
the settings (channel patterns like `[ab]`, paths, problems quoting a URL's form),
so none of it is read as rich markup.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import socket
from collections.abc import Iterator, Mapping
from difflib import get_close_matches
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from aibot.catalogue import COMMAND_POOL, POOL_INDEX, PROVIDER_KINDS, PROVIDERS
from aibot.router import Router
from aibot.secrets import redact
from aibot.settings import Settings, SettingsError
from aibot.settings_file import SettingsFile, SettingsFileError, find_settings_file, load_env

__all__ = [
    "known_variables",
    "main",
    "problems",
    "redis_problems",
    "report",
    "running",
    "unknown_variables",
]

_SQLITE_HEADER = b"SQLite format 3\x00"
# Names aibot reads outside its settings: run.py's mark of a finished set-up, the
# sandbox's token for the fake Discord.
_READ_ELSEWHERE = frozenset({"AIBOT_RUN_PY_INSTALLED", "AIBOT_FAKE_DISCORD_TOKEN"})
# Names that look like aibot's: a misspelt one is most likely meant for it.
_OURS = ("AIBOT_", *(f"{provider.upper()}_API_KEY" for provider in PROVIDERS))


def _kinds(pool: str) -> tuple[str, ...]:
    """What a pool makes: its own command's kind; admin, the backup, all three."""
    own = tuple(kind for kind, owner in COMMAND_POOL.items() if owner == pool)
    return own or tuple(COMMAND_POOL)


def problems(settings: Settings) -> tuple[list[str], list[str]]:
    """(problems that stop a start, warnings) beyond the variables' own checks."""
    found: list[str] = []
    warnings: list[str] = []
    if not settings.discord_token:
        found.append("DISCORD_TOKEN: not set (Discord Developer Portal > your application > Bot)")
    # A cluster gateway may run no pool itself: the workers run them.
    cluster_gateway = settings.cluster is not None and settings.cluster.gateway
    if not settings.enabled_pools and not cluster_gateway:
        found.append(
            "no pool has a key: set the keys of the pools you use "
            "(OPENAI_API_KEY_1 for chat, MINIMAX_API_KEY_2 for images, ...)"
        )
    for name in settings.enabled_pools:
        pool = settings.pools[name]
        for kind in _kinds(name):
            if any(kind in PROVIDER_KINDS[p] for p in pool.usable_providers):
                continue
            can = [p for p in pool.providers if kind in PROVIDER_KINDS[p]]
            wanted = " or ".join(f"{p.upper()}_API_KEY_{POOL_INDEX[name]}" for p in can)
            message = f"{name} pool: no key for {kind}" + (f" (set {wanted})" if can else "")
            # A gap in the backup weakens it but stops nothing.
            (warnings if name == "admin" else found).append(message)
    chosen = set(settings.enabled_pools) | set(settings.off_pools)  # AIBOT_POOLS
    if settings.cluster is None and not chosen:
        found.append(
            "AIBOT_POOLS: none runs no pool; only a cluster mode gateway may (AIBOT_REDIS_URL)"
        )
    partial = chosen != set(settings.pools)
    if settings.cluster is None and partial and settings.shard_ids is None:
        # Without cluster mode, two processes on one token both receive every
        # interaction: a pool subset needs shards of its own.
        warnings.append(
            "AIBOT_POOLS runs only " + ", ".join(settings.enabled_pools) + " here: the other "
            "pools' commands are not answered by this process; give each process its own "
            "AIBOT_SHARD_IDS, or run all pools in one process"
        )
    found.extend(_store_problems(settings.data_dir))
    if settings.log_dir is not None and _unwritable(settings.log_dir):
        found.append(f"AIBOT_LOG_DIR: cannot create or write {settings.log_dir}")
    elif settings.log_dir is not None and _not_ours(log := settings.log_dir / "aibot.log"):
        found.append(_not_ours_problem("AIBOT_LOG_DIR", log))
    if _unwritable(settings.rooms.backup_dir):  # the daily backup fails; the bot runs
        warnings.append(f"AIBOT_BACKUP_DIR: cannot create or write {settings.rooms.backup_dir}")
    if settings.http is not None:
        # A worker without its port only goes without /health; a gateway stops.
        worker = settings.cluster is not None and not settings.cluster.gateway
        (warnings if worker else found).extend(_http_problems(*settings.http))
    return found, warnings


def unknown_variables(env: Mapping[str, str]) -> list[str]:
    """A warning for each variable named like aibot's (`AIBOT_*`, `OPENAI_API_KEY*`,
    ...) that it does not read, with the nearest name it does: a misspelt name is not
    an error of its value, and its setting would silently not be there."""
    known = [*known_variables(), *_READ_ELSEWHERE]
    unknown = sorted(name for name in env if name.startswith(_OURS) and name not in known)
    warnings = []
    for name in unknown:
        near = get_close_matches(name, known, n=1)
        warnings.append(
            f"{name}: not a variable aibot reads" + (f" (did you mean {near[0]}?)" if near else "")
        )
    return warnings


def known_variables() -> list[str]:
    """Every variable the settings read, cluster mode's too."""
    asked = _Asked()
    with contextlib.suppress(SettingsError):
        Settings.from_env(asked)
    return sorted(asked.names)


class _Asked(Mapping[str, str]):
    """An environment that remembers every name asked for. It holds a Redis URL
    only, so that the settings ask for cluster mode's variables as well."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self._held = {"AIBOT_REDIS_URL": "redis://127.0.0.1:6379/0"}

    def __getitem__(self, name: str) -> str:
        self.names.add(name)
        return self._held[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._held)

    def __len__(self) -> int:
        return len(self._held)


def redis_problems(settings: Settings, timeout: float = 3.0) -> list[str]:
    """Cluster mode: does Redis answer a PING? (The URL may hold a password: the
    problem names the variable, never its value.)"""
    import asyncio

    from aibot.cluster.connection import MasterNotFoundError, connect

    assert settings.cluster is not None

    async def ping() -> None:
        redis = connect(settings.cluster.redis_url, wait=timeout)  # type: ignore[union-attr]
        try:
            async with asyncio.timeout(timeout):
                await redis.ping()
        finally:
            await redis.aclose()

    try:
        asyncio.run(ping())
    except MasterNotFoundError:
        return [
            "AIBOT_REDIS_URL: no Sentinel named there knows a primary for the service "
            "(its name is the one in their `sentinel monitor` line)"
        ]
    except Exception as error:
        why = "no answer in time" if isinstance(error, TimeoutError) else type(error).__name__
        return [f"AIBOT_REDIS_URL: Redis does not answer ({why})"]
    return []


def _unwritable(folder: Path) -> bool:
    """Whether `folder` can be neither written nor made (its nearest existing
    ancestor is no folder, or not ours to write)."""
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    return existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK)


def _not_ours(file: Path) -> bool:
    """Whether `file` is there and this user may not write it: most often made by
    another user (`python3 run.py` once as root, then the service as its own user),
    in a folder this user may write."""
    return file.exists() and not (file.is_file() and os.access(file, os.W_OK))


def _not_ours_problem(variable: str, file: Path) -> str:
    return (
        f"{variable}: cannot write {file}: another user's? Give it to the user aibot "
        "runs as (chown)"
    )


def _store_problems(data_dir: Path) -> list[str]:
    database = data_dir / "aibot.db"
    if _unwritable(data_dir):
        return [f"AIBOT_DATA_DIR: cannot create or write {data_dir}"]
    # SQLite's write-ahead log and its index stay beside the file after a crash.
    files = (database, data_dir / "aibot.db-wal", data_dir / "aibot.db-shm")
    if not_ours := [_not_ours_problem("AIBOT_DATA_DIR", f) for f in files if _not_ours(f)]:
        return not_ours
    if database.exists():
        with database.open("rb") as file:
            if database.stat().st_size and file.read(16) != _SQLITE_HEADER:
                return [f"AIBOT_DATA_DIR: {database} is not a SQLite database"]
    return []


def _http_problems(host: str, port: int) -> list[str]:
    if port == 0:
        return []
    try:
        with socket.create_server((host, port)):
            return []
    except OSError as error:
        why = "in use" if error.errno == errno.EADDRINUSE else error.strerror or str(error)
        return [f"AIBOT_HTTP: cannot listen on {host}:{port} ({why})"]


def report(settings: Settings, console: Console) -> None:
    """The tables: pools and their keys (redacted), then routes and the process."""
    pools = Table(title="pools", title_justify="left", expand=False)
    for column in ("pool", "here", "workers", "queue", "providers: keys (rpm per key)"):
        pools.add_column(column)
    for name, pool in settings.pools.items():
        keys = "\n".join(
            f"{p}: {', '.join(redact(k) for k in pool.keys_for(p)) or '-'} ({pool.rpm[p]:g})"
            for p in pool.providers
        )
        here = _here(settings, name)
        pools.add_row(*map(Text, (name, here, str(pool.workers), str(pool.queue_size), keys)))
    console.print(pools)
    console.print(running(settings), highlight=False, soft_wrap=True, markup=False)
    routes = Table(title="routes", title_justify="left")
    for column in ("pool", "commands", "channels", "guilds", "cooldown / daily quota"):
        routes.add_column(column)
    for name, patterns, commands in Router(settings).routes():
        pool = settings.pools[name]
        guilds = ", ".join(map(str, sorted(pool.guilds))) or "all"
        limits = f"{pool.cooldown:g} s / {pool.daily_quota or 'unlimited'}"
        names = " ".join(f"/{c}" for c in commands)
        routes.add_row(*map(Text, (name, names, ", ".join(patterns), guilds, limits)))
    console.print(routes)
    http = "off" if settings.http is None else "{}:{}".format(*settings.http)
    token = redact(settings.discord_token) if settings.discord_token else "not set"
    shards = (
        f"{settings.shard_ids or 'all'} of {settings.shard_count}"
        if settings.shard_count
        else "Discord's recommendation"
    )
    console.print(
        f"token {token}  store {settings.data_dir.absolute() / 'aibot.db'}  http {http}  "
        f"shards {shards}  day boundary {settings.timezone.key}",
        highlight=False,
        markup=False,
    )
    cluster = settings.cluster
    if cluster is not None:  # never the URL: it may hold a password
        role = "gateway" if cluster.gateway else "worker (no gateway)"
        if cluster.standby:
            ids = ", ".join(map(str, settings.shard_ids or ()))
            shards = f"shards {ids}" if ids else "every shard"
            role = f"standby gateway for {shards} (takes them over when their claims end)"
        here = ", ".join(settings.enabled_pools) or "none"
        console.print(
            f"cluster mode: node {cluster.node}, {role}, pools here: {here}, "
            f"prefix {cluster.prefix}, lease {cluster.lease_seconds:g} s",
            highlight=False,
            markup=False,
        )


def _here(settings: Settings, name: str) -> str:
    if name in settings.enabled_pools:
        return "yes"
    return "off: no keys" if name in settings.off_pools else "no (AIBOT_POOLS)"


def running(settings: Settings) -> str:
    """Which pools will run here and which are off, in one sentence."""
    runs = ", ".join(settings.enabled_pools) or "none"
    words = f"pools that will run: {runs}"
    if settings.off_pools:
        words += f"; off (no keys): {', '.join(settings.off_pools)}"
        if "admin" in settings.off_pools:
            words += ", so nothing overflows to the admin pool"
    # The admin cog does not need the admin pool: these answer from snapshots.
    return words + ". /ping, /status and /instances always answer."


def main(
    args: argparse.Namespace,
    console: Console | None = None,
    *,
    settings_file: SettingsFile | None = None,
) -> int:
    """The check of the settings in `settings_file` (default: found from
    `args.env_file` as the command line does) over the environment."""
    console = console or Console()
    if settings_file is None:
        try:
            settings_file = find_settings_file(args.env_file)
        except SettingsFileError as error:
            console.print(f"aibot: {error}.", style="bold red", highlight=False, markup=False)
            return 2
    console.print(settings_file.describe(), highlight=False, soft_wrap=True, markup=False)
    env = load_env(settings_file.path)
    try:
        settings = Settings.from_env(env)
        found: list[str] = []
    except SettingsError as error:
        assert error.partial is not None
        settings, found = error.partial, list(error.problems)
    more, warnings = problems(settings)
    found += more
    warnings += unknown_variables(env)
    if settings.cluster is not None:
        found.extend(redis_problems(settings))
    report(settings, console)
    for warning in warnings:
        console.print(
            f"warning: {warning}", style="yellow", highlight=False, soft_wrap=True, markup=False
        )
    if found:
        console.print(f"{len(found)} problem(s): aibot would not start", style="bold red")
        for problem in found:
            console.print(f"  - {problem}", highlight=False, soft_wrap=True, markup=False)
        return 2
    keys = sum(len(k) for pool in settings.pools.values() for k in pool.keys.values())
    pools = settings.pools.values()
    providers = ", ".join(p for p in PROVIDERS if any(pool.keys_for(p) for pool in pools))
    console.print(f"ok: aibot would start ({keys} keys; providers: {providers})", style="green")
    return 0
