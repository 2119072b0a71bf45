"""Alerts without Discord: folding on a made-up clock, the watchers on the engine's
observation points (a key ring, the ledger, the gate), the room settings, backups."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from aibot.alerts import FOLD_WINDOW, Alert, AlertFolder, AlertHub, Alerts
from aibot.jobs import Job
from aibot.keys import KeyRing
from aibot.leases import Ring
from aibot.room_settings import ChannelChoice
from aibot.settings import Settings, SettingsError
from aibot.store import Store, StoreError
from aibot.store.backup import integrity
from aibot.store.gate import pool_of
from aibot.watch import ProviderWatch, WatchedGate, WatchedLedger, watch_rings


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class Recorded:
    """An `Alerts` port that keeps what it is told."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def alert(self, alert: Alert) -> None:
        self.alerts.append(alert)

    def kinds(self) -> list[str]:
        return [a.kind for a in self.alerts]


def watch_one(ring: Ring, alerts: Alerts) -> None:
    """`watch_rings` for the ring's pool, holding this one ring."""

    class Pool:
        name = ring.pool
        rings = (ring,)

    watch_rings([Pool()], alerts)


def watched(ring: Ring) -> Recorded:
    """The alerts `watch_rings` raises for this ring."""
    alerts = Recorded()
    watch_one(ring, alerts)
    return alerts


def job(n: int = 1, *, guild: int = 7, pool: str = "chat") -> Job:
    return Job(
        id=f"job-{n}",
        command="chat",
        args={"prompt": "hi"},
        guild_id=guild,
        channel_id=1,
        user_id=100 + n,
        pool=pool,
    )


# ----------------------------------------------------------------- folding


def test_repeats_within_ten_minutes_fold_into_one_count() -> None:
    folder = AlertFolder()
    paused = Alert("paused", "chat", detail={"by": "boss"})
    assert folder.offer(paused, 0.0) == [paused]
    assert folder.offer(paused, 10.0) == []
    assert folder.offer(paused, 500.0) == []
    assert folder.due(599.0) == []
    assert folder.next_due() == FOLD_WINDOW
    [count] = folder.due(600.0)
    assert count.kind == "paused" and count.folded == 2
    # The count was a message: the next repeat within 10 minutes of it folds again.
    assert folder.offer(paused, 700.0) == []
    [count] = folder.due(1200.0)
    assert count.folded == 1
    assert folder.due(1800.0) == [] and folder.next_due() is None
    assert folder.offer(paused, 1900.0) == [paused]


def test_kinds_pools_and_servers_fold_apart() -> None:
    folder = AlertFolder()
    first = [Alert("paused", "chat"), Alert("paused", "image"), Alert("resumed", "chat")]
    first.append(Alert("budget", "chat", guild_id=1))
    first.append(Alert("budget", "chat", guild_id=2))
    assert [out for alert in first for out in folder.offer(alert, 0.0)] == first


def test_a_repeat_after_a_quiet_window_brings_the_count_along() -> None:
    folder = AlertFolder()
    alert = Alert("no_keys", "video")
    folder.offer(alert, 0.0)
    folder.offer(alert, 1.0)
    # Nobody asked for the due counts; the next alert after the window carries it.
    count, again = folder.offer(alert, 900.0)
    assert count.folded == 1 and again == alert


def test_the_hub_tells_its_listener_and_hands_out_each_alert_once() -> None:
    clock = Clock()
    hub = AlertHub(clock)
    told: list[int] = []
    hub.listen(lambda: told.append(1))
    hub.alert(Alert("restarted", detail={"jobs": "2"}))
    hub.alert(Alert("restarted", detail={"jobs": "2"}))  # folded: a count falls due later
    assert len(told) == 2
    assert [a.kind for a in hub.take()] == ["restarted"]
    assert hub.next_due() == clock.now + FOLD_WINDOW
    assert hub.take() == []
    clock.now += FOLD_WINDOW
    assert [a.folded for a in hub.take()] == [1]


# ---------------------------------------------------------------- watchers


async def test_a_disabled_key_is_alerted_redacted_and_then_the_empty_pool() -> None:
    secrets = ["sk-first-key-0000000000000000000001", "sk-second-key-000000000000000000002"]
    ring = KeyRing("chat", "openai", secrets, rpm=60, concurrency=1)
    alerts = watched(ring)
    for _ in secrets:
        lease = ring.try_acquire()
        assert lease is not None
        lease.bad_key(f"401 invalid key {lease.key}")
    assert alerts.kinds() == ["key_disabled", "key_disabled", "no_keys"]
    first = alerts.alerts[0]
    assert first.detail["key_id"] == "sk-...0001"
    assert first.detail["reason"] == "401 invalid key sk-...0001"
    assert not any(s in str(alerts.alerts) for s in secrets)


class Ledger:
    def __init__(self) -> None:
        self.rows: list[str] = []

    def record(self, job: Job, *, provider: str, outcome: str, **usage: object) -> float:
        self.rows.append(outcome)
        return 0.0


def test_a_provider_failing_for_over_a_minute_is_alerted() -> None:
    clock, alerts, rows = Clock(), Recorded(), Ledger()
    ledger = WatchedLedger(rows, ProviderWatch(alerts, clock))
    ledger.record(job(1), provider="openai", key_id="", outcome="unavailable", latency=1)
    clock.now += 30
    ledger.record(job(2), provider="openai", key_id="", outcome="unavailable", latency=1)
    assert alerts.alerts == []
    clock.now += 31
    ledger.record(job(3), provider="openai", key_id="", outcome="incomplete", latency=1)
    [failing] = alerts.alerts
    assert failing.kind == "provider_failing" and failing.pool == "chat"
    assert failing.detail["failures"] == "3" and failing.detail["seconds"] == "61"
    assert rows.rows == ["unavailable", "unavailable", "incomplete"]  # still recorded


