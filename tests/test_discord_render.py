"""The front's pure parts: splitting long answers, the words for every error kind in
Korean and English, and the command translations."""

from __future__ import annotations

import re

import discord
import pytest
from discord import app_commands

from aibot.discord.i18n import (
    COMMAND_TEXT_KO,
    Translator,
    duration,
    error_text,
    language,
    text,
)
from aibot.discord.render import MESSAGE_LIMIT, split_message
from aibot.jobs import (
    AibotError,
    BadKey,
    BadRequest,
    Cancelled,
    LimitReached,
    Misconfigured,
    NoKeyAvailable,
    Paused,
    QueueFull,
    RateLimited,
    Rejected,
    ShuttingDown,
    Unavailable,
)


def _unfenced(parts: list[str]) -> str:
    """The text of split parts with the fences the splitter added taken out again."""
    out = []
    for i, part in enumerate(parts):
        lines = part.split("\n")
        if i > 0 and lines[0].startswith("```") and _opens_inside(parts[i - 1]):
            lines = lines[1:]
        if i < len(parts) - 1 and lines[-1] == "```" and _opens_inside(part):
            lines = lines[:-1]
        out.append("\n".join(lines))
    return "\n".join(out)


def _opens_inside(part: str) -> bool:
    """The part ends inside a fence (before the splitter closed it)."""
    fences = sum(1 for line in part.split("\n") if line.strip().startswith("```"))
    return fences % 2 == 0 and part.endswith("\n```")


def _balanced(part: str) -> bool:
    return sum(1 for line in part.split("\n") if line.strip().startswith("```")) % 2 == 0


def test_a_short_answer_is_one_message() -> None:
    assert split_message("Hello!\n") == ["Hello!"]
    assert split_message("   \n ") == []


def test_a_long_answer_is_cut_on_paragraphs_and_every_part_fits() -> None:
    paragraphs = [f"Paragraph {i}. " + "word " * 60 for i in range(40)]
    text = "\n\n".join(p.strip() for p in paragraphs)
    parts = split_message(text)
    assert len(parts) > 1
    assert all(len(part) <= MESSAGE_LIMIT for part in parts)
    # Cut between paragraphs: each part starts a paragraph and nothing is lost.
    assert all(part.startswith("Paragraph") for part in parts)
    assert " ".join(" ".join(parts).split()) == " ".join(text.split())


def test_a_code_block_cut_in_two_is_closed_and_reopened_with_its_language() -> None:
    code = "\n".join(f"print({i})  # line {i}" for i in range(300))
    text = f"Here is the code:\n```python\n{code}\n```\nThat is all."
    parts = split_message(text)
    assert len(parts) >= 3
    assert all(len(part) <= MESSAGE_LIMIT for part in parts)
    assert all(_balanced(part) for part in parts)
    assert all(part.startswith("```python\n") for part in parts[1:])
    assert parts[-1].endswith("That is all.")
    assert _unfenced(parts) == text


