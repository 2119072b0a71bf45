"""Several real aibot gateway processes on one bot: shards spread over them, a
standby taking over, a gateway that lost its shards closing, IDENTIFY buckets
from Discord's `max_concurrency`, and the gate exact whichever gateway a
command came through.

Each gateway is `python -m tests.cluster_node` (the command line's own path,
`AIBOT_GATEWAY` on or `standby`) connected over real sockets to the wire-level
fake Discord that runs in the test's event loop, all on a real Redis; stopped
by its PID. Nothing here blocks the loop: the fake must answer meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from redis.asyncio import Redis

from aibot import create_bot
from aibot.cluster.connection import connect
from aibot.cluster.shards import IdentifyLock
from aibot.demo.cluster_world import Node
from aibot.sandbox import FakeProviders
from aibot.sandbox.fake_discord import (
    DEFAULT_CHANNELS,
    FakeDiscord,
    Record,
    SentInteraction,
    pointed_at,
)
from tests.cluster_processes import eventually
from tests.fixtures.redis_server import RedisServer
from tests.test_cluster_e2e import _final

pytestmark = pytest.mark.slow

WAIT = 60.0  # generous: the machine is shared
PREFIX = "aibot"
CLAIM_TTL = 15.0  # ShardClaims' default: what a standby waits after a kill -9
STATUS_CHANNEL = "봇-상태"  # each server's status room: one message, kept edited


async def _explained(waiting: Awaitable[None], *processes: Gateway) -> None:
    """`waiting`; if it fails, with what the processes said."""
    try:
        await waiting
    except AssertionError as failed:
        said = "\n".join(f"--- {p.name}\n{p.said()[-3000:]}" for p in processes)
        raise AssertionError(f"{failed}\n{said}") from None


class Gateway(Node):
    """One gateway process, its output in a file (a pipe nobody reads could fill up)."""

    def said(self) -> str:
        return self.log.read_text(errors="replace")

    async def wait_said(self, words: str) -> None:
        async def said() -> bool:
            return words in self.said()

        await _explained(eventually(said, timeout=WAIT, what=f"{self.name} saying {words!r}"), self)

    async def exited(self) -> int:
        """Its exit status, once it exits by itself."""

        async def gone() -> bool:
            return self.popen.poll() is not None

        await _explained(eventually(gone, timeout=WAIT, what=f"{self.name} exiting"), self)
        return self.popen.returncode

    async def stopped(self) -> int:
        """SIGTERM, then its exit status, waiting without blocking the loop (the fake
        answers its close)."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                return await self.exited()
            finally:
                if self.popen.poll() is None:
                    self.kill()
        return self.popen.returncode


@dataclass
class Gateways:
    """Redis, the fakes and the gateway processes of one test."""

    redis: Redis
    fake: FakeDiscord
    providers: FakeProviders
    env: dict[str, str]
    folder: Path
    processes: list[Gateway] = field(default_factory=list)

    def start(self, name: str, shards: str, *, role: str = "on", **more: str) -> Gateway:
        env = {
            **os.environ,
            **self.env,
            "AIBOT_GATEWAY": role,
            "AIBOT_NODE": name,
            "AIBOT_SHARD_IDS": shards,
            "AIBOT_SHARD_COUNT": str(self.fake.shard_count),
            "AIBOT_POOLS": "none",
            "AIBOT_DATA_DIR": str(self.folder / name),
            **more,
        }
        args = ["-m", "tests.cluster_node", self.fake.base_url, self.fake.ws_url]
        gateway = Gateway.start(name, args, env, self.folder / f"{name}.log")
        self.processes.append(gateway)
        return gateway

    async def holders(self) -> list[str | None]:
        """Who holds each shard's claim in Redis."""
        count = self.fake.shard_count
        return await self.redis.mget([f"{PREFIX}:shard:{s}" for s in range(count)])

    async def connected(self, identifies: int) -> None:
        """Until every shard is READY and the fake saw `identifies` IDENTIFYs."""

        async def ready() -> bool:
            fake = self.fake
            return len(fake.ready_shards) == fake.shard_count and len(fake.identified) >= identifies

        await _explained(eventually(ready, timeout=WAIT, what="shards connected"), *self.processes)

    async def refreshed(self, name: str) -> None:
        """Until gateway `name` has refreshed its view of the live nodes since
        this call: two of its heartbeats (each comes right after a refresh)."""
        key = f"{PREFIX}:node:{name}"
        last = await self.redis.pttl(key)
        async with asyncio.timeout(WAIT):
            for _ in range(2):
                while True:
                    await asyncio.sleep(0.05)
                    now = await self.redis.pttl(key)
                    beat, last = now > last, now
                    if beat:
                        break