def test_a_success_or_a_members_fault_starts_nothing() -> None:
    clock, alerts = Clock(), Recorded()
    ledger = WatchedLedger(Ledger(), ProviderWatch(alerts, clock))
    ledger.record(job(1), provider="openai", key_id="", outcome="unavailable", latency=1)
    clock.now += 50
    ledger.record(job(2), provider="openai", key_id="", outcome="ok", latency=1)
    clock.now += 50
    ledger.record(job(3), provider="openai", key_id="", outcome="unavailable", latency=1)
    ledger.record(job(4), provider="openai", key_id="", outcome="rejected", latency=1)
    clock.now += 50
    ledger.record(job(5), provider="openai", key_id="", outcome="unavailable", latency=1)
    assert alerts.alerts == []


async def test_a_budget_ninety_percent_spent_is_alerted_once_a_day(tmp_path: Path) -> None:
    clock = Clock()
    settings = Settings.from_env({"AIBOT_CHAT_DAILY_BUDGET": "10", "AIBOT_CHAT_COOLDOWN": "0"})
    async with await Store.open(tmp_path / "aibot.db", settings, clock=clock) as store:
        await store.gate.set_limits(8, "chat", daily_budget=5)
        alerts = Recorded()
        gate = WatchedGate(store.gate, store.gate, alerts, day=store.calendar.day, pool_of=pool_of)
        for n in range(1, 5):  # server 8: 4 of its 5 (80%)
            await gate.take(job(n, guild=8))
        assert alerts.alerts == []
        for n in range(5, 10):  # 9 of the pool's 10: 90%
            await gate.take(job(n, guild=7))
        [bot] = alerts.alerts
        assert (bot.kind, bot.pool, bot.guild_id) == ("budget", "chat", None)
        assert bot.detail == {"used": "9", "budget": "10"}
        await gate.take(job(10, guild=8))  # server 8: 5 of 5; the pool: 10 of 10
        assert [a.guild_id for a in alerts.alerts] == [None, 8]
        clock.now += 86_400  # a new day: counts and alerts start again
        await gate.take(job(11, guild=7))
        assert len(alerts.alerts) == 2


# ---------------------------------------------------------- settings, backups


def test_each_room_channel_can_be_an_id_patterns_or_off() -> None:
    rooms = Settings.from_env({}).rooms
    assert rooms.alert_channel.matches("🚨-알림-채널") and rooms.alert_channel.matches("Bot-Alerts")
    assert not rooms.alert_channel.matches("twitch-alerts")  # a community's own
    assert rooms.status_channel.matches("⚙️봇-상태") and not rooms.status_channel.matches("general")
    assert rooms.stats_channel.matches("전체-통계")
    assert rooms.backup_dir == Path("backups") and rooms.backup_keep == 7
    rooms = Settings.from_env(
        {
            "AIBOT_ALERT_CHANNEL": "off",
            "AIBOT_STATUS_CHANNEL": "123456",
            "AIBOT_STATS_CHANNEL": "numbers, figures-*",
            "AIBOT_DATA_DIR": "/srv/aibot/data",
        }
    ).rooms
    assert rooms.alert_channel.off
    assert rooms.status_channel == ChannelChoice(channel_id=123456)
    assert rooms.stats_channel.matches("figures-daily")
    assert rooms.backup_dir == Path("/srv/aibot/backups")
    with pytest.raises(SettingsError, match="AIBOT_BACKUP_KEEP"):
        Settings.from_env({"AIBOT_BACKUP_KEEP": "0"})


async def test_a_backup_is_online_checked_and_only_the_newest_are_kept(tmp_path: Path) -> None:
    clock = Clock()
    settings = Settings.from_env({})
    folder = tmp_path / "backups"
    async with await Store.open(tmp_path / "data" / "aibot.db", settings, clock=clock) as store:
        await store.gate.set_limits(8, "chat", daily_quota=3)
        made = []
        for _ in range(3):
            made.append(await store.backup(folder, keep=2))
            clock.now += 1
        assert sorted(folder.iterdir()) == [made[1].path, made[2].path]
        assert made[0].path.name == "aibot-19700101-001640.db"
        assert integrity(made[2].path) == "ok" and made[2].size > 0
        with sqlite3.connect(made[2].path) as copy:
            assert copy.execute("SELECT daily_quota FROM guild_limits").fetchall() == [(3,)]


async def test_backups_made_by_hand_never_push_the_daily_ones_out(tmp_path: Path) -> None:
    clock = Clock()
    folder = tmp_path / "backups"
    async with await Store.open(tmp_path / "aibot.db", Settings.from_env({}), clock=clock) as store:
        daily = [await store.backup(folder, keep=2)]
        clock.now += 86_400
        daily.append(await store.backup(folder, keep=2))
        # An admin asks again and again, twice at the same moment.
        by_hand = [await store.backup(folder, keep=2, by_hand=True) for _ in range(3)]
        by_hand += await asyncio.gather(*(store.backup(folder, keep=2, by_hand=True) for _ in "ab"))
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(
        [daily[0].path.name, daily[1].path.name, by_hand[-2].path.name, by_hand[-1].path.name]
    )
    assert by_hand[-1].path.name == "aibot-19700102-001640-by-hand-5.db"  # numbered on
    assert all(integrity(folder / name) == "ok" for name in names)


async def test_a_backup_that_cannot_be_written_fails_and_leaves_nothing(tmp_path: Path) -> None:
    settings = Settings.from_env({})
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    async with await Store.open(tmp_path / "aibot.db", settings) as store:
        with pytest.raises(StoreError, match="backup of"):
            await store.backup(blocked / "backups", keep=7)
