"""Streamed chat over the OpenAI chat-completions API, and over MiniMax's
OpenAI-compatible endpoint (`OpenAIChat.minimax`), which differs in three ways:
answers may open with a `<think>...</think>` block (removed here, also when a
tag is split across chunks), temperature must lie in (0, 1], and the token
limit is called `max_tokens`.

The request, its authentication and its errors are the openai SDK's; the answer's
server-sent events are read here, as plain JSON. A chat pool streams dozens of
answers at about fifty chunks a second each, and the SDK builds a typed model
object for every chunk, and walks every request's messages against their type
annotations before sending: most of the pool's processor time, which the gateway,
on the same event loop, then waits for. So the request goes through
the client's plain `post` (the body is already the API's JSON), and the events
are read as plain JSON, whatever pieces the body comes in (`sse.EventDecoder`
keeps to the event-stream rules, which servers other than OpenAI lean on).
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import anyio
import httpx2
import openai
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from aibot.jobs import AibotError, BadAnswer, Incomplete, Rejected, ThoughtTooLong, Unavailable
from aibot.leases import Lease
from aibot.providers.base import OpenAIClients, openai_error
from aibot.providers.minimax import base_resp_error
from aibot.providers.sse import EventDecoder
from aibot.rate_headers import rate_headers

__all__ = ["ChatStream", "OpenAIChat", "ThinkFilter"]

Message = Mapping[str, Any]


class OpenAIChat:
    """A chat model behind an OpenAI-compatible base URL."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        timeout: float,
        strip_think: bool = False,
        name: str = "openai",
        max_tokens_field: str = "max_completion_tokens",
        max_temperature: float = 2.0,
    ) -> None:
        self.name = name
        self.model = model
        self.strip_think = strip_think
        self._max_tokens_field = max_tokens_field
        self._max_temperature = max_temperature
        self._clients = OpenAIClients(base_url, timeout=timeout)

    @classmethod
    def minimax(cls, host: str, model: str, *, timeout: float) -> OpenAIChat:
        """MiniMax chat: `host` is the MiniMax base URL (the API lives at /v1)."""
        return cls(
            f"{host.rstrip('/')}/v1",
            model,
            timeout=timeout,
            strip_think=True,
            name="minimax",
            max_tokens_field="max_tokens",
            max_temperature=1.0,
        )

    def stream(
        self,
        lease: Lease,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float | None = None,
    ) -> ChatStream:
        """The answer's text deltas; nothing is sent until it is iterated."""
        request: dict[str, Any] = {
            "model": self.model,
            "messages": list(messages),
            "stream": True,
            "stream_options": {"include_usage": True},
            self._max_tokens_field: max_tokens,
        }
        if temperature is not None:
            # MiniMax refuses 0 and anything above 1.
            request["temperature"] = min(max(temperature, 0.01), self._max_temperature)
        return ChatStream(self, self._clients.get(lease), lease, request)

    async def aclose(self) -> None:
        await self._clients.aclose()


