"""What type of number a message goes out from, for the price tables' number-type figures.

Providers price by the type of *our* number (Twilio's Pricing API ``number_type``: local,
mobile, toll free, short code), so the estimate needs the sender's type. In order:

1. the account's ``sender_number_types`` map names the sender: the operator knows best
   (a number ported in, a 10DLC number that libphonenumber files as something else);
2. the number shows it: letters are an alphanumeric sender ID; 3 to 8 digits without ``+``
   are a short code (never E.164); in the NANP (+1) the area code tells toll free
   (800, 833, 844, 855, 866, 877, 888) from a 10-digit long code (``local``, 10DLC in the
   US); elsewhere libphonenumber's ``TOLL_FREE``, ``MOBILE`` and ``FIXED_LINE``;
3. the account's ``number_type``: for a sender the number cannot classify (a non-NANP
   number libphonenumber files as "fixed line or mobile", VoIP ranges) and for sends where
   the provider picks the sender (a Twilio Messaging Service, a Telnyx number pool);
4. otherwise ``None``: the estimate uses the country figure.

When the sender is not known yet (at accept, and when ``cheapest`` routing ranks accounts,
before the dispatcher picks one from a pool), the pool's type is used if every number of it
has the same type, else the account's ``number_type``.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING

import phonenumbers
from phonenumbers import PhoneNumberType

from gateway.costs.pricing import NumberType

if TYPE_CHECKING:
    from gateway.settings import Account

__all__ = ["number_type_of", "sender_number_type"]

_SHORT_CODE = re.compile(r"^[0-9]{3,8}$")
_HAS_LETTER = re.compile(r"[A-Za-z]")
#: NANP toll-free area codes in service (FCC / NANPA); libphonenumber agrees, and the list
#: also covers numbers its metadata does not validate (test ranges such as 555).
_NANP_TOLL_FREE = frozenset({"800", "833", "844", "855", "866", "877", "888"})
_BY_LIBPHONENUMBER = {
    PhoneNumberType.TOLL_FREE: NumberType.TOLL_FREE,
    PhoneNumberType.MOBILE: NumberType.MOBILE,
    PhoneNumberType.FIXED_LINE: NumberType.LOCAL,
}


@lru_cache(maxsize=4096)  # on every send: a company has few sender numbers
def number_type_of(sender: str) -> NumberType | None:
    """The type a sender shows by itself; ``None`` when the number does not tell."""
    if _HAS_LETTER.search(sender):
        return NumberType.ALPHANUMERIC
    if _SHORT_CODE.match(sender):
        return NumberType.SHORT_CODE
    if not sender.startswith("+"):
        return None
    try:
        parsed = phonenumbers.parse(sender, None)
    except phonenumbers.NumberParseException:
        return None
    national = str(parsed.national_number)
    if parsed.country_code == 1 and len(national) == 10:
        return NumberType.TOLL_FREE if national[:3] in _NANP_TOLL_FREE else NumberType.LOCAL
    return _BY_LIBPHONENUMBER.get(phonenumbers.number_type(parsed))


def sender_number_type(sender: str | None, account: Account | None) -> NumberType | None:
    """The type of the number a send goes out from (see the module docstring).

    ``sender`` is the number chosen for the send (the app's ``from`` or the pool's pick);
    ``None`` when it is not chosen yet or the provider picks it.
    """
    if sender is not None:
        if account is not None and sender in account.sender_number_types:
            return account.sender_number_types[sender]
        shown = number_type_of(sender)
        if shown is not None:
            return shown
        return account.number_type if account is not None else None
    if account is None:
        return None
    if account.senders:  # the dispatcher picks one of these (before any from_number)
        types = {sender_number_type(number, account) for number in account.senders}
        return types.pop() if len(types) == 1 else account.number_type
    if account.from_number is not None:
        return sender_number_type(account.from_number, account)
    return account.number_type
