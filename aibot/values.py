"""Readers of settings values: each turns a variable's text into a typed value or
raises ValueError; the constants in capitals say, for the error message, what was
expected."""

from __future__ import annotations

from aibot.catalogue import POOLS, PROVIDERS

__all__ = [
    "BOOL",
    "LEVEL",
    "LOG_LEVELS",
    "NNI",
    "PAT",
    "POS",
    "SECS",
    "TZ",
    "URL",
    "flag",
    "host_port",
    "log_format",
    "log_level",
    "non_negative_float",
    "non_negative_int",
    "patterns",
    "pool_names",
    "positive_float",
    "positive_int",
    "providers",
    "snowflake",
    "snowflake_tuple",
    "snowflakes",
    "split",
    "url",
]


POS = "a whole number above 0"
NNI = "a whole number, 0 or more"
SECS = "a number of seconds, 0 or more"
MB = "megabytes, above 0 and at most 1024"
PAT = "comma-separated channel name patterns (* and ? allowed)"
URL = "an http:// or https:// URL"
BOOL = "true or false"
TZ = "an IANA time zone such as UTC or Asia/Seoul"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LEVEL = "one of " + ", ".join(LOG_LEVELS)


def positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError
    return number


def non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError
    return number


def positive_float(value: str) -> float:
    number = float(value)
    if not number > 0 or number == float("inf"):
        raise ValueError
    return number


def megabytes(value: str) -> float:
    """A size in megabytes, at most a gigabyte (far above any upload Discord takes)."""
    number = positive_float(value)
    if number > 1024:
        raise ValueError
    return number


def non_negative_float(value: str) -> float:
    number = float(value)
    if not number >= 0 or number == float("inf"):
        raise ValueError
    return number


def split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def providers(value: str) -> tuple[str, ...]:
    names = split(value)
    if not names or any(name not in PROVIDERS for name in names):
        raise ValueError
    return names


def pool_names(value: str) -> tuple[str, ...]:
    if value.strip().lower() == "none":  # a cluster mode gateway that runs no pool itself
        return ()
    names = split(value)
    if not names or any(name not in POOLS for name in names):
        raise ValueError
    return names


def patterns(value: str) -> tuple[str, ...]:
    patterns = split(value)
    if not patterns:
        raise ValueError
    return patterns


def snowflake(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError
    return number


def snowflakes(value: str) -> frozenset[int]:
    return frozenset(snowflake(part) for part in split(value))


def snowflake_tuple(value: str) -> tuple[int, ...]:
    ids = tuple(snowflake(part) for part in split(value))
    if not ids:
        raise ValueError
    return ids


def url(value: str) -> str:
    if not value.startswith(("http://", "https://")) or len(value) < 10:
        raise ValueError
    return value.rstrip("/")


def flag(value: str) -> bool:
    lowered = value.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError


def host_port(value: str) -> tuple[str, int] | None:
    if value.lower() == "off":
        return None
    host, sep, port = value.rpartition(":")
    number = int(port)
    if not sep or not host or not 0 <= number <= 65535:
        raise ValueError
    return host, number


def log_level(value: str) -> str:
    level = value.upper()
    if level not in LOG_LEVELS:
        raise ValueError
    return level


def log_format(value: str) -> str:
    if value.lower() not in {"text", "json"}:
        raise ValueError
    return value.lower()
