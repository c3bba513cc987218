"""The keyword matrix: what every inbound body means, and the ``[consent]`` checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.consent.keywords import (
    Keyword,
    KeywordAction,
    check_reply_rules,
    classify,
    from_twilio_opt_out_type,
    normalise,
)
from gateway.settings import ConfigError, ConsentSettings, load_settings

CONSENT = ConsentSettings(
    help_text="Acme alerts. Reply STOP to stop.",
    opt_out_reply="You are unsubscribed.",
    opt_in_reply="Welcome back.",
    replies={"status": "All systems normal.", "Opening Hours": "9 to 5."},
)

OPT_OUT = ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"]
OPT_IN = ["START", "UNSTOP", "YES"]
HELP = ["HELP", "INFO"]


def _variants(word: str) -> list[str]:
    """The same keyword as people type it: any case, surrounding whitespace, newlines."""
    return [word, word.lower(), word.capitalize(), f"  {word.lower()} ", f"\n{word}\t\r\n"]


@pytest.mark.parametrize(
    ("body", "action", "reply"),
    [(v, KeywordAction.OPT_OUT, "You are unsubscribed.") for w in OPT_OUT for v in _variants(w)]
    + [(v, KeywordAction.OPT_IN, "Welcome back.") for w in OPT_IN for v in _variants(w)]
    + [
        (v, KeywordAction.HELP, "Acme alerts. Reply STOP to stop.")
        for w in HELP
        for v in _variants(w)
    ]
    + [
        ("Stop All", KeywordAction.OPT_OUT, "You are unsubscribed."),  # Telnyx's spelling
        ("stop   all", KeywordAction.OPT_OUT, "You are unsubscribed."),
        ("status", KeywordAction.REPLY, "All systems normal."),
        (" STATUS\n", KeywordAction.REPLY, "All systems normal."),
        ("opening  hours", KeywordAction.REPLY, "9 to 5."),
    ],
)
def test_keywords_are_recognised_whatever_the_case_and_whitespace(
    body: str, action: KeywordAction, reply: str
) -> None:
    keyword = classify(body, CONSENT)
    assert keyword is not None
    assert keyword.action is action
    assert keyword.reply == reply
    assert keyword.keyword == normalise(body)


@pytest.mark.parametrize(
    "body",
    [
        "",
        "   ",
        "stop texting me",
        "please stop",
        "STOP!",  # the whole body must be the keyword, as Twilio requires
        "S T O P",
        "stopp",
        "yes please",
        "helpful",
        "statuses",
        "Thanks!",
        "STOP" * 10,
    ],
)
def test_anything_else_is_an_ordinary_message(body: str) -> None:
    assert classify(body, CONSENT) is None


def test_no_configured_text_means_no_reply() -> None:
    bare = ConsentSettings()
    assert classify("STOP", bare) == Keyword("STOP", KeywordAction.OPT_OUT, "")
    assert classify("help", bare) == Keyword("HELP", KeywordAction.HELP, "")
    assert classify("status", bare) is None  # no rules configured


@pytest.mark.parametrize(
    ("value", "action"),
    [
        ("STOP", KeywordAction.OPT_OUT),
        ("start", KeywordAction.OPT_IN),
        ("HELP", KeywordAction.HELP),
    ],
)
def test_twilio_opt_out_type_is_twilios_verdict_with_no_gateway_reply(
    value: str, action: KeywordAction
) -> None:
    # A localised keyword the gateway does not know: Twilio matched it, Twilio answered.
    keyword = from_twilio_opt_out_type(value, "arret")
    assert keyword == Keyword("ARRET", action, "")


@pytest.mark.parametrize("value", [None, "", "MAYBE"])
def test_no_or_unknown_opt_out_type_gives_no_verdict(value: str | None) -> None:
    assert from_twilio_opt_out_type(value, "stop") is None


@pytest.mark.parametrize(
    ("replies", "message"),
    [
        ({"STOP": "no"}, "built-in keyword"),
        ({"help": "no"}, "built-in keyword"),
        ({"Stop All": "no"}, "built-in keyword"),
        ({"status": "a", "STATUS": "b"}, "given twice"),
        ({"  ": "x"}, "1-32 characters"),
        ({"status": "   "}, "the reply is"),
        ({"status": "x" * 1601}, "the reply is"),
    ],
)
def test_bad_reply_rules_are_refused(replies: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_reply_rules(ConsentSettings(replies=replies))


def test_consent_section_is_loaded_and_checked(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[consent]\nscope = "sender"\nhelp_text = "Help text"\n[consent.replies]\nSTATUS = "fine"\n'
    )
    consent = load_settings(config, environ={}).consent
    assert (consent.scope, consent.help_text, consent.replies) == (
        "sender",
        "Help text",
        {"STATUS": "fine"},
    )
    config.write_text('[consent]\nscope = "app"\n')
    with pytest.raises(ConfigError, match=r"\[consent\] scope"):
        load_settings(config, environ={})
    config.write_text('[consent.replies]\nQUIT = "bye"\n')
    with pytest.raises(ConfigError, match="built-in keyword"):
        load_settings(config, environ={})
    config.write_text('[consent]\nhelpp_text = "typo"\n')
    with pytest.raises(ConfigError, match="helpp_text"):
        load_settings(config, environ={})


def test_defaults_are_global_with_no_replies() -> None:
    consent = load_settings(None, environ={}).consent
    assert consent == ConsentSettings(scope="global")
    assert (consent.help_text, consent.opt_out_reply, consent.opt_in_reply) == ("", "", "")
