"""What aibot knows of its pools and providers, before any setting: the four
pools and the commands they own, what each provider makes, and the defaults the
settings start from (channels, providers, workers, queues, rates, limits, URLs).
Constants only; `aibot.settings` reads the variables that change them."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "BASE_URLS",
    "COMMAND_POOL",
    "DEFAULT_CHANNELS",
    "DEFAULT_COOLDOWN",
    "DEFAULT_DAILY_QUOTA",
    "DEFAULT_KEY_CONCURRENCY",
    "DEFAULT_PROVIDERS",
    "DEFAULT_QUEUE",
    "DEFAULT_RPM",
    "DEFAULT_WORKERS",
    "FRAME_TYPES",
    "PICTURE_KINDS",
    "PICTURE_TYPES",
    "POOLS",
    "POOL_INDEX",
    "POOL_KINDS",
    "PROVIDERS",
    "PROVIDER_KINDS",
    "SERVICE_ESTIMATE",
]

POOLS = ("chat", "image", "video", "admin")
POOL_INDEX = {"chat": 1, "image": 2, "video": 3, "admin": 4}
PROVIDERS = ("openai", "minimax", "stability")
# The pool that owns each job command; admin commands never become jobs.
COMMAND_POOL = {"chat": "chat", "image": "image", "video": "video"}
# What each provider can do; a pool only calls a provider for what it supports.
PROVIDER_KINDS = {
    "openai": frozenset({"chat", "image"}),
    "minimax": frozenset({"chat", "image", "video"}),
    "stability": frozenset({"image"}),
}

# The kinds of picture each provider makes an image from (`/image` with a picture);
# MiniMax takes the same as a video's first frame.
PICTURE_KINDS = {
    "openai": frozenset({"image/png", "image/jpeg", "image/webp"}),
    "minimax": frozenset({"image/png", "image/jpeg"}),
    "stability": frozenset({"image/png", "image/jpeg", "image/webp"}),
}
# What a member may attach to /image (some image service reads it), and to /video.
PICTURE_TYPES = frozenset().union(*PICTURE_KINDS.values())
FRAME_TYPES = PICTURE_KINDS["minimax"]

# The leading `*` lets a name start with an emoji, as Discord writes the reference
# design's `🔄 이미지변환`: `🔄-이미지변환`. `갤러리` stays exact: `*갤러리` would
# take in the video pool's `비디오-갤러리` too.
DEFAULT_CHANNELS = {
    "chat": ("*채팅방-*", "*ai-지원", "*안내-공지", "*chat*"),
    "image": ("*이미지생성-*", "갤러리", "*이미지변환", "*image*"),
    "video": ("*비디오생성-*", "*비디오-갤러리", "*video*"),
    "admin": ("*",),
}
DEFAULT_PROVIDERS = {
    "chat": ("openai", "minimax"),
    "image": ("minimax", "stability", "openai"),
    "video": ("minimax",),
    "admin": ("openai", "minimax", "stability"),
}
# Seconds a job of each pool is assumed to take until some have finished, for "busy,
# about N s" (a Hailuo clip takes minutes; the admin pool also takes overflowed ones).
SERVICE_ESTIMATE = {"chat": 10.0, "image": 20.0, "video": 180.0, "admin": 30.0}
DEFAULT_WORKERS = {"chat": 32, "image": 8, "video": 4, "admin": 8}
DEFAULT_QUEUE = {"chat": 256, "image": 64, "video": 32, "admin": 128}
DEFAULT_KEY_CONCURRENCY = {"chat": 16, "image": 4, "video": 2, "admin": 8}
# Requests per minute per key, from the providers' published limits.
DEFAULT_RPM = {
    ("chat", "openai"): 3500,
    ("chat", "minimax"): 500,
    ("chat", "stability"): 100,
    ("image", "openai"): 50,
    ("image", "minimax"): 10,
    ("image", "stability"): 100,
    ("video", "openai"): 50,
    ("video", "minimax"): 5,
    ("video", "stability"): 100,
    ("admin", "openai"): 3500,
    ("admin", "minimax"): 10,
    ("admin", "stability"): 100,
}
# Per member: seconds between commands, commands per day (the reference design's).
DEFAULT_COOLDOWN = {"chat": 1.0, "image": 1.0, "video": 5.0, "admin": 1.0}
DEFAULT_DAILY_QUOTA = {"chat": 2500, "image": 200, "video": 40, "admin": 2500}

BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "minimax": "https://api.minimax.io",
    "stability": "https://api.stability.ai",
}

# What each pool does; admin is the overflow / backup pool and does all three.
POOL_KINDS: Mapping[str, tuple[str, ...]] = {
    "chat": ("chat",),
    "image": ("image",),
    "video": ("video",),
    "admin": ("chat", "image", "video"),
}
