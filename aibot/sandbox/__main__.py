"""`python -m aibot.sandbox`: serve the fake providers in the foreground.

Prints the environment lines that point the bot at the fakes (for example
`OPENAI_BASE_URL=http://127.0.0.1:40123/v1`), then serves until SIGINT or
SIGTERM, and prints the counters as one JSON line when it stops.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from collections.abc import Sequence

from .config import DEFAULT_RPM
from .server import FakeProviders


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m aibot.sandbox", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="first of three ports (0: free ones)")
    parser.add_argument("--rpm", type=float, help="requests per minute per key, every provider")
    for name in DEFAULT_RPM:
        parser.add_argument(f"--{name}-rpm", type=float, help=f"per-key rpm at {name}")
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between chunks")
    parser.add_argument("--think", default="", help="MiniMax chat reasoning text")
    parser.add_argument("--video-seconds", type=float, default=0.0)
    parser.add_argument("--video-polls", type=int, default=2)
    parser.add_argument("--video-bytes", type=int, default=32 * 1024)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    rpm = {name: args.rpm or DEFAULT_RPM[name] for name in DEFAULT_RPM}
    rpm.update({n: v for n in DEFAULT_RPM if (v := getattr(args, f"{n}_rpm")) is not None})
    fake = FakeProviders(
        rpm=rpm,
        chunk_delay=args.chunk_delay,
        think=args.think,
        video_seconds=args.video_seconds,
        video_polls=args.video_polls,
        video_bytes=args.video_bytes,
    )
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    fake.start(args.port)
    try:
        for name, value in fake.env().items():
            print(f"{name}={value}", flush=True)
        while not stopping.wait(0.5):
            pass
    finally:
        fake.stop()
        print(json.dumps({"counters": fake.counters.snapshot()}), flush=True)


if __name__ == "__main__":
    main()
