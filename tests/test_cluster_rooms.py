"""The admin rooms' records shared by a cluster's gateways (aibot/cluster/rooms.py),
against a real redis-server: what one gateway kept or claimed, another sees."""

from __future__ import annotations

import pytest

from aibot.cluster.connection import connect
from aibot.cluster.rooms import CLAIM_DAYS, SharedRoomRecords
from tests.fixtures.redis_server import RedisServer

GUILD, OTHER_GUILD = 10, 11


@pytest.fixture
async def gateways(redis_server: RedisServer):
    """Two gateways' records, each on its own connection."""
    first, second = connect(redis_server.url), connect(redis_server.url)
    yield SharedRoomRecords(first, "aibot"), SharedRoomRecords(second, "aibot")
    await first.aclose()
    await second.aclose()


async def test_the_status_message_one_gateway_posted_is_the_one_another_edits(gateways) -> None:
    first, second = gateways
    assert await second.message("status", GUILD) is None
    await first.keep_message("status", GUILD, 500, 9001)
    assert await second.message("status", GUILD) == (500, 9001)
    assert await second.message("status", OTHER_GUILD) is None
    await second.keep_message("status", GUILD, 501, 9002)  # posted anew: it was deleted
    assert await first.message("status", GUILD) == (501, 9002)


async def test_a_day_s_summary_is_claimed_once_across_gateways(gateways) -> None:
    first, second = gateways
    assert await first.claim("summary", GUILD, "2026-12-06")
    assert not await second.claim("summary", GUILD, "2026-12-06")
    assert await second.claim("summary", OTHER_GUILD, "2026-12-06")
    assert await second.claim("summary", GUILD, "2026-12-07")
    # A claim given back (the post failed) may be taken again, by either.
    await first.unclaim("summary", GUILD, "2026-12-06")
    assert await second.claim("summary", GUILD, "2026-12-06")
    ttl = await first.redis.ttl("aibot:room:summary:10:2026-12-06")
    assert 0 < ttl <= CLAIM_DAYS * 86_400, "claims expire: Redis does not keep them for good"
