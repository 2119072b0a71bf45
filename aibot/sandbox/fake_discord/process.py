"""A fake Discord in a process of its own, and the benchmark's handle on it.

`python -m aibot.sandbox.fake_discord --port 0` (`main`) prints one JSON line
with its URLs and serves Discord and `/_control` until SIGTERM or SIGINT;
`FakeDiscordProcess.spawn` starts it and drives it over `/_control`. A
benchmark keeps the fake's CPU out of the bot's process this way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, ClientTimeout

from .server import DEFAULT_TOKEN, FakeDiscord

__all__ = ["FakeDiscordProcess", "main", "serve"]

# The bot token reaches the child through the environment, not argv (visible in `ps`).
TOKEN_VARIABLE = "AIBOT_FAKE_DISCORD_TOKEN"


class FakeDiscordProcess:
    """A `FakeDiscord` in a child process, driven over its `/_control` endpoints.

    ::

        async with FakeDiscordProcess.spawn(shard_count=2, guilds=16) as fake:
            with pointed_at(fake):
                ...start the bot with fake.token...
                await fake.wait_ready()
                await fake.burst(mix, count=1000, duration=1.0)
                results = await fake.results()
    """

    def __init__(self, info: Mapping[str, Any], token: str) -> None:
        self.port: int = info["port"]
        self.base_url: str = info["base_url"]
        self.ws_url: str = info["ws_url"]
        self.token = token
        self._control = f"http://127.0.0.1:{self.port}/_control"
        self._http = ClientSession(timeout=ClientTimeout(total=120))

    @classmethod
    @contextlib.asynccontextmanager
    async def spawn(
        cls, *, shard_count: int = 2, guilds: int = 4, token: str = DEFAULT_TOKEN
    ) -> AsyncIterator[FakeDiscordProcess]:
        """Start the child, yield its handle once it serves, terminate it afterwards."""
        args = ["--port", "0", "--shards", str(shard_count), "--guilds", str(guilds)]
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "aibot.sandbox.fake_discord",
            *args,
            stdout=asyncio.subprocess.PIPE,
            env=_child_env(token),
        )
        try:
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), 30)
            if not line:
                raise RuntimeError("the fake Discord process exited before it was ready")
            fake = cls(json.loads(line), token)
            try:
                yield fake
            finally:
                await fake._http.close()
        finally:
            if process.returncode is None:
                process.terminate()
                await asyncio.wait_for(process.wait(), 10)

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        async with self._http.request(method, self._control + path, **kwargs) as response:
            data = await response.json(content_type=None)
            if response.status >= 400:
                raise RuntimeError(f"fake Discord {path}: {response.status} {data}")
            return data

    async def wait_ready(self, timeout: float = 30.0) -> list[int]:
        """Until every shard is identified; the ready shard ids."""
        data = await self._call("GET", "/ready", params={"timeout": str(timeout)})
        return data["shards"]

    async def burst(
        self, mix: Sequence[Mapping[str, Any]], *, count: int, duration: float = 1.0
    ) -> float:
        """See `FakeDiscord.burst`; returns once every interaction is sent."""
        spec = {"mix": list(mix), "count": count, "duration": duration}
        return (await self._call("POST", "/burst", json=spec))["seconds"]

    async def results(self) -> dict[str, Any]:
        """See `FakeDiscord.results`."""
        return await self._call("GET", "/results")

    async def reset(self) -> None:
        """See `FakeDiscord.reset`; the child also collects its garbage now."""
        await self._call("POST", "/reset")


def _child_env(token: str) -> dict[str, str]:
    # The project root goes on the path so `-m aibot...` works from any directory.
    root = str(Path(os.path.abspath(__file__)).parents[3])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, TOKEN_VARIABLE: token, "PYTHONPATH": path}


async def serve(*, port: int, shard_count: int, guilds: int, token: str) -> None:
    """Serve a `FakeDiscord` until SIGTERM or SIGINT, after printing its URLs as JSON."""
    # This process stands in for Discord, whose servers do not stop for a garbage
    # collection of the bot's machine. Its automatic collector is off; every
    # /_control/reset (before each measurement) collects instead. Otherwise a full
    # pass over all the fake keeps (25 ms late in a run) lands inside a burst and is
    # timed as the bot's latency.
    gc.disable()
    fake = FakeDiscord(shard_count=shard_count, guilds=guilds, token=token, port=port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with fake.running():
        info = {"port": fake.port, "base_url": fake.base_url, "ws_url": fake.ws_url}
        print(json.dumps(info), flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m aibot.sandbox.fake_discord`: serve until SIGTERM or SIGINT.

    The bot token is `AIBOT_FAKE_DISCORD_TOKEN` (default `fake-discord-bot-token`).
    """
    parser = argparse.ArgumentParser(
        prog="python -m aibot.sandbox.fake_discord",
        description="A small Discord, over a real socket, for the real discord.py bot.",
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--shards", type=int, default=2, help="what GET /gateway/bot says")
    parser.add_argument("--guilds", type=int, default=4, help="guilds, spread over the shards")
    args = parser.parse_args(argv)
    token = os.environ.get(TOKEN_VARIABLE, DEFAULT_TOKEN)
    asyncio.run(serve(port=args.port, shard_count=args.shards, guilds=args.guilds, token=token))
