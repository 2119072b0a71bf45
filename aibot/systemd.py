"""Tell systemd how the bot is doing (`Type=notify` units), with no dependency.

The sd_notify protocol is one datagram of `NAME=value` lines to the unix
socket named by `$NOTIFY_SOCKET` (a path, or `@name` for the abstract
namespace). `Notifier` sends READY=1 once the bot serves, STATUS=... lines
for `systemctl status`, STOPPING=1 when it drains, and WATCHDOG=1 from a
thread at half of `$WATCHDOG_USEC`. Outside systemd (no `$NOTIFY_SOCKET`)
every call is a cheap no-op.

The watchdog pings only while the event loop is alive: each tick asks the
loop to run a tiny callback and pings only if the previous one ran, so a
stuck loop stops the pings and systemd restarts the service.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from collections.abc import Mapping

__all__ = ["Notifier"]

log = logging.getLogger("aibot.systemd")


class Notifier:
    """sd_notify for one process. `socket_path` is `$NOTIFY_SOCKET`;
    `watchdog_usec` is `$WATCHDOG_USEC` (None: no watchdog wanted)."""

    def __init__(self, socket_path: str | None, *, watchdog_usec: int | None = None) -> None:
        self.address = _address(socket_path)
        self.watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._beat_seen = threading.Event()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        """The notifier systemd asked for in `env` (default: the process's)."""
        env = os.environ if env is None else env
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        # WATCHDOG_PID names the process meant to ping; a child must not.
        mine = not pid or pid == str(os.getpid())
        watchdog = int(usec) if usec.isdigit() and mine else None
        return cls(env.get("NOTIFY_SOCKET"), watchdog_usec=watchdog)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between pings: half the timeout systemd set, as it advises."""
        return self.watchdog_usec / 2_000_000 if self.watchdog_usec else None

    def notify(self, *fields: str) -> bool:
        """Send `NAME=value` fields in one datagram; False when not sent."""
        if self.address is None:
            return False
        data = "\n".join(fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall(data)
        except OSError as error:
            log.debug("sd_notify failed: %s", error)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """The bot serves: systemd's start job completes."""
        return self.notify("READY=1", *_status(status))

    def status(self, text: str) -> bool:
        """One line shown by `systemctl status`."""
        return self.notify(*_status(text))

    def stopping(self, status: str | None = None) -> bool:
        """The bot drains and will exit."""
        return self.notify("STOPPING=1", *_status(status))

    def watchdog(self) -> bool:
        """One watchdog ping."""
        return self.notify("WATCHDOG=1")

    def start_watchdog(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Ping from a thread every `watchdog_interval` seconds, while `loop`
        (if given) keeps running callbacks. No-op without a watchdog."""
        interval = self.watchdog_interval
        if not self.enabled or interval is None or self._thread is not None:
            return
        self._stop.clear()
        self._beat_seen.set()
        self._thread = threading.Thread(
            target=self._run, args=(interval, loop), name="aibot-watchdog", daemon=True
        )
        self._thread.start()

    def stop_watchdog(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def _run(self, interval: float, loop: asyncio.AbstractEventLoop | None) -> None:
        while True:
            if loop is None or self._beat_seen.is_set():
                self.watchdog()
            if loop is not None:
                self._beat_seen.clear()
                try:
                    loop.call_soon_threadsafe(self._beat_seen.set)
                except RuntimeError:  # the loop is closed: stop pinging
                    return
            if self._stop.wait(interval):
                return


def _status(text: str | None) -> tuple[str, ...]:
    # A field is one line; a newline would start a field systemd then misreads.
    return (f"STATUS={' '.join(text.split())}",) if text else ()


def _address(path: str | None) -> str | None:
    if not path:
        return None
    if path.startswith("@"):
        return "\0" + path[1:]
    return path if path.startswith("/") else None
