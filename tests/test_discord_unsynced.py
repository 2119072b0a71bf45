"""A command Discord still lists but this bot no longer serves (its pool turned off
after the last `--sync`): the member is told privately that it is not served here
now and that an admin can update the list, not that something went wrong."""

from __future__ import annotations

import pytest
from discord import app_commands
from simcord.results import InteractionResult

from tests.fixtures.discord import World
from tests.test_discord_commands import assert_private
from tests.test_discord_fair_use import restart

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


async def without_the_video_pool(world: World, aibot_env: dict[str, str]) -> None:
    """Restart the bot with the video pool's key gone (so that pool is off), without
    syncing again: Discord still lists /video, the bot's tree no longer has it."""
    env = {k: v for k, v in aibot_env.items() if k != "MINIMAX_API_KEY_3"}
    bot = await restart(world, env)
    assert "video" in world.member.available_commands(world.channel("비디오생성-1"))
    assert bot.tree.get_command("video") is None


def not_found(result: InteractionResult, world: World) -> str:
    """The private answer; discord.py raised CommandNotFound to the tree's handler
    (SimCord records every error a handler is given: the test takes it as seen)."""
    assert [type(e) for e in world.env.errors] == [app_commands.CommandNotFound]
    return assert_private(result, world)


async def test_a_command_listed_but_no_longer_served_says_so_privately(
    world: World, aibot_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    await without_the_video_pool(world, aibot_env)
    result = await world.member.slash(world.channel("비디오생성-1"), "video", prompt="waves")
    words = not_found(result, world)
    assert words == (
        "`/video` is not served by this bot right now. An admin can update the command "
        "list with `python3 run.py --sync`."
    )
    assert "went wrong" not in words
    assert "/video is listed on Discord but not served here" in caplog.text
    assert "Traceback" not in caplog.text


async def test_a_korean_member_reads_it_in_korean(world: World, aibot_env: dict[str, str]) -> None:
    await without_the_video_pool(world, aibot_env)
    world.clients.set(world.member, locale="ko")
    result = await world.member.slash(world.channel("비디오생성-1"), "video", prompt="파도")
    words = not_found(result, world)
    assert words.startswith("`/비디오` 명령은 지금 이 봇에서 처리하지 않아요.")
    assert "`python3 run.py --sync`" in words


async def test_the_commands_still_served_answer_as_before(
    world: World, aibot_env: dict[str, str]
) -> None:
    await without_the_video_pool(world, aibot_env)
    result = await world.member.slash(world.channel("채팅방-1"), "chat", prompt="hello")
    assert result.response is not None and not result.response.ephemeral
    assert "hello" in result.response.content
