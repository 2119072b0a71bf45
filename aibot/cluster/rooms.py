"""The admin rooms' records that a cluster's gateways share, in Redis.

`aibot.ports.RoomRecords` for cluster mode: the status message a room keeps
edited in each server (`{prefix}:room:{room}`, a hash of "channel:message" by
server) and the once-a-day claims (`{prefix}:room:{room}:{server}:{day}`, set only
if absent, expiring after `CLAIM_DAYS`). A standby gateway that takes over the
shards of one that stopped then edits the status message the first one posted,
and posts no day's summary the first one posted already (each gateway's ledger
sees every outcome, so either's summary is the same). A Redis error reaches the
room, which logs it and tries again at its next turn.
"""

from __future__ import annotations

from redis.asyncio import Redis

__all__ = ["CLAIM_DAYS", "SharedRoomRecords"]

CLAIM_DAYS = 3  # a claim outlives its day, and the day after it, whatever the zone


class SharedRoomRecords:
    """The rooms' records in Redis (see the module docstring)."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix

    async def message(self, room: str, guild_id: int) -> tuple[int, int] | None:
        kept = await self.redis.hget(f"{self.prefix}:room:{room}", str(guild_id))
        if not kept:
            return None
        channel_id, message_id = str(kept).split(":")
        return int(channel_id), int(message_id)

    async def keep_message(
        self, room: str, guild_id: int, channel_id: int, message_id: int
    ) -> None:
        await self.redis.hset(
            f"{self.prefix}:room:{room}", str(guild_id), f"{channel_id}:{message_id}"
        )

    async def claim(self, room: str, guild_id: int, day: str) -> bool:
        key = self._claim_key(room, guild_id, day)
        return bool(await self.redis.set(key, "1", nx=True, ex=CLAIM_DAYS * 86_400))

    async def unclaim(self, room: str, guild_id: int, day: str) -> None:
        await self.redis.delete(self._claim_key(room, guild_id, day))

    def _claim_key(self, room: str, guild_id: int, day: str) -> str:
        return f"{self.prefix}:room:{room}:{guild_id}:{day}"
