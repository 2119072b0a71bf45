"""Pictures sent to the fakes: multipart file parts (Stability, OpenAI edits) and
base64 data URLs (MiniMax), read and described the same way.

An `Upload` says what a picture was (its label, size, kind told by its bytes and
a SHA-256 of them) without keeping the bytes: it is what the fakes check a
request with, and what the counters record, so a test can assert that a fake
saw the very picture a member attached.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..providers.sniff import image_type
from .checkpoint import Refusal

__all__ = ["Upload", "data_url_upload", "read_form"]

_DATA_URL = re.compile(r"data:(?P<type>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Upload:
    """One picture as a fake received it (`kind`: image/png, image/jpeg,
    image/webp by its bytes, or None when the bytes are no picture)."""

    filename: str
    content_type: str
    size: int
    kind: str | None
    sha256: str

    @classmethod
    def of(cls, data: bytes, *, filename: str = "", content_type: str = "") -> Upload:
        digest = hashlib.sha256(data).hexdigest()
        return cls(filename, content_type, len(data), image_type(data), digest)


async def read_form(request: web.Request, *, max_body: int) -> dict[str, Any]:
    """A multipart/form-data body's fields: text as `str`, files as `Upload`; a name
    sent more than once (OpenAI's `image[]`) as a list. Anything else is a 400,
    and a body over `max_body` bytes a 413, as the real APIs answer."""
    if (request.content_length or 0) > max_body:
        raise Refusal("too_large")
    if not request.content_type.startswith("multipart/form-data"):
        raise Refusal("bad_request", "content-type: must be multipart/form-data")
    form = await request.post()
    fields: dict[str, Any] = {}
    for name in form:
        if name in fields:
            continue
        values = [_field(value) for value in form.getall(name)]
        fields[name] = values if len(values) > 1 else values[0]
    return fields


def _field(value: Any) -> Any:
    if isinstance(value, web.FileField):
        data = value.file.read()
        return Upload.of(data, filename=value.filename, content_type=value.content_type)
    return value if isinstance(value, str) else bytes(value).decode(errors="replace")


def data_url_upload(value: Any) -> Upload | None:
    """The picture a `data:<type>;base64,<data>` string holds; None for anything
    else (a plain URL, a malformed data URL)."""
    found = _DATA_URL.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        return None
    try:
        data = base64.b64decode(found["data"], validate=True)
    except (binascii.Error, ValueError):
        return None
    return Upload.of(data, content_type=found["type"].lower())
