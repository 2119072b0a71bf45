"""The cluster demo, `python3 run.py --demo --cluster`: aibot over Redis on this
machine, a worker killed (kill -9) in the middle of a member's answer, the job
reclaimed by the other worker and answered once.

It needs `redis-server` on the PATH (else it says how to install it and exits
with 2). It starts a throwaway Redis (a free port, no persistence, a temporary
folder), the gateway (the real bot in cluster mode, in this process) and two
worker processes against the wire-level fake Discord and the fake providers
(`aibot.demo.cluster_world`), and stops each by its PID at the end, also on
Ctrl-C or an error. The chat answer streams slowly, so the kill lands in the
middle of it; the transcript says who held the job, the kill, who reclaimed
it after the lease, how many answers the fake Discord received, and the alert
the gateway posted in the alert room.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aibot.demo.cluster_world import PREFIX, WAIT, ClusterWorld, DemoStuck
from aibot.demo.stage import ALERT_CHANNEL
from aibot.demo.transcript import Transcript
from aibot.sandbox import FakeProviders
from aibot.sandbox.fake_discord import FakeDiscord, Record, SentInteraction
from aibot.sandbox.redis_server import (
    INSTALL_HINT,
    RedisServer,
    redis_binary,
    throwaway_redis,
)

__all__ = ["ClusterSummary", "main", "run_cluster_demo"]

WORKERS = ("worker-a", "worker-b")
PROMPT = "tell me a long story, slowly"
# About 35 streamed chunks, one every CHUNK_DELAY seconds: several seconds of
# streaming, so the kill lands in the middle of the answer.
ANSWER = "Once upon a time, " + " ".join(f"step{n}" for n in range(1, 41)) + ". The end."
CHUNK_DELAY = 0.12
# Seconds to wait after the answer arrived: any duplicate would be on its way.
_SETTLE = 1.0
_TYPING = "▌"  # the cursor a streamed answer carries until it is whole
# Seconds for the take-over alert to reach the alert room (worker, Redis, gateway).
_ALERT_WAIT = 10.0


@dataclass(frozen=True, slots=True)
class ClusterSummary:
    """What happened to the job: who held it and was killed, who reclaimed it
    and how long after the kill, how many final answers Discord received."""

    killed: str
    reclaimed_by: str
    reclaim_seconds: float
    answers: int

    @property
    def lost(self) -> int:
        return int(self.answers == 0)

    @property
    def verdict(self) -> str:
        times = {0: "NOT answered", 1: "answered once"}.get(self.answers)
        return f"verdict: {times or f'answered {self.answers} times'}, {self.lost} lost"


def run_cluster_demo(*, say: Callable[[str], None] = print, width: int = 100) -> ClusterSummary:
    """Run the whole cluster demo, printing its transcript through `say` in lines
    `width` cells wide, ending with the verdict; what happened. Every process it
    started is stopped by its PID before it returns or raises, also on Ctrl-C
    (Redis last, from here, outside the event loop, whatever happened inside)."""
    out = Transcript(say, width)
    out.note(
        "aibot CLUSTER DEMO: a gateway and two worker processes over a throwaway Redis, "
        "against a simulated Discord and fake AI providers; nothing leaves this machine."
    )
    with throwaway_redis(prefix="aibot-cluster-demo-redis-") as server:
        summary = asyncio.run(_run(server, out))
    gone = server.process.poll() is not None
    out.note(
        f"Redis (pid {server.pid}) {'stopped' if gone else 'STILL RUNNING'}; its folder removed."
    )
    out.say(summary.verdict)
    return summary


async def _run(server: RedisServer, out: Transcript) -> ClusterSummary:
    with (
        tempfile.TemporaryDirectory(prefix="aibot-cluster-demo-") as folder,
        FakeProviders(chunk_delay=CHUNK_DELAY) as providers,
    ):
        providers.chat_reply = ANSWER
        async with ClusterWorld.running(server, providers, Path(folder)) as world:
            summary = await _play(world, out)
            pids = ", ".join(str(node.pid) for node in world.nodes)
    out.say("")
    out.note(f"stopped by PID: the workers ({pids}), then the gateway.")
    return summary


async def _play(world: ClusterWorld, out: Transcript) -> ClusterSummary:
    await _start(world, out)
    sent, killed = await _kill_mid_answer(world, out)
    return await _reclaimed(world, out, sent, killed)


async def _start(world: ClusterWorld, out: Transcript) -> None:
    out.heading(1, 3, "A cluster on this machine: Redis, a gateway, two workers")
    info = await world.redis.info("server")
    out.note(
        f"Redis {info['redis_version']}: pid {world.server.pid}, 127.0.0.1:{world.server.port}, "
        "no persistence, in a temporary folder."
    )
    out.note(
        "gateway: this process, the real bot in cluster mode (AIBOT_REDIS_URL set, "
        "AIBOT_POOLS=none), connected to the fake Discord over a socket."
    )
    for name in WORKERS:
        node = world.start_worker(name, pools="chat")
        out.note(f"{name}: pid {node.pid}, python -m aibot with AIBOT_GATEWAY=off AIBOT_POOLS=chat")
    await world.serving("chat")
    out.note(f"live in Redis (heartbeats): {', '.join(await world.live())}")


async def _kill_mid_answer(world: ClusterWorld, out: Transcript) -> tuple[SentInteraction, str]:
    """A member's chat; once a worker streams it, that worker is killed (kill -9)."""
    out.heading(2, 3, "A chat answer, and its worker killed in the middle of it")
    out.command("alex", "채팅방-1", "chat", prompt=PROMPT)
    fake = world.fake
    sent = await fake.send_interaction("chat", {"prompt": PROMPT}, channel="채팅방-1")
    await world.within(
        fake.wait_for("callback", interaction_id=sent.id, timeout=WAIT), "the deferral"
    )
    out.note(
        f"the gateway deferred it at once and put the job on Redis ({PREFIX}:jobs:chat).",
        aside=True,
    )
    [partial] = await world.within(
        fake.wait_until(_streaming(sent), timeout=WAIT), "a worker streaming"
    )
    held = await world.holder("chat")
    if held is None:
        raise DemoStuck("the job was answered before the demo could kill its worker")
    holder, _ = held
    node = world.node(holder)
    node.kill()
    words = str(partial.body.get("content", "")).rstrip(_TYPING).strip()
    out.answer(out.clipped(words, out.width - 30) + " " + _TYPING, label="alex sees so far: ")
    out.note(
        f"{holder} held the job (XPENDING: consumer {holder}) and was streaming the answer "
        f"into the deferred message: kill -9 {node.pid}.",
        aside=True,
    )
    return sent, holder


