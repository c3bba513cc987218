"""Hypothesis on everything that parses outside input: webhook bodies of both providers (the
receivers' verify and parse, and the whole ``POST /webhooks/sms`` route), phone numbers, and
the segment counter. Whatever comes in: no crash, only the documented errors, and through
the route only clear 4xx (problem+json), never a 5xx.

Signed inputs matter most: a garbage body with a valid signature is what gets past the
verifier to the parser, so the strategies sign what they generate with the account's own
secret (twilio's reference ``RequestValidator``, PyNaCl), as well as sending unsigned ones.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient
from nacl.signing import SigningKey
from twilio.request_validator import RequestValidator

from gateway.app import create_app
from gateway.costs.segments import Encoding, count_segments, split_segments
from gateway.db.engine import create_engine
from gateway.db.migrate import upgrade
from gateway.messages.numbers import InvalidNumber, normalize_number
from gateway.sandbox import SandboxState
from gateway.sandbox_setup import sandbox_settings
from gateway.settings import DispatcherSettings, Settings
from providers import SignatureError, WebhookParseError, WebhookRequest
from providers.telnyx.webhooks import TelnyxWebhookKey, TelnyxWebhooks
from providers.twilio import webhooks as twilio_webhooks
from providers.twilio.webhooks import TwilioWebhookAccount, TwilioWebhooks

URL = "https://gateway.example/webhooks/sms"
SID = "AC" + "0" * 32
TOKEN = "fuzz-auth-token"
SIGNING_KEY = SigningKey(b"fuzz telnyx signing key seed....")
PUBLIC_KEY = base64.b64encode(bytes(SIGNING_KEY.verify_key)).decode()
FAST = settings(max_examples=300, deadline=None, derandomize=True)
ROUTE = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# --- strategies -----------------------------------------------------------------------------

TWILIO_KEYS = [
    "MessageSid", "SmsSid", "MessageStatus", "SmsStatus", "AccountSid", "From", "To", "Body",
    "ErrorCode", "NumMedia", "NumSegments", "MediaUrl0", "MediaContentType0", "ApiVersion",
    "RawDlrDoneDate", "MessagingServiceSid", "OptOutType",
]  # fmt: skip
TWILIO_STATUSES = ["queued", "sent", "delivered", "undelivered", "failed", "received", "read"]
TELNYX_EVENTS = ["message.sent", "message.finalized", "message.received", "message.queued"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


PARTY_STATUS = st.fixed_dictionaries(
    {"phone_number": st.text(max_size=16), "status": st.text(max_size=16)}
)
ERROR = st.fixed_dictionaries({"code": st.text(max_size=6)})
TIMESTAMP = st.datetimes().map(lambda d: d.isoformat() + "Z")


class Params(dict[str, list[str]]):
    """Form parameters with repeated keys, as twilio's RequestValidator reads them."""

    def getlist(self, key: str) -> list[str]:
        return self[key]


def form_params(pairs: list[tuple[str, str]]) -> Params:
    params = Params()
    for key, value in pairs:
        params.setdefault(key, []).append(value)
    return params


@st.composite
def twilio_params(draw: st.DrawFn) -> list[tuple[str, str]]:
    """Form pairs close to Twilio's (known keys with plausible or random values), plus noise,
    sometimes with the account's AccountSid so that verification picks the account."""
    pairs: list[tuple[str, str]] = []
    for key in draw(st.lists(st.sampled_from(TWILIO_KEYS), max_size=12)):
        if key in ("MessageStatus", "SmsStatus"):
            value = draw(st.sampled_from(TWILIO_STATUSES) | st.text(max_size=12))
        elif key in ("NumMedia", "NumSegments", "ErrorCode"):
            value = draw(st.integers(-5, 10**6).map(str) | st.text(max_size=8))
        else:
            value = draw(st.text(max_size=40))
        pairs.append((key, value))
    pairs += draw(st.lists(st.tuples(st.text(max_size=10), st.text(max_size=20)), max_size=3))
    if draw(st.booleans()):
        pairs.append(("AccountSid", SID))
    return pairs


