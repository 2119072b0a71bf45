"""What the fake providers do: every tunable in one dataclass.

Every field is read on each request, so a test may change any of them while
the servers run (`fake.video_seconds = 20`, `fake.invalid_keys.add(k)`).
Fields that hold keys are hidden from the repr.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["DEFAULT_RPM", "PROVIDER_NAMES", "ChatReply", "FakeConfig"]

PROVIDER_NAMES = ("openai", "minimax", "stability")
# Generous per-key defaults (the published tiers' chat / image rates), so that
# only tests about rate limits meet a 429.
DEFAULT_RPM: dict[str, float | None] = {"openai": 3500.0, "minimax": 500.0, "stability": 900.0}

ChatReply = str | Callable[[str], str] | None


@dataclass(eq=False)
class FakeConfig:
    """Behaviour of the fakes.

    - `rpm`: provider -> requests per minute per key (None: unlimited); a
      number given to the constructor applies to every provider.
    - `key_rpm`: key -> rpm, overriding its provider's rate.
    - `invalid_keys`: keys answered as invalid (keys starting with `bad-` are
      invalid too); `exhausted_keys`: keys out of quota or credit.
    - `chat_reply`: the chat answer: a fixed text, `callable(prompt) -> text`,
      or None for "You said: <last user message>" and some filler.
    - `chunk_chars`: characters per streamed chunk (one chunk counts as one
      token for usage and `max_tokens`); `chunk_delay`: seconds between chunks;
      `slow_chunk_delay`: the same under the `slow_stream` fault.
    - `stream_dialect`: how chat streams are framed, for clients that must read
      any OpenAI-compatible server: a set of `chat.DIALECTS` (none: OpenAI's own).
    - `think`: MiniMax chat answers start with `<think>think</think>` when set.
    - `timeout_delay`: seconds a request (`timeout`) or its answer (`slow_answer`) is held.
    - `video_seconds`, `video_polls`: a video task succeeds once both that many
      real seconds have passed and it has been queried that many times.
    - `video_bytes`: size of the fake MP4 a finished video downloads as;
      `broken_downloads`: the next that many `/download/...` requests answer 503
      (the link's host having a bad moment).
    - `stability_english_only`: Stability answers 422 to non-ASCII prompts.
    """

    rpm: dict[str, float | None] | float | None = field(default_factory=lambda: dict(DEFAULT_RPM))
    key_rpm: dict[str, float | None] = field(default_factory=dict, repr=False)
    invalid_keys: set[str] = field(default_factory=set, repr=False)
    exhausted_keys: set[str] = field(default_factory=set, repr=False)
    chat_reply: ChatReply = None
    chunk_chars: int = 8
    chunk_delay: float = 0.0
    slow_chunk_delay: float = 0.1
    stream_dialect: set[str] = field(default_factory=set)
    think: str = ""
    timeout_delay: float = 120.0
    video_seconds: float = 0.0
    video_polls: int = 2
    video_bytes: int = 32 * 1024
    broken_downloads: int = 0
    stability_english_only: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.rpm, dict):
            self.rpm = dict.fromkeys(PROVIDER_NAMES, self.rpm)

    def rpm_for(self, provider: str, key: str) -> float | None:
        """The rate for `key` at `provider` now (None: unlimited)."""
        if key in self.key_rpm:
            return self.key_rpm[key]
        rpm = self.rpm
        return rpm.get(provider) if isinstance(rpm, dict) else rpm

    def key_is_invalid(self, key: str) -> bool:
        return key.startswith("bad-") or key in self.invalid_keys

    def reply_for(self, prompt: str) -> str:
        """The chat answer to `prompt`, as configured."""
        if callable(self.chat_reply):
            return self.chat_reply(prompt)
        if self.chat_reply is not None:
            return self.chat_reply
        return (
            f"You said: {prompt}\n\n"
            "This answer comes from the aibot sandbox, a fake provider that streams "
            "its words in small pieces so that clients can be tested end to end."
        )
