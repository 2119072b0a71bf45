"""A member's picture, as providers take it: for an image transformed from it
(Stability image-to-image, OpenAI image edits, MiniMax subject reference) and
for a video's first frame (MiniMax `first_frame_image`).

`Picture` holds the bytes the worker downloaded and checked; `ImageTransformer`
is what an image client offers when it can start from a picture, and the
picture kinds it takes (a provider that cannot take a kind is skipped).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Protocol

from aibot.leases import Lease
from aibot.providers.base import Image, ImageRequest

__all__ = [
    "DEFAULT_STRENGTH",
    "ImageTransformer",
    "Picture",
    "can_transform",
]

# How far a transformed image may move from the picture (0 keeps it, 1 ignores it),
# when the member does not say.
DEFAULT_STRENGTH = 0.6
_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


@dataclass(slots=True, frozen=True)
class Picture:
    """A checked picture: its bytes and its kind (told by the bytes, not a label)."""

    data: bytes = field(repr=False)
    content_type: str

    @property
    def filename(self) -> str:
        """A name for a multipart upload: `picture.png`, `picture.jpg`, ..."""
        return f"picture.{_EXTENSIONS.get(self.content_type, 'png')}"

    def data_url(self) -> str:
        """The picture as a base64 data URL (`data:image/png;base64,...`)."""
        return f"data:{self.content_type};base64,{base64.b64encode(self.data).decode()}"


class ImageTransformer(Protocol):
    """An image client that can also start from a picture."""

    name: str
    transform_types: frozenset[str]

    async def transform(
        self, lease: Lease, request: ImageRequest, picture: Picture, strength: float
    ) -> Image: ...


def can_transform(client: object, content_type: str) -> bool:
    """Whether `client` makes an image from a picture of `content_type`."""
    return content_type in getattr(client, "transform_types", ())
