"""The demo's world: the demo settings, the server with the reference design's
channels, its members (some with Korean clients), and what the tour does to it
(a member's command, a restart of the bot).

Nothing here is a mock of aibot: only Discord (SimCord) and the AI providers (the
fakes in `aibot.sandbox`) are simulated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import discord
import simcord
from simcord.actors import MemberActor
from simcord.builders import ChannelHandle

from aibot.app import create_bot
from aibot.demo.transcript import Transcript
from aibot.discord.bot import AibotBot
from aibot.sandbox import FakeProviders
from aibot.sandbox.cdn import LoopbackCdn

__all__ = ["ALERT_CHANNEL", "CHANNELS", "DEMO_ENV", "MEMBERS", "Stage", "demo_key"]


_KEY_PREFIX = {"openai": "sk", "minimax": "mm", "stability": "st"}


def demo_key(provider: str, pool: str, letter: str) -> str:
    """A demo key: the fake providers accept any key, so it only names its place;
    its redacted form ends with it (`sk-...ch-a`: the chat pool's key a)."""
    return f"{_KEY_PREFIX[provider]}-demo-{provider}-{pool}-{pool[:2]}-{letter}"


_POOL_NUMBERS = ((1, "chat"), (2, "image"), (3, "video"), (4, "admin"))

DEMO_ENV: Mapping[str, str] = {
    "DISCORD_TOKEN": "demo-token",
    **{
        f"{provider.upper()}_API_KEY_{n}": f"{demo_key(provider, pool, 'a')},"
        f"{demo_key(provider, pool, 'b')}"
        for n, pool in _POOL_NUMBERS
        for provider in ("openai", "minimax", "stability")
    },
    "AIBOT_SHARD_COUNT": "2",
    # /health and /metrics on a free port (printed at start).
    "AIBOT_HTTP": "127.0.0.1:0",
    # A short clip: the fake finishes it on its second poll, 10 s apart (simulated
    # seconds: the demo moves the clock; see SETTLE_SECONDS in aibot.demo.run).
    "AIBOT_VIDEO_POLL_SECONDS": "10",
    # The real providers allow a few image and video calls a minute per key; the
    # fakes allow more, so a short demo never waits for a key's budget.
    **{f"AIBOT_{pool}_RPM_MINIMAX": "600" for pool in ("IMAGE", "VIDEO", "ADMIN")},
    # One video at a time and one waiting, so a third overflows to the admin pool.
    "AIBOT_VIDEO_WORKERS": "1",
    "AIBOT_VIDEO_QUEUE": "1",
    "AIBOT_VIDEO_COOLDOWN": "0",
    "AIBOT_DRAIN_SECONDS": "2",
    # SimCord's clock stands still while the bot works: no gap of time can pass.
    "AIBOT_BURST_GAP_MS": "0",
}

# Where the bot posts what an operator must act on (AIBOT_ALERT_CHANNEL's default
# pattern `*알림-채널` finds it), as in the reference design.
ALERT_CHANNEL = "🚨-알림-채널"
CHANNELS = (
    "채팅방-1",
    "채팅방-2",
    "ai-지원",
    "이미지생성-1",
    "갤러리",
    "비디오생성-1",
    "비디오-갤러리",
    "general",
    ALERT_CHANNEL,
)
# The member who runs the server (/admin is hers); (name, client locale) of each.
ADMIN = "minji"
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


@dataclass
class Stage:
    """The running demo: the simulated Discord, the bot (a new one after a
    restart), the fakes, the members' attachments served over loopback, the
    server, and the transcript."""

    world: simcord.Env
    bot: AibotBot
    fake: FakeProviders
    cdn: LoopbackCdn
    settings: Mapping[str, str]
    out: Transcript
    channels: dict[str, ChannelHandle] = field(default_factory=dict)
    members: dict[str, MemberActor] = field(default_factory=dict)
    commands: int = 0
    answered: int = 0
    private: int = 0

    async def open(self) -> None:
        """The server, its channels and members; the commands synced."""
        guild = self.world.create_guild("aibot demo server")
        self.channels = {name: guild.create_text_channel(name) for name in CHANNELS}
        self.out.names = {channel.id: name for name, channel in self.channels.items()}
        # ADMIN runs the server: /admin is hers (Manage Server).
        admins = [guild.create_role("운영진", permissions=discord.Permissions(manage_guild=True))]
        self.members = {
            name: guild.add_member(
                self.world.create_user(name), roles=admins if name == ADMIN else []
            )
            for name, _ in MEMBERS
        }
        locales = {self.members[n].id: loc for n, loc in MEMBERS if loc == "ko"}
        _korean_clients(self.world, locales)
        await self.bot.tree.sync()

    async def slash(
        self, member: str, channel: str, command: str, **options: Any
    ) -> simcord.InteractionResult:
        """`member` runs `/command` in `#channel`; counted for the summary."""
        result = await self.members[member].slash(self.channels[channel], command, **options)
        self.commands += 1
        self.answered += result.acknowledged
        self.private += bool(result.response and result.response.ephemeral)
        return result

    async def wait(self, seconds: float) -> None:
        """Let `seconds` of Discord's (simulated) time pass: timers, video polls."""
        await self.world.advance_time(seconds)

    async def restart(self) -> AibotBot:
        """Restart the bot as after a crash (its tasks cancelled, no drain) with a new
        bot on the same data folder; the old one's clients and store are let go."""
        old = self.bot
        self.bot = create_bot(self.settings)
        await self.world.restart_bot(self.bot)
        await old.release()
        return self.bot


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