@st.composite
def telnyx_documents(draw: st.DrawFn) -> Any:
    """Documents shaped like Telnyx's envelope with random holes and types, or any JSON."""
    if draw(st.integers(0, 4)) == 0:
        return draw(json_values)
    payload: dict[str, Any] = draw(st.dictionaries(st.text(max_size=8), json_values, max_size=3))
    for key, strategy in (
        ("id", st.uuids().map(str) | json_values),
        ("direction", st.sampled_from(["outbound", "inbound"]) | json_values),
        ("to", st.lists(PARTY_STATUS, max_size=2) | json_values),
        ("from", st.fixed_dictionaries({"phone_number": st.text(max_size=16)}) | json_values),
        ("text", st.text(max_size=30) | json_values),
        ("errors", st.lists(ERROR, max_size=2) | json_values),
        ("parts", st.integers(-2, 20) | json_values),
    ):  # fmt: skip
        if draw(st.booleans()):
            payload[key] = draw(strategy)
    data: dict[str, Any] = {"record_type": "event"}
    for key, strategy in (
        ("event_type", st.sampled_from(TELNYX_EVENTS) | json_values),
        ("id", st.uuids().map(str) | json_values),
        ("occurred_at", TIMESTAMP | st.text(max_size=30) | json_values),
        ("payload", st.just(payload) | json_values),
    ):  # fmt: skip
        if draw(st.integers(0, 5)) > 0:
            data[key] = draw(strategy)
    return {"data": data, "meta": draw(json_values)} if draw(st.booleans()) else {"data": data}


def twilio_signed(pairs: list[tuple[str, str]], url: str = URL) -> tuple[bytes, dict[str, str]]:
    signature = RequestValidator(TOKEN).compute_signature(url, form_params(pairs))
    return urlencode(pairs).encode(), {
        "x-twilio-signature": signature,
        "content-type": "application/x-www-form-urlencoded",
    }


def telnyx_signed(body: bytes, key: SigningKey = SIGNING_KEY) -> dict[str, str]:
    stamp = str(int(time.time()))
    signature = key.sign(stamp.encode() + b"|" + body).signature
    return {
        "telnyx-signature-ed25519": base64.b64encode(signature).decode(),
        "telnyx-timestamp": stamp,
        "content-type": "application/json",
    }


# --- the receivers, directly ------------------------------------------------------------------

twilio = TwilioWebhooks([TwilioWebhookAccount(name="tw", account_sid=SID, auth_token=TOKEN)])
telnyx = TelnyxWebhooks([TelnyxWebhookKey(account="tx", public_key=PUBLIC_KEY)])


def _verify_then_parse(receiver: Any, request: WebhookRequest) -> None:
    """Either refused (SignatureError), or verified and then parsed into events or refused
    as unreadable (WebhookParseError): nothing else may escape."""
    try:
        receiver.verify(request)
    except SignatureError:
        return
    try:
        events = receiver.parse(request)
    except WebhookParseError:
        return
    assert isinstance(events, list)


@FAST
@given(pairs=twilio_params(), signed=st.booleans())
def test_twilio_receiver_never_crashes(pairs: list[tuple[str, str]], signed: bool) -> None:
    body, headers = twilio_signed(pairs)
    if not signed:
        headers["x-twilio-signature"] = base64.b64encode(b"not the signature").decode()
    request = WebhookRequest(method="POST", url=URL, headers=headers, body=body)
    twilio.detect(request)
    _verify_then_parse(twilio, request)


#: Form bodies built from what the parser treats specially, and anything else.
_FORM_PIECES = st.sampled_from(
    ["&", "=", "+", "%", "%2B", "%3D", "%26", "%C3%A9", "%C3", "%zz", "a"]
)


@FAST
@given(
    body=st.one_of(
        st.lists(st.one_of(_FORM_PIECES, st.text(max_size=4)), max_size=30).map(
            lambda parts: "".join(parts).encode("utf-8", "surrogatepass")
        ),
        st.binary(max_size=60),
    )
)
def test_twilio_form_pairs_are_parse_qsls(body: bytes) -> None:
    """The receiver's own form parsing gives exactly the stdlib's pairs, or the same error."""
    try:
        expected: Any = tuple(
            parse_qsl(
                body.decode("utf-8"), keep_blank_values=True, encoding="utf-8", errors="strict"
            )
        )
    except ValueError as exc:  # UnicodeDecodeError included
        expected = type(exc)
    try:
        got: Any = twilio_webhooks._form_pairs.__wrapped__(body)
    except ValueError as exc:
        got = type(exc)
    assert got == expected


