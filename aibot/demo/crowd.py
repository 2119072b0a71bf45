"""The crowd after the tour (`--demo-rounds N`): members at random using every
command, now and then in the wrong channel, one line each."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aibot.demo.stage import ADMIN, MEMBERS, Stage
from aibot.demo.transcript import seen

__all__ = ["PROMPTS", "Scene", "play_crowd", "script"]

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
_HOMES = {
    "chat": ("채팅방-1", "채팅방-2", "ai-지원"),
    "image": ("이미지생성-1", "갤러리"),
    "video": ("비디오생성-1", "비디오-갤러리"),
}
# What the server's admin (ADMIN, who may Manage Server) runs after each round's
# members, in turn: (command, channel).
_ADMIN_TURNS = (
    ("ping", "general"),
    ("status", "general"),
    ("instances", "general"),
    ("stats", "general"),
    ("reset", "채팅방-1"),
    ("admin keys", "general"),
)
# Columns of a crowd line, in terminal cells (a Korean syllable takes two).
_COLUMNS = {"round": 10, "member": 8, "command": 12, "channel": 14}


@dataclass(frozen=True, slots=True)
class Scene:
    """One member running one command in one channel."""

    member: str
    channel: str
    command: str
    options: dict[str, Any] = field(default_factory=dict)


def script(rounds: int, seed: int = 7) -> Iterator[list[Scene]]:
    """A plausible crowd: mostly chat, some images, a few videos, members now and then
    in the wrong channel (and pointed to the right one), the admin checking on the
    bot."""
    rng = random.Random(seed)
    for number in range(rounds):
        scenes = []
        for name, _ in rng.sample(MEMBERS, k=4):
            command = rng.choices(("chat", "image", "video"), weights=(6, 3, 1))[0]
            channel = rng.choice(_HOMES[command])
            if rng.random() < 0.15:  # the wrong channel: the bot points elsewhere
                channel = rng.choice(_HOMES["image" if command == "chat" else "chat"])
            scenes.append(Scene(name, channel, command, {"prompt": rng.choice(PROMPTS[command])}))
        command, channel = _ADMIN_TURNS[number % len(_ADMIN_TURNS)]
        scenes.append(Scene(ADMIN, channel, command))
        yield scenes


async def play_crowd(stage: Stage, rounds: int, pause: float = 0.0) -> None:
    """`rounds` rounds of the crowd, a line per command, five simulated seconds
    (and `pause` real ones) between rounds."""
    out = stage.out
    for number, scenes in enumerate(script(rounds), start=1):
        for scene in scenes:
            result = await stage.slash(scene.member, scene.channel, scene.command, **scene.options)
            head = out.row(
                _COLUMNS,
                {
                    "round": f"[round {number}]",
                    "member": scene.member,
                    "command": f"/{scene.command}",
                    "channel": f"#{scene.channel}",
                },
            )
            words = " ".join(out.named(seen(result)).split())
            room = out.width - sum(_COLUMNS.values()) - len(_COLUMNS) - 2
            # One line each: the tour showed whole answers; here the crowd scrolls by.
            out.say(f"{head} → {out.clipped(words, room)}")
        await stage.wait(5)
        await asyncio.sleep(pause)
