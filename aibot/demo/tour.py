"""The tour: one step per capability, each showing what the member saw.

`STEPS` is the list the demo plays, in order. To show a new capability, write an
`async def step(stage)` that runs the members' commands through `stage.slash` and
prints through `stage.out`, and add a `Step` for it here.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import simcord

from aibot.alerts import FOLD_WINDOW
from aibot.demo.stage import ALERT_CHANNEL, Stage
from aibot.discord.reply import EditBudget
from aibot.sandbox.media import png

__all__ = ["STEPS", "Step"]

# Simulated seconds the tour lets pass, at most, for a video to arrive.
_VIDEO_PATIENCE = 60
# Real seconds the tour waits, at most, for the alert room to post.
_ALERT_PATIENCE = 2.0


@dataclass(frozen=True, slots=True)
class Step:
    """One capability of the tour: its title and what plays it."""

    title: str
    play: Callable[[Stage], Awaitable[None]]


async def streamed_chat(stage: Stage) -> None:
    # SimCord's clock stands still while the fake streams, so the replies' edit
    # budget gets a clock that moves a quarter second at each reading instead: the
    # answer is then written as it grows, as on Discord.
    ticks = iter(range(1, 10**9))
    stage.bot.replies.edits = EditBudget(clock=lambda: next(ticks) / 4)
    sizes: list[int] = []
    watch = _Growth(stage, sizes)
    prompt = "오늘 저녁 메뉴 추천해줘"
    stage.out.command("minji", "채팅방-1", "chat", prompt=prompt)
    result = await stage.slash("minji", "채팅방-1", "chat", prompt=prompt)
    watch.stop()
    grew = ", ".join(str(n) for n in sizes)
    stage.out.note(
        f"streamed into one message, written as it grew ({grew} characters):", aside=True
    )
    stage.out.result(result)


async def image(stage: Stage) -> None:
    prompt = "a red fox in the snow, watercolor"
    stage.out.command("alex", "이미지생성-1", "image", prompt=prompt)
    stage.out.result(await stage.slash("alex", "이미지생성-1", "image", prompt=prompt))


async def image_from_picture(stage: Stage) -> None:
    picture = png(48, 32, (40, 120, 200))
    options = {"prompt": "the same scene as a pencil sketch", "strength": 0.4}
    options["provider"] = "stability"  # the image pool's provider that takes a strength
    stage.out.command("sam", "이미지생성-1", "image", **options, picture="scene.png")
    before = len(stage.fake.counters.bodies("stability", "image"))
    result = await stage.slash(
        "sam", "이미지생성-1", "image", **options, picture=("scene.png", picture)
    )
    stage.out.result(result)
    sent = stage.fake.counters.bodies("stability", "image")[before:]
    upload = sent[-1].body.get("image") if sent else None
    if upload is None:
        stage.out.note("the fake Stability got no picture.", aside=True)
        return
    same = (
        "the very bytes"
        if upload.sha256 == hashlib.sha256(picture).hexdigest()
        else "other bytes than"
    )
    stage.out.note(
        f"behind it: the worker downloaded the attached picture by its link (served over "
        f"loopback here) and the fake Stability got it at {sent[-1].path}: "
        f"{upload.kind}, {upload.size} bytes, {same} attached, with mode "
        f"{sent[-1].body.get('mode')} and strength {sent[-1].body.get('strength')}.",
        aside=True,
    )


async def video(stage: Stage) -> None:
    prompt = "waves rolling onto a beach at sunset"
    stage.out.command("sam", "비디오생성-1", "video", prompt=prompt)
    result = await stage.slash("sam", "비디오생성-1", "video", prompt=prompt)
    stage.out.result(result, label="at once: ")
    stage.out.note(
        "(simulated time passes: the bot polls the provider's task every 10 s, and the "
        "fake's clip is short)",
        aside=True,
    )
    await _until_delivered(stage, [result])
    stage.out.result(result, label="then: ")


async def wrong_channel(stage: Stage) -> None:
    prompt = "서울 야경, 네온 사인"
    stage.out.command("jisoo", "채팅방-1", "image", prompt=prompt)
    stage.out.result(await stage.slash("jisoo", "채팅방-1", "image", prompt=prompt))
    prompt = "Explain rate limits like I'm five"
    stage.out.command("priya", "갤러리", "chat", prompt=prompt)
    stage.out.result(await stage.slash("priya", "갤러리", "chat", prompt=prompt))


async def cooldown(stage: Stage) -> None:
    stage.out.note("lucas asks twice within a second (the chat pool's cooldown is 1 s):")
    for prompt in ("What is a token bucket?", "And a leaky bucket?"):
        stage.out.command("lucas", "채팅방-2", "chat", prompt=prompt)
        stage.out.result(await stage.slash("lucas", "채팅방-2", "chat", prompt=prompt))


async def rate_limited(stage: Stage) -> None:
    stage.out.note("The fake OpenAI answers the next chat call with 429 Too Many Requests.")
    stage.fake.inject("openai", "rate_limit", endpoint="chat")
    before = _calls(stage, "chat")
    prompt = "How do I keep a sourdough starter alive?"
    stage.out.command("alex", "ai-지원", "chat", prompt=prompt)
    stage.out.result(await stage.slash("alex", "ai-지원", "chat", prompt=prompt))
    after = _calls(stage, "chat")
    limited = [key for key, (_, was) in after.items() if was > before.get(key, (0, 0))[1]]
    moved = [
        key
        for key, (calls, _) in after.items()
        if calls > before.get(key, (0, 0))[0] and key not in limited
    ]
    stage.out.note(
        f"behind it: key {', '.join(limited) or '?'} got the 429 and rests for its "
        f"retry-after; the call moved to key {', '.join(moved) or '?'}, and the member "
        "saw a normal answer.",
        aside=True,
    )


async def overflow(stage: Stage) -> None:
    stage.out.note(
        "Here the video pool makes one video at a time with one waiting (AIBOT_VIDEO_WORKERS=1, "
        "AIBOT_VIDEO_QUEUE=1). Three members ask for a video at once:"
    )
    asks = (
        ("haneul", "비디오생성-1", "고양이가 피아노를 치는 장면"),
        ("taeyang", "비디오-갤러리", "a paper boat in the rain"),
        ("alex", "비디오생성-1", "a tiny robot gardener"),
    )
    results = []
    for member, channel, prompt in asks:
        before = {job.id for _, job, _ in stage.bot.queue.jobs()}
        stage.out.command(member, channel, "video", prompt=prompt)
        result = await stage.slash(member, channel, "video", prompt=prompt)
        pools = [pool for pool, job, _ in stage.bot.queue.jobs() if job.id not in before]
        where = f" ({pools[0]} pool)" if pools else ""
        stage.out.result(result, label=f"at once{where}: ")
        results.append(result)
    stage.out.note(
        "the video pool was full, so the third went to the admin pool, with its own keys.",
        aside=True,
    )
    await _until_delivered(stage, results)
    for (member, _, _), result in zip(asks, results, strict=True):
        stage.out.result(result, label=f"{member} then: ")


async def status_tables(stage: Stage) -> None:
    result = await _admin(stage, "alex", "status")
    if result.response is not None and result.response.embeds:
        stage.out.table(result.response.embeds[0])
    result = await _admin(stage, "minji", "instances")
    if result.response is not None and result.response.embeds:
        stage.out.table(result.response.embeds[0])


async def restart(stage: Stage) -> None:
    stage.fake.video_polls = 4  # long enough to be still running at the restart
    prompt = "a lighthouse in a storm"
    stage.out.command("priya", "비디오생성-1", "video", prompt=prompt)
    result = await stage.slash("priya", "비디오생성-1", "video", prompt=prompt)
    stage.out.result(result, label="at once: ")
    tasks = stage.fake.counters.video_tasks
    stage.out.note(
        "The bot stops as in a crash (no time to finish anything), and a new one starts on "
        "the same data folder: it finds the video in its journal and polls the same "
        "provider task again."
    )
    await stage.restart()
    stage.out.note("restarted: a new bot, the same data folder.", aside=True)
    await _until_delivered(stage, [result])
    stage.out.result(result, label="then: ")
    again = stage.fake.counters.video_tasks - tasks
    stage.out.note(
        f"new provider tasks after the restart: {again} (made and paid for once).", aside=True
    )
    stage.fake.video_polls = 2


async def alert(stage: Stage) -> None:
    channel = stage.channels[ALERT_CHANNEL]
    seen_before = len(channel.history())
    stage.out.note(
        "The fake OpenAI now answers the next chat call with 401 invalid key, as for a "
        "key revoked at the provider."
    )
    stage.fake.inject("openai", "invalid_key", endpoint="chat")
    prompt = "What is a good name for a cat?"
    stage.out.command("priya", "채팅방-2", "chat", prompt=prompt)
    stage.out.result(await stage.slash("priya", "채팅방-2", "chat", prompt=prompt))
    posted = await _posted(channel, seen_before)
    stage.out.note(
        f"the bot took that key out of service and posted in #{ALERT_CHANNEL} (more "
        f"alerts of one kind and pool within {FOLD_WINDOW / 60:.0f} min fold into one count):",
        aside=True,
    )
    for message in posted or ["(nothing posted)"]:
        stage.out.answer(str(message), label="🚨 ")


STEPS: tuple[Step, ...] = (
    Step("A chat answer, streamed", streamed_chat),
    Step("An image", image),
    Step("An image made from an attached picture", image_from_picture),
    Step("A video, delivered", video),
    Step("The wrong channel", wrong_channel),
    Step("A cooldown", cooldown),
    Step("A 429, and the next key", rate_limited),
    Step("Overflow to the admin pool", overflow),
    Step("/status and /instances", status_tables),
    Step("A restart resumes a video", restart),
    Step("An alert for the operators", alert),
)


async def _admin(stage: Stage, member: str, command: str) -> simcord.InteractionResult:
    stage.out.command(member, "general", command)
    return await stage.slash(member, "general", command)


async def _until_delivered(stage: Stage, results: list[simcord.InteractionResult]) -> None:
    """Let simulated time pass, two seconds at a time, until every video is in."""
    for _ in range(0, _VIDEO_PATIENCE, 2):
        if all(_has_file(result) for result in results):
            return
        await stage.wait(2)


async def _posted(channel: simcord.ChannelHandle, after: int) -> list[str]:
    """The words of the messages posted in `channel` after its first `after`; the
    alert room posts from its own task, so this waits a moment for them."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _ALERT_PATIENCE
    while len(channel.history()) <= after and loop.time() < deadline:
        await asyncio.sleep(0.05)
    return [message.content for message in channel.history()[after:]]


def _has_file(result: simcord.InteractionResult) -> bool:
    messages = [m for m in (result.response, *result.followups) if m is not None]
    return any(m.attachments for m in messages)


def _calls(stage: Stage, pool: str) -> dict[str, tuple[int, int]]:
    """(calls, 429s) of each of the pool's keys, by redacted key."""
    return {
        key.key_id: (key.calls, key.rate_limited)
        for snapshot in stage.bot.queue.snapshots()
        if snapshot.name == pool
        for ring in snapshot.rings
        for key in ring.keys
    }


class _Growth:
    """Records the length of each write of a streamed answer (SimCord's events)."""

    def __init__(self, stage: Stage, sizes: list[int]) -> None:
        self._subscribers = stage.world.backend.subscribers
        self._sizes = sizes
        self._subscribers.append(self._seen)

    def _seen(self, event: str, payload: object) -> None:
        if event in ("MESSAGE_CREATE", "MESSAGE_UPDATE") and isinstance(payload, dict):
            content = payload.get("content")
            if content and (not self._sizes or self._sizes[-1] != len(content)):
                self._sizes.append(len(content))

    def stop(self) -> None:
        self._subscribers.remove(self._seen)
