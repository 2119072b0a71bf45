"""The fake Discord's REST API: what discord.py calls under `/api/v10`.

Logging in and shard discovery (`/users/@me`, `/gateway/bot`,
`/oauth2/applications/@me`), `tree.sync()`, interaction callbacks, the
interaction webhook (followups, edits, fetches, deletes) and channel messages
sent with the bot token. Each request is recorded. Discord's rules that matter
to a bot hold: a callback later than the response deadline (3 s) or a second
callback is refused, and the first followup after a defer edits the deferred
message. Anything else is a recorded 404.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import payloads
from .payloads import LOADING
from .records import SentInteraction
from .wire import error_response, json_response, loads, read_body

if TYPE_CHECKING:
    from .server import FakeDiscord

__all__ = ["API_PREFIX", "RestApi"]

API_PREFIX = "/api/v10"


class RestApi:
    """The REST routes of one fake Discord; they read and change the fake's state."""

    def __init__(self, fake: FakeDiscord) -> None:
        self._fake = fake

    def routes(self) -> list[web.RouteDef]:
        """Discord's endpoints; `fallback()` must come after every other route."""
        api, hook = API_PREFIX, API_PREFIX + "/webhooks/{app}/{token}"
        return [
            web.get(api + "/gateway/bot", self._gateway_bot),
            web.get(api + "/users/@me", self._users_me),
            web.get(api + "/oauth2/applications/@me", self._application),
            web.put(api + "/applications/{app}/commands", self._sync),
            web.put(api + "/applications/{app}/guilds/{guild}/commands", self._sync),
            web.post(api + "/interactions/{id}/{token}/callback", self._callback),
            web.post(hook, self._followup),
            web.get(hook + "/messages/{message}", self._fetch),
            web.patch(hook + "/messages/{message}", self._edit),
            web.delete(hook + "/messages/{message}", self._delete),
            web.post(api + "/channels/{channel}/messages", self._channel_message),
            web.patch(api + "/channels/{channel}/messages/{message}", self._channel_edit),
        ]

    def fallback(self) -> web.RouteDef:
        """Any other method and path: a recorded 404."""
        return web.route("*", "/{tail:.*}", self._unknown)

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bot {self._fake.token}"

    # ----- logging in and syncing ------------------------------------------

    async def _gateway_bot(self, request: web.Request) -> web.Response:
        fake = self._fake
        if not self._authorized(request):
            return error_response(401, "401: Unauthorized")
        fake.record("gateway_bot")
        limit = {
            "total": 1000,
            "remaining": 1000,
            "reset_after": 86_400_000,
            "max_concurrency": fake.max_concurrency,
        }
        return json_response(
            {"url": fake.ws_url, "shards": fake.shard_count, "session_start_limit": limit}
        )

    async def _users_me(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            self._fake.record("login", status=401)
            return error_response(401, "401: Unauthorized")
        self._fake.record("login")
        return json_response(
            {**self._fake.bot_user, "verified": True, "mfa_enabled": False, "flags": 0}
        )

    async def _application(self, request: web.Request) -> web.Response:
        fake = self._fake
        if not self._authorized(request):
            return error_response(401, "401: Unauthorized")
        fake.record("application")
        return json_response(payloads.application(fake.application_id, fake.bot_user))

    async def _sync(self, request: web.Request) -> web.Response:
        """`tree.sync()`: echo each command with its id and application id."""
        fake = self._fake
        if not self._authorized(request):
            return error_response(401, "401: Unauthorized")
        echoed = []
        for command in await request.json(loads=loads):
            known = fake.commands.get(command["name"])
            cid = known["id"] if known else str(fake.ids())
            app_id = str(fake.application_id)
            echoed.append({**command, "id": cid, "application_id": app_id, "version": "1"})
        fake.commands.update({c["name"]: c for c in echoed})
        fake.record("sync", body={"commands": echoed})
        return json_response(echoed)

    async def _unknown(self, request: web.Request) -> web.Response:
        # Token-like path segments are secrets; keep only their shape.
        path = "/".join("..." if len(p) > 40 else p for p in request.path.split("/"))
        self._fake.record("unknown", status=404, body={"method": request.method, "path": path})
        return error_response(404, "404: Not Found")

    # ----- interaction responses -------------------------------------------

    async def _callback(self, request: web.Request) -> web.Response:
        fake = self._fake
        at = time.perf_counter()
        body, files = await read_body(request)
        sent = fake.sent_with(request.match_info["token"])
        if fake.cut_callbacks and request.transport is not None:
            fake.cut_callbacks -= 1
            fake.record("callback_cut", at=at, interaction_id=sent.id if sent else 0, body=body)
            request.transport.abort()
            raise web.HTTPServiceUnavailable()  # never sent: the connection is gone
        refusal = self._refuse_callback(sent, request.match_info["id"], at)
        if refusal is not None:
            iid = sent.id if sent else 0
            fake.record("callback", at=at, status=refusal.status, interaction_id=iid, body=body)
            return refusal
        assert sent is not None  # an unknown token is refused above
        mid = fake.messages.open_original(sent, body, files)
        record = fake.record(
            "callback", at=at, interaction_id=sent.id, body=body, files=files, message_id=mid
        )
        fake.note_answered(record, request.transport)
        if "with_response" not in request.query:
            return web.Response(status=204)
        return json_response(fake.messages.callback_response(sent, body.get("type")))

    def _refuse_callback(
        self, sent: SentInteraction | None, raw_id: str, at: float
    ) -> web.Response | None:
        deadline = self._fake.response_deadline
        if sent is None or str(sent.id) != raw_id or at - sent.sent_at > deadline:
            return error_response(404, "Unknown interaction", 10062)
        if self._fake.is_answered(sent.id):
            return error_response(400, "Interaction has already been acknowledged.", 40060)
        return None

    async def _followup(self, request: web.Request) -> web.Response:
        fake, messages = self._fake, self._fake.messages
        body, files = await read_body(request)
        sent = fake.sent_with(request.match_info["token"])
        if sent is None or not fake.is_answered(sent.id):
            fake.record("followup", status=404, body=body, files=files)
            return error_response(404, "Unknown Webhook", 10015)
        original = messages.original(sent)
        if original is not None and original["flags"] & LOADING:
            # Discord: the first followup after a defer becomes the deferred message.
            message = messages.update(original, body, files)
        else:
            message = messages.new(sent.channel_id, body, files, webhook=True)
        mid = int(message["id"])
        fake.record("followup", interaction_id=sent.id, body=body, files=files, message_id=mid)
        return json_response(message)

    async def _edit(self, request: web.Request) -> web.Response:
        fake = self._fake
        body, files = await read_body(request)
        sent, message = self._webhook_message(request)
        iid = sent.id if sent else 0
        if message is None:
            fake.record("edit", status=404, interaction_id=iid, body=body, files=files)
            return error_response(404, "Unknown Message", 10008)
        message = fake.messages.update(message, body, files)
        mid = int(message["id"])
        fake.record("edit", interaction_id=iid, body=body, files=files, message_id=mid)
        return json_response(message)

    async def _fetch(self, request: web.Request) -> web.Response:
        sent, message = self._webhook_message(request)
        status = 200 if message else 404
        self._fake.record("fetch", status=status, interaction_id=sent.id if sent else 0)
        return json_response(message) if message else error_response(404, "Unknown Message", 10008)

    async def _delete(self, request: web.Request) -> web.Response:
        sent, message = self._webhook_message(request)
        status = 204 if message else 404
        self._fake.record("delete", status=status, interaction_id=sent.id if sent else 0)
        if message is None:
            return error_response(404, "Unknown Message", 10008)
        self._fake.messages.delete(message)
        return web.Response(status=204)

    def _webhook_message(
        self, request: web.Request
    ) -> tuple[SentInteraction | None, dict[str, Any] | None]:
        sent = self._fake.sent_with(request.match_info["token"])
        if sent is None:
            return None, None
        return sent, self._fake.messages.of_webhook(sent, request.match_info["message"])

    # ----- channel messages (with the bot token) ---------------------------

    async def _channel_message(self, request: web.Request) -> web.Response:
        """A message with the bot token (a job that outlived its interaction token)."""
        fake = self._fake
        if not self._authorized(request):
            return error_response(401, "401: Unauthorized")
        body, files = await read_body(request)
        message = fake.messages.new(int(request.match_info["channel"]), body, files)
        fake.record("message", body=body, files=files, message_id=int(message["id"]))
        return json_response(message)

    async def _channel_edit(self, request: web.Request) -> web.Response:
        fake = self._fake
        if not self._authorized(request):
            return error_response(401, "401: Unauthorized")
        body, files = await read_body(request)
        message = fake.messages.get(int(request.match_info["message"]))
        if message is None:
            fake.record("message_edit", status=404, body=body, files=files)
            return error_response(404, "Unknown Message", 10008)
        message = fake.messages.update(message, body, files)
        mid = int(message["id"])
        fake.record("message_edit", body=body, files=files, message_id=mid)
        return json_response(message)
