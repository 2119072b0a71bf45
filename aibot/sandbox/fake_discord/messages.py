"""The messages the fake Discord holds: interaction responses, followups, channel messages.

Discord's rules for them that a bot relies on: a message response (4) or a
defer (5) creates the interaction's original message, a defer's is "loading"
until edited, and an edit replaces the fields it names and keeps the
attachments it lists.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from . import payloads
from .payloads import EPHEMERAL, LOADING
from .records import SentInteraction
from .wire import Files

if TYPE_CHECKING:
    from .server import FakeDiscord

__all__ = ["Messages"]


class Messages:
    """Messages by id, and each interaction's original message.

    Messages are authored by the fake's bot user; ids come from its snowflakes
    and attachment URLs point at its own address.
    """

    def __init__(self, fake: FakeDiscord) -> None:
        self._fake = fake
        self._messages: dict[int, dict[str, Any]] = {}
        self._originals: dict[int, int] = {}  # interaction id -> message id

    def get(self, message_id: int) -> dict[str, Any] | None:
        """The message with this id, if it exists."""
        return self._messages.get(message_id)

    def original(self, sent: SentInteraction) -> dict[str, Any] | None:
        """The interaction's original message, once a callback created it."""
        return self._messages.get(self._originals.get(sent.id, 0))

    def of_webhook(self, sent: SentInteraction, raw_id: str) -> dict[str, Any] | None:
        """A webhook's `/messages/{raw_id}`: a message id or `@original`."""
        message_id = self._originals.get(sent.id) if raw_id == "@original" else int(raw_id)
        return self._messages.get(message_id or 0)

    def delete(self, message: Mapping[str, Any]) -> None:
        """Forget the message."""
        del self._messages[int(message["id"])]

    def open_original(
        self, sent: SentInteraction, body: Mapping[str, Any], files: Files
    ) -> int | None:
        """A message response (4) or a defer (5) creates the original message."""
        kind = body.get("type")
        if kind not in (4, 5):
            return None
        data = dict(body.get("data") or {})
        data["flags"] = (data.get("flags") or 0) | (LOADING if kind == 5 else 0)
        message = self.new(sent.channel_id, data, files, webhook=True)
        message["type"] = 20  # a reply to a slash command
        message["interaction_metadata"] = payloads.interaction_metadata(
            sent.id, sent.command, sent.user_id, sent.guild_id
        )
        self._originals[sent.id] = int(message["id"])
        return int(message["id"])

    def callback_response(self, sent: SentInteraction, kind: int | None) -> dict[str, Any]:
        """`?with_response=1`: what discord.py 2.5+ reads after a callback."""
        message_id = self._originals.get(sent.id)
        message = self._messages.get(message_id) if message_id else None
        flags = message["flags"] if message else 0
        interaction = {
            "id": str(sent.id),
            "type": 2,
            "response_message_id": str(message_id) if message_id else None,
            "response_message_loading": bool(flags & LOADING),
            "response_message_ephemeral": bool(flags & EPHEMERAL),
        }
        resource = {"type": kind, "message": message} if message else None
        return {"interaction": interaction, "resource": resource}

    def new(
        self, channel_id: int, body: Mapping[str, Any], files: Files, *, webhook: bool = False
    ) -> dict[str, Any]:
        """A message sent to a channel, by the bot or (`webhook`) its interaction webhook."""
        fake = self._fake
        message = payloads.message(
            fake.ids(),
            channel_id,
            author=fake.bot_user,
            body=body,
            attachments=[self._attachment(name, size) for name, size in files],
            webhook_id=fake.application_id if webhook else None,
        )
        self._messages[int(message["id"])] = message
        return message

    def update(
        self, message: dict[str, Any], body: Mapping[str, Any], files: Files
    ) -> dict[str, Any]:
        """An edit: given fields replace, `attachments` lists those kept, files are added."""
        for key in ("content", "embeds", "components"):
            if key in body:
                message[key] = body[key] if body[key] is not None else type(message[key])()
        kept = message["attachments"]
        if "attachments" in body:
            wanted = {str(a.get("id")) for a in body["attachments"] or []}
            kept = [a for a in kept if a["id"] in wanted]
        message["attachments"] = kept + [self._attachment(name, size) for name, size in files]
        message["flags"] = (message["flags"] & ~LOADING) | (body.get("flags") or 0)
        message["edited_timestamp"] = payloads.iso()
        return message

    def _attachment(self, name: str, size: int) -> dict[str, Any]:
        return payloads.attachment(self._fake.ids(), name, size, base_url=self._fake.origin)
