"""A worker-only aibot process of the cluster demo, pointed at the fake Discord.

`python -m aibot.demo.worker_node BASE_URL WS_URL [aibot flags]`: points
discord.py at the fake Discord at those URLs (as `pointed_at` does in the
demo's own process), then runs `aibot` with the environment's settings
(`AIBOT_GATEWAY=off`): the same code path as `python3 run.py` on a worker
machine, answering members over the fake Discord's HTTP API.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace

from aibot.cli import run
from aibot.sandbox.fake_discord import pointed_at

__all__ = ["main"]


def main() -> None:
    base_url, ws_url, *flags = sys.argv[1:]
    with pointed_at(SimpleNamespace(base_url=base_url, ws_url=ws_url)):  # type: ignore[arg-type]
        sys.exit(run(["--no-panel", *flags]))


if __name__ == "__main__":
    main()
