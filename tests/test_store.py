"""The store's file and its gate: cooldowns, quotas, budgets, overrides, refunds."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
from datetime import UTC, datetime

import pytest

from aibot.jobs import Job, LimitReached
from aibot.ports import AboveBotBudget
from aibot.settings import Settings
from aibot.store import Limits, Store, StoreError
from aibot.store.schema import MIGRATIONS

GUILD, OTHER_GUILD = 1001, 1002
ALICE, BOB, CAROL = 11, 12, 13
NO_COOLDOWN = {"AIBOT_CHAT_COOLDOWN": "0", "AIBOT_IMAGE_COOLDOWN": "0", "AIBOT_VIDEO_COOLDOWN": "0"}


def job(command: str = "chat", user: int = ALICE, guild: int | None = GUILD) -> Job:
    return Job(command=command, args={"prompt": "hi"}, user_id=user, channel_id=500, guild_id=guild)


async def refused(gate, a_job: Job) -> LimitReached:
    with pytest.raises(LimitReached) as caught:
        await gate.take(a_job)
    return caught.value


# The file


async def test_a_new_store_is_one_wal_file_in_the_data_dir(store_opener, tmp_path):
    store = await store_opener()
    assert store.path == tmp_path / "aibot.db"
    await store.close()
    with sqlite3.connect(tmp_path / "aibot.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


async def test_a_corrupt_file_is_a_clear_error_naming_it(store_opener, tmp_path):
    bad = tmp_path / "garbage.db"
    bad.write_bytes(os.urandom(8192))
    with pytest.raises(StoreError, match=re.escape(str(tmp_path / "garbage.db"))) as caught:
        await store_opener(path=bad)
    assert "not a usable SQLite database" in str(caught.value)
    assert bad.stat().st_size == 8192, "the damaged file is left as it was"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write a read-only folder")
async def test_a_read_only_folder_is_a_clear_error(store_opener, tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(StoreError, match=re.escape(str(folder / "aibot.db"))):
            await store_opener(path=folder / "aibot.db")
    finally:
        folder.chmod(0o700)


async def test_a_folder_that_cannot_be_made_is_a_clear_error(store_opener, tmp_path):
    (tmp_path / "data").write_text("a file where the folder should be")
    with pytest.raises(StoreError, match=re.escape(str(tmp_path / "data" / "aibot.db"))):
        await store_opener(path=tmp_path / "data" / "aibot.db")


async def test_a_path_that_is_a_folder_is_a_clear_error(store_opener, tmp_path):
    (tmp_path / "taken.db").mkdir()
    with pytest.raises(StoreError, match=re.escape(str(tmp_path / "taken.db"))) as caught:
        await store_opener(path=tmp_path / "taken.db")
    assert "cannot open or write" in str(caught.value)


async def test_a_file_from_a_newer_aibot_is_refused(store_opener, tmp_path):
    path = tmp_path / "new.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(StoreError, match="newer"):
        await store_opener(path=path)


async def test_a_closed_store_says_so(store_opener):
    store = await store_opener()
    await store.close()
    await store.close()
    await store.gate.take(job())  # in memory still; nothing more reaches the file
    with pytest.raises(StoreError, match="closed"):
        await store.memory.history(job())
    with pytest.raises(StoreError, match="closed"):
        await store.ledger.stats(GUILD)


# Cooldowns


async def test_a_second_command_within_the_cooldown_is_refused_until_it_ends(
    store_opener, store_clock
):
    store = await store_opener({"AIBOT_VIDEO_COOLDOWN": "5"})
    await store.gate.take(job("video"))
    store_clock.advance(2)
    refusal = await refused(store.gate, job("video"))
    assert refusal.scope == "cooldown"
    assert refusal.retry_after == pytest.approx(3)
    store_clock.advance(3)
    await store.gate.take(job("video"))


async def test_a_cooldown_lowered_or_reset_by_an_admin_is_shorter_at_once(
    store_opener, store_clock
):
    store = await store_opener()
    await store.gate.set_limits(GUILD, "chat", cooldown=86_400)  # a day, by mistake
    await store.gate.take(job("chat"))
    store_clock.advance(2)
    assert (await refused(store.gate, job("chat"))).scope == "cooldown"
    await store.gate.clear_limits(GUILD, "chat")  # back to the settings' 1 s
    await store.gate.take(job("chat"))
    await store.gate.set_limits(GUILD, "chat", cooldown=60)
    store_clock.advance(10)
    assert (await refused(store.gate, job("chat"))).retry_after == pytest.approx(50)
    await store.gate.set_limits(GUILD, "chat", cooldown=5)  # lowered: the wait too
    await store.gate.take(job("chat"))


async def test_cooldowns_are_per_member_and_per_pool(store_opener):
    store = await store_opener()
    await store.gate.take(job("chat", ALICE))
    await store.gate.take(job("chat", BOB))
    await store.gate.take(job("image", ALICE))
    assert (await refused(store.gate, job("chat", ALICE))).scope == "cooldown"


# Daily quotas and the day boundary


async def test_the_quota_refuses_until_midnight_utc(store_opener, store_clock):
    store = await store_opener({**NO_COOLDOWN, "AIBOT_IMAGE_DAILY_QUOTA": "3"})
    for _ in range(3):
        await store.gate.take(job("image"))
    refusal = await refused(store.gate, job("image"))
    assert refusal.scope == "quota"
    assert refusal.retry_after == pytest.approx(12 * 3600)  # noon to midnight
    store_clock.set(datetime(2026, 3, 2, 23, 59, 59, tzinfo=UTC))
    assert (await refused(store.gate, job("image"))).retry_after == pytest.approx(1)
    store_clock.advance(1)
    await store.gate.take(job("image"))
    assert store.gate.usage(GUILD, ALICE, "image") == (1, 3)


async def test_in_seoul_the_day_turns_at_midnight_kst(store_opener, store_clock):
    # 14:59:30 UTC is 23:59:30 in Seoul.
    store_clock.set(datetime(2026, 3, 2, 14, 59, 30, tzinfo=UTC))
    seoul = await store_opener(
        {**NO_COOLDOWN, "AIBOT_CHAT_DAILY_QUOTA": "1", "AIBOT_TIMEZONE": "Asia/Seoul"}
    )
    await seoul.gate.take(job("chat"))
    assert (await refused(seoul.gate, job("chat"))).retry_after == pytest.approx(30)
    store_clock.advance(30)
    await seoul.gate.take(job("chat"))


async def test_in_utc_the_same_moment_is_mid_afternoon(store_opener, store_clock):
    store_clock.set(datetime(2026, 3, 2, 14, 59, 30, tzinfo=UTC))
    utc = await store_opener({**NO_COOLDOWN, "AIBOT_CHAT_DAILY_QUOTA": "1"})
    await utc.gate.take(job("chat"))
    store_clock.advance(30)
    assert (await refused(utc.gate, job("chat"))).scope == "quota"


async def test_a_hundred_simultaneous_commands_with_a_quota_of_ten_let_exactly_ten_in(
    store_opener,
):
    store = await store_opener({"AIBOT_CHAT_COOLDOWN": "0", "AIBOT_CHAT_DAILY_QUOTA": "10"})

    async def command() -> str:
        await asyncio.sleep(0)  # all hundred are in flight before any is checked
        try:
            await store.gate.take(job("chat"))
        except LimitReached as refusal:
            return refusal.scope
        return "answered"

    outcomes = await asyncio.gather(*(command() for _ in range(100)))
    assert outcomes.count("answered") == 10
    assert outcomes.count("quota") == 90


async def test_todays_counts_survive_a_restart_and_a_new_day_starts_fresh(
    store_opener, store_clock
):
    env = {**NO_COOLDOWN, "AIBOT_VIDEO_DAILY_QUOTA": "2"}
    first = await store_opener(env)
    await first.gate.take(job("video"))
    await first.gate.take(job("video"))
    await first.close()

    second = await store_opener(env)
    assert (await refused(second.gate, job("video"))).scope == "quota"
    await second.close()

    store_clock.advance(24 * 3600)
    third = await store_opener(env)
    await third.gate.take(job("video"))


async def test_a_clock_set_back_across_midnight_undoes_no_count(store_opener, store_clock):
    env = {**NO_COOLDOWN, "AIBOT_VIDEO_DAILY_QUOTA": "2"}
    store = await store_opener(env)
    store_clock.advance(12 * 3600 - 60)  # a minute before midnight
    await store.gate.take(job("video"))
    store_clock.advance(120)  # into the next day
    await store.gate.take(job("video"))
    await store.gate.take(job("video"))
    store_clock.advance(-120)  # the machine's clock corrected back, then forward again
    assert store.gate.usage(GUILD, ALICE, "video")[0] == 2
    store_clock.advance(120)
    assert (await refused(store.gate, job("video"))).scope == "quota"


def _counted(tmp_path) -> list[tuple[int, int]]:
    """(user id, uses) of the member rows in the file, read over a connection of its own."""
    with sqlite3.connect(tmp_path / "aibot.db") as conn:
        rows = conn.execute("SELECT user_id, used FROM gate_counts WHERE user_id > 0").fetchall()
    return sorted(rows)


async def test_the_counts_reach_the_file_behind_the_takes(store_opener, tmp_path):
    store = await store_opener(NO_COOLDOWN)
    await store.gate.take(job(user=ALICE))
    await store.gate.take(job(user=BOB))
    await store.flush()
    assert _counted(tmp_path) == [(ALICE, 1), (BOB, 1)]


async def test_a_close_writes_the_counts_still_queued(store_opener, tmp_path):
    store = await store_opener(NO_COOLDOWN)
    await store.gate.take(job(user=ALICE))
    await store.close()
    assert _counted(tmp_path) == [(ALICE, 1)]


async def test_a_store_built_but_not_started_says_so_and_closes_quietly(tmp_path):
    store = Store(Settings.from_env({"AIBOT_DATA_DIR": str(tmp_path)}))
    with pytest.raises(StoreError, match="not open"):
        await store.memory.reset(1, 2)
    await store.close()
    assert not store.path.exists()


# Refunds


async def test_a_refund_gives_back_the_quota_but_not_the_cooldown(store_opener, store_clock):
    store = await store_opener({"AIBOT_IMAGE_COOLDOWN": "5", "AIBOT_IMAGE_DAILY_QUOTA": "1"})
    failed = job("image")
    await store.gate.take(failed)
    assert await store.gate.refund(failed) is True
    assert await store.gate.refund(failed) is False, "a job is refunded once"
    assert (await refused(store.gate, job("image"))).scope == "cooldown"
    store_clock.advance(5)
    await store.gate.take(job("image"))
    store_clock.advance(5)
    assert (await refused(store.gate, job("image"))).scope == "quota"


async def test_a_job_taken_yesterday_is_not_refunded_today(store_opener, store_clock):
    store = await store_opener({**NO_COOLDOWN, "AIBOT_CHAT_DAILY_QUOTA": "1"})
    late = job("chat")
    await store.gate.take(late)
    store_clock.advance(24 * 3600)
    await store.gate.take(job("chat"))
    assert await store.gate.refund(late) is False
    assert (await refused(store.gate, job("chat"))).scope == "quota"


async def test_a_job_never_taken_is_not_refunded(store_opener):
    store = await store_opener()
    assert await store.gate.refund(job()) is False


# Guild overrides and budgets


async def test_a_guild_can_set_its_own_limits_and_they_are_kept(store_opener):
    store = await store_opener(NO_COOLDOWN)
    limits = await store.gate.set_limits(GUILD, "image", daily_quota=1)
    assert limits == Limits(cooldown=0.0, daily_quota=1, daily_budget=0)
    await store.gate.take(job("image", guild=GUILD))
    assert (await refused(store.gate, job("image", guild=GUILD))).scope == "quota"
    await store.gate.take(job("image", guild=OTHER_GUILD))
    await store.gate.take(job("image", guild=OTHER_GUILD))
    await store.close()

    reopened = await store_opener(NO_COOLDOWN)
    assert reopened.gate.limits(GUILD, "image").daily_quota == 1
    assert (await refused(reopened.gate, job("image", guild=GUILD))).scope == "quota"
    assert await reopened.gate.clear_limits(GUILD, "image") == reopened.gate.limits(
        OTHER_GUILD, "image"
    )
    await reopened.gate.take(job("image", guild=GUILD))


async def test_an_override_changes_only_the_fields_given(store_opener):
    store = await store_opener({"AIBOT_VIDEO_DAILY_QUOTA": "40"})
    await store.gate.set_limits(GUILD, "video", cooldown=30)
    limits = await store.gate.set_limits(GUILD, "video", daily_budget=100)
    assert limits == Limits(cooldown=30.0, daily_quota=40, daily_budget=100)
    with pytest.raises(ValueError):
        await store.gate.set_limits(GUILD, "video", daily_quota=-1)
    with pytest.raises(ValueError):
        await store.gate.set_limits(GUILD, "films", daily_quota=1)


async def test_an_undo_gives_back_the_use_and_the_cooldown_once(store_opener):
    store = await store_opener({"AIBOT_VIDEO_COOLDOWN": "3600", "AIBOT_VIDEO_DAILY_QUOTA": "1"})
    never_ran = job("video", ALICE, GUILD)
    await store.gate.take(never_ran)
    assert await store.gate.undo(never_ran)
    assert not await store.gate.undo(never_ran), "once"
    assert store.gate.usage(GUILD, ALICE, "video") == (0, 1)
    ran = job("video", ALICE, GUILD)
    await store.gate.take(ran)  # at once: no cooldown left of the undone take
    assert await store.gate.refund(ran)  # a job that ran and failed: the cooldown stays
    assert (await refused(store.gate, job("video", ALICE, GUILD))).scope == "cooldown"


async def test_a_cooldown_outlasts_a_restart(store_opener, store_clock):
    """An hour between two videos stays an hour through a deploy or a crash; a take
    undone (its job never ran) does not come back with the restart."""
    hourly = {"AIBOT_VIDEO_COOLDOWN": "3600"}
    store = await store_opener(hourly)
    await store.gate.take(job("video", ALICE, GUILD))
    never_ran = job("video", BOB, GUILD)
    await store.gate.take(never_ran)
    await store.gate.undo(never_ran)
    await store.close()
    store_clock.advance(60)

    reopened = await store_opener(hourly)
    refusal = await refused(reopened.gate, job("video", ALICE, GUILD))
    assert refusal.scope == "cooldown" and refusal.retry_after == pytest.approx(3540)
    await reopened.gate.take(job("video", BOB, GUILD))
    await reopened.close()
    store_clock.advance(3600)
    again = await store_opener(hourly)
    await again.gate.take(job("video", ALICE, GUILD))  # the hour is over


async def test_the_pool_budget_caps_every_member_of_every_guild_together(store_opener):
    store = await store_opener({**NO_COOLDOWN, "AIBOT_VIDEO_DAILY_BUDGET": "3"})
    await store.gate.take(job("video", ALICE, GUILD))
    await store.gate.take(job("video", BOB, OTHER_GUILD))
    await store.gate.take(job("video", CAROL, None))
    refusal = await refused(store.gate, job("video", 99, GUILD))
    assert refusal.scope == "budget"
    assert refusal.retry_after == pytest.approx(12 * 3600)
    await store.gate.take(job("chat", 99, GUILD))


async def test_a_guild_budget_caps_that_guild_only(store_opener):
    store = await store_opener(NO_COOLDOWN)
    await store.gate.set_limits(GUILD, "image", daily_budget=2)
    await store.gate.take(job("image", ALICE, GUILD))
    await store.gate.take(job("image", BOB, GUILD))
    assert (await refused(store.gate, job("image", CAROL, GUILD))).scope == "budget"
    await store.gate.take(job("image", CAROL, OTHER_GUILD))


async def test_a_guild_cannot_raise_its_budget_above_the_pools(store_opener):
    store = await store_opener({**NO_COOLDOWN, "AIBOT_IMAGE_DAILY_BUDGET": "1"})
    with pytest.raises(AboveBotBudget):
        await store.gate.set_limits(GUILD, "image", daily_budget=50)
    await store.gate.set_limits(GUILD, "image", daily_budget=0)  # none of its own
    await store.gate.take(job("image", ALICE, GUILD))
    assert (await refused(store.gate, job("image", BOB, GUILD))).scope == "budget"


async def test_an_overflowed_job_spends_its_commands_quota(store_opener):
    store = await store_opener({**NO_COOLDOWN, "AIBOT_CHAT_DAILY_QUOTA": "1"})
    overflowed = job("chat")
    overflowed.pool = "admin"
    await store.gate.take(overflowed)
    assert (await refused(store.gate, job("chat"))).scope == "quota"


def test_the_benchmark_prints_one_json_line(capsys):
    from bench.store import main

    main(["--rows", "300", "--iterations", "200"])
    result = json.loads(capsys.readouterr().out)
    assert result["scenario"] == "gate"
    assert result["ledger_rows"] == 300
    assert {"p50_ms", "p99_ms"} <= result.keys()
    assert result["refused"] == 0