@pytest.fixture
async def gateways(
    aibot_env: dict[str, str],
    redis_server: RedisServer,
    fake_providers: FakeProviders,
    tmp_path: Path,
) -> AsyncIterator[Gateways]:
    env = {k: v for k, v in aibot_env.items() if k != "AIBOT_SHARD_COUNT"}
    env.update(
        {
            "AIBOT_REDIS_URL": redis_server.url,
            "AIBOT_REDIS_PREFIX": PREFIX,
            "AIBOT_HTTP": "off",
            "AIBOT_DRAIN_SECONDS": "2",
        }
    )
    # Two shards identify together: Discord's max_concurrency 2 (two buckets).
    fake = FakeDiscord(
        shard_count=2,
        guilds=2,
        channels=(*DEFAULT_CHANNELS, STATUS_CHANNEL),
        token=env["DISCORD_TOKEN"],
        max_concurrency=2,
    )
    redis = connect(redis_server.url)
    async with fake.running():
        world = Gateways(redis, fake, fake_providers, env, tmp_path)
        try:
            yield world
        finally:
            await asyncio.gather(*(g.stopped() for g in world.processes))
            await redis.aclose()


async def _ping_answered(fake: FakeDiscord, guild: int) -> None:
    sent = await fake.send_interaction("ping", {}, guild=guild)
    await fake.wait_for("callback", interaction_id=sent.id, timeout=WAIT)


async def test_a_standby_takes_over_the_shards_of_a_killed_gateway_when_its_claims_expire(
    gateways: Gateways,
) -> None:
    fake = gateways.fake
    active = gateways.start("gateway-a", "0,1")
    await gateways.connected(identifies=2)
    await fake.wait_until(lambda _: len(fake.records_of("message")) == 2, timeout=WAIT)
    status_messages = {r.message_id for r in fake.records_of("message")}  # one per server
    standby = gateways.start("gateway-b", "0,1", role="standby")
    await standby.wait_said("standing by: shards 0, 1 held by gateway-a")
    assert await gateways.holders() == ["gateway-a", "gateway-a"]
    assert standby.said().count("standing by") == 1, (
        f"said once, not at every try: {standby.said()}"
    )
    assert len(gateways.fake.identified) == 2, "the standby does not connect"
    assert not await gateways.redis.exists(f"{PREFIX}:node:gateway-b"), "nor heartbeat"

    active.kill()
    since_kill = len(fake.records)

    async def taken_over() -> bool:
        return await gateways.holders() == ["gateway-b", "gateway-b"]

    await _explained(
        eventually(taken_over, timeout=CLAIM_TTL + WAIT, what="takeover"), *gateways.processes
    )
    await gateways.connected(identifies=4)
    await _ping_answered(gateways.fake, gateways.fake.guilds[0].id)
    await _ping_answered(gateways.fake, gateways.fake.guilds[1].id)
    assert standby.popen.poll() is None

    # The standby shows the status in the messages the first gateway posted: it
    # edits them and posts no second one.
    def shown_by_standby() -> list[Record]:
        return [r for r in fake.records[since_kill:] if r.kind in ("message", "message_edit")]

    await fake.wait_until(lambda _: len(shown_by_standby()) >= 2, timeout=WAIT)
    assert [r.kind for r in shown_by_standby()] == ["message_edit", "message_edit"]
    assert {r.message_id for r in shown_by_standby()} == status_messages


class Systemd:
    """What a process sends to `$NOTIFY_SOCKET` (an abstract unix socket here)."""

    def __init__(self) -> None:
        self.name = f"@aibot-test-{secrets.token_hex(6)}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name[1:])
        self.sock.setblocking(False)
        self.fields: list[str] = []

    def received(self) -> list[str]:
        while True:
            try:
                self.fields += self.sock.recv(4096).decode().split("\n")
            except BlockingIOError:
                return self.fields

    async def wait_for(self, field: str) -> None:
        async def sent() -> bool:
            return field in self.received()

        await eventually(sent, timeout=WAIT, what=f"{field} in {self.fields}")


@pytest.fixture
def systemd() -> Iterator[Systemd]:
    listening = Systemd()
    with listening.sock:
        yield listening


async def test_a_standby_takes_over_at_once_from_a_gateway_stopped_cleanly(
    gateways: Gateways, systemd: Systemd
) -> None:
    active = gateways.start("gateway-a", "0,1")
    await gateways.connected(identifies=2)
    watchdog = {"NOTIFY_SOCKET": systemd.name, "WATCHDOG_USEC": "400000"}
    standby = gateways.start("gateway-b", "0,1", role="standby", **watchdog)
    await standby.wait_said("standing by")
    # Waiting is no failed start: systemd's start timeout is pushed on, the
    # watchdog fed, READY=1 not sent (it comes once the shards are served).
    await systemd.wait_for("EXTEND_TIMEOUT_USEC=30000000")
    await systemd.wait_for("WATCHDOG=1")
    assert any(
        f.startswith("STATUS=standing by: shards 0, 1 held by gateway-a") for f in systemd.fields
    )
    assert "READY=1" not in systemd.received()

    assert await active.stopped() == 0
    # Its claims had up to 15 s left: a clean stop released them.
    assert "gateway-a" not in await gateways.holders()

    await gateways.connected(identifies=4)
    assert await gateways.holders() == ["gateway-b", "gateway-b"]
    await _ping_answered(gateways.fake, gateways.fake.guilds[0].id)
    await systemd.wait_for("READY=1")


