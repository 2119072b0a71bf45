"""The demo: the real bot (pools, router, store, status panel, /health) against
SimCord's simulated Discord and the fake providers: first a tour of every
capability, each with what the member saw, then a crowd of members.

- `stage`: the demo settings, the server, its members, a restart;
- `tour`: the steps of the tour (`STEPS`: add a step to show a new capability);
- `crowd`: the scripted crowd (`--demo-rounds`);
- `transcript`: what is printed, at the terminal's width;
- `run`: `run_demo` and the command line's `main`.

`--demo --cluster` is `cluster` (the script, `run_cluster_demo`, its `main`),
`cluster_world` (Redis, the wire-level fake Discord, the gateway, the worker
processes) and `worker_node` (a worker process). They are not imported here:
they import redis, which the plain demo never needs.
"""

from aibot.demo.crowd import Scene, script
from aibot.demo.run import DemoSummary, main, run_demo
from aibot.demo.stage import DEMO_ENV
from aibot.demo.tour import STEPS, Step

__all__ = ["DEMO_ENV", "STEPS", "DemoSummary", "Scene", "Step", "main", "run_demo", "script"]
