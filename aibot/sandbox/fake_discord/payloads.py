"""Discord's JSON shapes, as the fake Discord sends them to discord.py.

Pure functions: each builds one payload (user, member, channel, guild, message,
interaction, READY) with the fields discord.py 2.7 reads, so the rest of the
fake Discord reads as the protocol and not as dictionaries.
"""

from __future__ import annotations

import itertools
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "ALL_PERMISSIONS",
    "ATTACHMENT_SIZE_LIMIT",
    "EPHEMERAL",
    "LOADING",
    "FakeGuild",
    "Snowflakes",
    "application",
    "attachment",
    "channel",
    "command_id",
    "guild_create",
    "interaction",
    "interaction_metadata",
    "iso",
    "member",
    "message",
    "option",
    "ready",
    "user",
]

DISCORD_EPOCH_MS = 1_420_070_400_000
# Discord's default upload limit per message (the interaction payload carries it).
ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024
LOADING = 128  # message flag: a deferred "thinking..." message
EPHEMERAL = 64  # message flag: only the member sees it
# Every permission a test member could want; discord.py only parses it.
ALL_PERMISSIONS = str((1 << 47) - 1)


class Snowflakes:
    """Discord-shaped ids: milliseconds since Discord's epoch, then a counter."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def __call__(self) -> int:
        return (_now_ms() << 22) | (next(self._counter) & 0x3FFFFF)


@dataclass(frozen=True, slots=True)
class FakeGuild:
    """A guild of the fake: its shard is Discord's `(id >> 22) % shard_count`."""

    id: int
    name: str
    shard_id: int
    channels: Mapping[str, int]

    def channel_id(self, name: str) -> int:
        return self.channels[name]

    @property
    def tester_id(self) -> int:
        """The member in GUILD_CREATE that interactions come from by default."""
        return self.id + 7

    @classmethod
    def spread(
        cls, count: int, channels: Sequence[str], shard_count: int, ids: Snowflakes
    ) -> list[FakeGuild]:
        """`count` guilds whose ids fall on the shards in turn."""
        base = _now_ms()
        guilds = []
        for i in range(count):
            gid = ((base + i) << 22) | 1
            named = {name: ids() for name in channels}
            guilds.append(cls(gid, f"guild-{i + 1}", (gid >> 22) % shard_count, named))
        return guilds


def _now_ms() -> int:
    return int(time.time() * 1000) - DISCORD_EPOCH_MS


def iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if ts is None else ts, UTC).isoformat()


def user(user_id: int, name: str | None = None, *, bot: bool = False) -> dict[str, Any]:
    return {
        "id": str(user_id),
        "username": name or f"member-{user_id % 100_000}",
        "discriminator": "0",
        "global_name": None,
        "avatar": None,
        "bot": bot,
        "public_flags": 0,
    }


