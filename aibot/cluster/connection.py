"""The one way cluster mode opens Redis: redis-py's asyncio client on a blocking pool.

redis-py's default asyncio pool raises once it holds `max_connections`; a
`BlockingConnectionPool` makes the caller wait for a free connection instead,
which is what a burst of jobs wants. redis-py's default socket timeout (5 s)
stays: blocking reads here are far shorter (`JobStream`'s block is 0.5 s).

A `redis+sentinel://` URL (see `aibot.cluster.urls`) opens the same kind
of client on the primary its Sentinels name. redis-py's Sentinel pool asks them
before each new connection, and drops a connection to a primary that has become a
replica, so after a failover the next commands reach the new primary; in between
they fail as when Redis is down (a member is refused privately, work resumes by
itself). Its pool is made blocking as above by composing the two public pool
classes.
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool

from aibot.cluster.urls import is_sentinel_url, parse_sentinel_url

# MasterNotFoundError: no Sentinel of a `redis+sentinel://` URL knows the primary.
__all__ = ["MasterNotFoundError", "connect"]


def connect(url: str, *, max_connections: int = 64, wait: float = 5.0) -> Redis:
    """A client for `url` (`redis://host:port/db`, `unix:///path?db=0`, or
    `redis+sentinel://host:26379,.../service/db`) whose pool waits up to `wait`
    seconds for a free connection rather than failing. Replies are decoded to
    `str`."""
    if is_sentinel_url(url):
        return _through_sentinels(url, max_connections=max_connections, wait=wait)
    pool = BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=wait, decode_responses=True
    )
    # from_pool: closing the client closes its pool too.
    return Redis.from_pool(pool)


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Connections to the primary the Sentinels name (SentinelConnectionPool), and a
    caller waits for a free one (BlockingConnectionPool): the two override
    different methods."""


class _SentinelClient(Redis):
    """The primary's client. Closing it closes its pool (as `Redis.from_pool`'s
    client does) and the connections to the Sentinels, which redis-py leaves to
    whoever made the `Sentinel`."""

    def __init__(self, pool: _BlockingSentinelPool, sentinel: Sentinel) -> None:
        super().__init__(connection_pool=pool)
        # (not `self.sentinel`: that is Redis's SENTINEL command)
        self._sentinels = sentinel

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        try:
            await super().aclose(close_connection_pool=True)
        finally:
            await self._sentinels.aclose()


def _through_sentinels(url: str, *, max_connections: int, wait: float) -> Redis:
    address = parse_sentinel_url(url)
    sentinel = Sentinel(
        address.sentinels,
        sentinel_kwargs={"password": address.sentinel_password, "socket_timeout": wait},
    )
    pool = _BlockingSentinelPool(
        address.service,
        sentinel,
        max_connections=max_connections,
        timeout=wait,
        decode_responses=True,
        db=address.db,
        username=address.username,
        password=address.password,
    )
    return _SentinelClient(pool, sentinel)
