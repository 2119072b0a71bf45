"""Small real media files for the fakes to hand out: PNG images and a fake MP4.

The PNG is a valid 8-bit RGB image (signature, IHDR, zlib IDAT, IEND, CRCs)
made with the standard library only; its colours come from the prompt, so the
same prompt and seed give the same bytes. The MP4 is an `ftyp` box followed
by an `mdat` box of filler: enough for anything that sniffs the file type,
of whatever size a test needs (for example larger than Discord's upload cap).
"""

from __future__ import annotations

import hashlib
import struct
import zlib

__all__ = ["MP4_MIN_SIZE", "colour_for", "mp4", "png"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_FTYP = b"ftypisom\x00\x00\x02\x00isomiso2avc1mp41"
# The two box headers: the smallest fake MP4 there is.
MP4_MIN_SIZE = 4 + len(_FTYP) + 8


def colour_for(text: str) -> tuple[int, int, int]:
    """A stable colour derived from `text` (a prompt, a prompt and seed)."""
    digest = hashlib.sha256(text.encode()).digest()
    return digest[0], digest[1], digest[2]


def png(width: int, height: int, colour: tuple[int, int, int], *, blurred: bool = False) -> bytes:
    """A `width` x `height` RGB PNG: a diagonal gradient of `colour` (grey when blurred)."""
    if width < 1 or height < 1:
        raise ValueError("a PNG needs at least one pixel")
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter type 0: the row as is
        for x in range(width):
            if blurred:
                rows += b"\x80\x80\x80"
            else:
                shade = (x + y) * 255 // max(width + height - 2, 1)
                rows += bytes((c + shade) // 2 for c in colour)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        _PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(bytes(rows)))
        + _chunk(b"IEND", b"")
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def mp4(size: int) -> bytes:
    """A fake MP4 of exactly `size` bytes (or MP4_MIN_SIZE, when `size` is smaller)."""
    ftyp = struct.pack(">I", 4 + len(_FTYP)) + _FTYP
    filler = max(size, MP4_MIN_SIZE) - MP4_MIN_SIZE
    return ftyp + struct.pack(">I", 8 + filler) + b"mdat" + bytes(filler)
