"""The worker-only process the cluster tests start: the cluster demo's
(`python -m tests.cluster_node BASE_URL WS_URL` is `aibot.demo.worker_node`)."""

from __future__ import annotations

from aibot.demo.worker_node import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
