"""JSON on the fake Discord's wire: encoding, answers, and the bodies the bot sends."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import BodyPartReader, web

__all__ = ["Files", "dumps", "error_response", "json_response", "loads", "read_body"]

# Uploads as (filename, size): the fake keeps their size, not their bytes.
Files = tuple[tuple[str, int], ...]

loads = json.loads


def dumps(data: Any) -> str:
    """`data` as compact JSON text."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def json_response(data: Any, status: int = 200) -> web.Response:
    """`data` as a JSON answer, typed the way discord.py expects."""
    # discord.py parses JSON only when Content-Type is exactly application/json;
    # web.json_response would add "; charset=utf-8".
    body = dumps(data).encode()
    return web.Response(status=status, body=body, headers={"Content-Type": "application/json"})


def error_response(status: int, message: str, code: int = 0) -> web.Response:
    """Discord's error body: `{"message", "code"}` (code is Discord's JSON error code)."""
    return json_response({"message": message, "code": code}, status)


async def read_body(request: web.Request) -> tuple[dict[str, Any], Files]:
    """JSON body, or multipart `payload_json` plus `files[n]` parts as (name, size)."""
    if not request.can_read_body:
        return {}, ()
    if not request.content_type.startswith("multipart/"):
        return await request.json(loads=loads), ()
    body: dict[str, Any] = {}
    files = []
    async for part in await request.multipart():
        if not isinstance(part, BodyPartReader):
            continue  # a multipart inside the multipart: Discord's uploads have none
        data = await part.read()
        if part.name == "payload_json":
            body = loads(data)
        elif part.name and part.name.startswith("files["):
            files.append((part.filename or part.name, len(data)))
    return body, tuple(files)
