"""The chat role: a streamed answer to a member's prompt, in the context of
their conversation so far.

The messages are the system prompt, the remembered conversation (when the pool
has a memory) and the prompt. The answer is streamed to the reply as it grows
(the reply decides how often to show it). Until the first words arrived a
failing provider gives way to the next; after that the job fails, since a
half-shown answer cannot be replaced by another model's.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aibot.jobs import BadRequest, Job, Reply, Result
from aibot.pools import PoolContext
from aibot.pools.base import Work
from aibot.providers.openai_chat import ChatStream
from aibot.providers.retry import stream_with_keys

__all__ = ["build_work"]


class _Answer:
    """The answer so far; each delta shows the whole text on the reply."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.text = ""

    async def add(self, delta: str) -> None:
        self.text += delta
        await self.reply.stream(self.text)


def build_work(ctx: PoolContext) -> Work:
    """The chat work function for a pool."""

    async def work(job: Job, reply: Reply) -> Result:
        prompt = str(job.args.get("prompt") or "").strip()
        if not prompt:
            raise BadRequest("the prompt is empty")
        recall = await ctx.memory.recall(job) if ctx.memory else None
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": ctx.settings.chat_system_prompt},
            *(recall.messages if recall else ()),
            {"role": "user", "content": prompt},
        ]
        temperature = _temperature(job.args.get("temperature"))
        loop = asyncio.get_running_loop()
        started = loop.time()
        answer = _Answer(reply)

        async def attempt(provider: str) -> ChatStream:
            chat = ctx.chat[provider]
            return await stream_with_keys(
                ctx.rings[provider],
                lambda lease: chat.stream(
                    lease,
                    messages,
                    max_tokens=ctx.settings.chat_max_tokens,
                    temperature=temperature,
                ),
                answer.add,
                timeout=ctx.settings.request_timeout,
            )

        stream = await ctx.first_provider("chat", attempt, committed=lambda: bool(answer.text))
        if ctx.memory:
            # Not when the member said /reset meanwhile: this answer came from before.
            await ctx.memory.remember(
                job, prompt, answer.text, resets=recall.resets if recall else 0
            )
        meta = {
            "provider": stream.provider,
            "model": stream.model,
            "key_id": stream.key_id,
            "tokens_in": stream.tokens_in,
            "tokens_out": stream.tokens_out,
            "seconds": round(loop.time() - started, 3),
            # Old turns left the memory to fit its budget: the member is told once.
            "forgotten": recall.dropped if recall else 0,
            "cut_short": stream.cut_short,  # the answer ends at its token limit
        }
        return Result(text=answer.text, meta=meta)

    return work


def _temperature(value: object) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise BadRequest("temperature must be a number") from None
