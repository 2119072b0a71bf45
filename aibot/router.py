"""Routing: which pool answers a command, decided from plain facts.

`Router.decide` takes the command, where it was used (guild, channel name, the
guild's channel names) and each pool's load, and returns one decision:

- `Handle(pool)`: run it in that pool;
- `Redirect(pool, channels)`: the command belongs elsewhere; tell the member
  which channels serve it (answered at once, privately);
- `Overflow("admin", origin)`: the owning pool cannot take it now (queue full,
  keys down) or does not serve this guild, so the admin pool runs it.
- `Off(pool)`: the owning pool is off (it has no key, `Settings.off_pools`):
  the member is told so, privately. Its commands are not registered, so only a
  command Discord still lists from an earlier `--sync` can ask.

Pure: no I/O, no clock, no state beyond the settings; microseconds per call.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import translate
from types import MappingProxyType

from aibot.catalogue import COMMAND_POOL, POOLS, PROVIDER_KINDS
from aibot.settings import Settings

__all__ = [
    "ADMIN_COMMANDS",
    "Decision",
    "Handle",
    "Off",
    "Overflow",
    "PoolLoad",
    "Redirect",
    "Router",
]

ADMIN = "admin"
# Commands that never become jobs; the admin role answers them (for /instances).
ADMIN_COMMANDS = ("ping", "status", "instances")
_NO_LOAD: Mapping[str, PoolLoad] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Handle:
    """Run the job in `pool`."""

    pool: str


@dataclass(frozen=True, slots=True)
class Redirect:
    """The command belongs to `pool`; `channels` are the guild's channels for it."""

    pool: str
    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Overflow:
    """The admin pool (`pool`) runs a job that belongs to `origin`."""

    pool: str
    origin: str


@dataclass(frozen=True, slots=True)
class Off:
    """The command's `pool` is off here: it has no key (nothing overflows for it)."""

    pool: str


Decision = Handle | Redirect | Overflow | Off


@dataclass(frozen=True, slots=True)
class PoolLoad:
    """What the router needs to know about a pool right now. `room` is how many
    more jobs it takes before it refuses one (free workers and free places in
    its queue); None when the pool does not say."""

    full: bool = False
    keys_down: bool = False
    paused: bool = False
    room: int | None = None

    def taking(self, jobs: int) -> PoolLoad:
        """This load once `jobs` more jobs reached the pool: the front counts the
        jobs it accepted for a pool and has not handed over yet, so that a burst
        of commands, all routed before any reached its pool, fills the pool (and
        overflows) as if each had arrived alone."""
        if self.room is None or jobs <= 0:
            return self
        room = self.room - jobs
        return PoolLoad(self.full or room <= 0, self.keys_down, self.paused, room)


_IDLE = PoolLoad()  # a pool the caller gave no load for


class Router:
    """The routing rules of one settings; see the module docstring."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        # Each pool's patterns as one regex, lower-cased and compiled once (channel
        # names match case-insensitively): one match per pool per command, not an
        # fnmatch call per pattern. `fnmatch.translate` is what `fnmatchcase` matches with.
        self._patterns = {
            name: re.compile("|".join(translate(p.lower()) for p in pool.channels))
            for name, pool in settings.pools.items()
            if pool.channels
        }

    def pool_for(self, command: str) -> str:
        """The pool that owns `command`; anything that is not a job is admin's."""
        return COMMAND_POOL.get(command, ADMIN)

    def decide(
        self,
        command: str,
        *,
        guild_id: int | None,
        channel_name: str | None,
        guild_channels: Sequence[str] = (),
        load: Mapping[str, PoolLoad] = _NO_LOAD,
    ) -> Decision:
        """Where `command`, used in `channel_name` of `guild_id`, should run."""
        pool = self.pool_for(command)
        if pool == ADMIN:
            return Handle(pool)
        if pool in self._settings.off_pools:
            return Off(pool)
        if guild_id is None:  # a DM: no channel to be in the wrong place
            return self._by_load(pool, load)
        guilds = self._settings.pools[pool].guilds
        if guilds and guild_id not in guilds:
            return Overflow(ADMIN, origin=pool)
        elsewhere = self._belongs_elsewhere(pool, channel_name)
        if elsewhere:
            channels = tuple(c for c in guild_channels if self._matches(pool, c))
            if channels:
                return Redirect(pool, channels)
        return self._by_load(pool, load)

    def _belongs_elsewhere(self, pool: str, channel: str | None) -> bool:
        """The channel is another role's, or (strict routing) nobody's."""
        if channel is None or self._matches(pool, channel):
            return False
        others = (p for p in POOLS if p not in (pool, ADMIN) and p in self._patterns)
        return self._settings.strict_routing or any(self._matches(p, channel) for p in others)

    def _matches(self, pool: str, channel: str) -> bool:
        pattern = self._patterns.get(pool)
        return pattern is not None and pattern.match(channel.lower()) is not None

    def _by_load(self, pool: str, load: Mapping[str, PoolLoad]) -> Decision:
        mine = load.get(pool, _IDLE)
        if (mine.full or mine.keys_down) and self._admin_can_take(pool, load):
            return Overflow(ADMIN, origin=pool)
        return Handle(pool)

    def overflow(self, kind: str, origin: str, load: Mapping[str, PoolLoad]) -> str | None:
        """The pool that may take over a `kind` job (chat, image, video) which the
        `origin` pool cannot run after all (its queue filled up, or the job found
        every key dead): the admin pool when overflow is on and it can take the job
        now; None otherwise."""
        if origin == ADMIN or not self._admin_can_take(kind, load):
            return None
        return ADMIN

    def providers(self, pool: str, kind: str) -> tuple[str, ...]:
        """The providers with a key in `pool` that make `kind` (chat, image, video)."""
        usable = self._settings.pools[pool].usable_providers
        return tuple(p for p in usable if kind in PROVIDER_KINDS[p])

    def _admin_can_take(self, kind: str, load: Mapping[str, PoolLoad]) -> bool:
        settings = self._settings
        admin = load.get(ADMIN, _IDLE)
        if not settings.overflow or ADMIN not in settings.enabled_pools:
            return False
        if admin.full or admin.keys_down or admin.paused:
            return False
        providers = settings.pools[ADMIN].usable_providers
        return any(kind in PROVIDER_KINDS[p] for p in providers)

    def routes(self) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
        """(pool, channel patterns, commands) for each pool: what /instances shows."""
        routes = []
        for name, pool in self._settings.pools.items():
            commands = tuple(c for c, p in COMMAND_POOL.items() if p == name)
            routes.append((name, pool.channels, ADMIN_COMMANDS if name == ADMIN else commands))
        return routes
