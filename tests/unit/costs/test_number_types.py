"""Which type of number a send goes out from (gateway/costs/number_types.py): what the
number shows, what the account's configuration says, and the order between them."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from gateway.costs.number_types import number_type_of, sender_number_type
from gateway.costs.pricing import NumberType
from gateway.settings import ConfigError, Settings, TelnyxAccount, TwilioAccount, load_settings

TWILIO = TwilioAccount(name="twilio", account_sid="AC" + "0" * 32, auth_token="0" * 32)


@pytest.mark.parametrize(
    ("sender", "expected"),
    [
        ("+18005550100", NumberType.TOLL_FREE),
        ("+18885550100", NumberType.TOLL_FREE),
        ("+18335550199", NumberType.TOLL_FREE),
        ("+14155550100", NumberType.LOCAL),  # a US long code: 10DLC
        ("+16135550123", NumberType.LOCAL),  # Canada
        ("+15550009999", NumberType.LOCAL),  # a NANP number libphonenumber cannot validate
        ("+447911123456", NumberType.MOBILE),
        ("+442071234567", NumberType.LOCAL),  # a UK geographic number
        ("+4915112345678", NumberType.MOBILE),
        ("12345", NumberType.SHORT_CODE),
        ("898211", NumberType.SHORT_CODE),
        ("ACME", NumberType.ALPHANUMERIC),
        ("Acme Corp 1", NumberType.ALPHANUMERIC),
        ("+447700900123", None),  # a fiction range: the number does not tell
        ("12", None),
    ],
)
def test_what_a_number_shows(sender: str, expected: NumberType | None) -> None:
    assert number_type_of(sender) is expected


def test_the_accounts_map_wins_then_the_number_then_the_accounts_type() -> None:
    account = msgspec.structs.replace(
        TWILIO,
        number_type=NumberType.MOBILE,
        sender_number_types={"+14155550100": NumberType.TOLL_FREE},
    )
    assert sender_number_type("+14155550100", account) is NumberType.TOLL_FREE  # the map
    assert sender_number_type("+18005550100", account) is NumberType.TOLL_FREE  # shown
    assert sender_number_type("12345", account) is NumberType.SHORT_CODE
    assert sender_number_type("+447700900123", account) is NumberType.MOBILE  # not shown
    assert sender_number_type("+447700900123", None) is None


def test_without_a_chosen_sender_the_account_decides() -> None:
    # A Messaging Service picks the sender: only the account's word is known.
    service = msgspec.structs.replace(TWILIO, messaging_service_sid="MG" + "0" * 32)
    assert sender_number_type(None, service) is None
    short_codes = msgspec.structs.replace(service, number_type=NumberType.SHORT_CODE)
    assert sender_number_type(None, short_codes) is NumberType.SHORT_CODE
    # The account's own number.
    telnyx = TelnyxAccount(name="telnyx", api_key="KEY" + "0" * 20, from_number="+18885550100")
    assert sender_number_type(None, telnyx) is NumberType.TOLL_FREE
    # A pool (picked before from_number): its type when every number has the same one.
    pool = msgspec.structs.replace(
        telnyx, senders=("+14155550101", "+12125550101"), number_type=NumberType.MOBILE
    )
    assert sender_number_type(None, pool) is NumberType.LOCAL
    mixed = msgspec.structs.replace(pool, senders=("+14155550101", "+18005550100"))
    assert sender_number_type(None, mixed) is NumberType.MOBILE  # the account's word
    assert sender_number_type(None, None) is None


ACCOUNT = """
[[accounts]]
name = "twilio-sc"
kind = "twilio"
account_sid = "AC00000000000000000000000000000000"
auth_token_env = "TOKEN"
messaging_service_sid = "MG00000000000000000000000000000000"
number_type = "short_code"
sender_number_types = { "+14155550100" = "toll_free" }
"""


def _load(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(
        path, environ={"GATEWAY_PRICING_DIR": str(tmp_path / "none"), "TOKEN": "0" * 32}
    )


def test_the_configuration_names_number_types(tmp_path: Path) -> None:
    [account] = _load(tmp_path, ACCOUNT).accounts
    assert account.number_type is NumberType.SHORT_CODE
    assert account.sender_number_types == {"+14155550100": NumberType.TOLL_FREE}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('"short_code"', '"shortcode"'), "number_type"),
        (('"+14155550100" = ', '"+1415555" = '), "sender_number_types: '\\+1415555'"),
    ],
)
def test_bad_number_types_name_the_key(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, ACCOUNT.replace(*change))