def member(of: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """A guild member; `flags` is required by discord.py."""
    return {
        "user": of,
        "roles": [],
        "joined_at": iso(time.time() - 86_400),
        "deaf": False,
        "mute": False,
        "flags": 0,
        "pending": False,
        "nick": None,
        "avatar": None,
        "premium_since": None,
        **extra,
    }


def channel(guild: FakeGuild, name: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": str(guild.channel_id(name)),
        "type": 0,
        "guild_id": str(guild.id),
        "name": name,
        "position": list(guild.channels).index(name),
        "permission_overwrites": [],
        "nsfw": False,
        "parent_id": None,
        "topic": None,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "flags": 0,
        **extra,
    }


def guild_create(guild: FakeGuild, bot_user: Mapping[str, Any]) -> dict[str, Any]:
    """A full, available guild: channels, the @everyone role, the bot and a tester."""
    everyone = {
        "id": str(guild.id),
        "name": "@everyone",
        "permissions": ALL_PERMISSIONS,
        "position": 0,
        "color": 0,
        "hoist": False,
        "managed": False,
        "mentionable": False,
        "flags": 0,
    }
    tester = user(guild.tester_id, "tester")
    return {
        "id": str(guild.id),
        "name": guild.name,
        "unavailable": False,
        "owner_id": tester["id"],
        "member_count": 2,
        "large": False,
        "joined_at": iso(time.time() - 86_400),
        "preferred_locale": "en-US",
        "features": [],
        "roles": [everyone],
        "channels": [channel(guild, name) for name in guild.channels],
        "members": [member(bot_user), member(tester)],
        "emojis": [],
        "stickers": [],
        "threads": [],
        "voice_states": [],
        "presences": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
    }


def ready(
    bot_user: Mapping[str, Any],
    guilds: Sequence[FakeGuild],
    *,
    session_id: str,
    resume_url: str,
    shard: tuple[int, int],
    application_id: int,
) -> dict[str, Any]:
    """READY for one shard: its guilds unavailable until their GUILD_CREATE."""
    return {
        "v": 10,
        "user": {**bot_user, "verified": True, "mfa_enabled": False, "flags": 0},
        "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
        "session_id": session_id,
        "resume_gateway_url": resume_url,
        "shard": list(shard),
        "application": {"id": str(application_id), "flags": 0},
        "private_channels": [],
        "relationships": [],
    }


def option(name: str, value: Any) -> dict[str, Any]:
    """A slash command option as Discord sends it (string 3, integer 4, boolean 5, number 10)."""
    if isinstance(value, bool):
        kind = 5
    elif isinstance(value, int):
        kind = 4
    elif isinstance(value, float):
        kind = 10
    else:
        kind = 3
    return {"name": name, "type": kind, "value": value}


def command_id(name: str) -> int:
    """A stable id per command name (discord.py resolves the command by name)."""
    return (zlib.crc32(name.encode()) << 22) | 1


def interaction(
    *,
    interaction_id: int,
    token: str,
    application_id: int,
    command: str,
    command_id: int,
    options: Sequence[Mapping[str, Any]],
    guild: FakeGuild,
    channel_name: str,
    user_id: int,
    locale: str,
) -> dict[str, Any]:
    """INTERACTION_CREATE for a slash command (type 2) in a guild text channel."""
    return {
        "id": str(interaction_id),
        "type": 2,
        "token": token,
        "version": 1,
        "application_id": str(application_id),
        "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
        "app_permissions": ALL_PERMISSIONS,
        "entitlements": [],
        "authorizing_integration_owners": {"0": str(guild.id)},
        "context": 0,
        "data": {"id": str(command_id), "name": command, "type": 1, "options": list(options)},
        "guild_id": str(guild.id),
        "guild": {"id": str(guild.id), "locale": "en-US", "features": []},
        "guild_locale": "en-US",
        "channel_id": str(guild.channel_id(channel_name)),
        "channel": channel(guild, channel_name, permissions=ALL_PERMISSIONS),
        "member": member(user(user_id), permissions=ALL_PERMISSIONS),
        "locale": locale,
    }


def message(
    message_id: int,
    channel_id: int,
    *,
    author: Mapping[str, Any],
    body: Mapping[str, Any],
    attachments: Sequence[Mapping[str, Any]] = (),
    webhook_id: int | None = None,
) -> dict[str, Any]:
    """A message as Discord returns it after a send or an edit."""
    data = {
        "id": str(message_id),
        "channel_id": str(channel_id),
        "author": author,
        "content": body.get("content") or "",
        "timestamp": iso(),
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": [],
        "mention_roles": [],
        "attachments": list(attachments),
        "embeds": body.get("embeds") or [],
        "components": body.get("components") or [],
        "pinned": False,
        "type": 0,
        "flags": body.get("flags") or 0,
    }
    if webhook_id is not None:
        data["webhook_id"] = data["application_id"] = str(webhook_id)
    return data


def interaction_metadata(
    interaction_id: int, command: str, user_id: int, guild_id: int
) -> dict[str, Any]:
    """What a slash command's reply carries about the command it answers."""
    return {
        "id": str(interaction_id),
        "type": 2,
        "name": command,
        "command_type": 1,
        "user": user(user_id),
        "authorizing_integration_owners": {"0": str(guild_id)},
    }


def attachment(attachment_id: int, name: str, size: int, *, base_url: str) -> dict[str, Any]:
    url = f"{base_url}/attachments/{attachment_id}/{name}"
    return {"id": str(attachment_id), "filename": name, "size": size, "url": url, "proxy_url": url}


def application(application_id: int, bot_user: Mapping[str, Any]) -> dict[str, Any]:
    """GET /oauth2/applications/@me."""
    return {
        "id": str(application_id),
        "name": bot_user["username"],
        "icon": None,
        "description": "",
        "bot_public": True,
        "bot_require_code_grant": False,
        "owner": user(application_id + 1, "owner"),
        "summary": "",
        "verify_key": "0" * 64,
        "team": None,
        "flags": 0,
        "bot": bot_user,
    }
