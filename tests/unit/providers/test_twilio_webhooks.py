"""Twilio's callbacks beyond the common contract: accounts sharing the route, the string to
sign (PROTOCOLS.md A.1-A.5), JSON bodies, and reading inbound/status parameters (C.5, C.6)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from urllib.parse import urlencode

import msgspec
import pytest
from twilio.request_validator import RequestValidator
from twilio.rest.api.v2010.account.message import MessageInstance

from providers import (
    DeliveryReport,
    DeliveryStatus,
    InboundMessage,
    SignatureError,
    SignatureFailure,
    WebhookParseError,
    WebhookRequest,
)
from providers.telnyx import TelnyxWebhooks
from providers.twilio import TwilioWebhookAccount, TwilioWebhooks
from providers.twilio import signature as twilio_signature
from providers.twilio.webhooks import CALLBACK_STATUSES, callback_event, dlr_done_date
from tests.support.signing import telnyx_event, twilio_form, twilio_status

URL = "https://sms.example.com/webhooks/sms"
MAIN = TwilioWebhookAccount(name="twilio-main", account_sid="AC" + "1" * 32, auth_token="a1" * 16)
EU = TwilioWebhookAccount(name="twilio-eu", account_sid="AC" + "2" * 32, auth_token="b2" * 16)
SID = "SM" + "c" * 32


def _request(body: bytes, headers: dict[str, str], url: str = URL) -> WebhookRequest:
    lowered = {name.lower(): value for name, value in headers.items()}
    return WebhookRequest(method="POST", url=url, headers=lowered, body=body)


def _signed(account: TwilioWebhookAccount, status: str = "delivered") -> WebhookRequest:
    body, headers = twilio_form(
        URL, twilio_status(account.account_sid, SID, status), account.auth_token
    )
    return _request(body, headers)


def _failure(receiver: TwilioWebhooks, request: WebhookRequest) -> SignatureFailure:
    with pytest.raises(SignatureError) as caught:
        receiver.verify(request)
    return caught.value.failure


# --- accounts -----------------------------------------------------------------------------


def test_account_sid_picks_the_token_among_accounts_sharing_the_route() -> None:
    receiver = TwilioWebhooks([MAIN, EU])
    assert receiver.verify(_signed(MAIN)) == "twilio-main"
    assert receiver.verify(_signed(EU)) == "twilio-eu"


def test_a_body_naming_one_account_but_signed_by_another_is_invalid() -> None:
    # Signed with EU's token but claiming MAIN's AccountSid: only MAIN's token is tried.
    params = twilio_status(MAIN.account_sid, SID, "delivered")
    body, headers = twilio_form(URL, params, EU.auth_token)
    assert _failure(TwilioWebhooks([MAIN, EU]), _request(body, headers)) is SignatureFailure.INVALID


def test_unknown_account_sid() -> None:
    stranger = TwilioWebhookAccount(name="x", account_sid="AC" + "9" * 32, auth_token="c3" * 16)
    assert _failure(TwilioWebhooks([MAIN]), _signed(stranger)) is SignatureFailure.UNKNOWN_ACCOUNT


def test_without_account_sid_every_account_is_tried() -> None:
    params = {"MessageSid": SID, "MessageStatus": "sent"}
    body, headers = twilio_form(URL, params, EU.auth_token)
    assert TwilioWebhooks([MAIN, EU]).verify(_request(body, headers)) == "twilio-eu"


def test_an_account_without_a_token_never_verifies_anything() -> None:
    # An HMAC keyed with "" is forgeable by anyone who knows the algorithm.
    tokenless = TwilioWebhookAccount(name="empty", account_sid=MAIN.account_sid, auth_token="")
    forged = _signed(tokenless)
    assert _failure(TwilioWebhooks([tokenless]), forged) is SignatureFailure.UNKNOWN_ACCOUNT
    assert _failure(TwilioWebhooks([]), _signed(MAIN)) is SignatureFailure.UNKNOWN_ACCOUNT


def test_conflicting_account_sids_are_malformed() -> None:
    body = urlencode([("AccountSid", MAIN.account_sid), ("AccountSid", EU.account_sid)]).encode()
    headers = {"X-Twilio-Signature": "A" * 28}
    assert _failure(TwilioWebhooks([MAIN, EU]), _request(body, headers)) is (
        SignatureFailure.MALFORMED
    )


def test_the_token_stays_out_of_repr() -> None:
    assert MAIN.auth_token not in repr(MAIN)


# --- the string to sign -------------------------------------------------------------------


class _MultiDict(dict[str, list[str]]):
    def getall(self, name: str) -> list[str]:
        return self[name]


def test_repeated_keys_sign_each_distinct_value_sorted() -> None:
    # PROTOCOLS.md A.6: twilio-python's MultiDict test, token 12345.
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    pairs = [
        ("Sid", "CA123"),
        ("SidAccount", "AC123"),
        ("Digits", "5678"),
        ("Digits", "1234"),
        ("Digits", "1234"),
    ]
    expected = "IK+Dwps556ElfBT0I3Rgjkr1wJU="
    assert twilio_signature.compute_signature("12345", url, pairs) == expected
    receiver = TwilioWebhooks(
        [TwilioWebhookAccount(name="v", account_sid="AC1", auth_token="12345")]
    )
    request = _request(urlencode(pairs).encode(), {"X-Twilio-Signature": expected}, url)
    assert receiver.verify(request) == "v"
    # Keeping only the first value of each key (twilio-go's way) would not match.
    first_only = urlencode([("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678")])
    assert _failure(receiver, msgspec.structs.replace(request, body=first_only.encode())) is (
        SignatureFailure.INVALID
    )


def test_repeated_values_are_signed_in_sorted_order_whatever_order_they_came_in() -> None:
    values = ["e", "b", "d", "a", "c", "b"]
    signed = RequestValidator(MAIN.auth_token).compute_signature(
        URL, _MultiDict({"MessageSid": [SID], "Tag": values})
    )
    body = urlencode([("MessageSid", SID), *(("Tag", v) for v in values)]).encode()
    assert TwilioWebhooks([MAIN]).verify(_request(body, {"X-Twilio-Signature": signed})) == (
        "twilio-main"
    )
    assert twilio_signature.string_to_sign("u", [("T", v) for v in values]) == "uTaTbTcTdTe"


def test_empty_values_are_signed() -> None:
    params = _MultiDict({"MessageSid": [SID], "ToCity": [""], "Body": ["hi"]})
    signed = RequestValidator(MAIN.auth_token).compute_signature(URL, params)
    body = b"MessageSid=" + SID.encode() + b"&ToCity=&Body=hi"
    receiver = TwilioWebhooks([MAIN])
    assert receiver.verify(_request(body, {"X-Twilio-Signature": signed})) == "twilio-main"
    without = b"MessageSid=" + SID.encode() + b"&Body=hi"
    assert _failure(receiver, _request(without, {"X-Twilio-Signature": signed})) is (
        SignatureFailure.INVALID
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://h.example/p?q=1", ("https://h.example/p?q=1", "https://h.example:443/p?q=1")),
        ("http://h.example/p", ("http://h.example/p", "http://h.example:80/p")),
        ("https://h.example:8443/p", ("https://h.example:8443/p", "https://h.example/p")),
        # twilio-python splits at the first ":" and would lose the host here (A.4).
        (
            "https://u:pw@h.example:8443/p",
            ("https://u:pw@h.example:8443/p", "https://u:pw@h.example/p"),
        ),
        ("https://[::1]:8443/p", ("https://[::1]:8443/p", "https://[::1]/p")),
        ("https://h.example?x=a:1", ("https://h.example?x=a:1", "https://h.example:443?x=a:1")),
    ],
)
def test_url_variants(url: str, expected: tuple[str, ...]) -> None:
    assert twilio_signature.url_variants(url) == expected


def test_the_signature_is_over_the_public_url_not_another_host() -> None:
    params = twilio_status(MAIN.account_sid, SID, "delivered")
    body, headers = twilio_form("https://internal.local/webhooks/sms", params, MAIN.auth_token)
    assert _failure(TwilioWebhooks([MAIN]), _request(body, headers)) is SignatureFailure.INVALID


def test_hmac_sha256_when_the_settings_header_says_so() -> None:
    params = [("MessageSid", SID), ("MessageStatus", "sent"), ("AccountSid", MAIN.account_sid)]
    validator = RequestValidator(MAIN.auth_token)
    signed = validator.compute_signature(URL, dict(params), algorithm="HMAC_SHA256")
    settings = "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256"
    body = urlencode(params).encode()
    headers = {"X-Twilio-Signature": signed, "X-Twilio-Webhooks-Signature-Settings": settings}
    receiver = TwilioWebhooks([MAIN])
    assert receiver.verify(_request(body, headers)) == "twilio-main"
    # The same digest presented as SHA-1 is the wrong size for it.
    assert _failure(receiver, _request(body, {"X-Twilio-Signature": signed})) is (
        SignatureFailure.MALFORMED
    )
    unknown = {**headers, "X-Twilio-Webhooks-Signature-Settings": "algorithm=HMAC_MD5"}
    assert _failure(receiver, _request(body, unknown)) is SignatureFailure.MALFORMED


def test_a_form_body_that_is_not_utf8_is_malformed() -> None:
    request = _request(b"MessageSid=%FF%FE", {"X-Twilio-Signature": "A" * 28})
    assert _failure(TwilioWebhooks([MAIN]), request) is SignatureFailure.MALFORMED


# --- JSON bodies (A.3) --------------------------------------------------------------------


def _json_request(body: bytes, token: str, *, hash_of: bytes | None = None) -> WebhookRequest:
    digest = hashlib.sha256(body if hash_of is None else hash_of).hexdigest()
    url = f"{URL}?bodySHA256={digest}"
    signed = RequestValidator(token).compute_signature(url, {})
    return _request(body, {"X-Twilio-Signature": signed, "Content-Type": "application/json"}, url)


_JSON_STATUS = msgspec.json.encode(
    {
        "MessageSid": SID,
        "MessageStatus": "delivered",
        "AccountSid": MAIN.account_sid,
        "NumSegments": 2,
    }
)


def test_json_body_verifies_against_every_token_and_parses_like_a_form() -> None:
    receiver = TwilioWebhooks([EU, MAIN])
    request = _json_request(_JSON_STATUS, MAIN.auth_token)
    assert receiver.detect(request)
    assert receiver.verify(request) == "twilio-main"
    [event] = receiver.parse(request)
    assert isinstance(event, DeliveryReport)
    assert (event.event_id, event.status, event.segments) == (
        f"{SID}:delivered",
        DeliveryStatus.DELIVERED,
        2,
    )


def test_json_body_that_does_not_match_its_hash_is_invalid() -> None:
    # The URL (with the hash) is correctly signed, but the body is another one.
    request = _json_request(_JSON_STATUS, MAIN.auth_token, hash_of=b"{}")
    assert _failure(TwilioWebhooks([MAIN]), request) is SignatureFailure.INVALID


def test_json_body_with_nested_values_is_not_understood() -> None:
    request = _json_request(b'{"MessageSid": "SM1", "MessageStatus": {"x": 1}}', MAIN.auth_token)
    with pytest.raises(WebhookParseError):
        TwilioWebhooks([MAIN]).parse(request)
    with pytest.raises(WebhookParseError):
        TwilioWebhooks([MAIN]).parse(_json_request(b"[1]", MAIN.auth_token))


def test_body_hash_given_twice_is_malformed() -> None:
    url = f"{URL}?bodySHA256=aa&bodySHA256=bb"
    request = _request(b"{}", {"X-Twilio-Signature": "A" * 28}, url)
    assert _failure(TwilioWebhooks([MAIN]), request) is SignatureFailure.MALFORMED


# --- detect -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "headers", "expected"),
    [
        (b"MessageSid=SM1&MessageStatus=sent", {}, True),
        (b"SmsSid=SM1&SmsStatus=sent", {"content-type": "application/x-www-form-urlencoded"}, True),
        (b"MessageSid=SM1", {"content-type": "application/json"}, False),
        (b"Body=hi&From=%2B1555", {}, False),
        (b"MessageSid=%FF", {}, False),
        (b"", {"x-twilio-signature": "anything"}, True),
    ],
)
def test_detect(body: bytes, headers: dict[str, str], expected: bool) -> None:
    assert TwilioWebhooks([MAIN]).detect(_request(body, headers)) is expected


def test_an_unsigned_json_body_at_a_body_hash_url_is_twilio_not_telnyx() -> None:
    request = _json_request(_JSON_STATUS, MAIN.auth_token)
    unsigned = msgspec.structs.replace(request, headers={"content-type": "application/json"})
    assert TwilioWebhooks([MAIN]).detect(unsigned)
    assert not TelnyxWebhooks([]).detect(unsigned)
    assert _failure(TwilioWebhooks([MAIN]), unsigned) is SignatureFailure.MISSING


def test_an_unsigned_telnyx_event_mentioning_message_sid_is_not_twilio() -> None:
    event = telnyx_event(
        "message.received",
        "m1",
        "webhook_delivered",
        event_id="e1",
        occurred_at="2026-01-01T00:00:00Z",
    )
    event["data"]["payload"]["text"] = "x&MessageSid=SM1&y=1"
    body = msgspec.json.encode(event)
    assert not TwilioWebhooks([MAIN]).detect(_request(body, {}))


# --- parse --------------------------------------------------------------------------------


def test_every_status_the_sdk_knows_is_mapped_except_the_inbound_ones() -> None:
    sdk = {v for k, v in vars(MessageInstance.Status).items() if k.isupper()}
    assert sdk, "could not read the SDK's status enum"
    # "received" is an inbound message; "receiving" is one still arriving, which Twilio does
    # not post to a status callback.
    assert sdk - {"received", "receiving"} == set(CALLBACK_STATUSES)


@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("accepted", DeliveryStatus.QUEUED),  # Twilio holds it: not due with us again
        ("scheduled", DeliveryStatus.QUEUED),
        ("queued", DeliveryStatus.QUEUED),
        ("sending", DeliveryStatus.SENDING),
        ("sent", DeliveryStatus.SENT),
        ("delivered", DeliveryStatus.DELIVERED),
        ("read", DeliveryStatus.DELIVERED),
        ("undelivered", DeliveryStatus.UNDELIVERED),
        ("failed", DeliveryStatus.FAILED),
        ("canceled", DeliveryStatus.CANCELED),
        ("partially_delivered", DeliveryStatus.SENT),
    ],
)
def test_status_mapping(word: str, status: DeliveryStatus) -> None:
    event = callback_event([("MessageSid", SID), ("MessageStatus", word)])
    assert isinstance(event, DeliveryReport)
    assert (event.status, event.provider_status, event.event_id) == (status, word, f"{SID}:{word}")


def test_unknown_status_is_not_understood() -> None:
    with pytest.raises(WebhookParseError, match="teleported"):
        callback_event([("MessageSid", SID), ("MessageStatus", "teleported")])


def test_sms_status_stands_in_for_a_missing_message_status() -> None:
    event = callback_event(
        [("MessageSid", SID), ("SmsStatus", "undelivered"), ("ErrorCode", "30005")]
    )
    assert isinstance(event, DeliveryReport)
    assert (event.status, event.error_code, event.event_id) == (
        DeliveryStatus.UNDELIVERED,
        "30005",
        f"{SID}:undelivered:30005",
    )


def test_message_status_received_and_bare_body_are_inbound() -> None:
    base = [("MessageSid", SID), ("From", "+15558675310"), ("To", "+15005550006")]
    received = callback_event([*base, ("MessageStatus", "received"), ("Body", "hi")])
    bare = callback_event([*base, ("Body", "")])
    assert isinstance(received, InboundMessage)
    assert isinstance(bare, InboundMessage)
    assert (received.body, bare.body) == ("hi", "")


@pytest.mark.parametrize(
    "pairs",
    [
        [("MessageStatus", "sent")],  # no MessageSid
        [("SmsSid", SID), ("MessageStatus", "sent")],  # SmsSid alone is not enough
        [("MessageSid", SID)],  # neither a status nor a body
        [("MessageSid", SID), ("SmsStatus", "received"), ("To", "+15005550006")],  # no From
        [("MessageSid", SID), ("MessageStatus", "sent"), ("NumSegments", "two")],
        [
            ("MessageSid", SID),
            ("Body", ""),
            ("From", "+1"),
            ("To", "+2"),
            ("NumMedia", "2"),
            ("MediaUrl0", "https://m/0"),
        ],  # MediaUrl1 announced but missing
    ],
)
def test_callbacks_that_cannot_be_read(pairs: list[tuple[str, str]]) -> None:
    with pytest.raises(WebhookParseError):
        callback_event(pairs)


def test_repeated_parameters_are_kept_as_lists_in_raw() -> None:
    pairs = [("MessageSid", SID), ("MessageStatus", "sent"), ("Tag", "b"), ("Tag", "a")]
    event = callback_event(pairs)
    assert event.raw == {"MessageSid": SID, "MessageStatus": "sent", "Tag": ["b", "a"]}


def test_raw_keeps_the_parameters_in_their_order() -> None:
    pairs = [("MessageStatus", "sent"), ("To", "+1"), ("MessageSid", SID), ("Body", "")]
    raw = callback_event(pairs).raw
    assert list(raw.items()) == pairs
    # A repeated name keeps the place of its first occurrence.
    raw = callback_event([*pairs[:2], ("To", "+2"), *pairs[2:]]).raw
    assert list(raw.items()) == [pairs[0], ("To", ["+1", "+2"]), *pairs[2:]]


def test_zero_segments_reads_as_unknown() -> None:
    event = callback_event([("MessageSid", SID), ("MessageStatus", "sent"), ("NumSegments", "0")])
    assert event.segments is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2611221017", datetime(2026, 11, 22, 10, 17, tzinfo=UTC)),
        ("0001010000", datetime(2000, 1, 1, 0, 0, tzinfo=UTC)),
        ("2613221017", None),  # month 13
        ("26112210", None),  # too short
        ("2611221017Z", None),
        ("", None),
        (None, None),
    ],
)
def test_raw_dlr_done_date(value: str | None, expected: datetime | None) -> None:
    assert dlr_done_date(value) == expected


# --- ack ----------------------------------------------------------------------------------


def test_ack_with_a_reply_is_escaped_twiml() -> None:
    ack = TwilioWebhooks([MAIN]).ack('Fish & "chips" <today>')
    assert ack.status == 200
    assert ack.content_type == "text/xml"
    assert ack.body == (
        b'<?xml version="1.0" encoding="UTF-8"?><Response>'
        b'<Message>Fish &amp; "chips" &lt;today&gt;</Message></Response>'
    )


def test_ack_with_an_empty_reply_sends_no_message() -> None:
    assert TwilioWebhooks([MAIN]).ack("").body == (
        b'<?xml version="1.0" encoding="UTF-8"?><Response />'
    )


@pytest.mark.parametrize(
    "url", [f"{URL}?bodySHA256=aa&bodySHA256=bb", "https://[::1/webhooks/sms?bodySHA256=aa"]
)
def test_detect_does_not_claim_unsigned_requests_at_unreadable_urls(url: str) -> None:
    assert not TwilioWebhooks([MAIN]).detect(_request(b"{}", {}, url))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://gw.example.com/webhooks/sms", None),
        ("https://gw.example.com/webhooks/sms?ref=msg_1", None),
        ("https://gw.example.com/webhooks/sms?bodySHA256=ab12&ref=msg_1", "ab12"),
        # Percent-encoded, the name is still the parameter: it must not be skipped.
        ("https://gw.example.com/webhooks/sms?bodySHA%32%35%36=ab12", "ab12"),
        ("https://gw.example.com/webhooks/sms?ref=%6Dsg_1", None),
        # Outside the query (a fragment) it is nothing.
        ("https://gw.example.com/webhooks/sms#bodySHA256=ab12", None),
    ],
)
def test_body_hash_param_reads_the_query_only(url: str, expected: str | None) -> None:
    assert twilio_signature.body_hash_param(url) == expected


def test_body_hash_param_refuses_an_unreadable_url_even_without_a_query() -> None:
    # As parse_qsl(urlsplit(...)) always did: detect() reads this as "not Twilio's".
    with pytest.raises(ValueError, match="IPv6"):
        twilio_signature.body_hash_param("https://[::1/webhooks/sms")
    with pytest.raises(ValueError, match="2 times"):
        twilio_signature.body_hash_param("https://gw.example.com/sms?bodySHA256=a&bodySHA256=b")


def test_names_that_prefix_each_other_are_signed_in_twilios_order() -> None:
    # "To" < "ToCity" < "Tob" whatever their values: names first, then each name's values.
    pairs = [("Tob", "1"), ("ToCity", ""), ("To", "z"), ("To", "a"), ("ToCity", "x"), ("To", "a")]
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        grouped.setdefault(name, []).append(value)
    body = urlencode([("MessageSid", SID), *pairs]).encode()
    grouped["MessageSid"] = [SID]
    signed = RequestValidator(MAIN.auth_token).compute_signature(URL, _MultiDict(grouped))
    assert TwilioWebhooks([MAIN]).verify(_request(body, {"X-Twilio-Signature": signed})) == (
        "twilio-main"
    )
    assert twilio_signature.string_to_sign("u", pairs) == "uToaTozToCityToCityxTob1"
