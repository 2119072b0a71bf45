"""Routing: each command runs where it belongs, members in the wrong channel are
pointed to the right one, and a pool that cannot take a job overflows to admin."""

import pytest

from aibot.router import Handle, Overflow, PoolLoad, Redirect, Router
from aibot.settings import Settings
from tests.fixtures.engine import ENGINE_ENV

GUILD = 100
# A server laid out like the reference design's.
CHANNELS = (
    "안내-공지",
    "채팅방-1",
    "채팅방-2",
    "ai-지원",
    "이미지생성-1",
    "갤러리",
    "비디오생성-1",
    "비디오-갤러리",
    "general",
)


def router(**env: str) -> Router:
    return Router(Settings.from_env({**ENGINE_ENV, **env}))


def decide(r: Router, command: str, channel: str | None, **kw):  # type: ignore[no-untyped-def]
    kw.setdefault("guild_id", GUILD)
    kw.setdefault("guild_channels", CHANNELS)
    return r.decide(command, channel_name=channel, **kw)


@pytest.fixture
def default() -> Router:
    return router()


def test_each_command_belongs_to_its_pool(default: Router) -> None:
    assert [default.pool_for(c) for c in ("chat", "image", "video")] == ["chat", "image", "video"]
    assert default.pool_for("ping") == default.pool_for("status") == "admin"


@pytest.mark.parametrize(
    ("command", "channel"),
    [
        ("chat", "채팅방-1"),
        ("chat", "ai-지원"),
        ("chat", "안내-공지"),
        ("image", "이미지생성-1"),
        ("image", "갤러리"),
        ("video", "비디오생성-1"),
        ("video", "비디오-갤러리"),
    ],
)
def test_a_command_in_its_own_channel_is_handled_there(
    default: Router, command: str, channel: str
) -> None:
    assert decide(default, command, channel) == Handle(command)


def test_a_channel_name_may_start_with_an_emoji(default: Router) -> None:
    # Discord writes the reference design's `🔄 이미지변환` as `🔄-이미지변환`.
    channels = ("💬-채팅방-1", "🔄-이미지변환", "🎬-비디오-갤러리", "🖼️-갤러리")
    assert decide(default, "image", "🔄-이미지변환", guild_channels=channels) == Handle("image")
    assert decide(default, "video", "🎬-비디오-갤러리", guild_channels=channels) == Handle("video")
    assert decide(default, "chat", "🔄-이미지변환", guild_channels=channels) == Redirect(
        "chat", ("💬-채팅방-1",)
    )
    # The image gallery's pattern is exact: the video gallery stays the video pool's.
    assert decide(default, "image", "🎬-비디오-갤러리", guild_channels=channels) == Redirect(
        "image", ("🔄-이미지변환",)
    )


def test_image_in_a_chat_channel_is_pointed_to_the_image_channels(default: Router) -> None:
    # A member runs /image in #채팅방-1 and is pointed to #이미지생성-1 (and #갤러리).
    assert decide(default, "image", "채팅방-1") == Redirect("image", ("이미지생성-1", "갤러리"))


def test_chat_in_a_video_channel_is_pointed_to_the_chat_channels(default: Router) -> None:
    assert decide(default, "chat", "비디오생성-1") == Redirect(
        "chat", ("안내-공지", "채팅방-1", "채팅방-2", "ai-지원")
    )


def test_a_guild_without_a_channel_for_the_pool_is_served_anyway(default: Router) -> None:
    chat_only = ("채팅방-1", "general")
    assert decide(default, "video", "채팅방-1", guild_channels=chat_only) == Handle("video")


def test_channel_names_match_whatever_their_case(default: Router) -> None:
    assert decide(default, "chat", "Team-CHAT") == Handle("chat")
    assert decide(default, "image", "My-Image-Lab") == Handle("image")
    assert decide(default, "chat", "my-image-lab") == Redirect(
        "chat", ("안내-공지", "채팅방-1", "채팅방-2", "ai-지원")
    )


def test_an_unknown_channel_is_handled_by_the_commands_pool(default: Router) -> None:
    assert decide(default, "image", "general") == Handle("image")
    assert decide(default, "chat", None) == Handle("chat")


def test_strict_routing_redirects_from_unknown_channels() -> None:
    strict = router(AIBOT_STRICT_ROUTING="true")
    assert decide(strict, "image", "general") == Redirect("image", ("이미지생성-1", "갤러리"))
    assert decide(strict, "image", "이미지생성-1") == Handle("image")


