"""`FakeProviders`: the three fake APIs, served on 127.0.0.1 from a thread of their own.

The servers run on their own event loop in a background thread, so they keep
real time whatever clock the bot's loop runs on (SimCord's virtual one), and
work the same from sync tests, async tests and a separate benchmark process.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from . import minimax, openai, stability
from .checkpoint import Checkpoint
from .config import PROVIDER_NAMES, FakeConfig
from .counters import Counters
from .faults import Faults
from .videos import VideoTasks

__all__ = ["FakeProviders"]

_HOST = "127.0.0.1"
# How long a held request (the timeout fault) may delay stop().
_SHUTDOWN_GRACE = 0.2


class FakeProviders(FakeConfig):
    """Fake OpenAI, MiniMax and Stability servers for tests, the demo and benchmarks.

    A `FakeProviders` is also its own `FakeConfig`: set any behaviour on it
    directly, at any time (`fake.chat_reply = ...`, `fake.rpm["openai"] = 60`).

        with FakeProviders(rpm=60) as fake:
            client = openai.AsyncOpenAI(base_url=fake.env()["OPENAI_BASE_URL"], ...)
            fake.inject("openai", "rate_limit")
            fake.counters.requests("openai", "chat")
    """

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self.counters = Counters()
        self.faults = Faults()
        self.videos = VideoTasks()
        self.ports: dict[str, int] = {}
        self._gate = Checkpoint(self, self.counters, self.faults)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runners: list[web.AppRunner] = []

    def __repr__(self) -> str:
        return f"<FakeProviders ports={self.ports}>"

    def inject(
        self,
        provider: str,
        fault: str,
        times: int = 1,
        key: str | None = None,
        *,
        endpoint: str | None = None,
    ) -> None:
        """Make the next `times` requests to `provider` (with `key`, at `endpoint`,
        when given) suffer `fault`; see `aibot.sandbox.faults.FAULTS`."""
        self.faults.inject(provider, fault, times, key, endpoint=endpoint)

    def reset(self) -> None:
        """Forget counters, pending faults, buckets and video tasks (settings stay)."""
        self._gate.reset()
        self.videos.clear()

    def url(self, provider: str) -> str:
        """The base URL a client of `provider` uses (OpenAI's ends with /v1)."""
        root = f"http://{_HOST}:{self.ports[provider]}"
        return f"{root}/v1" if provider == "openai" else root

    def env(self) -> dict[str, str]:
        """The environment that points the bot's settings at these fakes."""
        return {f"{name.upper()}_BASE_URL": self.url(name) for name in PROVIDER_NAMES}

    def start(self, port: int = 0) -> FakeProviders:
        """Serve in a background thread; `port` 0 picks free ports, else port, port+1, port+2."""
        if self._thread is not None:
            raise RuntimeError("FakeProviders is already running")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="aibot-fakes", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            asyncio.run_coroutine_threadsafe(self._open(port), loop).result(timeout=10)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop serving (held requests are cut) and end the thread; safe to call twice."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._close(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = None
        self.ports = {}

    async def _open(self, port: int) -> None:
        apps = {
            "openai": openai.build_app(self._gate),
            "minimax": minimax.build_app(self._gate, self.videos),
            "stability": stability.build_app(self._gate),
        }
        for offset, (name, app) in enumerate(apps.items()):
            runner = web.AppRunner(
                app, access_log=None, handler_cancellation=True, shutdown_timeout=_SHUTDOWN_GRACE
            )
            await runner.setup()
            self._runners.append(runner)
            site = web.TCPSite(runner, _HOST, port + offset if port else 0)
            await site.start()
            self.ports[name] = runner.addresses[0][1]

    async def _close(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        current = asyncio.current_task()
        leftovers = [task for task in asyncio.all_tasks() if task is not current]
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)

    def __enter__(self) -> FakeProviders:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> FakeProviders:
        return self.start()

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, port: int = 0, **config: Any) -> AsyncIterator[FakeProviders]:
        """`async with FakeProviders.running(rpm=60) as fake:` a started world."""
        fake = cls(**config).start(port)
        try:
            yield fake
        finally:
            fake.stop()
