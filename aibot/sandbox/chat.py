"""Chat completions as OpenAI speaks them, shared by the OpenAI and MiniMax fakes.

The answer comes from `FakeConfig.reply_for(last user message)` and is cut
into `chunk_chars`-character chunks, one chunk counting as one token (so
`max_tokens` truncates with `finish_reason: "length"`). Streaming answers are
server-sent events: a first chunk with the assistant role, one chunk per piece
of content, a last chunk with the finish reason, an optional usage chunk
(`stream_options.include_usage`), then `data: [DONE]`. `FakeConfig.stream_dialect`
frames them as other OpenAI-compatible servers do (`DIALECTS`); the faults
`cut_stream`, `drop_stream` and `bad_event` break a stream after half its words.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .checkpoint import Admission, Refusal
from .config import FakeConfig

__all__ = ["DIALECTS", "ChatCompletions", "last_user_text"]


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
        framing = _Framing(self.config.stream_dialect)
        usage = answer.usage if options.get("include_usage") is True else None
        extra = {"usage": None} if usage else {}
        delay = self.config.chunk_delay if delay is None else delay

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return {**head, "object": "chat.completion.chunk", "choices": [choice], **extra}

        deltas = framing.deltas(answer.chunks)
        # The faults strike after half the words (after all of them, when there is one).
        strike = 1 + max(1, (len(deltas) - 1) // 2)
        try:
            for number, delta in enumerate(deltas):
                if number == strike and await self._strike(request, response, framing, adm.fault):
                    return response
                if number:
                    if delay:
                        await asyncio.sleep(delay)
                    await response.write(framing.keep_alive())
                if framing.unterminated and number == len(deltas) - 1:
                    last = chunk(delta, answer.finish_reason) | ({"usage": usage} if usage else {})
                    await response.write(framing.event(last, last=True))
                    return response
                await response.write(framing.event(chunk(delta)))
            if len(deltas) <= strike and await self._strike(request, response, framing, adm.fault):
                return response
            await response.write(framing.event(chunk({}, answer.finish_reason)))
            if usage:
                tail = {**head, "object": "chat.completion.chunk", "choices": []}
                await response.write(framing.event({**tail, "usage": usage}))
            await response.write(framing.done())
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client went away mid-stream, as clients may
        return response

    @staticmethod
    async def _strike(
        request: web.Request, response: web.StreamResponse, framing: _Framing, fault: str | None
    ) -> bool:
        """Act out a stream fault at its point; True when the stream ends there."""
        if fault == "bad_event":
            await response.write(framing.raw('{"id":"chatcmpl-x","choices":[{"delta":{"conte'))
        elif fault == "cut_stream":
            await response.write_eof()  # a clean end of the body, with no end of the answer
            return True
        elif fault == "drop_stream" and request.transport is not None:
            request.transport.close()
            return True
        return False


# How OpenAI-compatible servers other than OpenAI frame a stream (FakeConfig.stream_dialect).
DIALECTS = (
    "crlf",  # lines end in CR LF
    "cr",  # lines end in a bare CR
    "bom",  # the body opens with a UTF-8 byte-order mark; the role comes with the first words
    "comments",  # a `: keep-alive` comment line opens every event
    "empty_data",  # an event of one empty `data:` line comes before every piece of the answer
    "list_content",  # content is a list of parts, [{"type": "text", "text": ...}]
    "unterminated",  # the last words, the finish reason and usage share the last event,
    # which ends the body with no line end, no blank line and no [DONE]
)


class _Framing:
    """Events as bytes on the wire, in a set of `DIALECTS`."""

    def __init__(self, dialect: set[str]) -> None:
        unknown = set(dialect).difference(DIALECTS)
        if unknown:
            raise ValueError(f"unknown stream dialect {sorted(unknown)}; some of {DIALECTS}")
        self.dialect = frozenset(dialect)
        self.end = "\r" if "cr" in dialect else "\r\n" if "crlf" in dialect else "\n"
        self.unterminated = "unterminated" in dialect
        self._opened = False

    def deltas(self, pieces: list[str]) -> list[dict[str, Any]]:
        """The deltas of the answer's chunks: the role first, then a piece each."""
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        deltas += ({"content": piece} for piece in pieces)
        if "bom" in self.dialect and len(deltas) > 1:
            deltas[:2] = [{"role": "assistant", "content": pieces[0]}]
        if "list_content" in self.dialect:
            for delta in deltas:
                if delta["content"]:
                    delta["content"] = [{"type": "text", "text": delta["content"]}]
        return deltas

    def event(self, data: dict[str, Any], *, last: bool = False) -> bytes:
        """One event whose data is `data` as JSON; the `last` one of an answer
        ends with no line end in the `unterminated` dialect."""
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        return self.raw(text, last=last and self.unterminated)

    def raw(self, data: str, *, last: bool = False) -> bytes:
        """One event whose data is `data` as it stands; `last`: with no line end."""
        end = self.end
        text = f": keep-alive{end}" if "comments" in self.dialect else ""
        text += f"data: {data}" + ("" if last else end + end)
        if not self._opened:
            self._opened = True
            text = ("\ufeff" if "bom" in self.dialect else "") + text
        return text.encode()

    def keep_alive(self) -> bytes:
        """What comes before each piece of the answer (nothing, in OpenAI's framing)."""
        return f"data:{self.end}{self.end}".encode() if "empty_data" in self.dialect else b""

    def done(self) -> bytes:
        return self.raw("[DONE]")


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
