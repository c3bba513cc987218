"""Verification codes: generation, hashing, templates (pure functions)."""

from __future__ import annotations

import pytest

from gateway.verify import codes


def test_codes_have_the_length_asked_and_are_digits() -> None:
    for length in (codes.MIN_LENGTH, codes.DEFAULT_LENGTH, codes.MAX_LENGTH):
        code = codes.new_code(length)
        assert len(code) == length
        assert code.isdigit()
    assert len({codes.new_code(10) for _ in range(50)}) > 45  # random, not a sequence


def test_only_the_right_code_for_that_verification_matches() -> None:
    salt = codes.new_salt()
    stored = codes.code_hash(salt, "vrf_1", "123456")
    assert "123456" not in stored
    assert codes.matches(stored, salt, "vrf_1", "123456")
    assert not codes.matches(stored, salt, "vrf_1", "123457")
    assert not codes.matches(stored, salt, "vrf_2", "123456")  # bound to its verification
    assert not codes.matches(stored, codes.new_salt(), "vrf_1", "123456")


@pytest.mark.parametrize(
    ("locale", "start"),
    [("en", "Your"), ("fr-CA", "Votre"), ("pt_BR", "Seu"), ("DE", "Ihr"), ("xx", None)],
)
def test_locales_pick_a_default_template(locale: str, start: str | None) -> None:
    template = codes.template_for(locale)
    if start is None:
        assert template is None
    else:
        assert template is not None
        assert template.startswith(start)


def test_templates_need_the_code_once_and_are_not_format_strings() -> None:
    assert codes.check_template("Code {code}") is None
    assert codes.check_template("no code") == "must contain {code} exactly once"
    assert codes.check_template("{code} {code}") == "must contain {code} exactly once"
    assert codes.check_template("{code}" + "x" * 400) is not None
    rendered = codes.render("{0.__class__} {code} in {minutes} min {other}", "4242", 10)
    assert rendered == "{0.__class__} 4242 in 10 min {other}"
