"""The gate in Redis (aibot/cluster/gate.py) against a real redis-server.

The cross-process tests start gateway-like processes (`python -c` running
`_child` below), each firing its share of simultaneous takes once all are
connected, as members' commands arriving through several gateways would.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis.asyncio as redis

from aibot.cluster.commands import CALL_TIMEOUT, ClusterGate
from aibot.cluster.gate import SharedGate
from aibot.jobs import Job, LimitReached, TemporarilyUnavailable
from aibot.ports import AboveBotBudget
from aibot.settings import Settings
from aibot.store.days import Calendar
from aibot.store.gate import Limits, pool_of
from aibot.watch import WatchedGate
from tests.cluster_processes import child_main, eventually, ready_then_start, run_together
from tests.fixtures.redis_server import RedisServer
from tests.test_alerts import Recorded

_ROOT = Path(__file__).resolve().parents[1]
_PREFIX = "bot"
_GUILD = 77
_MEMBER = 1001


def _client(url: str) -> redis.Redis:
    return redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(url))


def _gate(client: redis.Redis, env: dict[str, str], calendar: Calendar | None = None) -> SharedGate:
    settings = Settings.from_env(env)
    return SharedGate(client, _PREFIX, settings, calendar or Calendar(settings.timezone))


def _chat(user: int = _MEMBER, guild: int | None = _GUILD, **fields: Any) -> Job:
    return Job(command="chat", args={"prompt": "hi"}, user_id=user, channel_id=5, guild_id=guild,
               **fields)  # fmt: skip


@pytest.fixture
async def client(redis_server: RedisServer):
    client = _client(redis_server.url)
    yield client
    await client.aclose()


class _Clock:
    """A clock a test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _stopped(env: dict[str, str], at: float) -> Calendar:
    """The settings' calendar with its clock stopped at `at`."""
    return Calendar(Settings.from_env(env).timezone, _Clock(at))


# -- several processes ------------------------------------------------------


async def test_100_simultaneous_chats_from_one_member_through_two_processes_pass_the_quota_exactly(
    redis_server: RedisServer, client: redis.Redis
) -> None:
    env = {"AIBOT_CHAT_DAILY_QUOTA": "10", "AIBOT_CHAT_COOLDOWN": "0"}
    at = time.time()
    results = await _run_together(redis_server, env, [50, 50], at=at)
    outcomes = sum((Counter(r["outcomes"]) for r in results), Counter())
    assert outcomes == {"taken": 10, "quota": 90}
    # Read on the day the processes counted on, also when the test runs across midnight.
    assert await _gate(client, env, _stopped(env, at)).usage(_GUILD, _MEMBER, "chat") == (10, 10)


async def test_100_simultaneous_chats_through_two_processes_pass_the_cooldown_once(
    redis_server: RedisServer,
) -> None:
    env = {"AIBOT_CHAT_DAILY_QUOTA": "0", "AIBOT_CHAT_COOLDOWN": "60"}
    results = await _run_together(redis_server, env, [50, 50])
    outcomes = sum((Counter(r["outcomes"]) for r in results), Counter())
    assert outcomes == {"taken": 1, "cooldown": 99}
    assert all(0 < wait <= 60 for r in results for wait in r["cooldown_waits"])


async def test_a_guild_override_set_in_one_process_holds_in_the_others(
    redis_server: RedisServer, client: redis.Redis
) -> None:
    env = {"AIBOT_CHAT_DAILY_QUOTA": "50", "AIBOT_CHAT_COOLDOWN": "0"}
    limits = await _gate(client, env).set_limits(_GUILD, "chat", daily_quota=3)
    assert limits == Limits(cooldown=0.0, daily_quota=3, daily_budget=0)

    first, second = await _run_together(redis_server, env, [10, 10])
    assert first["limits"] == second["limits"] == [0.0, 3, 0]
    outcomes = Counter(first["outcomes"]) + Counter(second["outcomes"])
    assert outcomes == {"taken": 3, "quota": 17}

    assert await _gate(client, env).clear_limits(_GUILD, "chat") == Limits(0.0, 50, 0)
    (third,) = await _run_together(redis_server, env, [1])
    assert third["limits"] == [0.0, 50, 0]
    assert third["outcomes"] == {"taken": 1}


async def _run_together(
    server: RedisServer, env: dict[str, str], takes: list[int], *, at: float | None = None
) -> list[dict[str, Any]]:
    """One process per entry of `takes`, each firing that many simultaneous
    takes from the same member once every process is connected; their clocks stopped
    at `at` (default: now), so that they all count on one day."""
    at = time.time() if at is None else at
    specs = [{"redis": server.url, "env": env, "takes": count, "at": at} for count in takes]
    return await run_together("tests.test_cluster_gate", specs, lead=0.2)


def _child() -> None:
    """A gateway process: read a spec, say ready, wait for the start, take, report."""
    child_main(_takes)