class ChatStream:
    """One streamed answer: iterate for text deltas. Once it is read to the
    end, `tokens_in`, `tokens_out` and the rate-limit `headers` are known;
    `key_id` is the (redacted) key that made it; `cut_short` says the answer
    reached its token limit (`max_tokens`) and ended there.

    An answer is whole only when the stream says it ended: a finish reason or
    `[DONE]`. A body that stops before either, or a connection that breaks after
    the first words, raises `Incomplete` (after the words that did arrive), and so
    does an answer whose token limit ran out before its first visible word (a
    reasoning model can spend it all on thinking); an event that is not what the
    API promises raises `BadAnswer`."""

    def __init__(
        self, chat: OpenAIChat, client: openai.AsyncOpenAI, lease: Lease, request: dict[str, Any]
    ) -> None:
        self.provider = chat.name
        self.model = chat.model
        self.key_id = lease.key_id
        self.tokens_in = 0
        self.tokens_out = 0
        self.headers: dict[str, str] = {}
        self.cut_short = False
        self._client = client
        self._key = lease.key
        self._request = request
        self._think = ThinkFilter() if chat.strip_think else None
        self._events = 0  # events read with data
        self._shown = False  # some text was handed out
        self._ended = False  # a finish reason or [DONE] came
        self._done = False  # [DONE] came: the rest of the body is not read as events

    def __repr__(self) -> str:
        return f"ChatStream(provider={self.provider!r}, model={self.model!r})"

    def __aiter__(self) -> AsyncIterator[str]:
        return self._deltas()

    async def _deltas(self) -> AsyncIterator[str]:
        try:
            stream = await self._client.post(
                "/chat/completions",
                body=self._request,
                cast_to=ChatCompletion,
                stream=True,
                stream_cls=openai.AsyncStream[ChatCompletionChunk],
            )
            response = stream.response
            self.headers = rate_headers(response.headers)
            if "json" in response.headers.get("content-type", ""):
                raise await self._not_a_stream(response)
            async with stream:  # closes the response, also when the reader stops early
                events = EventDecoder()
                async for piece in self._body(response):
                    if not self._done and (text := self._text(events.feed(piece), response)):
                        self._shown = True
                        yield text
                if not self._done and (text := self._text(events.end(), response, last=True)):
                    self._shown = True
                    yield text
        except openai.OpenAIError as exc:
            raise openai_error(exc, provider=self.provider, key=self._key) from None
        if self._think is not None and (tail := self._think.flush()):
            self._shown = True
            yield tail
        if self.cut_short and not self._shown:
            raise ThoughtTooLong(f"{self.provider}: the token limit ran out before the first words")
        if not self._ended:
            if not self._events:
                raise BadAnswer(f"{self.provider}: the answer was not an event stream")
            raise Incomplete(f"{self.provider}: the stream stopped before the answer's end")

    async def _body(self, response: httpx2.Response) -> AsyncIterator[bytes]:
        """The body's pieces, read to its end (so the connection can serve another
        request). A transport failure after the answer's end is no failure; after
        its first words, it leaves the answer incomplete."""
        try:
            async for piece in response.aiter_bytes():
                yield piece
        except (httpx2.RequestError, ssl.SSLError, anyio.EndOfStream) as exc:
            if self._ended:
                return
            what = "timed out" if isinstance(exc, httpx2.TimeoutException) else "connection failed"
            if self._shown:
                raise Incomplete(f"{self.provider}: {what} in the middle of the answer") from None
            raise Unavailable(f"{self.provider}: {what}") from None

    async def _not_a_stream(self, response: httpx2.Response) -> AibotError:
        """MiniMax may answer an error as HTTP 200 JSON with `base_resp`."""
        await response.aread()
        try:
            body = json.loads(response.content)
        except ValueError:
            body = None
        error = base_resp_error(body, key=self._key) if _has_status(body) else None
        return error or BadAnswer(f"{self.provider}: the answer was not a stream")

    def _text(self, events: list[str], response: httpx2.Response, *, last: bool = False) -> str:
        """The visible text of some events, up to `[DONE]`. The `last` events were
        open when the body ended: one that is not JSON was cut short, and so is
        the answer, unless it had ended before."""
        text = ""
        for data in events:
            if data.startswith("[DONE]"):
                self._ended = self._done = True
                break
            if not data or data.isspace():
                continue  # an empty event: a keep-alive
            self._events += 1
            try:
                text += self._read(data, response.request)
            except BadAnswer:
                if not last:
                    raise
        return text

    def _read(self, data: str, request: httpx2.Request) -> str:
        """The visible text of one event's data; notes usage, the model, the end
        of the answer and a filtered answer. An error event raises as the SDK's
        stream would."""
        try:
            chunk = json.loads(data)
        except ValueError:
            raise BadAnswer(f"{self.provider}: an event of the stream was not JSON") from None
        if not isinstance(chunk, dict):
            raise BadAnswer(f"{self.provider}: an event of the stream was not an object")
        if chunk.get("error"):
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else None
            raise openai.APIError(
                message if isinstance(message, str) and message else "stream error",
                request=request,
                body=error,
            )
        if isinstance(usage := chunk.get("usage"), dict):
            self.tokens_in = usage.get("prompt_tokens") or 0
            self.tokens_out = usage.get("completion_tokens") or 0
        if isinstance(model := chunk.get("model"), str) and model:
            self.model = model
        choices = chunk.get("choices")
        if choices is None:
            choices = []
        elif not isinstance(choices, list):
            raise BadAnswer(f"{self.provider}: an event's choices were not a list")
        text = ""
        for choice in choices:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if not isinstance(delta, dict | None):
                raise BadAnswer(f"{self.provider}: an event's choice was not an object")
            if finish := choice.get("finish_reason"):
                if finish == "content_filter":
                    raise Rejected(f"{self.provider}: the answer was filtered")
                self._ended = True
                self.cut_short = finish == "length"
            if delta:
                text += self._content(delta.get("content"))
        if self._think is not None:
            text = self._think.feed(text)
        return text

    def _content(self, content: object) -> str:
        """The text of a delta's content: a string, or a list of parts with text."""
        if isinstance(content, str):
            return content
        if content is None:
            return ""
        if isinstance(content, list):
            return "".join(_part_text(part) for part in content)
        raise BadAnswer(f"{self.provider}: an event's content was neither text nor parts")


def _part_text(part: object) -> str:
    """The text of one content part (`{"type": "text", "text": ...}`; parts of
    other types, such as a refusal or an image, show nothing)."""
    if isinstance(part, str):
        return part
    if isinstance(part, dict) and part.get("type", "text") == "text":
        text = part.get("text")
        return text if isinstance(text, str) else ""
    return ""


def _has_status(body: object) -> bool:
    return isinstance(body, dict) and "base_resp" in body


class ThinkFilter:
    """Removes the `<think>...</think>` block a reasoning model opens its answer
    with, from streamed text, holding back just enough of a chunk's end to
    recognise a tag split across chunks. Only blocks before the answer's first
    words are thinking: once the answer began, a `<think>` in it is text (an answer
    about reasoning models may quote the tag). Leading whitespace of the answer
    (left after a removed block) is dropped."""

    OPEN = "<think>"
    CLOSE = "</think>"

    def __init__(self) -> None:
        self._pending = ""
        self._inside = False
        self._started = False

    def feed(self, text: str) -> str:
        self._pending += text
        shown = ""
        while self._pending:
            if self._inside:
                at = self._pending.find(self.CLOSE)
                if at < 0:
                    keep = _partial_suffix(self._pending, self.CLOSE)
                    self._pending = self._pending[len(self._pending) - keep :] if keep else ""
                    break
                self._pending = self._pending[at + len(self.CLOSE) :]
                self._inside = False
                continue
            head = self._pending.lstrip()
            if not self._started and head.startswith(self.OPEN):
                self._pending = head[len(self.OPEN) :]
                self._inside = True
            elif not self._started and self.OPEN.startswith(head):
                break  # blanks so far, perhaps the start of the tag: wait for more
            else:
                shown, self._pending = shown + self._pending, ""
        return self._visible(shown)

    def flush(self) -> str:
        """What is held back at the end (an unclosed block is dropped)."""
        rest, self._pending = ("" if self._inside else self._pending), ""
        return self._visible(rest)

    def _visible(self, text: str) -> str:
        if not self._started:
            text = text.lstrip()
            self._started = bool(text)
        return text


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of `text` that is a start of `tag`."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0
