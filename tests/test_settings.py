"""Settings: typed values from a mapping, every problem reported at once, no key shown."""

import os
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from dotenv import dotenv_values

from aibot.catalogue import POOLS
from aibot.check import known_variables
from aibot.settings import Settings, SettingsError

EXAMPLE = Path(__file__).parent.parent / ".env.multi.example"


def test_defaults_follow_the_reference_design() -> None:
    settings = Settings.from_env({})
    assert settings.enabled_pools == () and settings.off_pools == POOLS  # no key: all off
    assert settings.pools["chat"].cooldown == 1 and settings.pools["chat"].daily_quota == 2500
    assert settings.pools["image"].daily_quota == 200
    assert settings.pools["video"].cooldown == 5 and settings.pools["video"].daily_quota == 40
    assert "*채팅방-*" in settings.pools["chat"].channels
    assert "*이미지생성-*" in settings.pools["image"].channels
    assert settings.timezone == ZoneInfo("UTC")
    assert settings.http == ("127.0.0.1", 8001)


def test_keys_by_pool_suffix_and_comma_lists() -> None:
    settings = Settings.from_env(
        {
            "OPENAI_API_KEY_1": "sk-chat-one, sk-chat-two",
            "STABILITY_API_KEY_2": "sk-image",
            "MINIMAX_API_KEY_3": "mm-video",
            "OPENAI_API_KEY_4": "sk-admin",
        }
    )
    assert settings.pools["chat"].keys_for("openai") == ("sk-chat-one", "sk-chat-two")
    assert settings.pools["image"].usable_providers == ("stability",)
    assert settings.pools["video"].usable_providers == ("minimax",)
    assert settings.pools["admin"].usable_providers == ("openai",)


def test_every_bad_variable_is_listed_at_once_without_showing_keys() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(
            {
                "AIBOT_CHAT_WORKERS": "many",
                "AIBOT_VIDEO_QUEUE": "0",
                "AIBOT_TIMEZONE": "Mars/Olympus",
                "AIBOT_HTTP": "localhost",
                "AIBOT_POOLS": "chat,music",
                "OPENAI_API_KEY_2": "sk-secret-with space",
                "MINIMAX_API_KEY_1": "mm-dup,mm-dup",
            }
        )
    message = str(caught.value)
    for name in (
        "AIBOT_CHAT_WORKERS",
        "AIBOT_VIDEO_QUEUE",
        "AIBOT_TIMEZONE",
        "AIBOT_HTTP",
        "AIBOT_POOLS",
        "OPENAI_API_KEY_2",
        "MINIMAX_API_KEY_1",
    ):
        assert name in message
    assert len(caught.value.problems) == 7
    assert "sk-secret" not in message and "mm-dup" not in message


def test_time_zones_work_where_the_system_has_no_zone_database(tmp_path: Path) -> None:
    # As on Windows or in a minimal container: zoneinfo finds no system database
    # (an empty search path), and falls back to the tzdata package.
    read_settings = (
        "from aibot.settings import Settings\n"
        "print(Settings.from_env({}).timezone)\n"
        "print(Settings.from_env({'AIBOT_TIMEZONE': 'Asia/Seoul'}).timezone)\n"
    )
    env = {**os.environ, "PYTHONTZPATH": str(tmp_path)}
    ran = subprocess.run(
        [sys.executable, "-c", read_settings], env=env, capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["UTC", "Asia/Seoul"]


def test_a_wrong_log_level_lists_every_level_accepted() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"LOG_LEVEL": "loud"})
    assert "one of DEBUG, INFO, WARNING, ERROR, CRITICAL" in str(caught.value)
    assert Settings.from_env({"LOG_LEVEL": "critical"}).log_level == "CRITICAL"


def test_a_key_pasted_on_the_wrong_line_is_not_echoed() -> None:
    minimax_key = "eyJhbGciOiJSUzI1NiJ9." + "Zm9v" * 8  # not shaped like sk-...
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(
            {
                "MINIMAX_API_KEY_3": f"mm-other,{minimax_key}",
                "OPENAI_BASE_URL": minimax_key,
                "MINIMAX_BASE_URL": "sk-proj-" + "a1B2" * 8,  # shaped like a key
                "AIBOT_CHAT_WORKERS": "many",
            }
        )
    message = str(caught.value)
    assert minimax_key not in message and "a1B2a1B2" not in message
    assert f"OPENAI_BASE_URL: an http:// or https:// URL (got '{minimax_key[:3]}..." in message
    assert "MINIMAX_BASE_URL:" in message
    assert "(got 'many')" in message  # anything else is shown as it was


def test_repr_never_shows_a_secret() -> None:
    settings = Settings.from_env({"DISCORD_TOKEN": "tok.en.value", "OPENAI_API_KEY_1": "sk-xyz1"})
    assert "tok.en.value" not in repr(settings)
    assert "sk-xyz1" not in repr(settings)
    assert set(settings.secrets()) == {"tok.en.value", "sk-xyz1"}


def test_example_file_documents_every_variable_and_is_valid() -> None:
    example = {k: v for k, v in dotenv_values(EXAMPLE).items() if v is not None}
    assert set(known_variables()) - set(example) == set()  # cluster mode's too
    # The example's values are the defaults: copying it changes nothing.
    assert Settings.from_env(example) == Settings.from_env({})
    text = EXAMPLE.read_text()
    for name in example:
        line = next(i for i, row in enumerate(text.splitlines()) if row.startswith(f"{name}="))
        assert text.splitlines()[line - 1].startswith("#") or name.startswith(
            ("OPENAI_API_KEY", "MINIMAX_API_KEY", "STABILITY_API_KEY")
        ), f"{name} has no comment"


def test_split_mode_flags() -> None:
    settings = Settings.from_env(
        {
            "AIBOT_POOLS": "video",
            "MINIMAX_API_KEY_3": "mm-video",
            "AIBOT_SHARD_IDS": "0,2",
            "AIBOT_SHARD_COUNT": "4",
        }
    )
    assert settings.enabled_pools == ("video",) and settings.off_pools == ()
    assert settings.shard_ids == (0, 2) and settings.shard_count == 4
    with pytest.raises(SettingsError, match="AIBOT_SHARD_IDS"):
        Settings.from_env({"AIBOT_SHARD_IDS": "5", "AIBOT_SHARD_COUNT": "4"})
    with pytest.raises(SettingsError, match="AIBOT_SHARD_IDS: an id is named twice"):
        Settings.from_env({"AIBOT_SHARD_IDS": "0,0", "AIBOT_SHARD_COUNT": "4"})


@pytest.mark.parametrize("size", ["0", "-1", "1e308", "inf", "2048"])
def test_an_attachment_size_out_of_range_is_named(size: str) -> None:
    with pytest.raises(SettingsError, match="AIBOT_ATTACHMENT_MAX_MB"):
        Settings.from_env({"AIBOT_ATTACHMENT_MAX_MB": size})
