"""The forms `AIBOT_REDIS_URL` takes: redis-py's (`redis://`, `rediss://`,
`unix://`), and Redis named through Sentinel:

    redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]
        [?sentinel_password=...]

The hosts are Sentinels (port 26379 unless given), asked in turn which server is
the primary of `service` (the name in their `sentinel monitor` line); `db` is the
database number on it (0 unless given). The password (and user) are the primary's,
as in a `redis://` URL, percent-encoded likewise; `sentinel_password` is for
Sentinels with a `requirepass` of their own. The form is the one the
`redis-sentinel-url` package and several other clients read.

Standard library only: the settings check a URL here without importing redis.
Every error names the part that is wrong, never the URL (it may hold a password).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["SCHEME", "SentinelURL", "is_sentinel_url", "parse_sentinel_url", "url_problem"]

SCHEME = "redis+sentinel://"
DEFAULT_PORT = 26379
FORM = "redis+sentinel://[password@]host[:port][,host[:port]...]/<service>[/<db>]"


@dataclass(frozen=True, slots=True)
class SentinelURL:
    """What a Sentinel URL says: whom to ask, for which service, with which secrets."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)


def url_problem(url: str) -> str | None:
    """What is wrong with a Redis URL, in words; None when nothing is."""
    if is_sentinel_url(url):
        try:
            parse_sentinel_url(url)
        except ValueError as error:
            return str(error)
        return None
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return "a redis://, rediss://, unix:// or redis+sentinel:// URL"
    if not url.startswith("unix://") and not _host_readable(url):
        return "[user:password@]host[:port] unreadable: percent-encode @ : / ? # % in a password"
    return None


def _host_readable(url: str) -> bool:
    """Whether the part after // reads as [user:password@]host[:port]: a password
    holding / ? or # ends it early, leaving no host, a port that is no number, or
    the user name read as the host (the password's start as its port)."""
    credentials = url.partition("://")[2].rpartition("@")[0]
    if any(mark in credentials for mark in "/?#"):
        return False
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 (reading it checks it is a number)
    except ValueError:
        return False
    return bool(parts.hostname)


def is_sentinel_url(url: str) -> bool:
    return url.startswith(SCHEME)


def parse_sentinel_url(url: str) -> SentinelURL:
    """The parts of a `redis+sentinel://` URL; ValueError saying what is wrong."""
    if not is_sentinel_url(url):
        raise ValueError(f"a Sentinel URL starts with {SCHEME}")
    rest, _, query = url[len(SCHEME) :].partition("?")
    location, _, path = rest.partition("/")
    credentials, _, hosts = location.rpartition("@")
    username, password = _credentials(credentials)
    service, _, db = path.partition("/")
    if not service:
        raise ValueError(f"a Sentinel URL names the service its Sentinels monitor: {FORM}")
    return SentinelURL(
        sentinels=tuple(_address(host) for host in hosts.split(",")),
        service=unquote(service),
        db=_db(db),
        username=username,
        password=password,
        sentinel_password=_sentinel_password(query),
    )


def _credentials(credentials: str) -> tuple[str | None, str | None]:
    if not credentials:
        return None, None
    user, colon, password = credentials.partition(":")
    if not colon:  # `secret@host`: a password alone, as redis-py reads `redis://secret@host`
        return None, unquote(user)
    return unquote(user) or None, unquote(password)


def _address(host: str) -> tuple[str, int]:
    """`host`, `host:port`, `[v6]` or `[v6]:port`."""
    if host.startswith("["):
        name, bracket, port = host[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            raise ValueError(f"a Sentinel's IPv6 address goes in brackets: [::1]:26379 ({FORM})")
        port = port[1:]
    else:
        name, _, port = host.partition(":")
    if not name:
        raise ValueError(f"a Sentinel URL lists at least one Sentinel host: {FORM}")
    if not port:
        return name, DEFAULT_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("a Sentinel's port is a number from 1 to 65535")
    return name, int(port)


def _db(db: str) -> int:
    if not db:
        return 0
    if not db.isdigit():
        raise ValueError(f"the database after the service is a number, 0 or more: {FORM}")
    return int(db)


def _sentinel_password(query: str) -> str | None:
    params = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(params) - {"sentinel_password"})
    if unknown:
        # Not named: an unencoded & in the password makes its rest an "option".
        raise ValueError(
            "a Sentinel URL takes one option, sentinel_password (percent-encode & = # in it)"
        )
    values = params.get("sentinel_password")
    return values[-1] if values else None
