"""What a simulator does with a message, chosen by the last four digits of the recipient.

The table is the sandbox's whole "carrier network"; see the package docstring for the
provider-side answers. Anything not in the table is accepted and delivered.
"""

import re
from enum import StrEnum
from typing import Final


class Outcome(StrEnum):
    DELIVERED = "delivered"
    INVALID_NUMBER = "invalid_number"  # 9001
    UNAVAILABLE = "unavailable"  # 9002
    RATE_LIMITED = "rate_limited"  # 9003
    HANG = "hang"  # 9004
    UNDELIVERED = "undelivered"  # 9005
    OPTED_OUT = "opted_out"  # 9006
    NO_DELIVERY_REPORT = "no_delivery_report"  # 9007


OUTCOME_BY_LAST_FOUR: Final[dict[str, Outcome]] = {
    "9001": Outcome.INVALID_NUMBER,
    "9002": Outcome.UNAVAILABLE,
    "9003": Outcome.RATE_LIMITED,
    "9004": Outcome.HANG,
    "9005": Outcome.UNDELIVERED,
    "9006": Outcome.OPTED_OUT,
    "9007": Outcome.NO_DELIVERY_REPORT,
}

# Outcomes for which the create call succeeds and a message is stored.
ACCEPTED: Final = frozenset({Outcome.DELIVERED, Outcome.UNDELIVERED, Outcome.NO_DELIVERY_REPORT})

# The Retry-After both simulators send with a 9003 rate limit.
RATE_LIMIT_RETRY_AFTER_SECONDS: Final = 1

# Loose +E.164: the providers check more (country plans), the sandbox only the shape.
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_NON_DIGITS = re.compile(r"[^0-9]")


def outcome_for(recipient: str) -> Outcome:
    """The scripted outcome for a recipient address (channel prefixes and punctuation ignored)."""
    digits = _NON_DIGITS.sub("", recipient)
    return OUTCOME_BY_LAST_FOUR.get(digits[-4:], Outcome.DELIVERED)


def is_e164(number: str) -> bool:
    return _E164.fullmatch(number) is not None


def is_settled_by(created_at: float, now: float, settle_after_seconds: float) -> bool:
    """Whether a message created at ``created_at`` reports its final status at ``now``."""
    return now - created_at >= settle_after_seconds
