"""What the fake providers have seen, for tests and benchmarks to check.

Keys are counted by `aibot.keys.fingerprint` (as the bot's ledger names
them), so a snapshot of the counters can be printed without showing a key;
`for_key(key)` fingerprints the key it is asked about.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from ..secrets import fingerprint

__all__ = ["Counters", "Received"]

# Enough for any test; a long benchmark keeps only the latest bodies.
_MAX_BODIES = 10_000


@dataclass(frozen=True, slots=True)
class Received:
    """One request as received: JSON body or form fields (files as `Upload`s)."""

    provider: str
    endpoint: str
    path: str
    body: dict[str, Any]


class Counters:
    """Request, outcome and key counts; safe to read from any thread.

    Endpoints: `chat`, `image` (every provider), and MiniMax's `video`,
    `video_query`, `file`, `download`. Outcomes: `ok` or a refusal kind
    (`rate_limited`, `bad_key`, `no_quota`, `server_error`, `rejected`,
    `bad_request`, ...).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._requests: Counter[tuple[str, str]] = Counter()
            self._outcomes: Counter[tuple[str, str]] = Counter()
            self._keys: Counter[str] = Counter()
            self._video_tasks = 0
            self._received: deque[Received] = deque(maxlen=_MAX_BODIES)

    def request(self, received: Received, key: str | None) -> None:
        with self._lock:
            self._requests[received.provider, received.endpoint] += 1
            if key:
                self._keys[fingerprint(key)] += 1
            self._received.append(received)

    def outcome(self, provider: str, outcome: str) -> None:
        with self._lock:
            self._outcomes[provider, outcome] += 1

    def video_task(self) -> None:
        with self._lock:
            self._video_tasks += 1

    def requests(self, provider: str | None = None, endpoint: str | None = None) -> int:
        """Requests received, optionally for one provider and/or endpoint."""
        with self._lock:
            return sum(
                n
                for (p, e), n in self._requests.items()
                if provider in (None, p) and endpoint in (None, e)
            )

    def outcomes(self, outcome: str, provider: str | None = None) -> int:
        """Answers of one outcome (`ok`, `rate_limited`, ...), optionally for one provider."""
        with self._lock:
            return sum(
                n for (p, o), n in self._outcomes.items() if o == outcome and provider in (None, p)
            )

    def rate_limited(self, provider: str | None = None) -> int:
        """429s (or MiniMax 1002s) answered."""
        return self.outcomes("rate_limited", provider)

    def for_key(self, key: str) -> int:
        """Requests that carried `key`, at any provider."""
        with self._lock:
            return self._keys[fingerprint(key)]

    @property
    def video_tasks(self) -> int:
        """Video tasks created."""
        with self._lock:
            return self._video_tasks

    def bodies(self, provider: str | None = None, endpoint: str | None = None) -> list[Received]:
        """Requests received (oldest first), optionally for one provider and/or endpoint."""
        with self._lock:
            return [
                r
                for r in self._received
                if provider in (None, r.provider) and endpoint in (None, r.endpoint)
            ]

    def snapshot(self) -> dict[str, Any]:
        """Plain counts (no keys, no bodies), for a benchmark to print."""
        with self._lock:
            return {
                "requests": {f"{p}/{e}": n for (p, e), n in sorted(self._requests.items())},
                "outcomes": {f"{p}/{o}": n for (p, o), n in sorted(self._outcomes.items())},
                "keys": dict(self._keys),
                "video_tasks": self._video_tasks,
            }