@FAST
@given(document=telnyx_documents(), signed=st.booleans())
def test_telnyx_receiver_never_crashes(document: Any, signed: bool) -> None:
    body = json.dumps(document).encode()
    headers = telnyx_signed(body, SIGNING_KEY if signed else SigningKey(b"\x01" * 32))
    request = WebhookRequest(method="POST", url=URL, headers=headers, body=body)
    telnyx.detect(request)
    _verify_then_parse(telnyx, request)


@FAST
@given(
    body=st.binary(max_size=300),
    headers=st.dictionaries(
        st.sampled_from(
            ["x-twilio-signature", "telnyx-signature-ed25519", "telnyx-timestamp", "content-type"]
        ),
        st.text(max_size=60),
    ),
)
def test_receivers_take_any_bytes_and_headers(body: bytes, headers: dict[str, str]) -> None:
    request = WebhookRequest(method="POST", url=URL, headers=headers, body=body)
    for receiver in (twilio, telnyx):
        receiver.detect(request)
        _verify_then_parse(receiver, request)


@FAST
@given(body=st.binary(max_size=300))
def test_signed_garbage_is_parsed_or_refused_as_unreadable(body: bytes) -> None:
    """Authentic but meaningless bodies get past the verifier: the parser must refuse them
    cleanly (or read them), whatever the bytes."""
    _verify_then_parse(telnyx, WebhookRequest("POST", URL, telnyx_signed(body), body))
    pairs = [("AccountSid", SID), ("raw", body.decode("latin-1"))]
    form, headers = twilio_signed(pairs)
    _verify_then_parse(twilio, WebhookRequest("POST", URL, headers, form))


# --- phone numbers ------------------------------------------------------------------------------

E164 = re.compile(r"\+[1-9][0-9]{1,14}")
REGIONS = st.none() | st.sampled_from(sorted(phonenumbers.SUPPORTED_REGIONS)) | st.text(max_size=3)
number_like = st.one_of(
    st.text(max_size=25),
    st.text(alphabet="+0123456789 ()-.", max_size=25),
    st.from_regex(r"\A(\+|00)?[0-9]{1,18}\Z"),
    st.integers(0, 10**12).map(lambda n: f"+1415555{n % 10_000:04d}"),
)


@FAST
@given(raw=number_like, region=REGIONS)
def test_number_validation_gives_e164_or_a_clear_error(raw: str, region: str | None) -> None:
    try:
        e164 = normalize_number(raw, region)
    except InvalidNumber as exc:
        reason = str(exc)  # says why, for the API's problem detail
    else:
        reason = ""
    if reason:
        return
    assert E164.fullmatch(e164), e164
    assert normalize_number(e164, None) == e164  # normal form is a fixed point


@FAST
@given(n=st.integers(0, 9999))
def test_valid_us_numbers_are_accepted(n: int) -> None:
    assert normalize_number(f"+1415555{n:04d}", None) == f"+1415555{n:04d}"
    assert normalize_number(f"(415) 555-{n:04d}", "US") == f"+1415555{n:04d}"


# --- the segment counter ------------------------------------------------------------------------

gsm_text = st.text(alphabet="@£$¥èéùìòÇØøÅåΔ_ΦΓ ABCxyz0123456789.,!?\n€[]{}~^|\\", max_size=500)
any_text = st.text(max_size=500) | st.text(
    alphabet=st.characters(codec=None, exclude_categories=()), max_size=80
)


