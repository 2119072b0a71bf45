"""A gateway process for the shard tests: claims its shards, then IDENTIFYs each.

`python -m tests.cluster_gateway REDIS_URL --node NAME --shards 0,1 --count 4 [options]`

It claims its shard ids (`ShardClaims`), printing the refusal on stderr and
exiting with 2 when they clash (with `--standby` it prints `standing by` and
waits for them instead); keeps them with a heartbeat; prints `ready`; then
goes through the IDENTIFY lock for each shard in turn, the way discord.py
calls `before_identify_hook` (with `--discord`, a real discord.py
`AutoShardedClient` connects to the fake Discord at those URLs and calls
it), recording on `{prefix}:test:identify` when each one was let through
(Redis's clock, as the lock took it); prints `identified`, and holds its
shards until SIGTERM, when it releases them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aibot.cluster.connection import connect
from aibot.cluster.heartbeat import Heartbeat, NodeInfo
from aibot.cluster.shards import IdentifyLock, ShardClaims, ShardConflict

if TYPE_CHECKING:
    import discord

__all__ = ["main"]


async def run(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    redis = connect(args.url)
    shards = [int(s) for s in args.shards.split(",")]
    claims = ShardClaims(redis, args.node, shards, args.count, prefix=args.prefix, ttl=args.ttl)
    try:
        await claims.claim()
    except ShardConflict as refusal:
        if not args.standby:
            print(f"refusing to start: {refusal}", file=sys.stderr, flush=True)
            await redis.aclose()
            return 2
        print("standing by", flush=True)
        await claims.claim(wait=True, poll=0.1)
    info = NodeInfo(args.node, shards=tuple(shards), started_at=time.time())
    heartbeat = Heartbeat(
        redis, lambda: info, prefix=args.prefix, interval=0.2, ttl=1.0, on_beat=[claims.renew]
    )
    await heartbeat.start()
    print("ready", flush=True)
    lock = IdentifyLock(
        redis,
        prefix=args.prefix,
        max_concurrency=args.max_concurrency,
        window=args.window,
        holder=args.node,
    )

    async def identify(shard: int | None, *, initial: bool = False) -> None:
        """The hook, noting when the lock let each shard through."""
        taken_at = await lock.acquire(shard)
        record = {"node": args.node, "shard": shard, "bucket": lock.bucket(shard), "at": taken_at}
        await redis.rpush(f"{args.prefix}:test:identify", json.dumps(record))

    if args.discord:
        client = await connect_to_fake_discord(args.discord, shards, args.count, identify)
    else:
        for i, shard in enumerate(shards):  # as discord.py calls its hook
            await identify(shard, initial=i == 0)
    print("identified", flush=True)
    await stop.wait()
    if args.discord:
        await client.close()
    await heartbeat.stop()
    await claims.release()
    await redis.aclose()
    return 0


async def connect_to_fake_discord(
    urls: str, shards: list[int], count: int, hook: Callable[..., Awaitable[None]]
) -> discord.AutoShardedClient:
    """A real discord.py client for `shards` of `count`, on the fake Discord at
    `urls` (its REST base and gateway, comma-separated), `hook` its
    `before_identify_hook`; returns once all its shards are READY."""
    import discord  # only here: the other gateways start faster without it
    import discord.gateway
    import discord.http
    import yarl

    from aibot.sandbox.fake_discord import DEFAULT_TOKEN

    base_url, ws_url = urls.split(",")
    discord.http.Route.BASE = base_url
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(ws_url)
    client = discord.AutoShardedClient(
        intents=discord.Intents.none(), shard_ids=shards, shard_count=count
    )
    client.before_identify_hook = hook  # type: ignore[method-assign]
    await client.login(DEFAULT_TOKEN)
    connecting = asyncio.create_task(client.connect())
    ready = asyncio.create_task(client.wait_until_ready())
    await asyncio.wait([connecting, ready], return_when="FIRST_COMPLETED")
    if connecting.done():
        connecting.result()  # raises what stopped it
    return client


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster_gateway")
    parser.add_argument("url")
    parser.add_argument("--node", required=True)
    parser.add_argument("--shards", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--prefix", default="aibot")
    parser.add_argument("--ttl", type=float, default=15.0)
    parser.add_argument("--standby", action="store_true")
    parser.add_argument("--max-concurrency", type=int, default=1)
    parser.add_argument("--window", type=float, default=5.5)
    parser.add_argument("--discord", help="BASE_URL,WS_URL of a fake Discord to connect to")
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
