"""Phone numbers in, E.164 out (phonenumbers, Google's libphonenumber metadata)."""

from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult


class InvalidNumber(ValueError):
    """The text is not a number we can send to; the message says why, for the caller."""


_REASONS = {
    ValidationResult.TOO_SHORT: "has too few digits",
    ValidationResult.TOO_LONG: "has too many digits",
    ValidationResult.INVALID_COUNTRY_CODE: "has an unknown country code",
    ValidationResult.INVALID_LENGTH: "has a length no number of that country has",
}


def normalize_number(raw: str, region: str | None) -> str:
    """E.164 for ``raw``; a national number needs ``region`` (ISO 3166 alpha-2)."""
    return parse_recipient(raw, region)[0]


def parse_recipient(raw: str, region: str | None) -> tuple[str, str | None]:
    """E.164 for ``raw`` and the number's ISO country, from one parse (the accept path's
    costliest step is phonenumbers' parse: it is done once per number)."""
    text = raw.strip()
    if not text:
        raise InvalidNumber("is required")
    if text.startswith("00"):
        text = "+" + text[2:]  # ITU's recommended international prefix, used across Europe
    international = text.startswith("+")
    if not international and region is None:
        raise InvalidNumber(
            "is not in E.164 form (+ and country code); a national number needs `country`"
            ' (e.g. "US") or a configured default region'
        )
    try:
        number = phonenumbers.parse(text, None if international else region)
    except NumberParseException as exc:
        raise InvalidNumber(f"is not a phone number ({_parse_reason(exc)})") from exc
    possible = phonenumbers.is_possible_number_with_reason(number)
    if possible not in (ValidationResult.IS_POSSIBLE, ValidationResult.IS_POSSIBLE_LOCAL_ONLY):
        raise InvalidNumber(
            f"{_REASONS.get(possible, 'is not a possible number')} for +{number.country_code}"
        )
    # is_valid_number is exactly this pair; the region is looked up once (for +1 it is a
    # walk over every NANP country's patterns) and is also what we return.
    region = phonenumbers.region_code_for_number(number)
    if region is None or not phonenumbers.is_valid_number_for_region(number, region):
        raise InvalidNumber(f"is not a valid phone number in {region or f'+{number.country_code}'}")
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    return e164, region


def _parse_reason(exc: NumberParseException) -> str:
    return {
        NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
        NumberParseException.NOT_A_NUMBER: "no digits to read",
        NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
        NumberParseException.TOO_SHORT_NSN: "too short",
        NumberParseException.TOO_LONG: "too long",
    }.get(exc.error_type, "unreadable")


def region_of(e164: str) -> str | None:
    """ISO country of an E.164 number (for routing and reports)."""
    return phonenumbers.region_code_for_number(phonenumbers.parse(e164, None))
