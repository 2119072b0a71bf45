"""Fakes shared by the tests, the demo and the benchmarks.

`FakeProviders` serves fake OpenAI, MiniMax and Stability APIs on 127.0.0.1
with their real wire formats, per-key rate limits, fault injection, counters
and the video task lifecycle (a picture they are sent is recorded as an
`Upload`); `RecordingReply` is a Reply kept in memory.
`python -m aibot.sandbox` serves the fakes in the foreground.
"""

from .config import FakeConfig
from .counters import Counters, Received
from .faults import FAULTS
from .replies import RecordingReply
from .server import FakeProviders
from .uploads import Upload

__all__ = [
    "FAULTS",
    "Counters",
    "FakeConfig",
    "FakeProviders",
    "Received",
    "RecordingReply",
    "Upload",
]