async def _takes(spec: dict[str, Any]) -> dict[str, Any]:
    client = _client(spec["redis"])
    gate = _gate(client, spec["env"], _stopped(spec["env"], spec["at"]))
    await client.ping()
    await ready_then_start()
    answers = await asyncio.gather(*(_take(gate) for _ in range(spec["takes"])))
    limits = await gate.limits(_GUILD, "chat")
    await client.aclose()
    return {
        "outcomes": Counter(scope for scope, _ in answers),
        "cooldown_waits": [wait for scope, wait in answers if scope == "cooldown"],
        "limits": [limits.cooldown, limits.daily_quota, limits.daily_budget],
    }


async def _take(gate: SharedGate) -> tuple[str, float]:
    try:
        await gate.take(_chat())
    except LimitReached as refusal:
        return refusal.scope, refusal.retry_after
    return "taken", 0.0


# -- one process ------------------------------------------------------------


async def test_a_refund_gives_the_use_back_once_and_keeps_the_cooldown(
    client: redis.Redis,
) -> None:
    gate = _gate(client, {"AIBOT_CHAT_DAILY_QUOTA": "1", "AIBOT_CHAT_COOLDOWN": "60"})
    job = _chat()
    await gate.take(job)
    assert await gate.usage(_GUILD, _MEMBER, "chat") == (1, 1)

    assert await gate.refund(job)
    assert await gate.usage(_GUILD, _MEMBER, "chat") == (0, 1)
    assert not await gate.refund(job)  # given back once only
    assert not await gate.refund(_chat())  # never taken
    with pytest.raises(LimitReached) as refused:
        await gate.take(_chat())
    assert refused.value.scope == "cooldown"


async def test_a_use_can_be_given_back_until_the_day_ends(client: redis.Redis) -> None:
    env = {"AIBOT_TIMEZONE": "Asia/Seoul"}
    gate = _gate(client, env, _stopped(env, 1_767_193_200.0 + 10 * 3600))  # 10:00 in Seoul
    job = _chat()
    await gate.take(job)
    # Kept for a refund as long as the embedded gate keeps it: 14 hours, not one.
    kept = await client.ttl(f"{_PREFIX}:gate:taken:{job.id}")
    assert 14 * 3600 - 60 < kept <= 14 * 3600


async def test_a_cooldown_reset_by_an_admin_ends_at_once(client: redis.Redis) -> None:
    gate = _gate(client, {"AIBOT_CHAT_COOLDOWN": "0"})
    await gate.set_limits(_GUILD, "chat", cooldown=86_400)  # a day, by mistake
    await gate.take(_chat())
    refusal = await _take(gate)
    assert refusal[0] == "cooldown" and refusal[1] > 86_000
    await gate.set_limits(_GUILD, "chat", cooldown=60)
    refusal = await _take(gate)
    assert refusal[0] == "cooldown" and 55 < refusal[1] <= 60  # lowered: the wait too
    await gate.clear_limits(_GUILD, "chat")  # the settings' 0 s
    await gate.take(_chat())


async def test_a_cooldown_raised_by_an_admin_applies_to_members_already_waiting(
    client: redis.Redis,
) -> None:
    """As in one process: the wait is counted by the cooldown in force when the
    member asks next, also when it is longer than the one they took under (or
    they took under none)."""
    gate = _gate(client, {"AIBOT_CHAT_COOLDOWN": "0"})
    await gate.take(_chat())  # no cooldown then
    await gate.set_limits(_GUILD, "chat", cooldown=600)
    refusal = await _take(gate)
    assert refusal[0] == "cooldown" and 590 < refusal[1] <= 600
    await gate.set_limits(_GUILD, "chat", cooldown=3_600)
    refusal = await _take(gate)
    assert refusal[0] == "cooldown" and 3_590 < refusal[1] <= 3_600


async def test_a_take_whose_answer_came_too_late_is_refused_and_costs_nothing(
    redis_server: RedisServer, client: redis.Redis
) -> None:
    shared = _gate(client, {"AIBOT_CHAT_DAILY_QUOTA": "3", "AIBOT_CHAT_COOLDOWN": "30"})
    gate = ClusterGate(shared)
    await gate.take(_chat(user=2))  # the script is loaded, the connections open
    # Redis stalls with the take on its way (a failover, a pause), past the call's
    # time: the member is refused; once Redis goes on, the take is counted after all.
    redis_server.pause()
    asyncio.get_running_loop().call_later(CALL_TIMEOUT + 0.3, redis_server.resume)
    with pytest.raises(TemporarilyUnavailable):
        await gate.take(_chat())

    async def given_back() -> bool:
        return await shared.usage(_GUILD, _MEMBER, "chat") == (0, 3)

    await eventually(given_back, timeout=30, what="the late take given back")
    await gate.take(_chat())  # and no cooldown left of it


async def test_a_refunded_use_can_be_taken_again(client: redis.Redis) -> None:
    gate = _gate(client, {"AIBOT_CHAT_DAILY_QUOTA": "1", "AIBOT_CHAT_COOLDOWN": "0"})
    failed = _chat()
    await gate.take(failed)
    await gate.refund(failed)
    await gate.take(_chat())
    with pytest.raises(LimitReached) as refused:
        await gate.take(_chat())
    assert refused.value.scope == "quota"


