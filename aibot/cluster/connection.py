"""The one way cluster mode opens Redis: redis-py's asyncio client on a blocking pool.

redis-py's default asyncio pool raises once it holds `max_connections`; a
`BlockingConnectionPool` makes the caller wait for a free connection instead,
which is what a burst of jobs wants. redis-py's default socket timeout (5 s)
stays: blocking reads here are far shorter (`JobStream`'s block is 0.5 s).
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis

__all__ = ["connect"]


def connect(url: str, *, max_connections: int = 64, wait: float = 5.0) -> Redis:
    """A client for `url` (`redis://host:port/db`, `unix:///path?db=0`) whose pool
    waits up to `wait` seconds for a free connection rather than failing.
    Replies are decoded to `str`."""
    pool = BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=wait, decode_responses=True
    )
    # from_pool: closing the client closes its pool too.
    return Redis.from_pool(pool)
