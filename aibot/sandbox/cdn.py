"""Pictures a member attaches in SimCord, served over loopback for the bot's worker.

SimCord keeps a member's uploads in its in-memory CDN, at `https://cdn.simcord.invalid/`
links that only discord.py's own `Attachment.read()` can open. The bot's worker
downloads a picture by its link, as it does from Discord's CDN, so `LoopbackCdn`
serves those uploads from 127.0.0.1 and rewrites the links in each interaction
(before the bot sees it) to point there. Used by the tests (`cdn` fixture) and the
demo; it never listens beyond the loopback address.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # SimCord comes with the demo and test extras only
    from simcord import Env

__all__ = ["LoopbackCdn"]

_HOST = "127.0.0.1"


class LoopbackCdn:
    """SimCord's uploads served on 127.0.0.1 (module docstring). `forget()` makes
    every link dead, as Discord's expire; `downloads` counts what was fetched."""

    def __init__(self, env: Env) -> None:
        self._env = env
        self._files: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self.downloads = 0
        self._server = ThreadingHTTPServer((_HOST, 0), self._handler())
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="loopback-cdn", daemon=True
        )
        self._thread.start()
        # First in line, so the bot's gateway feed already carries the new links.
        env.backend.subscribers.insert(0, self._rewrite)

    @property
    def origin(self) -> str:
        """Where the pictures are served: `http://127.0.0.1:PORT`."""
        return f"http://{_HOST}:{self._server.server_address[1]}"

    def forget(self) -> None:
        """Every link served so far stops working (404), as an expired one."""
        with self._lock:
            self._files.clear()

    def close(self) -> None:
        """Stop rewriting links and serving them."""
        subscribers = self._env.backend.subscribers
        if self._rewrite in subscribers:
            subscribers.remove(self._rewrite)
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> LoopbackCdn:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def fetch(self, path: str) -> bytes | None:
        """The picture served at `path` (counted as a download), None if unknown."""
        with self._lock:
            data = self._files.get(path)
            if data is not None:
                self.downloads += 1
            return data

    def _rewrite(self, event: str, payload: Any) -> None:
        if event != "INTERACTION_CREATE" or not isinstance(payload, dict):
            return
        attachments = (payload.get("data", {}).get("resolved") or {}).get("attachments") or {}
        for attachment in attachments.values():
            data = self._env.backend.cdn.get(attachment["url"])
            path = f"/attachments/{attachment['id']}/{attachment['filename']}"
            with self._lock:
                self._files[path] = data or b""
            attachment["url"] = attachment["proxy_url"] = f"{self.origin}{path}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        cdn = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                data = cdn.fetch(self.path)
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("content-type", "application/octet-stream")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass  # the demo's transcript and the tests' output stay clean

        return Handler