async def test_a_gateway_whose_shards_were_taken_over_closes_and_exits_with_a_failure(
    gateways: Gateways,
) -> None:
    gateway = gateways.start("gateway-a", "0,1")
    await gateways.connected(identifies=2)
    # As if it had stalled past its claims' expiry and a standby had taken shard 1.
    await gateways.redis.set(f"{PREFIX}:shard:1", "gateway-b", px=int(CLAIM_TTL * 1000))

    assert await gateway.exited() == 1
    said = gateway.said()
    assert "another gateway took over shard 1" in said
    # It let go of what it still held; the other's claim stands.
    assert await gateways.holders() == [None, "gateway-b"]


@pytest.mark.parametrize("max_concurrency", [1, 2])
async def test_the_gateway_identifies_in_the_buckets_discord_says(
    aibot_env: dict[str, str], redis_server: RedisServer, max_concurrency: int
) -> None:
    env = {
        **aibot_env,
        "AIBOT_REDIS_URL": redis_server.url,
        "AIBOT_NODE": "gateway-a",
        "AIBOT_POOLS": "none",
        "AIBOT_HTTP": "off",
        "AIBOT_SHARD_IDS": "0,1",
        "AIBOT_SHARD_COUNT": "2",
    }
    fake = FakeDiscord(
        shard_count=2, guilds=2, token=env["DISCORD_TOKEN"], max_concurrency=max_concurrency
    )
    buckets: list[tuple[int | None, int]] = []
    async with fake.running():
        with pointed_at(fake):
            bot = create_bot(env)
            lock = bot.before_identify_hook
            assert isinstance(lock, IdentifyLock)

            async def noting(shard_id: int | None, *, initial: bool = False) -> None:
                await lock(shard_id, initial=initial)
                buckets.append((shard_id, lock.bucket(shard_id)))

            bot.before_identify_hook = noting  # type: ignore[method-assign]
            run = asyncio.create_task(bot.start(fake.token))
            try:
                await fake.wait_ready(timeout=WAIT)
            finally:
                await asyncio.wait_for(bot.close(), WAIT)
                await asyncio.wait_for(run, WAIT)
    assert lock.max_concurrency == max_concurrency
    # Shard ids in different buckets may IDENTIFY together; one bucket waits
    # out the window (tests/test_cluster_shards.py measures it across processes).
    assert buckets == [(0, 0), (1, 1 % max_concurrency)]


def _refused_privately(callback_body: dict[str, object]) -> bool:
    data = callback_body.get("data")
    return callback_body.get("type") == 4 and isinstance(data, dict) and bool(data["flags"] & 64)


async def test_a_hundred_simultaneous_chats_from_one_member_through_two_gateways_pass_ten(
    gateways: Gateways,
) -> None:
    """The member is in two guilds, one on each shard, each shard held by its own
    gateway process. A member's quota counts per guild (a guild lives on one
    shard, so one gateway takes all of it); what two gateways share is the
    pool's daily budget: 10 here, so exactly 10 of the 100 pass, whichever
    gateway each came through."""
    limits = {"AIBOT_CHAT_COOLDOWN": "0", "AIBOT_CHAT_DAILY_BUDGET": "10"}
    fake = gateways.fake
    gateways.providers.chat_reply = "within budget"
    # gateway-0 runs the chat pool too; gateway-1's jobs reach it through Redis.
    gateways.start("gateway-0", "0", AIBOT_POOLS="chat", **limits)
    gateways.start("gateway-1", "1", **limits)
    await gateways.connected(identifies=2)

    async def chat_served() -> bool:
        return await gateways.redis.exists(f"{PREFIX}:node:gateway-0") == 1

    await _explained(
        eventually(chat_served, timeout=WAIT, what="the chat pool up"), *gateways.processes
    )
    await asyncio.gather(gateways.refreshed("gateway-0"), gateways.refreshed("gateway-1"))

    member = fake.guilds[0].tester_id
    on_shard = {guild.shard_id: guild for guild in fake.guilds}
    first, second = on_shard[0], on_shard[1]
    sent: list[SentInteraction] = await asyncio.gather(
        *(
            fake.send_interaction(
                "chat",
                {"prompt": f"q{i}"},
                guild=(first, second)[i % 2],
                channel="채팅방-1",
                user_id=member,
            )
            for i in range(100)
        )
    )
    callbacks = [
        (await fake.wait_for("callback", interaction_id=s.id, timeout=WAIT))[0] for s in sent
    ]

    deferred = [s for s, c in zip(sent, callbacks, strict=True) if c.callback_type == 5]
    assert len(deferred) == 10, "exactly the budget deferred, across both gateways"
    refused = [c for c in callbacks if _refused_privately(c.body)]
    assert len(refused) == 90, "the rest refused at once, privately"
    for s in deferred:
        await fake.wait_until(_final(s, "within budget"), timeout=WAIT)
    await asyncio.sleep(1.0)  # anything more would be on its way by now
    answers = [r for r in fake.records if r.body.get("content") == "within budget"]
    assert len(answers) == 10, "ten answers, nothing else"
