"""The keywords people text, and what each one means. Pure: no database, no I/O.

A message is a keyword only when the *whole* body is one, ignoring case and surrounding
whitespace (runs of inner whitespace count as one space): "stop" and " Stop\n" are, "stop
texting me" is not. That is the rule Twilio applies (its OptOutType article: "Only when
the full message body matches the keyword", case-insensitive) and Telnyx's default block
rules list whole words too (PROTOCOLS.md D.5), so the gateway and the providers agree on
what opted someone out. "STOP ALL" is Telnyx's spelling of STOPALL.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Final

import msgspec

if TYPE_CHECKING:
    from gateway.settings import ConsentSettings


class KeywordAction(StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"
    #: A configured ``[consent.replies]`` rule: answer with its text, nothing else.
    REPLY = "reply"


OPT_OUT_KEYWORDS: Final = frozenset(
    {"STOP", "STOPALL", "STOP ALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"}
)
OPT_IN_KEYWORDS: Final = frozenset({"START", "UNSTOP", "YES"})
HELP_KEYWORDS: Final = frozenset({"HELP", "INFO"})
BUILT_IN: Final = OPT_OUT_KEYWORDS | OPT_IN_KEYWORDS | HELP_KEYWORDS

#: Twilio's ``OptOutType`` on an inbound webhook (Advanced Opt-Out): STOP, START or HELP.
#: Its presence means Twilio matched the keyword (in its own, possibly localised, list)
#: and answered the person itself.
TWILIO_OPT_OUT_TYPES: Final = {
    "STOP": KeywordAction.OPT_OUT,
    "START": KeywordAction.OPT_IN,
    "HELP": KeywordAction.HELP,
}

MAX_KEYWORD_LENGTH: Final = 32
MAX_REPLY_LENGTH: Final = 1600


class Keyword(msgspec.Struct, frozen=True):
    """What an inbound body means: the normalised keyword and its action; ``reply`` is the
    configured answer (``""``: none)."""

    keyword: str
    action: KeywordAction
    reply: str = ""


def normalise(body: str) -> str:
    """Upper case, surrounding whitespace dropped, inner runs of whitespace as one space."""
    return " ".join(body.split()).upper()


def classify(body: str, consent: ConsentSettings) -> Keyword | None:
    """The keyword a whole message body is, or ``None`` for an ordinary message."""
    word = normalise(body)
    if not word or len(word) > MAX_KEYWORD_LENGTH:
        return None
    if word in OPT_OUT_KEYWORDS:
        return Keyword(word, KeywordAction.OPT_OUT, consent.opt_out_reply)
    if word in OPT_IN_KEYWORDS:
        return Keyword(word, KeywordAction.OPT_IN, consent.opt_in_reply)
    if word in HELP_KEYWORDS:
        return Keyword(word, KeywordAction.HELP, consent.help_text)
    for rule, text in consent.replies.items():
        if normalise(rule) == word:
            return Keyword(word, KeywordAction.REPLY, text)
    return None


def from_twilio_opt_out_type(value: str | None, body: str) -> Keyword | None:
    """Twilio's own verdict (``OptOutType``) when present: it may match keywords the gateway
    does not know (a localised ``ARRET``). No reply: Twilio has already answered."""
    if not value:
        return None
    action = TWILIO_OPT_OUT_TYPES.get(value.strip().upper())
    if action is None:
        return None
    return Keyword(normalise(body)[:MAX_KEYWORD_LENGTH] or value.upper(), action, "")


def check_reply_rules(consent: ConsentSettings) -> None:
    """Start-up check of ``[consent]`` texts and ``[consent.replies]``; raises ValueError."""
    for name in ("help_text", "opt_out_reply", "opt_in_reply"):
        if len(getattr(consent, name)) > MAX_REPLY_LENGTH:
            raise ValueError(f"{name}: at most {MAX_REPLY_LENGTH} characters")
    seen: set[str] = set()
    for rule, text in consent.replies.items():
        word = normalise(rule)
        if not word or len(word) > MAX_KEYWORD_LENGTH:
            raise ValueError(f"replies.{rule}: a keyword is 1-{MAX_KEYWORD_LENGTH} characters")
        if word in BUILT_IN:
            raise ValueError(
                f"replies.{rule}: {word} is a built-in keyword (opt-out, opt-in or help); "
                "set help_text, opt_out_reply or opt_in_reply instead"
            )
        if word in seen:
            raise ValueError(f"replies.{rule}: {word} is given twice (keywords ignore case)")
        seen.add(word)
        if not text.strip() or len(text) > MAX_REPLY_LENGTH:
            raise ValueError(f"replies.{rule}: the reply is 1-{MAX_REPLY_LENGTH} characters")
