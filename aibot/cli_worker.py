"""Serving a worker-only process (cluster mode, `AIBOT_GATEWAY=off`): the
command line's loop for `aibot@<pools>` units and `python run.py` on a worker
machine. Imported only then (its process imports redis)."""

from __future__ import annotations

import asyncio
import signal

from aibot.app_worker import WorkerProcess
from aibot.cli import EXIT_FAILED, EXIT_OK, say
from aibot.logs import setup_logging
from aibot.settings import Settings
from aibot.systemd import Notifier

__all__ = ["serve_worker"]


async def serve_worker(process: WorkerProcess, settings: Settings) -> int:
    """A worker-only process (cluster mode, `AIBOT_GATEWAY=off`): run its pools
    until SIGTERM or Ctrl-C, then drain them (the jobs not finished in time are
    left to other workers) and close."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    logs = setup_logging(settings)
    # The worker unit (aibot@.service) is Type=notify with a watchdog, as the gateway's.
    notifier = Notifier.from_env()
    try:
        try:
            await process.start()
        except Exception as error:
            say(f"the worker could not start: {type(error).__name__}: {error}")
            return EXIT_FAILED
        pools = ", ".join(settings.enabled_pools)
        served = process.http_server
        health = f"; /health and /metrics on {served.url}" if served is not None else ""
        print(f"aibot: worker {process.runner.node} serving {pools}{health}", flush=True)
        notifier.ready(f"worker serving {pools}")
        notifier.start_watchdog(loop)
        await stop.wait()
        notifier.stopping("draining the pools")
        await process.drain(settings.drain_seconds)
    finally:
        notifier.stop_watchdog()
        await process.aclose()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        logs.close()
    return EXIT_OK
