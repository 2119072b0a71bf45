"""What kind of image some bytes are, told by their first bytes.

A provider's 200 is not proof of an image: a proxy's HTML page, a JSON
document or an empty body can come with it, sometimes even labelled
`image/png`. An image is delivered only when its bytes open as one of the
formats the providers make (PNG, JPEG, WebP); anything else is the provider's
fault (`BadAnswer`), never a file handed to a member.
"""

from __future__ import annotations

from aibot.jobs import BadAnswer

__all__ = ["image_type", "verified_image_type"]

_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"))
# Labels that make no claim about the kind of file.
_UNSAID = frozenset({"", "application/octet-stream", "binary/octet-stream"})


def image_type(data: bytes) -> str | None:
    """`image/png`, `image/jpeg` or `image/webp`, by the first bytes; None for
    anything else."""
    for signature, kind in _SIGNATURES:
        if data.startswith(signature):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def verified_image_type(data: bytes, *, provider: str, declared: str = "") -> str:
    """The content type of an image a provider answered, from its bytes.
    `declared` is the answer's content-type header, if it had one: a label that
    is not an image's (JSON, HTML) is a bad answer, whatever the bytes."""
    label = declared.split(";", 1)[0].strip().lower()
    if label not in _UNSAID and not label.startswith("image/"):
        raise BadAnswer(f"{provider}: the answer was {label[:40]}, not an image")
    if not data:
        raise BadAnswer(f"{provider}: the answer held no image")
    kind = image_type(data)
    if kind is None:
        raise BadAnswer(f"{provider}: the answer's bytes are not an image")
    return kind
