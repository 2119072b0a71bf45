"""An aibot worker-only process for the cluster tests, pointed at a fake Discord.

`python -m tests.cluster_node BASE_URL WS_URL`: points discord.py at the fake
Discord at those URLs (as `pointed_at` does in the test's own process), then
runs `aibot` with the environment's settings (`AIBOT_GATEWAY=off`): the same
code path as `python run.py` on a worker machine.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace

from aibot.cli import run
from aibot.sandbox.fake_discord import pointed_at

__all__ = ["main"]


def main() -> None:
    base_url, ws_url = sys.argv[1:3]
    with pointed_at(SimpleNamespace(base_url=base_url, ws_url=ws_url)):  # type: ignore[arg-type]
        sys.exit(run(["--no-panel"]))


if __name__ == "__main__":
    main()
