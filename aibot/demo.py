"""The demo: the real bot (pools, router, store, status panel, /health) against
SimCord's simulated Discord and the fake providers, with a scripted crowd of
members using every command in the reference design's channels.

Nothing here is a mock of aibot: only Discord and the AI providers are simulated,
so a newcomer sees the real thing work with no token and no keys.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import simcord

from aibot.app import create_bot
from aibot.discord.bot import AibotBot
from aibot.sandbox import FakeProviders

__all__ = ["DEMO_ENV", "DemoSummary", "main", "run_demo"]

# Demo keys: the fake providers accept any key, so these only name their pool.
DEMO_ENV: Mapping[str, str] = {
    "DISCORD_TOKEN": "demo-token",
    **{
        f"{provider}_API_KEY_{n}": f"demo-{provider.lower()}-{pool}-key{n}a,"
        f"demo-{provider.lower()}-{pool}-key{n}b"
        for n, pool in ((1, "chat"), (2, "image"), (3, "video"), (4, "admin"))
        for provider in ("OPENAI", "MINIMAX", "STABILITY")
    },
    "AIBOT_SHARD_COUNT": "2",
    # /health and /metrics on a free port (printed at start).
    "AIBOT_HTTP": "127.0.0.1:0",
    "AIBOT_VIDEO_POLL_SECONDS": "5",
    "AIBOT_DRAIN_SECONDS": "5",
    # SimCord's clock stands still while the bot works: no gap of time can pass.
    "AIBOT_BURST_GAP_MS": "0",
}

CHANNELS = (
    "채팅방-1",
    "채팅방-2",
    "ai-지원",
    "이미지생성-1",
    "갤러리",
    "비디오생성-1",
    "비디오-갤러리",
    "general",
)
# (name, client locale)
MEMBERS = (
    ("minji", "ko"),
    ("jisoo", "ko"),
    ("haneul", "ko"),
    ("taeyang", "ko"),
    ("alex", "en-US"),
    ("sam", "en-US"),
    ("priya", "en-US"),
    ("lucas", "en-US"),
)
PROMPTS = {
    "chat": (
        "오늘 저녁 메뉴 추천해줘",
        "How do I keep a sourdough starter alive?",
        "파이썬에서 리스트를 뒤집는 방법은?",
        "Explain rate limits like I'm five",
    ),
    "image": ("a red fox in the snow, watercolor", "서울 야경, 네온 사인", "a tiny robot gardener"),
    "video": ("waves rolling onto a beach at sunset", "고양이가 피아노를 치는 장면"),
}


@dataclass(frozen=True, slots=True)
class Scene:
    """One member running one command in one channel."""

    member: str
    channel: str
    command: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class DemoSummary:
    commands: int = 0
    answered: int = 0
    private: int = 0
    lines: list[str] = field(default_factory=list)


def script(rounds: int, seed: int = 7) -> Iterator[list[Scene]]:
    """A plausible crowd: mostly chat, some images, a few videos, members now and then
    in the wrong channel (and pointed to the right one), admins checking status."""
    rng = random.Random(seed)
    homes = {"chat": ("채팅방-1", "채팅방-2", "ai-지원"), "image": ("이미지생성-1", "갤러리")}
    homes["video"] = ("비디오생성-1", "비디오-갤러리")
    for number in range(rounds):
        scenes = []
        for name, _ in rng.sample(MEMBERS, k=4):
            command = rng.choices(("chat", "image", "video"), weights=(6, 3, 1))[0]
            channel = rng.choice(homes[command])
            if rng.random() < 0.15:  # the wrong channel: the bot points elsewhere
                channel = rng.choice(homes["image" if command == "chat" else "chat"])
            scenes.append(Scene(name, channel, command, {"prompt": rng.choice(PROMPTS[command])}))
        admin = ("ping", "status", "instances")[number % 3]
        scenes.append(Scene("minji", "general", admin))
        yield scenes


def describe(
    scene: Scene, result: simcord.InteractionResult, names: Mapping[int, str] | None = None
) -> str:
    """One line a person can follow: who did what, and what they saw (`names`
    turns channel mentions back into #names)."""
    messages = [m for m in (result.response, *result.followups) if m is not None]
    if not messages:
        seen = "(no answer yet)"
    elif result.response is not None and result.response.ephemeral:
        seen = "privately: " + _text(messages[0])
    else:
        files = sum(len(m.attachments) for m in messages)
        seen = _text(messages[-1]) + (f" [{files} file(s)]" if files else "")
    seen = " ".join(seen.split())
    if names:
        seen = re.sub(r"<#(\d+)>", lambda m: "#" + names.get(int(m[1]), m[1]), seen)
    return f"{scene.member:>8} /{scene.command:<9} #{scene.channel:<10} -> {seen[:90]}"


def _text(message: Any) -> str:
    """A message's words: its content, else its first embed's title or description."""
    if message.content:
        return str(message.content)
    embed = message.embeds[0] if message.embeds else None
    return (embed and (embed.title or embed.description)) or ""


async def run_demo(
    *,
    rounds: int = 12,
    say: Callable[[str], None] = print,
    env: Mapping[str, str] | None = None,
    on_bot: Callable[[AibotBot], contextlib.AbstractContextManager[Any]] | None = None,
    pause: float = 1.0,
) -> DemoSummary:
    """Run the scripted crowd for `rounds` rounds and return what happened.

    `env` adds to or overrides the demo settings (e.g. AIBOT_HTTP); `on_bot` wraps
    the run once the bot exists (run.py attaches the status panel there); `pause`
    real seconds between rounds let a person watch the panel.
    """
    summary = DemoSummary()
    with (
        tempfile.TemporaryDirectory(prefix="aibot-demo-") as data,
        FakeProviders(video_polls=3, chunk_delay=0.01) as fake,
    ):
        settings = {**DEMO_ENV, **fake.env(), "AIBOT_DATA_DIR": data, **(env or {})}
        bot = create_bot(settings)
        wrap = on_bot(bot) if on_bot else contextlib.nullcontext()
        async with simcord.run(bot, shard_count=2, settle_timeout=10) as world:
            with wrap:
                await _play(world, bot, rounds, say, summary, pause)
            await bot.close()
    return summary


async def _play(
    world: simcord.Env,
    bot: AibotBot,
    rounds: int,
    say: Callable[[str], None],
    summary: DemoSummary,
    pause: float,
) -> None:
    guild = world.create_guild("aibot demo server")
    channels = {name: guild.create_text_channel(name) for name in CHANNELS}
    names = {channel.id: name for name, channel in channels.items()}
    members = {name: guild.add_member(world.create_user(name)) for name, _ in MEMBERS}
    _korean_clients(world, {members[n].id: loc for n, loc in MEMBERS if loc == "ko"})
    await bot.tree.sync()
    say("aibot DEMO: simulated Discord and fake AI providers; nothing leaves this machine.")
    if bot.http_server is not None:
        say(f"health: {bot.http_server.url}/health   metrics: {bot.http_server.url}/metrics")
    for number, scenes in enumerate(script(rounds), start=1):
        for scene in scenes:
            # SimCord runs one member action at a time; the pools still work in parallel.
            member = members[scene.member]
            result = await member.slash(channels[scene.channel], scene.command, **scene.options)
            line = describe(scene, result, names)
            summary.commands += 1
            summary.answered += result.acknowledged
            summary.private += bool(result.response and result.response.ephemeral)
            summary.lines.append(line)
            say(f"[round {number:>2}] {line}")
        await world.advance_time(5)
        await asyncio.sleep(pause)
    # Let the last videos finish: their provider tasks need a few more polls.
    for _ in range(6):
        await world.advance_time(5)
    say(
        f"demo done: {summary.commands} commands, {summary.answered} answered "
        f"({summary.private} privately: redirects and limits)."
    )


def _korean_clients(world: simcord.Env, locales: dict[int, str]) -> None:
    """SimCord sends every interaction as en-US; give some members a Korean client,
    as Discord would, by rewriting their INTERACTION_CREATE payloads."""

    def rewrite(event: str, payload: Any) -> None:
        if event == "INTERACTION_CREATE" and isinstance(payload, dict):
            user = payload.get("member", {}).get("user") or {}
            locale = locales.get(int(user.get("id", 0)))
            if locale:
                payload["locale"] = locale

    world.backend.subscribers.insert(0, rewrite)


def main(args: argparse.Namespace) -> int:
    """`python run.py --demo`: the demo with the status panel (on a terminal) and
    the transcript scrolling above it."""
    from rich.console import Console

    from aibot.logs import setup_logging
    from aibot.settings import Settings
    from aibot.status import StatusPanel

    console = Console()
    panels: list[StatusPanel] = []

    @contextlib.contextmanager
    def panel(bot: AibotBot) -> Iterator[None]:
        screen = StatusPanel(bot.status_source(), console=console, enabled=not args.no_panel)
        logs = setup_logging(
            Settings.from_env({"LOG_LEVEL": "WARNING"}),
            console=console if screen.active else None,
            extra_handlers=[bot.events.handler],
        )
        panels.append(screen)
        screen.start()
        try:
            yield
        finally:
            screen.stop()
            logs.close()

    def say(line: str) -> None:
        console.print(line, markup=False, highlight=False, soft_wrap=True)

    try:
        summary = asyncio.run(run_demo(say=say, on_bot=panel, rounds=args.demo_rounds))
    except KeyboardInterrupt:
        return 0
    return 0 if summary.answered == summary.commands else 1
