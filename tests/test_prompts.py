"""A prompt with nothing to see is blank, however many characters it has."""

from __future__ import annotations

import pytest

from aibot.prompts import has_visible_character

BLANK = [
    pytest.param("", id="empty"),
    pytest.param(" \t\r\n\v\f", id="ascii-whitespace"),
    pytest.param("\u00a0\u2003\u3000\u202f", id="other-spaces"),
    pytest.param("\u2028\u2029\x85", id="line-and-paragraph-separators"),
    pytest.param("\u200b", id="zero-width-space"),
    pytest.param("\u200b\u200c\u200d\u2060\ufeff", id="zero-width-characters"),
    pytest.param(" \u200b \u200d\n\ufeff ", id="zero-width-among-spaces"),
    pytest.param("\x00\x07\x1b\x7f", id="controls"),
    pytest.param("\u00ad\u200e\u200f\u202e\u2066\u2069", id="soft-hyphen-and-bidi-marks"),
    pytest.param("\U000e0041\U000e007f", id="tags"),
    pytest.param("\u3164\u115f\u1160\uffa0", id="hangul-fillers"),
    pytest.param("\u2800\u2800", id="braille-blank"),
    pytest.param("\u034f\ufe0f\U000e0100", id="joiner-and-variation-selectors"),
    pytest.param("\ud800", id="lone-surrogate"),
]
VISIBLE = [
    pytest.param("a", id="a-letter"),
    pytest.param("  hello  ", id="spaced-words"),
    pytest.param("\u200bhi\u200b", id="words-among-zero-width"),
    pytest.param("안녕하세요", id="hangul"),
    pytest.param("\u3164가", id="a-syllable-after-a-filler"),
    pytest.param("😀", id="emoji"),
    pytest.param("👍🏽", id="emoji-with-skin-tone"),
    pytest.param("\u200d❤\ufe0f", id="heart-with-selector"),
    pytest.param("?", id="punctuation"),
    pytest.param("7", id="a-digit"),
    pytest.param("\U000f0000", id="private-use"),
]


@pytest.mark.parametrize("prompt", BLANK)
def test_a_prompt_with_nothing_to_see_is_blank(prompt: str) -> None:
    assert not has_visible_character(prompt)


@pytest.mark.parametrize("prompt", VISIBLE)
def test_a_prompt_with_something_to_see_is_not(prompt: str) -> None:
    assert has_visible_character(prompt)