async def _reclaimed(
    world: ClusterWorld, out: Transcript, sent: SentInteraction, killed: str
) -> ClusterSummary:
    """Who reclaims the job and when; the answer, counted in the fake Discord."""
    out.heading(3, 3, "Reclaimed by the other worker, answered once")
    lease = world.lease_seconds
    killed_at = time.monotonic()
    holder: list[tuple[str, int]] = []

    async def reclaimed() -> bool:
        held = await world.holder("chat")
        if held is not None and held[0] != killed:
            holder.append(held)
        return bool(holder) or _answers(world, sent) > 0

    await world.until(reclaimed, "the job reclaimed")
    seconds = time.monotonic() - killed_at
    other, deliveries = holder[0] if holder else ("another worker", 2)
    out.note(
        f"{other} reclaimed it {seconds:.1f} s after the kill (a lease lasts {lease:g} s "
        "from its last renewal; "
        f"delivery {deliveries} of the job) and streamed the answer again into the same message.",
    )
    fake = world.fake
    try:
        await fake.wait_until(_final(sent), timeout=WAIT)
    except TimeoutError:
        out.note(f"no answer arrived within {WAIT:.0f} s.")
    await asyncio.sleep(_SETTLE)
    answers = _answers(world, sent)
    if answers:
        out.answer(ANSWER, label="alex sees: ")
    calls = world.providers.counters.requests(endpoint="chat")
    out.note(
        f"the fake Discord received: {len(fake.records_of('callback', sent.id))} deferral, "
        f"{answers} whole answer, {len(fake.records_of('message', sent.id))} channel messages; "
        f"the fake provider was asked {calls} times (the half stream and the whole one).",
        aside=True,
    )
    out.note(f"live in Redis now: {', '.join(await world.live())}", aside=True)
    try:
        alert_room = fake.guilds[0].channel_id(ALERT_CHANNEL)
        [alert] = await fake.wait_until(_posted_in(fake, alert_room), timeout=_ALERT_WAIT)
        out.note(f"the gateway posted in #{ALERT_CHANNEL}: {alert.body['content']}", aside=True)
    except TimeoutError:
        out.note(f"no alert reached #{ALERT_CHANNEL} within {_ALERT_WAIT:.0f} s.", aside=True)
    return ClusterSummary(killed, other, seconds, answers)


def _posted_in(fake: FakeDiscord, channel_id: int) -> Callable[[Record], bool]:
    """A message the bot posted in the channel: in the alert room, the alert that a
    worker took over the killed one's job (the only alert the demo raises)."""

    def wanted(record: Record) -> bool:
        message = fake.messages.get(record.message_id or 0) if record.kind == "message" else None
        return message is not None and int(message["channel_id"]) == channel_id

    return wanted


def _streaming(sent: SentInteraction) -> Callable[[Record], bool]:
    """A part of the answer, still growing (an edit ending with the cursor)."""

    def wanted(record: Record) -> bool:
        content = str(record.body.get("content", ""))
        return record.interaction_id == sent.id and content.endswith(_TYPING)

    return wanted


def _final(sent: SentInteraction) -> Callable[[Record], bool]:
    """The whole answer, as sent to Discord (an edit, followup or channel message)."""

    def wanted(record: Record) -> bool:
        return (
            record.kind in ("edit", "followup", "message")
            and record.interaction_id == sent.id
            and record.body.get("content") == ANSWER
        )

    return wanted


def _answers(world: ClusterWorld, sent: SentInteraction) -> int:
    return sum(map(_final(sent), world.fake.records))


def main(args: argparse.Namespace) -> int:
    """`python3 run.py --demo --cluster`: exit 0 when the job was answered once,
    1 when not, 2 when `redis-server` is not installed; Ctrl-C ends it at once
    (everything it started stopped), exit 0."""
    if redis_binary() is None:
        print(f"aibot: the cluster demo needs Redis. {INSTALL_HINT}.", file=sys.stderr)
        return 2
    from rich.console import Console

    console = Console()

    def say(line: str) -> None:
        console.print(line, markup=False, highlight=False)

    try:
        summary = run_cluster_demo(say=say, width=console.width)
    except KeyboardInterrupt:
        return 0
    except DemoStuck as stuck:
        print(f"aibot: the cluster demo is stuck: {stuck}", file=sys.stderr)
        return 1
    return 0 if summary.answers == 1 else 1
