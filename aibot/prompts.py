"""Whether a member's prompt says anything at all.

`str.strip` keeps a prompt of zero-width spaces, joiners, bidirectional marks
or Hangul fillers, which shows as nothing and would only reach a provider to
be charged for. A prompt is blank when it has no character a reader can see:
every character is a control, format, surrogate or separator character (the
Unicode categories Cc, Cf, Cs, Zs, Zl, Zp), or one of the few of other
categories that render as nothing (below).
"""

from __future__ import annotations

import unicodedata

__all__ = ["has_visible_character"]

# Controls (Cc), format characters such as U+200B-U+200D, U+2060, U+FEFF, the
# soft hyphen, bidirectional marks and tags (Cf), lone surrogates (Cs), spaces
# (Zs), line and paragraph separators (Zl, Zp).
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zs", "Zl", "Zp"})
# Blank characters of other categories: the combining grapheme joiner, Khmer
# inherent vowels, Mongolian and other variation selectors (Mn); the Hangul
# fillers (Lo), which Korean input makes and which show as blank; and the blank
# Braille pattern (So), a well-known way to post an empty-looking message.
_INVISIBLE_OTHERS = frozenset(
    "\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180f\u2800\u3164\uffa0"
    + "".join(map(chr, range(0xFE00, 0xFE10)))
    + "".join(map(chr, range(0xE0100, 0xE01F0)))
)


def has_visible_character(prompt: str) -> bool:
    """True when `prompt` has at least one character a reader can see; False for
    an empty prompt and for one of only whitespace, zero-width and control
    characters. (A character this Python's Unicode tables do not know, such as
    an emoji newer than them, counts as visible.)"""
    category = unicodedata.category
    for char in prompt:
        if char not in _INVISIBLE_OTHERS and category(char) not in _INVISIBLE_CATEGORIES:
            return True
    return False
