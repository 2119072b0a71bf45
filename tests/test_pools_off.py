"""A pool with no key is off: an owner who wants chat only gives chat keys only.
The pool is not built, its commands are not registered, `/status` and `/instances`
say it is off, `/ping` `/status` `/instances` still answer, nothing overflows to an
admin pool that is off, and `--check` says which pools will run (tests/test_check.py)."""

from __future__ import annotations

import pytest

from aibot.catalogue import POOLS
from aibot.router import Handle, Off, Overflow, PoolLoad, Router
from aibot.settings import Settings
from tests.fixtures.discord import World

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# Every key of the test environment but the chat pool's (n = 1).
NOT_CHAT = {
    f"{provider}_API_KEY_{n}": None
    for provider in ("OPENAI", "MINIMAX", "STABILITY")
    for n in (2, 3, 4)
}


def test_a_pool_with_no_key_is_off_and_does_not_run() -> None:
    settings = Settings.from_env({"OPENAI_API_KEY_1": "sk-chat", "MINIMAX_API_KEY_4": "mm-admin"})
    assert settings.enabled_pools == ("chat", "admin")
    assert settings.off_pools == ("image", "video")


def test_only_the_pools_aibot_pools_names_can_be_off() -> None:
    settings = Settings.from_env({"AIBOT_POOLS": "chat,video", "OPENAI_API_KEY_1": "sk-chat"})
    assert settings.enabled_pools == ("chat",) and settings.off_pools == ("video",)


def test_a_command_of_a_pool_that_is_off_is_told_so_not_redirected_or_overflowed() -> None:
    settings = Settings.from_env({"OPENAI_API_KEY_1": "sk-chat", "MINIMAX_API_KEY_4": "mm-admin"})
    router = Router(settings)
    # Even from another pool's channel, and with the admin pool able to make videos.
    decision = router.decide(
        "video", guild_id=1, channel_name="채팅방-1", guild_channels=("채팅방-1", "비디오생성-1")
    )
    assert decision == Off("video")
    assert router.decide("ping", guild_id=1, channel_name="general") == Handle("admin")


def test_nothing_overflows_to_an_admin_pool_that_is_off() -> None:
    full = {"chat": PoolLoad(full=True)}
    chat_only = Router(Settings.from_env({"OPENAI_API_KEY_1": "sk-chat"}))
    assert chat_only.decide("chat", guild_id=1, channel_name="채팅방-1", load=full) == Handle(
        "chat"
    )
    with_admin = Router(
        Settings.from_env({"OPENAI_API_KEY_1": "sk-chat", "OPENAI_API_KEY_4": "sk-admin"})
    )
    decision = with_admin.decide("chat", guild_id=1, channel_name="채팅방-1", load=full)
    assert decision == Overflow("admin", origin="chat")


@pytest.mark.aibot_env(**NOT_CHAT)
async def test_a_chat_only_bot_answers_chat_ping_status_and_instances(world: World) -> None:
    loaded = {c.name for c in world.bot.tree.get_commands()}
    assert {"chat", "ping", "status", "instances"} <= loaded
    assert not {"image", "video"} & loaded  # never registered with Discord either
    assert list(world.pools) == ["chat"]

    chat = await world.member.slash(world.channel("채팅방-1"), "chat", prompt="hello")
    assert chat.response is not None and "You said: hello" in chat.response.content
    ping = await world.member.slash(world.channel("general"), "ping")
    assert ping.response is not None and "Pools here: chat." in ping.response.content

    status = await world.member.slash(world.channel("general"), "status")
    assert status.response is not None and status.response.ephemeral
    fields = {f.name: f.value for f in status.response.embeds[0].fields}
    assert list(fields) == list(POOLS)
    assert "done 1" in fields["chat"]
    assert [fields[name] for name in ("image", "video", "admin")] == ["off: no keys"] * 3

    instances = await world.member.slash(world.channel("general"), "instances")
    assert instances.response is not None
    fields = {f.name: f.value for f in instances.response.embeds[0].fields}
    assert "runs: this process" in fields["chat"]
    assert "runs: off: no keys" in fields["video"]


@pytest.mark.aibot_env(**NOT_CHAT)
async def test_a_korean_member_reads_off_in_korean(world: World) -> None:
    member = world.add_member("민수", locale="ko")
    status = await member.slash(world.channel("general"), "status")
    assert status.response is not None
    fields = {f.name: f.value for f in status.response.embeds[0].fields}
    assert fields["admin"] == "꺼짐: 키 없음"
