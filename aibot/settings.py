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
- Process-wide `AIBOT_*` settings below; the admin rooms' (alert, status and
  statistics channels, backups) in `aibot.room_settings`.

A pool with no key at all is off: it is not built and its commands are not
registered (`Settings.off_pools`), so an owner who wants chat only gives chat keys
only. `/ping`, `/status` and `/instances` answer whatever pools are off.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aibot import values
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
from aibot.room_settings import DEFAULT_ROOMS, RoomSettings, read_room_settings
from aibot.secrets import safe_to_show

__all__ = ["ClusterSettings", "Models", "PoolSettings", "Settings", "SettingsError"]


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
class ClusterSettings:
    """Cluster mode (`AIBOT_REDIS_URL` set): pools and gateway shards in several
    processes sharing one Redis. `redis_url` may hold a password: never shown."""

    redis_url: str = field(repr=False)
    prefix: str
    node: str
    gateway: bool
    lease_seconds: float
    standby: bool = False  # AIBOT_GATEWAY=standby: waits for its shards' claims to end


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
    rooms: RoomSettings = DEFAULT_ROOMS  # alert, status, stats channels; backups
    # The largest picture a member may attach to /image or /video (AIBOT_ATTACHMENT_MAX_MB).
    attachment_max_bytes: int = 8 * 1024**2
    # None: the embedded default (one process, no Redis).
    cluster: ClusterSettings | None = None
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


T = TypeVar("T")
# Where /health and /metrics listen unless AIBOT_HTTP says otherwise (None: off).
_DEFAULT_HTTP: tuple[str, int] | None = ("127.0.0.1", 8001)


