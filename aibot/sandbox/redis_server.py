"""A throwaway Redis server for the cluster demo, the tests and the benchmarks.

`start_redis(folder)` starts the `redis-server` found on the PATH, bound to
127.0.0.1 on a free port, with no persistence (`--save '' --appendonly no`),
working in `folder`; it returns once the server answers PING. It is stopped by
its own PID (`RedisServer.stop`), never by name, and runs in a session of its
own, so a Ctrl-C in the terminal does not stop it before its owner is done with
it. `throwaway_redis()` does the same in a temporary folder of its own and stops
the server when the block ends, also on Ctrl-C or an error. `start_redis(...,
replica_of=primary)` starts a replica, and `start_sentinel(folder, primary)` a
Sentinel watching the primary, for the tests of a failover.

Only the standard library is used: no Redis client is needed to start one.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "INSTALL_HINT",
    "RedisNotInstalled",
    "RedisServer",
    "redis_binary",
    "start_redis",
    "start_sentinel",
    "throwaway_redis",
]

INSTALL_HINT = (
    "redis-server is not on the PATH. Install it: sudo apt install redis-server "
    "(Debian, Ubuntu), or brew install redis (macOS)"
)
# Seconds a new server gets to answer PING, and a stopped one to exit on SIGTERM.
_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0


class RedisNotInstalled(FileNotFoundError):
    """`redis-server` is not on the PATH; the message says how to install it."""

    def __init__(self) -> None:
        super().__init__(INSTALL_HINT)


@dataclass(frozen=True, slots=True)
class RedisServer:
    """A running throwaway server: its URL, port and process."""

    url: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers; by PID, never by name. Safe to
        call twice, and after the server exited by itself."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # in case it was paused
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): it stops answering, connections stay open."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)


def redis_binary() -> str | None:
    """The `redis-server` on the PATH, if any."""
    return shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_redis(
    folder: Path, port: int | None = None, *, replica_of: RedisServer | None = None
) -> RedisServer:
    """Start `redis-server` bound to 127.0.0.1 (a free port unless given), no
    persistence, working in `folder` (a replica of `replica_of` when given); returns
    once it answers PING. Raises `RedisNotInstalled` when there is no `redis-server`
    on the PATH."""
    port = port or _free_port()
    options = [
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(folder),
        "--protected-mode", "yes",
        # A replica starting gets its copy at once, not after 5 s.
        "--repl-diskless-sync-delay", "0",
    ]  # fmt: skip
    if replica_of is not None:
        options += ["--replicaof", "127.0.0.1", str(replica_of.port)]
    return _started(options, port, f"redis://127.0.0.1:{port}/0")


def start_sentinel(folder: Path, primary: RedisServer, service: str = "aibot") -> RedisServer:
    """Start a Redis Sentinel (`redis-server --sentinel`) on a free port, watching
    `primary` as `service`, alone (quorum 1) and quick to act: the primary is down
    after 0.5 s without an answer, and a failover is retried after 3 s. Its `url`
    is the `redis+sentinel://` URL of the service. Sentinel rewrites its
    configuration file, which it keeps in `folder`."""
    port = _free_port()
    config = folder / f"sentinel-{port}.conf"
    config.write_text(
        f"port {port}\n"
        "bind 127.0.0.1\n"
        f'dir "{folder}"\n'
        f"sentinel monitor {service} 127.0.0.1 {primary.port} 1\n"
        f"sentinel down-after-milliseconds {service} 500\n"
        f"sentinel failover-timeout {service} 3000\n"
    )
    return _started(
        [str(config), "--sentinel"], port, f"redis+sentinel://127.0.0.1:{port}/{service}"
    )


def _started(arguments: list[str], port: int, url: str) -> RedisServer:
    binary = redis_binary()
    if binary is None:
        raise RedisNotInstalled
    process = subprocess.Popen(
        [binary, *arguments],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # Out of the terminal's process group: Ctrl-C reaches only its owner, which
        # stops it last, after the processes that still talk to it.
        start_new_session=True,
    )
    server = RedisServer(url, port, process)
    try:
        _wait_for_pong(server)
    except BaseException:  # also Ctrl-C while it starts: never leave it running
        server.stop()
        raise
    return server


def _wait_for_pong(server: RedisServer) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {server.process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"redis-server did not answer within {_START_TIMEOUT:.0f} s")


@contextlib.contextmanager
def throwaway_redis(prefix: str = "aibot-redis-") -> Iterator[RedisServer]:
    """A server in a temporary folder of its own (named with `prefix`), stopped
    by its PID and the folder removed when the block ends, however it ends."""
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        server = start_redis(Path(folder))
        try:
            yield server
        finally:
            server.stop()
