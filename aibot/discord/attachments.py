"""A picture a member attaches to `/image` or `/video`: checked before the defer,
then handed over as plain data.

Discord tells the bot an attachment's type, size and dimensions with the
interaction, so a picture of the wrong kind or too large is refused at once,
privately, before anything is downloaded or any provider is asked. What the job
carries is only that description (`picture_args`): the worker downloads the
picture itself, bounded, and checks its bytes again.
"""

from __future__ import annotations

import mimetypes
from typing import Any

import discord

from aibot.discord.i18n import text
from aibot.discord.reply import NO_MENTIONS

__all__ = [
    "picture_args",
    "picture_kind",
    "picture_refusal",
    "refuse",
]

_NAMES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WebP"}
# Labels some clients give the same kinds.
_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-png": "image/png"}


def picture_kind(attachment: discord.Attachment) -> str:
    """The attachment's type as Discord labels it (or as its file name says, when
    Discord gave no label), lower-cased, without parameters."""
    label = (attachment.content_type or "").split(";", 1)[0].strip().lower()
    if not label:
        label = (mimetypes.guess_type(attachment.filename)[0] or "").lower()
    return _ALIASES.get(label, label)


def picture_refusal(
    attachment: discord.Attachment, *, accepted: frozenset[str], max_bytes: int, lang: str
) -> str | None:
    """Why this attachment cannot be used, in the member's words; None when it can."""
    if picture_kind(attachment) not in accepted:
        kinds = ", ".join(name for kind, name in _NAMES.items() if kind in accepted)
        return text(lang, "picture_type", kinds=kinds)
    if attachment.size > max_bytes:
        return text(
            lang, "picture_too_large", size=_megabytes(attachment.size), limit=_megabytes(max_bytes)
        )
    return None


async def refuse(interaction: discord.Interaction, words: str) -> None:
    """Answer privately, before any defer: the job is not taken."""
    await interaction.response.send_message(words, ephemeral=True, allowed_mentions=NO_MENTIONS)


def picture_args(attachment: discord.Attachment) -> dict[str, Any]:
    """The plain data a job carries of a checked picture (for `job.args["picture"]`)."""
    found: dict[str, Any] = {
        "url": attachment.url,
        "content_type": picture_kind(attachment),
        "size": attachment.size,
    }
    if attachment.width and attachment.height:
        found["width"], found["height"] = attachment.width, attachment.height
    return found


def _megabytes(size: int) -> str:
    if size < 1024**2:
        return f"{max(1, round(size / 1024))} KB"
    return f"{size / 1024**2:.1f} MB"
