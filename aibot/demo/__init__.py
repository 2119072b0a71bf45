"""The demo: the real bot (pools, router, store, status panel, /health) against
SimCord's simulated Discord and the fake providers: first a tour of every
capability, each with what the member saw, then a crowd of members.

- `stage`: the demo settings, the server, its members, a restart;
- `tour`: the steps of the tour (`STEPS`: add a step to show a new capability);
- `crowd`: the scripted crowd (`--demo-rounds`);
- `transcript`: what is printed, at the terminal's width;
- `run`: `run_demo` and the command line's `main`.
"""

from aibot.demo.crowd import Scene, script
from aibot.demo.run import DemoSummary, main, run_demo
from aibot.demo.stage import DEMO_ENV
from aibot.demo.tour import STEPS, Step

__all__ = ["DEMO_ENV", "STEPS", "DemoSummary", "Scene", "Step", "main", "run_demo", "script"]
