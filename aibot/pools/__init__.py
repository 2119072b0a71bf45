"""The pools, put together from settings.

`build_pools(settings)` makes, for each enabled pool, its key rings (one per
provider with keys), its own provider clients (so pools share no connection
pool either), the role's work function, and the `Pool` that runs it. What
the work functions share is the `PoolContext`; the role modules (`chat.py`,
`image.py`, `video.py`, `admin.py`) hold only what differs per role.

Provider clients (SDK clients, aiohttp sessions) and the rings' limiters are
made or bound on first use, on the bot's loop, which every pool shares.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aibot.catalogue import POOL_KINDS, PROVIDER_KINDS, SERVICE_ESTIMATE
from aibot.jobs import AibotError, BadRequest, KeysDown, Misconfigured, NoKeyAvailable, Unavailable
from aibot.keys import KeyRing
from aibot.leases import Ring
from aibot.pools.base import Handoff, Outcome, Pool
from aibot.ports import Journal, Memory
from aibot.providers.base import ImageProvider
from aibot.providers.minimax import MiniMaxImages, MiniMaxVideo
from aibot.providers.openai_chat import OpenAIChat
from aibot.providers.openai_images import OpenAIImages
from aibot.providers.stability import StabilityImages
from aibot.settings import PoolSettings, Settings

__all__ = ["PoolContext", "Pools", "RingFactory", "build_context", "build_pools"]

T = TypeVar("T")

# Makes a pool's ring for one provider: (pool, provider, keys, *, rpm, concurrency).
# `KeyRing` by default; cluster mode passes `aibot.cluster.ring.shared_rings(...)`.
RingFactory = Callable[..., Ring]


# Seconds a job may wait for a provider's key before a later provider is preferred.
PATIENCE = 1.0


@dataclass(slots=True, eq=False)
class PoolContext:
    """Everything a role's work function uses: the pool's settings and rings,
    its provider clients by kind (`{provider: client}`), and optional memory
    (chat) and journal (video)."""

    pool: PoolSettings
    settings: Settings
    rings: Mapping[str, Ring]
    chat: Mapping[str, OpenAIChat] = field(default_factory=dict)
    images: Mapping[str, ImageProvider] = field(default_factory=dict)
    video: Mapping[str, MiniMaxVideo] = field(default_factory=dict)
    memory: Memory | None = None
    journal: Journal | None = None
    log: logging.Logger = field(init=False)
    _providers: dict[str, tuple[str, ...]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.log = logging.getLogger(f"aibot.pool.{self.pool.name}")
        # Worked out once: every job asks, and a pool's rings and clients are fixed.
        self._providers = {
            kind: tuple(
                p for p in self.pool.providers if p in getattr(self, attr) and p in self.rings
            )
            for kind, attr in _CLIENTS.items()
        }

    def providers_for(self, kind: str) -> tuple[str, ...]:
        """The pool's providers for `kind` (chat, image, video), in its order."""
        return self._providers[kind]

    async def first_provider(
        self,
        kind: str,
        attempt: Callable[[str], Awaitable[T]],
        *,
        choice: str | None = None,
        committed: Callable[[], bool] = lambda: False,
        able: Callable[[str], bool] | None = None,
    ) -> T:
        """`attempt(provider)` for the pool's providers of `kind` until one
        succeeds: in the pool's order among those that can start within
        `PATIENCE` seconds, then the others, soonest first (a paced key, e.g.
        image-01 at 10 a minute, does not hold a job another provider can take
        now). A provider whose keys are all down, none free in time
        (NoKeyAvailable), unavailable after retries or not knowing what it was
        asked for (Misconfigured: a 404) gives way to the next;
        a rejected or bad request does not, nor a failure once `committed()`
        (part of the answer was shown). `choice` names the one provider to use;
        `able(provider)` False leaves a provider out (it cannot do this job).
        When every key of every provider tried is down (disabled), and nothing was
        shown, the error is `KeysDown`: the job may run in the admin pool instead."""
        names = self._providers[kind]
        if able is not None:
            names = tuple(name for name in names if able(name))
        if len(names) > 1:
            names = self._by_readiness(names)
        if choice:
            if kind not in PROVIDER_KINDS.get(choice, ()):
                raise BadRequest(f"{choice} does not make {kind}")
            if choice not in names:
                raise NoKeyAvailable(f"no {choice} key in the {self.pool.name} pool")
            names = (choice,)
        error: AibotError | None = None  # made only when needed: most jobs succeed
        for n, name in enumerate(names, 1):
            if self.rings[name].all_down:
                error = NoKeyAvailable(f"every {name} key of the {self.pool.name} pool is down")
                continue
            try:
                return await attempt(name)
            except (NoKeyAvailable, Unavailable, Misconfigured) as err:
                if committed():
                    raise
                if n < len(names):
                    self.log.info(
                        "%s %s failed (%s), trying the next provider", kind, name, err.kind
                    )
                error = err
        if names and not committed() and all(self.rings[name].all_down for name in names):
            raise KeysDown(f"every {kind} key of the {self.pool.name} pool is down")
        raise error or NoKeyAvailable(f"no {kind} provider has a key in this pool")

    def _by_readiness(self, names: tuple[str, ...]) -> tuple[str, ...]:
        waits = {name: self.rings[name].ready_in() for name in names}
        prompt = [name for name in names if waits[name] <= PATIENCE]
        later = sorted((name for name in names if waits[name] > PATIENCE), key=waits.__getitem__)
        return (*prompt, *later)

    async def aclose(self) -> None:
        """Close every provider client (HTTP sessions, SDK clients)."""
        for kind in _CLIENTS.values():
            for client in getattr(self, kind).values():
                await client.aclose()


