"""Cluster mode end to end: a gateway and worker processes on a real Redis.

The gateway is aibot's own bot (`create_bot` with `AIBOT_REDIS_URL`) in this
test's process, connected over a real socket to the wire-level fake Discord;
the workers are `python -m tests.cluster_node` subprocesses (`AIBOT_GATEWAY=off`),
replying over HTTP to the same fake Discord, calling the fake providers. Each
worker is stopped by its PID. Slow (processes start in seconds): marked `slow`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from aibot import create_bot
from aibot.cluster.budget import SharedBudgets
from aibot.cluster.connection import connect
from aibot.demo.cluster_world import Node
from aibot.discord.bot import AibotBot
from aibot.discord.i18n import text
from aibot.sandbox import FakeProviders
from aibot.sandbox.fake_discord import (
    DEFAULT_CHANNELS,
    FakeDiscord,
    Record,
    SentInteraction,
    pointed_at,
)
from aibot.secrets import fingerprint
from tests.cluster_processes import eventually
from tests.fixtures.discord import DISCORD_ENV
from tests.fixtures.redis_server import RedisServer

pytestmark = pytest.mark.slow

WAIT = 60.0  # generous: the machine is shared
PREFIX = "aibot"
LONG_ANSWER = " ".join(f"word{i}" for i in range(80))


async def _no_identify_wait(shard_id: int | None, *, initial: bool = False) -> None:
    return None


@dataclass
class Cluster:
    """Redis, the fakes, the gateway bot and its worker processes."""

    redis: Redis
    server: RedisServer
    fake: FakeDiscord
    providers: FakeProviders
    bot: AibotBot
    env: dict[str, str]
    folder: Path
    nodes: list[Node] = field(default_factory=list)

    def worker(self, name: str, pools: str = "chat,image,video,admin") -> Node:
        env = {
            **os.environ,
            **self.env,
            "AIBOT_GATEWAY": "off",
            "AIBOT_NODE": name,
            "AIBOT_POOLS": pools,
            "AIBOT_DATA_DIR": str(self.folder / name),
        }
        args = ["-m", "tests.cluster_node", self.fake.base_url, self.fake.ws_url]
        node = Node.start(name, args, env, self.folder / f"{name}.log")
        self.nodes.append(node)
        return node

    async def serving(self, *pools: str) -> None:
        """Until the gateway sees a live worker for each of `pools`."""
        queue = self.bot.queue
        await eventually(
            lambda: _true(all(p in queue.pools() for p in pools)),
            timeout=WAIT,
            what=f"workers serving {pools}: {self.logs()}",
        )

    def logs(self) -> str:
        return "\n".join(f"--- {n.name}\n{n.log.read_text()[-3000:]}" for n in self.nodes)

    async def holder(self, pool: str) -> str:
        """The worker whose pending entry of `pool` there is (the one running it)."""
        key = f"{PREFIX}:jobs:{pool}"

        async def pending() -> bool:
            return bool(await self.redis.xpending_range(key, "workers", "-", "+", 10))

        await eventually(pending, timeout=WAIT, what=f"a {pool} job taken")
        [entry] = await self.redis.xpending_range(key, "workers", "-", "+", 10)
        return str(entry["consumer"])

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    async def streaming(self, sent: SentInteraction) -> None:
        """Until the answer to `sent` is streaming into its message."""
        await self.fake.wait_until(
            lambda r: r.interaction_id == sent.id and str(r.body.get("content", "")).endswith("▌"),
            timeout=WAIT,
        )

    async def chat_streaming(self) -> SentInteraction:
        """A /chat whose answer (`LONG_ANSWER`, several seconds of streaming) has begun."""
        self.providers.chat_reply = LONG_ANSWER
        self.providers.chunk_delay = 0.1
        sent = await self.fake.send_interaction("chat", {"prompt": "count"}, channel="채팅방-1")
        await self.streaming(sent)
        return sent


async def _true(value: bool) -> bool:
    return value


@pytest.fixture
async def cluster(
    aibot_env: dict[str, str],
    redis_server: RedisServer,
    fake_providers: FakeProviders,
    tmp_path: Path,
) -> AsyncIterator[Cluster]:
    async with cluster_on(
        redis_server.url, redis_server, aibot_env, fake_providers, tmp_path
    ) as world:
        yield world


@contextlib.asynccontextmanager
async def cluster_on(
    url: str,
    server: RedisServer,
    aibot_env: dict[str, str],
    fake_providers: FakeProviders,
    tmp_path: Path,
    *,
    channels: Sequence[str] = DEFAULT_CHANNELS,
) -> AsyncIterator[Cluster]:
    """The `cluster` world on the Redis of `url` (`server` is the one that stops and
    restarts in the fault tests), its one guild with these text `channels`."""
    env = {k: v for k, v in aibot_env.items() if k != "AIBOT_SHARD_COUNT"}
    env.update(
        {
            "AIBOT_REDIS_URL": url,
            "AIBOT_REDIS_PREFIX": PREFIX,
            "AIBOT_VIDEO_POLL_SECONDS": "1",
            # Each poll takes the key's budget: MiniMax's 5 a minute would make a
            # video take 40 s here.
            "AIBOT_VIDEO_RPM_MINIMAX": "600",
            "AIBOT_DRAIN_SECONDS": "5",
        }
    )
    fake = FakeDiscord(shard_count=1, guilds=1, token=env["DISCORD_TOKEN"], channels=channels)
    redis = connect(url)
    async with fake.running():
        with pointed_at(fake):
            # No pool of its own unless a test's aibot_env marker names some.
            pools = aibot_env.get("AIBOT_POOLS", "none")
            gateway = {"AIBOT_NODE": "gateway", "AIBOT_POOLS": pools, "AIBOT_HTTP": "127.0.0.1:0"}
            bot = create_bot({**env, **gateway})
            bot.before_identify_hook = _no_identify_wait  # type: ignore[method-assign]
            run = asyncio.create_task(bot.start(fake.token))
            world = Cluster(redis, server, fake, fake_providers, bot, env, tmp_path)
            try:
                await fake.wait_ready(timeout=WAIT)
                await asyncio.wait_for(bot.wait_until_ready(), WAIT)
                yield world
            finally:
                for node in world.nodes:
                    node.stop()
                await asyncio.wait_for(bot.close(), WAIT)
                await asyncio.wait_for(run, WAIT)
                await redis.aclose()


def _final(sent: SentInteraction, content: str) -> Callable[[Record], bool]:
    def wanted(record: Record) -> bool:
        return (
            record.kind in ("edit", "followup", "message")
            and record.interaction_id == sent.id
            and record.body.get("content") == content
        )

    return wanted


def _uploads(sent: SentInteraction) -> Callable[[Record], bool]:
    def wanted(record: Record) -> bool:
        return record.interaction_id == sent.id and bool(record.files)

    return wanted


async def _answered_once(
    world: Cluster, sent: SentInteraction, wanted: Callable[[Record], bool]
) -> None:
    """The answer arrived; a moment later (any duplicate would be on its way) once."""
    fake = world.fake
    await fake.wait_until(wanted, timeout=WAIT)
    await asyncio.sleep(1.0)
    assert sum(map(wanted, fake.records)) == 1, "answered exactly once"
    assert len(fake.records_of("callback", sent.id)) == 1
    assert not fake.records_of("message", sent.id), "nothing posted twice in the channel"


async def test_every_command_type_is_answered_once_by_a_worker_process(cluster: Cluster) -> None:
    cluster.providers.chat_reply = "hello from a worker"
    cluster.worker("w1")
    await cluster.serving("chat", "image", "video", "admin")

    chat = await cluster.fake.send_interaction("chat", {"prompt": "hi"}, channel="채팅방-1")
    image = await cluster.fake.send_interaction(
        "image", {"prompt": "a lighthouse"}, channel="이미지생성-1"
    )
    video = await cluster.fake.send_interaction(
        "video", {"prompt": "waves"}, channel="비디오생성-1"
    )

    for sent in (chat, image, video):
        [callback] = await cluster.fake.wait_for("callback", interaction_id=sent.id, timeout=WAIT)
        assert callback.callback_type == 5, "deferred by the gateway"
    await _answered_once(cluster, chat, _final(chat, "hello from a worker"))
    await _answered_once(cluster, image, _uploads(image))
    await _answered_once(cluster, video, _uploads(video))
    assert cluster.providers.counters.video_tasks == 1


@pytest.mark.aibot_env(AIBOT_POOLS="chat")
async def test_a_gateway_runs_its_own_pools_from_the_same_streams(cluster: Cluster) -> None:
    await cluster.serving("chat")

    chat = await cluster.chat_streaming()
    [(pool, job, state)] = cluster.bot.queue.jobs()  # its own pools' jobs, as in one process
    assert (pool, job.interaction_id, state) == ("chat", chat.id, "running")

    await _answered_once(cluster, chat, _final(chat, LONG_ANSWER))
    await eventually(lambda: _true(cluster.bot.queue.jobs() == []), what="the job let go")


async def test_a_pool_with_no_live_worker_overflows_to_admin(cluster: Cluster) -> None:
    cluster.providers.chat_reply = "the admin pool answers"
    cluster.worker("w-admin", pools="admin")
    await cluster.serving("admin")
    assert "chat" not in cluster.bot.queue.pools()

    chat = await cluster.fake.send_interaction("chat", {"prompt": "hi"}, channel="채팅방-1")

    await _answered_once(cluster, chat, _final(chat, "the admin pool answers"))


async def test_a_worker_killed_during_a_chat_stream_is_replaced_and_answered_once(
    cluster: Cluster,
) -> None:
    for name in ("w1", "w2"):
        cluster.worker(name, pools="chat")
    await cluster.serving("chat")

    sent = await cluster.chat_streaming()
    cluster.node(await cluster.holder("chat")).kill()

    await _answered_once(cluster, sent, _final(sent, LONG_ANSWER))


async def test_a_worker_killed_during_a_video_is_replaced_with_no_second_task(
    cluster: Cluster,
) -> None:
    cluster.providers.video_seconds = 6.0
    for name in ("w1", "w2"):
        cluster.worker(name, pools="video")
    await cluster.serving("video")

    sent = await cluster.fake.send_interaction("video", {"prompt": "waves"}, channel="비디오생성-1")

    async def task_recorded() -> bool:
        return bool(await cluster.redis.keys(f"{PREFIX}:task:*"))

    await eventually(task_recorded, timeout=WAIT, what="the video task recorded")
    cluster.node(await cluster.holder("video")).kill()

    await _answered_once(cluster, sent, _uploads(sent))
    assert cluster.providers.counters.video_tasks == 1, "the reclaimer polled the same task"


async def test_redis_down_refuses_privately_and_service_comes_back_by_itself(
    cluster: Cluster,
) -> None:
    cluster.providers.chat_reply = "back again"
    cluster.worker("w1", pools="chat")
    await cluster.serving("chat")
    queue = cluster.bot.queue

    cluster.server.stop()
    await eventually(lambda: _true(not queue.reachable), timeout=WAIT, what="Redis seen down")
    refused = await cluster.fake.send_interaction("chat", {"prompt": "hi"}, channel="채팅방-1")

    [callback] = await cluster.fake.wait_for("callback", interaction_id=refused.id, timeout=WAIT)
    assert callback.callback_type == 4, "answered at once, not deferred"
    assert callback.body["data"]["flags"] & 64, "privately"
    assert callback.body["data"]["content"] == text("en", "error_unreachable")
    forget = await cluster.fake.send_interaction("reset", {}, channel="채팅방-1")
    [callback] = await cluster.fake.wait_for("callback", interaction_id=forget.id, timeout=WAIT)
    assert callback.body["data"]["flags"] & 64, "/reset says it privately"
    assert callback.body["data"]["content"] == text("en", "error_unreachable")
    status, problems = await _health(cluster.bot)
    assert status == 503 and "redis unreachable" in problems
    assert queue.snapshots() == [], "no pool's figures from before shown as live"

    with _restarted(cluster):
        await cluster.serving("chat")
        sent = await cluster.fake.send_interaction("chat", {"prompt": "hi"}, channel="채팅방-1")
        await _answered_once(cluster, sent, _final(sent, "back again"))
        status, problems = await _health(cluster.bot)
        assert "redis unreachable" not in problems
    assert not cluster.fake.records_of("edit", refused.id), "nothing half-done"


async def _health(bot: AibotBot) -> tuple[int, list[str]]:
    assert bot.http_server is not None
    url = f"{bot.http_server.url}/health"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, (await response.json())["problems"]


@contextlib.contextmanager
def _restarted(world: Cluster) -> Iterator[None]:
    from tests.fixtures.redis_server import start_redis

    server = start_redis(world.folder, port=world.server.port)
    try:
        yield
    finally:
        server.stop()


async def test_a_worker_starting_gives_a_key_disabled_before_another_chance(
    cluster: Cluster,
) -> None:
    # Disabled by some process before (out of credit); the account was topped up since.
    chat_key = fingerprint(DISCORD_ENV["OPENAI_API_KEY_1"])
    await SharedBudgets(cluster.redis, PREFIX).disable(chat_key, "insufficient quota")
    cluster.providers.chat_reply = "from openai again"
    cluster.worker("w1", pools="chat")
    await cluster.serving("chat")

    sent = await cluster.fake.send_interaction("chat", {"prompt": "hi"}, channel="채팅방-1")
    await _answered_once(cluster, sent, _final(sent, "from openai again"))
    assert cluster.providers.counters.requests("openai", "chat") == 1
    assert cluster.providers.counters.requests("minimax", "chat") == 0
