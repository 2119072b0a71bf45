"""A small Discord, over a real socket, for the real discord.py bot.

`FakeDiscord` is an aiohttp server on 127.0.0.1 that plays enough of Discord's
REST API and gateway for a `discord.ext.commands.AutoShardedBot` to log in,
discover its shards through `GET /gateway/bot`, IDENTIFY each shard, receive
READY and GUILD_CREATE, and answer slash commands through the interaction
callback and webhook endpoints. It shows what SimCord cannot: URL overrides,
shard discovery, the websocket handshake, multipart uploads, the latency of a
real socket.

Every answer the bot sends (callback, followup, edit, channel message) is kept
as a `Record` with its arrival time, so tests assert what the bot did and the
front benchmark measures INTERACTION_CREATE sent -> callback arrived.

In-process (tests)::

    async with FakeDiscord(shard_count=2).running() as fake:
        with pointed_at(fake):
            task = asyncio.create_task(bot.start(fake.token))
            await fake.wait_ready(timeout=15)
            sent = await fake.send_interaction("chat", {"prompt": "hi"}, channel="채팅방-1")
            [callback] = await fake.wait_for("callback", interaction_id=sent.id)

In its own process (benchmarks): `FakeDiscordProcess.spawn()` runs
`python -m aibot.sandbox.fake_discord` and drives it over `/_control`.

The modules, in the order a request meets them:

- `server`: `FakeDiscord`, what it knows, and how tests dispatch interactions
- `gateway`: the websocket: IDENTIFY, READY, GUILD_CREATE, INTERACTION_CREATE
- `rest`: the HTTP API discord.py calls, with Discord's rules for callbacks
- `messages`: the messages the bot created and edited
- `records`: `Record`, `SentInteraction`, and the API tests read them with
- `payloads`: Discord's JSON shapes; `wire`: JSON and multipart bodies
- `control` and `process`: the fake in a process of its own, for benchmarks
- `pointing`: `pointed_at`, which points discord.py at the fake
"""

from .payloads import FakeGuild
from .pointing import pointed_at
from .process import FakeDiscordProcess, main
from .records import Record, SentInteraction
from .server import DEFAULT_CHANNELS, DEFAULT_TOKEN, FakeDiscord

__all__ = [
    "DEFAULT_CHANNELS",
    "DEFAULT_TOKEN",
    "FakeDiscord",
    "FakeDiscordProcess",
    "FakeGuild",
    "Record",
    "SentInteraction",
    "main",
    "pointed_at",
]
