"""Typed settings, read from any mapping (the environment, a `.env.multi` file).

`Settings.from_env(env)` checks every variable and raises one `SettingsError`
that lists every bad one and why. A key's value is never part of a message:
keys are secrets, and settings have no business printing them.

Variable names (every one is in `.env.multi.example` with a comment):

- `DISCORD_TOKEN`; `{OPENAI,MINIMAX,STABILITY}_API_KEY_{n}` with n = 1 chat,
  2 image, 3 video, 4 admin; a value may hold several keys separated by commas.
- `{OPENAI,MINIMAX,STABILITY}_BASE_URL`, the model names `*_MODEL`.
- Per pool (`CHAT`, `IMAGE`, `VIDEO`, `ADMIN`): `AIBOT_{POOL}_WORKERS`, `_QUEUE`,
  `_PROVIDERS`, `_CHANNELS`, `_GUILDS`, `_KEY_CONCURRENCY`, `_RPM_{PROVIDER}`,
  `_COOLDOWN`, `_DAILY_QUOTA`, `_DAILY_BUDGET`.
- Process-wide `AIBOT_*` settings below.

A pool with no key at all is off: it is not built and its commands are not
registered (`Settings.off_pools`), so an owner who wants chat only gives chat keys
only. `/ping`, `/status` and `/instances` answer whatever pools are off.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values

from aibot.catalogue import (
    BASE_URLS,
    DEFAULT_CHANNELS,
    DEFAULT_COOLDOWN,
    DEFAULT_DAILY_QUOTA,
    DEFAULT_KEY_CONCURRENCY,
    DEFAULT_PROVIDERS,
    DEFAULT_QUEUE,
    DEFAULT_RPM,
    DEFAULT_WORKERS,
    POOL_INDEX,
    POOLS,
    PROVIDERS,
)
from aibot.prices import DEFAULT_PRICES, Price, PriceTable

__all__ = ["Models", "PoolSettings", "Settings", "SettingsError", "load_env"]


class SettingsError(ValueError):
    """Every bad variable at once, one line each: `NAME: why`. `partial` holds the
    settings with defaults in place of the bad values, for checks that look further."""

    def __init__(self, problems: list[str], partial: Settings | None = None) -> None:
        self.problems = problems
        self.partial = partial
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True, slots=True)
class Models:
    openai_chat: str = "gpt-5-mini"
    minimax_chat: str = "MiniMax-M2.5"
    openai_image: str = "gpt-image-1-mini"
    minimax_image: str = "image-01"
    stability_image: str = "core"
    minimax_video: str = "MiniMax-Hailuo-2.3"


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """One pool's own resources and limits. `keys` maps provider -> keys (secret)."""

    name: str
    keys: Mapping[str, tuple[str, ...]] = field(repr=False)
    providers: tuple[str, ...]
    workers: int
    queue_size: int
    key_concurrency: int
    rpm: Mapping[str, float]
    channels: tuple[str, ...]
    guilds: frozenset[int]
    cooldown: float
    daily_quota: int
    daily_budget: int

    def keys_for(self, provider: str) -> tuple[str, ...]:
        return self.keys.get(provider, ())

    @property
    def usable_providers(self) -> tuple[str, ...]:
        """The providers in order that have at least one key."""
        return tuple(p for p in self.providers if self.keys.get(p))


