"""Failures to reach Discord, or refusals from it, as one sentence for the owner
at the command line (`aibot.cli`): never a traceback for a network problem."""

from __future__ import annotations

import os
from typing import NamedTuple

import aiohttp
import discord

from aibot.http import CannotListen

__all__ = ["Failure", "explain"]


class Failure(NamedTuple):
    """What went wrong, in a sentence; `config` when the owner must change the
    settings (a refused token, missing permissions) rather than try again."""

    sentence: str
    config: bool = False


def explain(error: BaseException, *, dev_guild: int | None = None) -> Failure | None:
    """The sentence for `error` from logging in, syncing or staying connected;
    None for an error that is not Discord's or the network's (a bug: let it show)."""
    if isinstance(error, CannotListen):
        return Failure(error.strerror or str(error), config=True)
    if isinstance(error, discord.LoginFailure):
        return Failure("Discord refused DISCORD_TOKEN; check it.", config=True)
    if isinstance(error, discord.Forbidden):
        where = f"guild {dev_guild} (AIBOT_DEV_GUILD)" if dev_guild else "Discord"
        return Failure(
            f"{where} refused the commands ({error.text or error.status}): invite the bot "
            "there with the applications.commands scope.",
            config=True,
        )
    why = _unreachable(error)
    if why is None:
        return None
    return Failure(
        f"Discord cannot be reached: {why}. Check the network (DNS, proxy, firewall) and try again."
    )


def _unreachable(error: BaseException) -> str | None:
    if isinstance(error, TimeoutError):
        return "it did not answer in time"
    if isinstance(error, aiohttp.ClientConnectorError):
        return f"connecting to {error.host}:{error.port} failed ({_reason(error.os_error)})"
    if isinstance(error, discord.GatewayNotFound):
        return "it did not say where its gateway is"
    if isinstance(error, discord.DiscordServerError):
        return f"it answered HTTP {error.status}, a problem on Discord's side"
    if isinstance(error, discord.ConnectionClosed):
        return f"it closed the gateway connection (code {error.code})"
    if isinstance(error, aiohttp.ClientError | OSError):
        return f"the connection failed ({_reason(error)})"
    return None


def _reason(error: BaseException) -> str:
    number = getattr(error, "errno", None)
    if isinstance(number, int) and number > 0:
        return os.strerror(number)
    return getattr(error, "strerror", None) or str(error) or type(error).__name__
