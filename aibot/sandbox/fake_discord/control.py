"""`/_control`: how a benchmark in another process drives the fake Discord.

`GET /_control/ready?timeout=`, `POST /_control/burst`, `GET /_control/results`
and `POST /_control/reset` call `FakeDiscord.wait_ready`, `burst`, `results`
and `reset`; `aibot.sandbox.fake_discord.process.FakeDiscordProcess` is their
client.
"""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING

from aiohttp import web

from .wire import json_response, loads

if TYPE_CHECKING:
    from .server import FakeDiscord

__all__ = ["Control"]


class Control:
    """The `/_control` routes of one fake Discord."""

    def __init__(self, fake: FakeDiscord) -> None:
        self._fake = fake

    def routes(self) -> list[web.RouteDef]:
        """The four control endpoints."""
        return [
            web.get("/_control/ready", self._ready),
            web.post("/_control/burst", self._burst),
            web.get("/_control/results", self._results),
            web.post("/_control/reset", self._reset),
        ]

    async def _ready(self, request: web.Request) -> web.Response:
        fake = self._fake
        try:
            await fake.wait_ready(float(request.query.get("timeout", "30")))
        except TimeoutError:
            return json_response({"ready": False, "shards": fake.ready_shards}, 504)
        return json_response({"ready": True, "shards": fake.ready_shards})

    async def _burst(self, request: web.Request) -> web.Response:
        spec = await request.json(loads=loads)
        count, duration = int(spec["count"]), float(spec.get("duration", 1.0))
        seconds = await self._fake.burst(spec["mix"], count=count, duration=duration)
        return json_response({"sent": count, "seconds": seconds})

    async def _results(self, request: web.Request) -> web.Response:
        return json_response(self._fake.results())

    async def _reset(self, request: web.Request) -> web.Response:
        self._fake.reset()
        gc.collect()  # between measurements, not inside one (see `process.serve`)
        return json_response({"reset": True})