def _gateway_role(value: str) -> str:
    """AIBOT_GATEWAY: `on` (or any true flag), `off` (any false flag) or `standby`."""
    return "standby" if value.lower() == "standby" else "on" if values.flag(value) else "off"


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
            # Problems reach the terminal and logs: a key on the wrong line is redacted.
            secrets = (v for n, v in self.env.items() if n == "DISCORD_TOKEN" or "_API_KEY_" in n)
            self.problems.append(f"{name}: {why} (got {safe_to_show(value, secrets)!r})")
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
            values.providers,
            f"a comma-separated list of {', '.join(PROVIDERS)}",
        )
        return PoolSettings(
            name=name,
            keys={p: k for p, k in keys.items() if k},
            providers=providers,
            workers=self.get(
                f"AIBOT_{up}_WORKERS", DEFAULT_WORKERS[name], values.positive_int, values.POS
            ),
            queue_size=self.get(
                f"AIBOT_{up}_QUEUE", DEFAULT_QUEUE[name], values.positive_int, values.POS
            ),
            key_concurrency=self.get(
                f"AIBOT_{up}_KEY_CONCURRENCY",
                DEFAULT_KEY_CONCURRENCY[name],
                values.positive_int,
                values.POS,
            ),
            rpm={
                p: self.get(
                    f"AIBOT_{up}_RPM_{p.upper()}",
                    float(DEFAULT_RPM[name, p]),
                    values.positive_float,
                    "a number of requests per minute above 0",
                )
                for p in PROVIDERS
            },
            channels=self.get(
                f"AIBOT_{up}_CHANNELS", DEFAULT_CHANNELS[name], values.patterns, values.PAT
            ),
            guilds=self.get(
                f"AIBOT_{up}_GUILDS",
                frozenset(),
                values.snowflakes,
                "comma-separated guild ids (numbers)",
            ),
            cooldown=self.get(
                f"AIBOT_{up}_COOLDOWN",
                DEFAULT_COOLDOWN[name],
                values.non_negative_float,
                values.SECS,
            ),
            daily_quota=self.get(
                f"AIBOT_{up}_DAILY_QUOTA",
                DEFAULT_DAILY_QUOTA[name],
                values.non_negative_int,
                values.NNI,
            ),
            daily_budget=self.get(
                f"AIBOT_{up}_DAILY_BUDGET", 0, values.non_negative_int, values.NNI
            ),
        )

    def price(self, provider: str) -> Price:
        default = PriceTable().of(provider)
        return Price(
            **{
                name: self.get(
                    f"AIBOT_PRICE_{provider.upper()}_{name.upper()}",
                    getattr(default, name),
                    values.non_negative_float,
                    "US dollars, 0 or more",
                )
                for name in Price.__slots__
            }
        )

    def cluster(self) -> ClusterSettings | None:
        """Cluster mode's settings, or None without `AIBOT_REDIS_URL`."""
        url = self.raw("AIBOT_REDIS_URL")
        role = self.get("AIBOT_GATEWAY", "on", _gateway_role, "on, off or standby")
        if not url:
            if role != "on":
                what = "off (a worker process)" if role == "off" else "standby"
                self.problems.append(f"AIBOT_GATEWAY: {what} needs AIBOT_REDIS_URL as well")
            return None
        # Imported here: the cluster package is for cluster mode only.
        from aibot.cluster.urls import url_problem

        if problem := url_problem(url):
            self.problems.append(f"AIBOT_REDIS_URL: {problem}")
        return ClusterSettings(
            redis_url=url,
            prefix=self.raw("AIBOT_REDIS_PREFIX") or "aibot",
            node=self.raw("AIBOT_NODE") or f"{socket.gethostname()}-{os.getpid()}",
            gateway=role != "off",
            lease_seconds=self.get("AIBOT_LEASE_SECONDS", 3.0, values.positive_float, values.SECS),
            standby=role == "standby",
        )

    def settings(self) -> Settings:
        pools = {name: self.pool(name) for name in POOLS}
        chosen: tuple[str, ...] = self.get(
            "AIBOT_POOLS", POOLS, values.pool_names, f"a comma-separated list of {', '.join(POOLS)}"
        )
        off = tuple(name for name in chosen if not pools[name].keys)
        shard_ids = self.get(
            "AIBOT_SHARD_IDS",
            None,
            values.snowflake_tuple,
            "comma-separated shard numbers (0, 1, ...)",
        )
        shard_count = self.get("AIBOT_SHARD_COUNT", None, values.positive_int, values.POS)
        if shard_ids is not None and shard_count is None:
            self.problems.append("AIBOT_SHARD_IDS: needs AIBOT_SHARD_COUNT as well")
        if shard_ids and shard_count and max(shard_ids) >= shard_count:
            self.problems.append("AIBOT_SHARD_IDS: every id must be below AIBOT_SHARD_COUNT")
        if shard_ids and len(set(shard_ids)) < len(shard_ids):
            # Each would be a connection of its own: every command handled twice.
            self.problems.append("AIBOT_SHARD_IDS: an id is named twice")
        data_dir = Path(self.raw("AIBOT_DATA_DIR") or "./data")
        log_dir = self.raw("AIBOT_LOG_DIR")
        settings = Settings(
            discord_token=self.raw("DISCORD_TOKEN"),
            pools=pools,
            base_urls={
                p: self.get(f"{p.upper()}_BASE_URL", BASE_URLS[p], values.url, values.URL)
                for p in PROVIDERS
            },
            models=Models(
                **{
                    f: self.raw(f"{f.split('_')[0].upper()}_{f.split('_')[1].upper()}_MODEL")
                    or getattr(Models(), f)
                    for f in Models.__slots__
                }
            ),
            enabled_pools=tuple(name for name in chosen if name not in off),
            strict_routing=self.get("AIBOT_STRICT_ROUTING", False, values.flag, values.BOOL),
            overflow=self.get("AIBOT_OVERFLOW", True, values.flag, values.BOOL),
            data_dir=data_dir,
            timezone=self.get("AIBOT_TIMEZONE", ZoneInfo("UTC"), ZoneInfo, values.TZ),
            http=self.get(
                "AIBOT_HTTP", _DEFAULT_HTTP, values.host_port, "host:port, or off to disable"
            ),
            log_level=self.get("LOG_LEVEL", "INFO", values.log_level, values.LEVEL),
            log_format=self.get("AIBOT_LOG_FORMAT", "text", values.log_format, "text or json"),
            log_dir=Path(log_dir) if log_dir else None,
            drain_seconds=self.get(
                "AIBOT_DRAIN_SECONDS", 30.0, values.non_negative_float, values.SECS
            ),
            burst_gap=self.get(
                "AIBOT_BURST_GAP_MS", 5.0, values.non_negative_float, "milliseconds (0 or more)"
            )
            / 1000.0,
            shard_ids=shard_ids,
            shard_count=shard_count,
            dev_guild=self.get("AIBOT_DEV_GUILD", None, values.snowflake, "a guild id (a number)"),
            admin_role=self.raw("AIBOT_ADMIN_ROLE"),
            request_timeout=self.get(
                "AIBOT_REQUEST_TIMEOUT", 60.0, values.positive_float, values.SECS
            ),
            video_poll_seconds=self.get(
                "AIBOT_VIDEO_POLL_SECONDS", 15.0, values.positive_float, values.SECS
            ),
            video_timeout_seconds=self.get(
                "AIBOT_VIDEO_TIMEOUT_SECONDS", 1200.0, values.positive_float, values.SECS
            ),
            chat_system_prompt=self.raw("AIBOT_CHAT_SYSTEM_PROMPT")
            or "You are a helpful assistant in a Discord server. Answer concisely.",
            chat_history_tokens=self.get(
                "AIBOT_CHAT_HISTORY_TOKENS", 4000, values.positive_int, values.POS
            ),
            chat_max_tokens=self.get(
                "AIBOT_CHAT_MAX_TOKENS", 1024, values.positive_int, values.POS
            ),
            prices=PriceTable(**{p: self.price(p) for p in PROVIDERS}),
            ledger_days=self.get("AIBOT_LEDGER_DAYS", 90, values.positive_int, values.POS),
            attachment_max_bytes=round(
                self.get("AIBOT_ATTACHMENT_MAX_MB", 8.0, values.megabytes, values.MB) * 1024**2
            ),
            cluster=self.cluster(),
            rooms=read_room_settings(self, data_dir),
            off_pools=off,
        )
        if self.problems:
            raise SettingsError(self.problems, partial=settings)
        return settings