_CLIENTS = {"chat": "chat", "image": "images", "video": "video"}


class Pools(dict[str, Pool]):
    """The enabled pools by name; also knows each pool's context, to close its
    provider clients at shutdown (`aclose`, after the pools drained)."""

    def __init__(self) -> None:
        super().__init__()
        self.contexts: dict[str, PoolContext] = {}

    async def aclose(self) -> None:
        for context in self.contexts.values():
            await context.aclose()


def build_pools(
    settings: Settings,
    *,
    memory: Memory | None = None,
    journal: Journal | None = None,
    on_outcome: Outcome | None = None,
    handoff: Handoff | None = None,
    ring: RingFactory = KeyRing,
) -> Pools:
    """One `Pool` per enabled pool (`settings.enabled_pools`), ready to submit to.
    `ring` makes each key ring (see `RingFactory`)."""
    # The role modules import this package for PoolContext, so import them here.
    from aibot.pools import admin, chat, image, video

    builders = {
        "chat": chat.build_work,
        "image": image.build_work,
        "video": video.build_work,
        "admin": admin.build_work,
    }
    pools = Pools()
    for name in settings.enabled_pools:
        context = build_context(settings, name, memory=memory, journal=journal, ring=ring)
        pool = settings.pools[name]
        pools[name] = Pool(
            name,
            builders[name](context),
            workers=pool.workers,
            queue_size=pool.queue_size,
            rings=tuple(context.rings.values()),
            on_outcome=on_outcome,
            handoff=handoff,
            service_estimate=SERVICE_ESTIMATE[name],
        )
        pools.contexts[name] = context
    return pools


def build_context(
    settings: Settings,
    name: str,
    *,
    memory: Memory | None = None,
    journal: Journal | None = None,
    ring: RingFactory = KeyRing,
) -> PoolContext:
    """A pool's rings (providers with keys that do what the pool does, each made
    by `ring`) and clients."""
    pool = settings.pools[name]
    kinds = POOL_KINDS[name]
    rings = {
        provider: ring(
            name,
            provider,
            pool.keys_for(provider),
            rpm=pool.rpm[provider],
            concurrency=pool.key_concurrency,
        )
        for provider in pool.usable_providers
        if PROVIDER_KINDS[provider].intersection(kinds)
    }
    clients: dict[str, dict[str, Any]] = {"chat": {}, "image": {}, "video": {}}
    for (kind, provider), make in _FACTORIES.items():
        if kind in kinds and provider in rings:
            clients[kind][provider] = make(settings)
    return PoolContext(
        pool=pool,
        settings=settings,
        rings=rings,
        chat=clients["chat"],
        images=clients["image"],
        video=clients["video"],
        memory=memory,
        journal=journal,
    )


# How to make each (kind, provider) client from settings.
_FACTORIES: Mapping[tuple[str, str], Callable[[Settings], Any]] = {
    ("chat", "openai"): lambda s: OpenAIChat(
        s.base_urls["openai"], s.models.openai_chat, timeout=s.request_timeout
    ),
    ("chat", "minimax"): lambda s: OpenAIChat.minimax(
        s.base_urls["minimax"], s.models.minimax_chat, timeout=s.request_timeout
    ),
    ("image", "openai"): lambda s: OpenAIImages(
        s.base_urls["openai"], s.models.openai_image, timeout=s.request_timeout
    ),
    ("image", "minimax"): lambda s: MiniMaxImages(
        s.base_urls["minimax"], s.models.minimax_image, timeout=s.request_timeout
    ),
    ("image", "stability"): lambda s: StabilityImages(
        s.base_urls["stability"], s.models.stability_image, timeout=s.request_timeout
    ),
    ("video", "minimax"): lambda s: MiniMaxVideo(
        s.base_urls["minimax"], s.models.minimax_video, timeout=s.request_timeout
    ),
}
