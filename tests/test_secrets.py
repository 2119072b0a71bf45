"""Secrets shown only as they may be: redacted, fingerprinted, scrubbed out of
whatever a provider says."""

from aibot.secrets import fingerprint, redact, scrub

KEY = "sk-proj-Zq8vT3mN4pL6wR2xK9bY7cJ5hF1dG0aS"


def test_a_key_is_redacted_to_its_kind_and_last_four() -> None:
    assert redact(KEY) == "sk-...G0aS"
    assert redact("abcdefgh") == "...gh"
    assert redact("abc") == "..."


def test_a_fingerprint_finds_the_same_key_and_hides_it() -> None:
    assert fingerprint(KEY) == fingerprint(KEY) != fingerprint(KEY + "x")
    assert len(fingerprint(KEY)) == 16 and KEY[3:-4] not in fingerprint(KEY)


def test_provider_text_loses_the_key_it_quotes() -> None:
    minimax = "mm-Zq8vT3mN4pL6wR2xK9bY7cJ5hF1dG0aS"
    text = scrub(f"invalid api key {minimax}, check it", minimax)
    assert text == "invalid api key mm-...G0aS, check it"
    text = scrub(f"Incorrect API key provided: {KEY}. Check it.", KEY)
    assert KEY not in text and KEY[8:-4] not in text


def test_provider_text_loses_anything_shaped_like_a_key() -> None:
    text = scrub("tried sk-other-1234567890abcdef and key-abcdef123 with Bearer eyJhbGciOi.x")
    assert text == "tried sk-... and key-... with Bearer ..."


def test_provider_text_is_one_short_line() -> None:
    assert scrub("a\n  b\tc") == "a b c"
    long = scrub("word " * 100, limit=20)
    assert len(long) == 20 and long.endswith("...")
