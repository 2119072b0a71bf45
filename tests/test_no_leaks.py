"""No secret leaves the bot: a whole session (the demo's crowd using every command)
with all thirteen secrets configured, some keys bad so the error paths run, logging
at DEBUG; then everything it printed, logged, served on /health and /metrics and
drew on the status panel is searched for every secret and any long piece of one."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator

import pytest
from rich.console import Console

from aibot.demo import run_demo
from aibot.discord.bot import AibotBot
from aibot.http import Metrics, health
from aibot.snapshots import StatusSource
from aibot.status import render

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# Distinctive values for every secret variable; keys starting "bad-" are refused by
# the fake providers, so the bot disables them (and must still not show them).
SECRETS = {
    "DISCORD_TOKEN": "MTI3NjU0MzIxMDk4NzY1NDMy.GhIjKl.discord-secret-token-value-000",
    **{
        f"{provider}_API_KEY_{n}": f"bad-{provider.lower()}-live-{n}-Q7r9T2v4X6z8B1d3,"
        f"{provider.lower()}-live-{n}-M5n7P9s1U3w5Y7a9"
        for n in (1, 2, 3, 4)
        for provider in ("OPENAI", "MINIMAX", "STABILITY")
    },
}


def pieces(secret: str) -> list[str]:
    """The secret and every 10-character piece of it after its first 4 characters
    (a redacted form keeps a short prefix and the last four)."""
    return [secret] + [secret[i : i + 10] for i in range(4, len(secret) - 10)]


async def test_no_secret_in_anything_the_bot_prints_logs_or_serves(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    served: list[str] = []

    @contextlib.contextmanager
    def watch(bot: AibotBot, source: StatusSource) -> Iterator[None]:
        yield
        served.append(json.dumps(health(source)[1]))
        served.append(Metrics(source).text().decode())
        console = Console(record=True, width=100)
        console.print(render(source))
        served.append(console.export_text())

    printed: list[str] = []
    summary = await run_demo(rounds=6, pause=0, say=printed.append, env=SECRETS, on_bot=watch)
    assert summary.answered == summary.commands

    captured = capsys.readouterr()
    everything = "\n".join([*printed, caplog.text, *served, captured.out, captured.err])
    assert "disabled" in caplog.text  # the bad keys' path ran
    assert "# TYPE aibot_" in served[1]  # /metrics was rendered, with aibot's families
    for name, value in SECRETS.items():
        for secret in value.split(","):
            for piece in pieces(secret):
                assert piece not in everything, f"a piece of {name} leaked"