def test_direct_messages_are_handled_by_the_commands_pool(default: Router) -> None:
    assert default.decide("video", guild_id=None, channel_name=None) == Handle("video")


def test_admin_commands_are_answered_in_every_channel(default: Router) -> None:
    for channel in CHANNELS:
        assert decide(default, "status", channel) == Handle("admin")


def test_a_guild_outside_the_pools_group_goes_to_admin() -> None:
    grouped = router(AIBOT_IMAGE_GUILDS="100,200")
    assert decide(grouped, "image", "이미지생성-1", guild_id=200) == Handle("image")
    assert decide(grouped, "image", "이미지생성-1", guild_id=300) == Overflow("admin", "image")
    assert decide(grouped, "chat", "채팅방-1", guild_id=300) == Handle("chat")


@pytest.mark.parametrize("load", [PoolLoad(full=True), PoolLoad(keys_down=True)])
def test_a_pool_that_cannot_take_the_job_overflows_to_admin(
    default: Router, load: PoolLoad
) -> None:
    assert decide(default, "chat", "채팅방-1", load={"chat": load}) == Overflow("admin", "chat")
    assert decide(default, "image", "갤러리", load={"image": load}) == Overflow("admin", "image")


def test_no_overflow_when_it_is_disabled() -> None:
    no_overflow = router(AIBOT_OVERFLOW="false")
    load = {"chat": PoolLoad(full=True)}
    assert decide(no_overflow, "chat", "채팅방-1", load=load) == Handle("chat")


@pytest.mark.parametrize(
    "admin", [PoolLoad(full=True), PoolLoad(keys_down=True), PoolLoad(paused=True)]
)
def test_no_overflow_when_admin_cannot_take_it_either(default: Router, admin: PoolLoad) -> None:
    load = {"chat": PoolLoad(full=True), "admin": admin}
    assert decide(default, "chat", "채팅방-1", load=load) == Handle("chat")


def test_no_overflow_when_admin_has_no_key_for_the_job() -> None:
    env = {k: v for k, v in ENGINE_ENV.items() if k != "MINIMAX_API_KEY_4"}
    openai_only = Router(Settings.from_env(env))
    full = {"video": PoolLoad(full=True), "chat": PoolLoad(full=True)}
    assert decide(openai_only, "video", "비디오생성-1", load=full) == Handle("video")
    assert decide(openai_only, "chat", "채팅방-1", load=full) == Overflow("admin", "chat")


def test_a_paused_pool_does_not_overflow(default: Router) -> None:
    load = {"image": PoolLoad(paused=True)}
    assert decide(default, "image", "갤러리", load=load) == Handle("image")


def test_a_member_in_the_wrong_channel_is_redirected_even_when_the_pool_is_full(
    default: Router,
) -> None:
    load = {"image": PoolLoad(full=True)}
    assert decide(default, "image", "채팅방-1", load=load) == Redirect(
        "image", ("이미지생성-1", "갤러리")
    )


def test_routes_list_each_pools_channels_and_commands(default: Router) -> None:
    routes = {pool: (patterns, commands) for pool, patterns, commands in default.routes()}
    assert list(routes) == ["chat", "image", "video", "admin"]
    assert routes["image"] == (("*이미지생성-*", "갤러리", "*이미지변환", "*image*"), ("image",))
    assert routes["admin"][0] == ("*",) and "status" in routes["admin"][1]


def test_a_burst_routed_before_any_job_arrived_overflows_past_the_pools_room() -> None:
    r = router()
    idle = {"chat": PoolLoad(room=2), "admin": PoolLoad(room=1)}
    on_the_way = {"chat": idle["chat"].taking(2), "admin": idle["admin"]}
    assert r.decide("chat", guild_id=None, channel_name=None, load=idle) == Handle("chat")
    decision = r.decide("chat", guild_id=None, channel_name=None, load=on_the_way)
    assert decision == Overflow("admin", origin="chat")
    both_full = {"chat": PoolLoad(room=2).taking(2), "admin": PoolLoad(room=1).taking(1)}
    assert both_full["admin"].full
    assert r.decide("chat", guild_id=None, channel_name=None, load=both_full) == Handle("chat")
    assert r.overflow("chat", "chat", on_the_way) == "admin"
    assert r.overflow("chat", "chat", both_full) is None