@FAST
@given(body=gsm_text | any_text)
def test_segment_counter_invariants(body: str) -> None:
    count = count_segments(body)
    parts = split_segments(body)
    assert count.segments >= 1
    assert len(parts) == count.segments
    assert (count.encoding is Encoding.GSM7) == (count.non_gsm == ())
    single, part = (160, 153) if count.encoding is Encoding.GSM7 else (70, 67)
    if count.units <= single:
        assert count.segments == 1
    else:
        assert count.segments >= -(-count.units // part)  # at least the plain division
    if not any(0xD800 <= ord(c) <= 0xDFFF for c in body):
        assert "".join(parts) == body  # nothing lost or added by the split
    for text in parts:
        again = count_segments(text)
        assert again.segments == 1
        assert (
            again.units <= (single if count.segments == 1 else part)
            or again.encoding != count.encoding
        )


# --- through the route ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def webhook_client(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TestClient[Any], SandboxState]]:
    database_url = f"sqlite+aiosqlite:///{Path(tmp_path_factory.mktemp('fuzzhooks')) / 'g.db'}"

    async def migrate() -> None:
        engine = create_engine(database_url)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(migrate())
    sandbox = SandboxState()
    base = Settings(database_url=database_url, dispatcher=DispatcherSettings(enabled=False))
    configured, _ = sandbox_settings(base, sandbox, base_url="http://testserver.local")
    with TestClient(create_app(configured), base_url="http://testserver.local") as client:
        yield client, sandbox


def _assert_clear(response: Any) -> None:
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["status"] == response.status_code
        assert problem["title"]


@ROUTE
@given(pairs=twilio_params(), signed=st.booleans())
def test_webhook_route_twilio_bodies(
    webhook_client: tuple[TestClient[Any], SandboxState], pairs: list[tuple[str, str]], signed: bool
) -> None:
    client, sandbox = webhook_client
    credentials = sandbox.credentials
    pairs = [
        (k, credentials.twilio_account_sid if k == "AccountSid" and v == SID else v)
        for k, v in pairs
    ]
    params = form_params(pairs)
    url = "http://testserver.local/webhooks/sms"
    token = credentials.twilio_auth_token if signed else "wrong"
    headers = {
        "X-Twilio-Signature": RequestValidator(token).compute_signature(url, params),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    response = client.post("/webhooks/sms", content=urlencode(pairs).encode(), headers=headers)
    _assert_clear(response)


@ROUTE
@given(document=telnyx_documents(), signed=st.booleans(), raw=st.none() | st.binary(max_size=200))
def test_webhook_route_telnyx_bodies(
    webhook_client: tuple[TestClient[Any], SandboxState],
    document: Any,
    signed: bool,
    raw: bytes | None,
) -> None:
    client, sandbox = webhook_client
    body = raw if raw is not None else json.dumps(document).encode()
    key = sandbox.credentials.telnyx_signing_key if signed else SigningKey(b"\x02" * 32)
    response = client.post("/webhooks/sms", content=body, headers=telnyx_signed(body, key))
    _assert_clear(response)


def test_the_route_fuzzing_reaches_past_the_verifier(
    webhook_client: tuple[TestClient[Any], SandboxState],
) -> None:
    """The signing above is right: a well-formed signed callback is recorded (200), the
    same one signed with another secret is refused (403). Without this, every generated
    request could be bouncing off the verifier and the parser never reached."""
    client, sandbox = webhook_client
    sid = sandbox.credentials.twilio_account_sid
    pairs = [("MessageSid", "SM" + "1" * 32), ("MessageStatus", "delivered"), ("AccountSid", sid)]
    url = "http://testserver.local/webhooks/sms"
    for token, expected in ((sandbox.credentials.twilio_auth_token, 200), ("wrong", 403)):
        headers = {
            "X-Twilio-Signature": RequestValidator(token).compute_signature(
                url, form_params(pairs)
            ),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        response = client.post("/webhooks/sms", content=urlencode(pairs).encode(), headers=headers)
        assert response.status_code == expected, response.text
    document = {
        "data": {
            "event_type": "message.finalized",
            "id": "4f9d1f4e-0000-4000-8000-000000000001",
            "occurred_at": "2026-01-01T00:00:00Z",
            "payload": {"id": "40317c3a-0000-4000-8000-000000000001", "direction": "outbound",
                        "to": [{"phone_number": "+14155550100", "status": "delivered"}]},
        }
    }  # fmt: skip
    body = json.dumps(document).encode()
    signed = telnyx_signed(body, sandbox.credentials.telnyx_signing_key)
    assert client.post("/webhooks/sms", content=body, headers=signed).status_code == 200