async def test_the_guild_budget_counts_every_member(client: redis.Redis) -> None:
    gate = _gate(client, {"AIBOT_CHAT_COOLDOWN": "0"})
    await gate.set_limits(_GUILD, "chat", daily_budget=2)
    await gate.take(_chat(user=1))
    await gate.take(_chat(user=2))
    with pytest.raises(LimitReached) as refused:
        await gate.take(_chat(user=3))
    assert refused.value.scope == "budget"
    await gate.take(_chat(user=3, guild=_GUILD + 1))  # another guild has its own


async def test_the_pools_budget_from_settings_holds_whatever_a_guild_sets(
    client: redis.Redis,
) -> None:
    gate = _gate(client, {"AIBOT_CHAT_COOLDOWN": "0", "AIBOT_CHAT_DAILY_BUDGET": "2"})
    with pytest.raises(AboveBotBudget):
        await gate.set_limits(_GUILD, "chat", daily_budget=100)
    await gate.set_limits(_GUILD, "chat", daily_budget=0)  # none of its own
    await gate.take(_chat(user=1))
    await gate.take(_chat(user=2, guild=None))  # a direct message counts too
    with pytest.raises(LimitReached) as refused:
        await gate.take(_chat(user=3))
    assert refused.value.scope == "budget"


async def test_a_budget_ninety_percent_spent_across_processes_is_alerted_once_a_day(
    client: redis.Redis,
) -> None:
    """As in one process (`tests/test_alerts.py`), with another process's takes
    counted too: the watched gate reads the counts each of its takes brings back."""
    env = {"AIBOT_CHAT_DAILY_BUDGET": "10", "AIBOT_CHAT_COOLDOWN": "0"}
    clock = _Clock(time.time())
    calendar = Calendar(Settings.from_env(env).timezone, clock)
    here, elsewhere = _gate(client, env, calendar), _gate(client, env, calendar)
    await here.set_limits(8, "chat", daily_budget=5)
    alerts = Recorded()
    gate = WatchedGate(here, here, alerts, day=calendar.day, pool_of=pool_of)
    for n in range(4):  # server 8: 4 of its 5 (80%), 2 of them through another process
        await (gate if n % 2 else elsewhere).take(_chat(user=n, guild=8))
    for n in range(4, 8):  # another server's, through the other process
        await elsewhere.take(_chat(user=n, guild=7))
    assert alerts.alerts == []
    assert here.spent("chat", 8) == (4, 5)  # as its latest take saw it

    await gate.take(_chat(user=8, guild=7))  # the pool: 9 of its 10
    [pool] = alerts.alerts
    assert (pool.kind, pool.pool, pool.guild_id) == ("budget", "chat", None)
    assert pool.detail == {"used": "9", "budget": "10"}
    await gate.take(_chat(user=9, guild=8))  # server 8: 5 of 5; the pool: 10 of 10
    assert [a.guild_id for a in alerts.alerts] == [None, 8]
    clock.now += 86_400  # a new day: counts and alerts start again
    await gate.take(_chat(user=10, guild=7))
    assert len(alerts.alerts) == 2 and here.spent("chat") == (1, 10)


async def test_an_overflowed_chat_spends_the_chat_quota(client: redis.Redis) -> None:
    gate = _gate(client, {"AIBOT_CHAT_COOLDOWN": "0"})
    await gate.take(_chat(pool="admin"))
    assert await gate.usage(_GUILD, _MEMBER, "chat") == (1, 2500)
    assert await gate.usage(_GUILD, _MEMBER, "admin") == (0, 2500)


async def test_a_new_local_day_starts_fresh_counts(client: redis.Redis) -> None:
    seoul = ZoneInfo("Asia/Seoul")
    clock = _Clock(1_767_193_200.0 - 600)  # 2025-12-31 23:50 in Seoul
    env = {
        "AIBOT_TIMEZONE": "Asia/Seoul",
        "AIBOT_CHAT_DAILY_QUOTA": "1",
        "AIBOT_CHAT_COOLDOWN": "0",
    }
    gate = _gate(client, env, Calendar(seoul, clock))
    yesterday = _chat()
    await gate.take(yesterday)
    with pytest.raises(LimitReached) as refused:
        await gate.take(_chat())
    assert refused.value.scope == "quota"
    assert refused.value.retry_after == pytest.approx(600)  # until midnight in Seoul

    clock.now += 601
    await gate.take(_chat())
    assert not await gate.refund(yesterday)  # yesterday's use is not today's to give
    assert await gate.usage(_GUILD, _MEMBER, "chat") == (1, 1)


async def test_limits_are_checked_like_the_embedded_gates(client: redis.Redis) -> None:
    gate = _gate(client, {})
    with pytest.raises(ValueError):
        await gate.set_limits(_GUILD, "nope", daily_quota=1)
    with pytest.raises(ValueError):
        await gate.set_limits(_GUILD, "chat", daily_quota=-1)
    assert await gate.set_limits(_GUILD, "image", cooldown=2.5) == Limits(2.5, 200, 0)
    assert await gate.set_limits(_GUILD, "image", daily_quota=0) == Limits(2.5, 0, 0)