def test_code_inline_on_one_line_opens_no_fence() -> None:
    # A line that starts with ``` and closes on itself (minified JSON in a code span)
    # is no fence: taken for one, it would start every later part, which then holds
    # a few characters each (hundreds of messages).
    text = "Here is the data:\n```" + '{"k":"v"},' * 220 + "```\n\n" + "A sentence. " * 400
    parts = split_message(text)
    assert len(parts) <= -(-len(text) // MESSAGE_LIMIT) + 1
    assert all(len(part) <= MESSAGE_LIMIT for part in parts)
    assert not any(part.startswith("```") for part in parts[1:])
    assert "".join("".join(parts).split()) == "".join(text.split())  # nothing lost


def test_a_fence_with_a_long_info_string_reopens_short() -> None:
    # What reopens the fence is ``` and its language word, never the whole line.
    code = "\n".join(f"x = {i}" for i in range(600))
    text = "```" + "a" * 1990 + "\n" + code + "\n```"
    parts = split_message(text)
    assert len(parts) <= -(-len(text) // (MESSAGE_LIMIT - 10)) + 1
    assert all(len(part) <= MESSAGE_LIMIT for part in parts)
    assert all(part.startswith("```\n") for part in parts[1:])
    parts = split_message("```python title=x.py\n" + code + "\n```")
    assert all(part.startswith("```python\n") for part in parts[1:])


def test_text_with_no_boundary_is_cut_hard() -> None:
    text = "x" * 5000
    parts = split_message(text)
    assert [len(p) for p in parts][:2] == [MESSAGE_LIMIT - 4, MESSAGE_LIMIT - 4]
    assert "".join(parts) == text


def test_korean_sentences_are_a_boundary() -> None:
    sentence = "오늘은 날씨가 정말 좋아서 산책하기에 딱 좋은 날이에요. "
    parts = split_message(sentence * 100)
    assert len(parts) > 1
    assert all(part.endswith("요.") for part in parts)


def test_a_growing_answer_keeps_its_full_parts() -> None:
    text = "\n".join(f"Line {i}: " + "lorem ipsum " * 5 for i in range(200))
    earlier = split_message(text[:3000])
    later = split_message(text)
    assert later[0] == earlier[0]


@pytest.mark.parametrize(
    ("error", "english", "korean"),
    [
        (BadRequest("the prompt is empty"), "cannot be done: the prompt is empty", "처리할 수"),
        (Rejected("no"), "safety system", "안전 시스템"),
        (RateLimited(retry_after=30), "30 s", "30초"),
        (RateLimited(), "in a minute", "1분 뒤"),
        (NoKeyAvailable(retry_after=90), "1 min 30 s", "1분 30초"),
        (NoKeyAvailable(), "No working key", "쓸 수 있는 키가 없어요"),
        (BadKey("401"), "refused every key", "모든 키를 거절"),
        (Unavailable("503"), "down or not answering", "응답하지 않아요"),
        (Misconfigured("404"), "An admin needs to check", "관리자가 설정을"),
        (QueueFull(retry_after=45), "about 45 s", "약 45초"),
        (LimitReached("cooldown", retry_after=3), "try again in 3 s", "3초 뒤"),
        (LimitReached("quota", retry_after=7200), "2 h", "2시간"),
        (LimitReached("budget", retry_after=600), "10 min", "10분"),
        (Paused(), "paused by an admin", "잠시 멈췄어요"),
        (ShuttingDown(), "restarting", "다시 시작"),
        (Cancelled(), "cancelled", "취소"),
        (AibotError("Traceback (most recent call last)"), "went wrong on our side", "문제가"),
    ],
)
def test_every_error_kind_has_words_in_both_languages(
    error: AibotError, english: str, korean: str
) -> None:
    assert english in error_text(error, "en", command="chat")
    assert korean in error_text(error, "ko", command="chat")
    assert "Traceback" not in error_text(error, "en")


def test_a_quota_names_the_command_as_the_member_sees_it() -> None:
    limit = LimitReached("quota", retry_after=60)
    assert "`/image`" in error_text(limit, "en", command="image")
    assert "`/이미지`" in error_text(limit, "ko", command="image")


def test_language_follows_the_client_locale() -> None:
    assert language(discord.Locale.korean) == "ko"
    assert language("ko") == "ko"
    assert language(discord.Locale.american_english) == "en"
    assert language(discord.Locale.japanese) == "en"
    assert language(None) == "en"


def test_durations_read_naturally() -> None:
    assert duration(0.2, "en") == "1 s"
    assert duration(59, "en") == "59 s"
    assert duration(61, "ko") == "1분 1초"
    assert duration(3600 * 3 + 60 * 5 + 9, "en") == "3 h 5 min"


async def test_the_translator_gives_korean_names_and_nothing_for_other_locales() -> None:
    translator = Translator()
    context = app_commands.TranslationContext(
        app_commands.TranslationContextLocation.command_name, None
    )
    name = app_commands.locale_str("image")
    assert await translator.translate(name, discord.Locale.korean, context) == "이미지"
    assert await translator.translate(name, discord.Locale.japanese, context) is None
    for korean in COMMAND_TEXT_KO.values():
        assert korean == korean.strip() and korean


def test_korean_texts_name_commands_by_their_korean_names() -> None:
    korean = set(COMMAND_TEXT_KO.values())
    fields = {"guild": "g", "by": "b", "pool": "chat", "used": 9, "budget": 10}
    named = [
        name
        for key in ("alert_paused", "alert_budget_server", "admin_paused")
        for name in re.findall(r"`/([^`]+)`", text("ko", key, **fields))
    ]
    assert named and all(set(name.split()) <= korean for name in named), named
