"""The cluster demo's world: a throwaway Redis, the wire-level fake Discord, the
gateway (the real bot, in cluster mode, in this process) and worker processes.

The gateway is built by `create_bot` with `AIBOT_REDIS_URL` set and connects over
a real socket to `FakeDiscord`; each worker is `python -m aibot.demo.worker_node`
(`AIBOT_GATEWAY=off`), answering over the fake Discord's HTTP API and calling the
fake providers. SimCord cannot serve here: its Discord lives inside one process,
and a worker process answers over HTTP. Every process is stopped by its PID when
the world closes, also on Ctrl-C or an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Self, TypeVar

import aibot
from aibot.app import create_bot
from aibot.catalogue import PROVIDERS
from aibot.cluster.connection import connect
from aibot.cluster.heartbeat import live_nodes
from aibot.cluster.streams import GROUP
from aibot.demo.stage import ALERT_CHANNEL, DEMO_ENV
from aibot.discord.bot import AibotBot
from aibot.sandbox import FakeProviders
from aibot.sandbox.fake_discord import DEFAULT_CHANNELS, FakeDiscord, pointed_at
from aibot.sandbox.redis_server import RedisServer

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["PREFIX", "WAIT", "ClusterWorld", "DemoStuck", "Node"]

T = TypeVar("T")

PREFIX = "aibot-demo"
# Generous: processes start in seconds, and the machine may be busy.
WAIT = 60.0
# Seconds a worker gets to drain and exit on SIGTERM before it is killed.
_STOP_GRACE = 15.0
_ROOT = Path(aibot.__file__).resolve().parent.parent


class DemoStuck(Exception):
    """Something the demo waited for did not happen in time; the message says what."""


@dataclass
class Node:
    """A worker process, its output in a file (a pipe nobody reads could fill up)."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, name: str, args: Sequence[str], env: Mapping[str, str], log: Path) -> Self:
        """`python args...` from the project's root as process `name`, its output
        (stdout and stderr) in the file `log`."""
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [sys.executable, *args],
                cwd=_ROOT,
                env=dict(env),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return cls(name, popen, log)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """kill -9, by PID: no clean-up of any kind."""
        self.popen.kill()
        self.popen.wait()

    def stop(self) -> None:
        """SIGTERM (it drains and exits), SIGKILL if it lingers."""
        if self.running:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=_STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class ClusterWorld:
    """Redis (its server and a client), the fakes, the gateway bot, the workers."""

    server: RedisServer
    redis: Redis
    fake: FakeDiscord
    providers: FakeProviders
    bot: AibotBot
    env: Mapping[str, str]
    folder: Path
    nodes: list[Node] = field(default_factory=list)

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls, server: RedisServer, providers: FakeProviders, folder: Path
    ) -> AsyncIterator[ClusterWorld]:
        """The fake Discord and the gateway, connected; on the way out the workers,
        the gateway and the Redis client are stopped and closed."""
        env = _cluster_env(server, providers, folder)
        channels = (*DEFAULT_CHANNELS, ALERT_CHANNEL)  # the gateway posts its alerts there
        fake = FakeDiscord(shard_count=1, guilds=1, token=env["DISCORD_TOKEN"], channels=channels)
        async with fake.running():
            with pointed_at(fake):
                gateway = {"AIBOT_NODE": "gateway", "AIBOT_POOLS": "none"}
                bot = create_bot({**env, **gateway, "AIBOT_DATA_DIR": str(folder / "gateway")})
                redis = connect(server.url)
                world = cls(server, redis, fake, providers, bot, env, folder)
                run = asyncio.create_task(bot.start(fake.token))
                try:
                    await world.within(fake.wait_ready(WAIT), "the gateway connecting to Discord")
                    yield world
                finally:
                    await asyncio.gather(*(asyncio.to_thread(n.stop) for n in world.nodes))
                    await asyncio.wait_for(bot.close(), WAIT)
                    await asyncio.gather(run, return_exceptions=True)
                    await redis.aclose()

    def start_worker(self, name: str, pools: str) -> Node:
        """`python -m aibot.demo.worker_node` running `pools` as node `name`."""
        settings_file = self.folder / "empty.env"  # never the folder's own .env.multi
        settings_file.touch()
        env = {
            **_not_aibots(os.environ),
            **self.env,
            "AIBOT_GATEWAY": "off",
            "AIBOT_NODE": name,
            "AIBOT_POOLS": pools,
            "AIBOT_DATA_DIR": str(self.folder / name),
        }
        urls = [self.fake.base_url, self.fake.ws_url]
        args = ["-m", "aibot.demo.worker_node", *urls, "--env-file", str(settings_file)]
        node = Node.start(name, args, env, self.folder / f"{name}.log")
        self.nodes.append(node)
        return node

    @property
    def lease_seconds(self) -> float:
        """How long a job's lease lasts without renewal (AIBOT_LEASE_SECONDS)."""
        cluster = self.bot.settings.cluster
        assert cluster is not None  # the gateway runs in cluster mode
        return cluster.lease_seconds

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    async def serving(self, pool: str) -> None:
        """Until every worker's heartbeat says it runs `pool`, and the gateway
        knows the pool is served."""

        async def ready() -> bool:
            live = {n.node for n in await live_nodes(self.redis, prefix=PREFIX) if pool in n.pools}
            return live >= {n.name for n in self.nodes} and pool in self.bot.queue.pools()

        await self.until(ready, f"the workers serving {pool}")

    async def live(self) -> list[str]:
        """The names of the processes whose heartbeat has not expired."""
        return [n.node for n in await live_nodes(self.redis, prefix=PREFIX)]

    async def holder(self, pool: str) -> tuple[str, int] | None:
        """Which worker holds `pool`'s job now (its pending entry's consumer) and
        how many times the job has been delivered; None when no job is pending."""
        key = f"{PREFIX}:jobs:{pool}"
        entries = await self.redis.xpending_range(key, GROUP, "-", "+", 1)
        if not entries:
            return None
        return str(entries[0]["consumer"]), int(entries[0]["times_delivered"])

    async def until(self, condition: Callable[[], Awaitable[bool]], what: str) -> None:
        """Check `condition` every 50 ms until it holds; `DemoStuck` after `WAIT`."""
        deadline = time.monotonic() + WAIT
        task = asyncio.current_task()
        while not await condition():
            if task is not None and task.cancelling():
                # Ctrl-C: redis-py can swallow the cancel it was waiting in.
                raise asyncio.CancelledError
            if time.monotonic() > deadline or self._crashed():
                raise DemoStuck(f"no sign of {what} within {WAIT:.0f} s{self._logs()}")
            await asyncio.sleep(0.05)

    async def within(self, waiting: Awaitable[T], what: str) -> T:
        """`waiting`'s result; `DemoStuck` if it takes more than `WAIT` seconds."""
        try:
            return await asyncio.wait_for(waiting, WAIT)
        except TimeoutError:
            raise DemoStuck(f"no sign of {what} within {WAIT:.0f} s{self._logs()}") from None

    def _crashed(self) -> list[Node]:
        """The workers that failed: exited with an error (the demo's kill is a signal,
        and a worker stopped by a terminal's Ctrl-C exits with 0)."""
        return [n for n in self.nodes if (n.popen.poll() or 0) > 0]

    def _logs(self) -> str:
        tails = [f"\n--- {n.name}'s last lines:\n{n.log.read_text()[-1500:]}" for n in self.nodes]
        return "".join(tails)


def _cluster_env(server: RedisServer, providers: FakeProviders, folder: Path) -> dict[str, str]:
    """The demo's settings in cluster mode, pointed at the fakes and this Redis."""
    env = {k: v for k, v in DEMO_ENV.items() if k != "AIBOT_SHARD_COUNT"}  # the fake's one shard
    env.update(providers.env())
    env.update(
        {
            "AIBOT_REDIS_URL": server.url,
            "AIBOT_REDIS_PREFIX": PREFIX,
            "AIBOT_HTTP": "off",
            "AIBOT_BACKUP_DIR": str(folder / "backups"),
            "LOG_LEVEL": "WARNING",
        }
    )
    return env


def _not_aibots(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment without what aibot reads: the owner's own settings (a lease,
    an HTTP port, a Redis) must not change what the demo's workers do."""
    ours = ("AIBOT_", "DISCORD_", "LOG_LEVEL", *(f"{p.upper()}_" for p in PROVIDERS))
    return {name: value for name, value in environ.items() if not name.startswith(ours)}