@dataclass(frozen=True, slots=True)
class Settings:
    discord_token: str | None = field(repr=False)
    pools: Mapping[str, PoolSettings]
    base_urls: Mapping[str, str]
    models: Models
    enabled_pools: tuple[str, ...]  # the pools this process runs (AIBOT_POOLS, with keys)
    strict_routing: bool
    overflow: bool
    data_dir: Path
    timezone: ZoneInfo
    http: tuple[str, int] | None
    log_level: str
    log_format: str
    log_dir: Path | None
    drain_seconds: float
    burst_gap: float
    shard_ids: tuple[int, ...] | None
    shard_count: int | None
    dev_guild: int | None
    admin_role: str | None
    request_timeout: float
    video_poll_seconds: float
    video_timeout_seconds: float
    chat_system_prompt: str
    chat_history_tokens: int
    chat_max_tokens: int
    prices: PriceTable = DEFAULT_PRICES
    ledger_days: int = 90
    # The pools AIBOT_POOLS names that have no key at all: they do not run (not in
    # `enabled_pools`, the pools this process runs), and /status says why.
    off_pools: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `env` (default: the process environment)."""
        return _Reader(os.environ if env is None else env).settings()

    def secrets(self) -> list[str]:
        """Every secret value configured: for redaction filters and leak tests."""
        found = [self.discord_token] if self.discord_token else []
        for pool in self.pools.values():
            for keys in pool.keys.values():
                found.extend(keys)
        return found


def load_env(path: str | os.PathLike[str] | None = ".env.multi") -> dict[str, str]:
    """The process environment over the values of a dotenv file (if it exists)."""
    values: dict[str, str] = {}
    if path is not None and Path(path).is_file():
        values = {k: v for k, v in dotenv_values(path).items() if v is not None}
    values.update(os.environ)
    return values


T = TypeVar("T")


class _Reader:
    """Reads variables, collecting every problem instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def raw(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None:
            return None
        value = value.strip()
        return value or None

    def get(self, name: str, default: T, parse: Callable[[str], T], why: str) -> T:
        value = self.raw(name)
        if value is None:
            return default
        try:
            return parse(value)
        except (ValueError, ZoneInfoNotFoundError, KeyError):
            self.problems.append(f"{name}: {why} (got {value!r})")
            return default

    def keys(self, name: str) -> tuple[str, ...]:
        value = self.raw(name)
        if value is None:
            return ()
        keys = tuple(k.strip() for k in value.split(",") if k.strip())
        if any(any(c.isspace() for c in k) or not k.isprintable() for k in keys):
            # Never echo the value: it is a secret.
            self.problems.append(f"{name}: a key contains spaces or control characters")
        if len(set(keys)) != len(keys):
            self.problems.append(f"{name}: the same key is listed twice")
        return keys

    def pool(self, name: str) -> PoolSettings:
        n = POOL_INDEX[name]
        up = name.upper()
        keys = {p: self.keys(f"{p.upper()}_API_KEY_{n}") for p in PROVIDERS}
        providers = self.get(
            f"AIBOT_{up}_PROVIDERS",
            DEFAULT_PROVIDERS[name],
            _providers,
            f"a comma-separated list of {', '.join(PROVIDERS)}",
        )
        return PoolSettings(
            name=name,
            keys={p: k for p, k in keys.items() if k},
            providers=providers,
            workers=self.get(f"AIBOT_{up}_WORKERS", DEFAULT_WORKERS[name], _positive_int, _POS),
            queue_size=self.get(f"AIBOT_{up}_QUEUE", DEFAULT_QUEUE[name], _positive_int, _POS),
            key_concurrency=self.get(
                f"AIBOT_{up}_KEY_CONCURRENCY",
                DEFAULT_KEY_CONCURRENCY[name],
                _positive_int,
                _POS,
            ),
            rpm={
                p: self.get(
                    f"AIBOT_{up}_RPM_{p.upper()}",
                    float(DEFAULT_RPM[name, p]),
                    _positive_float,
                    "a number of requests per minute above 0",
                )
                for p in PROVIDERS
            },
            channels=self.get(f"AIBOT_{up}_CHANNELS", DEFAULT_CHANNELS[name], _patterns, _PAT),
            guilds=self.get(
                f"AIBOT_{up}_GUILDS", frozenset(), _ids, "comma-separated guild ids (numbers)"
            ),
            cooldown=self.get(
                f"AIBOT_{up}_COOLDOWN", DEFAULT_COOLDOWN[name], _non_negative_float, _SECS
            ),
            daily_quota=self.get(
                f"AIBOT_{up}_DAILY_QUOTA", DEFAULT_DAILY_QUOTA[name], _non_negative_int, _NNI
            ),
            daily_budget=self.get(f"AIBOT_{up}_DAILY_BUDGET", 0, _non_negative_int, _NNI),
        )

    def price(self, provider: str) -> Price:
        default = PriceTable().of(provider)
        return Price(
            **{
                name: self.get(
                    f"AIBOT_PRICE_{provider.upper()}_{name.upper()}",
                    getattr(default, name),
                    _non_negative_float,
                    "US dollars, 0 or more",
                )
                for name in Price.__slots__
            }
        )

    def settings(self) -> Settings:
        pools = {name: self.pool(name) for name in POOLS}
        chosen = self.get(
            "AIBOT_POOLS", POOLS, _pool_names, f"a comma-separated list of {', '.join(POOLS)}"
        )
        off = tuple(name for name in chosen if not pools[name].keys)
        shard_ids = self.get(
            "AIBOT_SHARD_IDS", None, _id_tuple, "comma-separated shard numbers (0, 1, ...)"
        )
        shard_count = self.get("AIBOT_SHARD_COUNT", None, _positive_int, _POS)
        if shard_ids is not None and shard_count is None:
            self.problems.append("AIBOT_SHARD_IDS: needs AIBOT_SHARD_COUNT as well")
        if shard_ids and shard_count and max(shard_ids) >= shard_count:
            self.problems.append("AIBOT_SHARD_IDS: every id must be below AIBOT_SHARD_COUNT")
        data_dir = Path(self.raw("AIBOT_DATA_DIR") or "./data")
        log_dir = self.raw("AIBOT_LOG_DIR")
        settings = Settings(
            discord_token=self.raw("DISCORD_TOKEN"),
            pools=pools,
            base_urls={
                p: self.get(f"{p.upper()}_BASE_URL", BASE_URLS[p], _url, _URL) for p in PROVIDERS
            },
            models=Models(
                **{
                    f: self.raw(f"{f.split('_')[0].upper()}_{f.split('_')[1].upper()}_MODEL")
                    or getattr(Models(), f)
                    for f in Models.__slots__
                }
            ),
            enabled_pools=tuple(name for name in chosen if name not in off),
            strict_routing=self.get("AIBOT_STRICT_ROUTING", False, _bool, _BOOL),
            overflow=self.get("AIBOT_OVERFLOW", True, _bool, _BOOL),
            data_dir=data_dir,
            timezone=self.get("AIBOT_TIMEZONE", ZoneInfo("UTC"), ZoneInfo, _TZ),
            http=self.get(
                "AIBOT_HTTP", ("127.0.0.1", 8001), _host_port, "host:port, or off to disable"
            ),
            log_level=self.get(
                "LOG_LEVEL", "INFO", _log_level, "one of DEBUG, INFO, WARNING, ERROR"
            ),
            log_format=self.get("AIBOT_LOG_FORMAT", "text", _log_format, "text or json"),
            log_dir=Path(log_dir) if log_dir else None,
            drain_seconds=self.get("AIBOT_DRAIN_SECONDS", 30.0, _non_negative_float, _SECS),
            burst_gap=self.get(
                "AIBOT_BURST_GAP_MS", 5.0, _non_negative_float, "milliseconds (0 or more)"
            )
            / 1000.0,
            shard_ids=shard_ids,
            shard_count=shard_count,
            dev_guild=self.get("AIBOT_DEV_GUILD", None, _id, "a guild id (a number)"),
            admin_role=self.raw("AIBOT_ADMIN_ROLE"),
            request_timeout=self.get("AIBOT_REQUEST_TIMEOUT", 60.0, _positive_float, _SECS),
            video_poll_seconds=self.get("AIBOT_VIDEO_POLL_SECONDS", 15.0, _positive_float, _SECS),
            video_timeout_seconds=self.get(
                "AIBOT_VIDEO_TIMEOUT_SECONDS", 1200.0, _positive_float, _SECS
            ),
            chat_system_prompt=self.raw("AIBOT_CHAT_SYSTEM_PROMPT")
            or "You are a helpful assistant in a Discord server. Answer concisely.",
            chat_history_tokens=self.get("AIBOT_CHAT_HISTORY_TOKENS", 4000, _positive_int, _POS),
            chat_max_tokens=self.get("AIBOT_CHAT_MAX_TOKENS", 1024, _positive_int, _POS),
            prices=PriceTable(**{p: self.price(p) for p in PROVIDERS}),
            ledger_days=self.get("AIBOT_LEDGER_DAYS", 90, _positive_int, _POS),
            off_pools=off,
        )
        if self.problems:
            raise SettingsError(self.problems, partial=settings)
        return settings


_POS = "a whole number above 0"
_NNI = "a whole number, 0 or more"
_SECS = "a number of seconds, 0 or more"
_PAT = "comma-separated channel name patterns (* and ? allowed)"
_URL = "an http:// or https:// URL"
_BOOL = "true or false"
_TZ = "an IANA time zone such as UTC or Asia/Seoul"


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError
    return number


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if not number > 0 or number == float("inf"):
        raise ValueError
    return number


def _non_negative_float(value: str) -> float:
    number = float(value)
    if not number >= 0 or number == float("inf"):
        raise ValueError
    return number


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _providers(value: str) -> tuple[str, ...]:
    names = _split(value)
    if not names or any(name not in PROVIDERS for name in names):
        raise ValueError
    return names


def _pool_names(value: str) -> tuple[str, ...]:
    names = _split(value)
    if not names or any(name not in POOLS for name in names):
        raise ValueError
    return names


def _patterns(value: str) -> tuple[str, ...]:
    patterns = _split(value)
    if not patterns:
        raise ValueError
    return patterns


def _id(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError
    return number


def _ids(value: str) -> frozenset[int]:
    return frozenset(_id(part) for part in _split(value))


def _id_tuple(value: str) -> tuple[int, ...]:
    ids = tuple(_id(part) for part in _split(value))
    if not ids:
        raise ValueError
    return ids


def _url(value: str) -> str:
    if not value.startswith(("http://", "https://")) or len(value) < 10:
        raise ValueError
    return value.rstrip("/")


def _bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError


def _host_port(value: str) -> tuple[str, int] | None:
    if value.lower() == "off":
        return None
    host, sep, port = value.rpartition(":")
    number = int(port)
    if not sep or not host or not 0 <= number <= 65535:
        raise ValueError
    return host, number


def _log_level(value: str) -> str:
    level = value.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ValueError
    return level


def _log_format(value: str) -> str:
    if value.lower() not in {"text", "json"}:
        raise ValueError
    return value.lower()
