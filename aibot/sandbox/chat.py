"""Chat completions as OpenAI speaks them, shared by the OpenAI and MiniMax fakes.

The answer comes from `FakeConfig.reply_for(last user message)` and is cut
into `chunk_chars`-character chunks, one chunk counting as one token (so
`max_tokens` truncates with `finish_reason: "length"`). Streaming answers are
server-sent events: a first chunk with the assistant role, one chunk per piece
of content, a last chunk with the finish reason, an optional usage chunk
(`stream_options.include_usage`), then `data: [DONE]`.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .config import FakeConfig
from .gate import Admission, Refusal

__all__ = ["ChatCompletions", "last_user_text"]


@dataclass(frozen=True, slots=True)
class _Answer:
    chunks: list[str]
    finish_reason: str
    usage: dict[str, int]


class ChatCompletions:
    """`POST /v1/chat/completions`. `think`: start answers with the configured
    `<think>` block (MiniMax); `strict_temperature`: temperature must be in (0, 1]."""

    def __init__(
        self, config: FakeConfig, *, think: bool = False, strict_temperature: bool = False
    ) -> None:
        self.config = config
        self.think = think
        self.strict_temperature = strict_temperature

    async def __call__(
        self, request: web.Request, body: dict[str, Any], adm: Admission
    ) -> web.StreamResponse:
        messages = self._validate(body)
        answer = self._answer(messages, body, adm.fault)
        head = {
            "id": f"chatcmpl-{adm.request_id}",
            "created": int(time.time()),
            "model": body["model"],
            "system_fingerprint": None,
        }
        if body.get("stream"):
            delay = self.config.slow_chunk_delay if adm.fault == "slow_stream" else None
            options = body.get("stream_options") or {}
            return await self._stream(request, adm, head, answer, options, delay)
        completion = {
            **head,
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(answer.chunks)},
                    "logprobs": None,
                    "finish_reason": answer.finish_reason,
                }
            ],
            "usage": answer.usage,
        }
        return web.json_response(completion, headers=adm.headers)

    def _validate(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise Refusal("bad_request", "you must provide a model parameter", param="model")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise Refusal("bad_request", "messages must be a non-empty array", param="messages")
        if not all(isinstance(m, dict) and "role" in m for m in messages):
            raise Refusal("bad_request", "each message needs a role", param="messages")
        temperature = body.get("temperature")
        if self.strict_temperature and temperature is not None and not _unit(temperature):
            raise Refusal("bad_request", "temperature must be in (0, 1]", param="temperature")
        return messages

    def _answer(
        self, messages: list[dict[str, Any]], body: dict[str, Any], fault: str | None
    ) -> _Answer:
        text = self.config.reply_for(last_user_text(messages))
        if self.think and self.config.think:
            text = f"<think>\n{self.config.think}\n</think>\n\n{text}"
        size = max(self.config.chunk_chars, 1)
        chunks = [text[i : i + size] for i in range(0, len(text), size)]
        finish = "stop"
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(limit, int) and len(chunks) > limit:
            chunks, finish = chunks[:limit], "length"
        if fault == "filtered":
            chunks, finish = chunks[: len(chunks) // 2], "content_filter"
        prompt_tokens = sum(len(_text_of(m.get("content"))) for m in messages) // 4 + 1
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(chunks),
            "total_tokens": prompt_tokens + len(chunks),
        }
        return _Answer(chunks, finish, usage)

    async def _stream(
        self,
        request: web.Request,
        adm: Admission,
        head: dict[str, Any],
        answer: _Answer,
        options: dict[str, Any],
        delay: float | None,
    ) -> web.StreamResponse:
        headers = {**adm.headers, "Content-Type": "text/event-stream; charset=utf-8"}
        response = web.StreamResponse(headers={**headers, "Cache-Control": "no-cache"})
        await response.prepare(request)
        usage = options.get("include_usage") is True
        extra = {"usage": None} if usage else {}
        delay = self.config.chunk_delay if delay is None else delay

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return {**head, "object": "chat.completion.chunk", "choices": [choice], **extra}

        try:
            await _event(response, chunk({"role": "assistant", "content": ""}))
            for piece in answer.chunks:
                if delay:
                    await asyncio.sleep(delay)
                await _event(response, chunk({"content": piece}))
            await _event(response, chunk({}, answer.finish_reason))
            if usage:
                tail = {**head, "object": "chat.completion.chunk", "choices": []}
                await _event(response, {**tail, "usage": answer.usage})
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client went away mid-stream, as clients may
        return response


async def _event(response: web.StreamResponse, data: dict[str, Any]) -> None:
    line = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    await response.write(f"data: {line}\n\n".encode())


def _unit(value: Any) -> bool:
    return isinstance(value, int | float) and 0 < value <= 1


def _text_of(content: Any) -> str:
    """A message's text: a string, or the text parts of a content array."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = (p.get("text", "") for p in content if isinstance(p, dict))
        return "".join(p for p in parts if isinstance(p, str))
    return ""


def last_user_text(messages: list[dict[str, Any]]) -> str:
    """The text of the last user message (of the last message, when no user spoke)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return _text_of(message.get("content"))
    return _text_of(messages[-1].get("content"))
