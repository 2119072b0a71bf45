"""The usage ledger: what every job used and cost, per day, pool and provider."""

from __future__ import annotations

import pytest

from aibot.jobs import Job
from aibot.store import DayUsage, Price, PriceTable

GUILD, OTHER_GUILD = 2001, 2002


def job(command: str, user: int, guild: int | None = GUILD, pool: str = "") -> Job:
    return Job(
        command=command, args={}, user_id=user, channel_id=9, guild_id=guild, pool=pool or command
    )


async def test_stats_group_today_by_pool_and_provider_with_estimated_costs(store_opener):
    store = await store_opener()
    ledger = store.ledger
    chat_cost = ledger.record(
        job("chat", 1),
        provider="openai",
        key_id="sk-...abcd",
        outcome="ok",
        latency=1.5,
        tokens_in=2000,
        tokens_out=1000,
    )
    assert chat_cost == pytest.approx(2 * 0.00025 + 1 * 0.002)
    ledger.record(
        job("chat", 2), provider="openai", key_id="sk-...abcd", outcome="unavailable", latency=9
    )
    ledger.record(
        job("image", 1),
        provider="stability",
        key_id="sk-...wxyz",
        outcome="ok",
        latency=4,
        images=1,
    )
    ledger.record(
        job("image", 3, OTHER_GUILD), provider="stability", key_id="k", outcome="ok", latency=4
    )

    rows = await ledger.stats(GUILD)
    assert rows == [
        DayUsage("2026-03-02", "chat", "openai", 2, 1, 2000, 1000, 0, 0.0, pytest.approx(0.0025)),
        DayUsage("2026-03-02", "image", "stability", 1, 0, 0, 0, 1, 0.0, pytest.approx(0.03)),
    ]
    assert sum(row.jobs for row in await ledger.stats(None)) == 4


async def test_stats_cover_the_last_days_newest_first(store_opener, store_clock):
    store = await store_opener()
    for _ in range(10):
        store.ledger.record(
            job("video", 1),
            provider="minimax",
            key_id="k",
            outcome="ok",
            latency=60,
            video_seconds=6,
        )
        store_clock.advance(24 * 3600)
    store_clock.advance(-24 * 3600)  # back to the day of the last row

    week = await store.ledger.stats(GUILD, days=7)
    assert [row.day for row in week] == [f"2026-03-{d:02d}" for d in range(11, 4, -1)]
    assert week[0].video_seconds == 6
    assert week[0].cost == pytest.approx(6 * 0.047)
    assert [row.day for row in await store.ledger.stats(GUILD, days=1)] == ["2026-03-11"]


async def test_top_members_are_the_busiest_of_the_guild(store_opener):
    store = await store_opener()
    for user, count in ((7, 3), (8, 5), (9, 1)):
        for _ in range(count):
            store.ledger.record(
                job("chat", user), provider="openai", key_id="k", outcome="ok", latency=1
            )
    store.ledger.record(
        job("chat", 99, OTHER_GUILD), provider="openai", key_id="k", outcome="ok", latency=1
    )

    top = await store.ledger.top_members(GUILD, days=7, limit=2)
    assert [(member.user_id, member.jobs) for member in top] == [(8, 5), (7, 3)]


async def test_an_overflowed_job_is_counted_under_the_pool_that_ran_it(store_opener):
    store = await store_opener()
    store.ledger.record(
        job("chat", 1, pool="admin"), provider="openai", key_id="k", outcome="ok", latency=1
    )
    [row] = await store.ledger.stats(GUILD)
    assert row.pool == "admin"


async def test_a_whole_key_never_reaches_the_ledger(store_opener, tmp_path):
    store = await store_opener()
    secret = "sk-proj-THISISAWHOLESECRETKEY1234"
    store.ledger.record(job("chat", 1), provider="openai", key_id=secret, outcome="ok", latency=1)
    await store.close()
    assert secret.encode() not in b"".join(p.read_bytes() for p in tmp_path.iterdir())


async def test_prices_can_be_set(store_opener):
    prices = PriceTable(openai=Price(input_per_1k=1.0, output_per_1k=2.0))
    store = await store_opener(prices=prices)
    cost = store.ledger.record(
        job("chat", 1),
        provider="openai",
        key_id="k",
        outcome="ok",
        latency=1,
        tokens_in=500,
        tokens_out=500,
    )
    assert cost == pytest.approx(1.5)
    assert store.ledger.record(
        job("chat", 1), provider="elsewhere", key_id="k", outcome="ok", latency=1, cost=0.25
    ) == pytest.approx(0.25)


async def test_admin_actions_and_usage_are_kept_across_a_restart(store_opener):
    store = await store_opener()
    store.ledger.record_admin(GUILD, 42, "pause", "video")
    store.ledger.record_admin(GUILD, 42, "quota", "image daily_quota=10")
    store.ledger.record(job("chat", 1), provider="openai", key_id="k", outcome="ok", latency=1)
    await store.close()

    reopened = await store_opener()
    actions = await reopened.ledger.admin_actions(GUILD)
    assert [(a.action, a.detail) for a in actions] == [
        ("quota", "image daily_quota=10"),
        ("pause", "video"),
    ]
    assert [row.jobs for row in await reopened.ledger.stats(GUILD)] == [1]


async def test_old_rows_are_pruned_when_the_store_opens(store_opener, store_clock):
    store = await store_opener()
    store.ledger.record(job("chat", 1), provider="openai", key_id="k", outcome="ok", latency=1)
    await store.close()
    store_clock.advance(100 * 24 * 3600)
    reopened = await store_opener(keep_days=90)
    assert await reopened.ledger.stats(GUILD, days=365) == []
