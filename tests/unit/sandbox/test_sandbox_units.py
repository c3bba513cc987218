"""The small pure parts: the behaviour table, the segment estimate, credentials, the wiring."""

import base64
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from litestar import Litestar, get
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.middleware import (
    AbstractAuthenticationMiddleware,
    AuthenticationResult,
    DefineMiddleware,
)
from litestar.testing import AsyncTestClient
from nacl.signing import VerifyKey
from twilio.request_validator import RequestValidator

from gateway.sandbox import (
    Outcome,
    SandboxCredentials,
    SandboxState,
    create_sandbox_router,
    outcome_for,
)
from gateway.sandbox.segments import telnyx_estimate, twilio_estimate
from gateway.sandbox.signing import form_encode, twilio_form
from tests.support.signing import twilio_form as reference_twilio_form


@pytest.mark.parametrize(
    ("recipient", "outcome"),
    [
        ("+15551239001", Outcome.INVALID_NUMBER),
        ("+15551239002", Outcome.UNAVAILABLE),
        ("+15551239003", Outcome.RATE_LIMITED),
        ("+15551239004", Outcome.HANG),
        ("+15551239005", Outcome.UNDELIVERED),
        ("+15551239006", Outcome.OPTED_OUT),
        ("+15551239007", Outcome.NO_DELIVERY_REPORT),
        ("+15551239008", Outcome.DELIVERED),
        ("+15551230000", Outcome.DELIVERED),
        ("whatsapp:+4477009-09005", Outcome.UNDELIVERED),  # punctuation and prefixes ignored
        ("", Outcome.DELIVERED),
    ],
)
def test_outcome_by_last_four_digits(recipient: str, outcome: Outcome) -> None:
    assert outcome_for(recipient) is outcome


@pytest.mark.parametrize(
    ("text", "encoding", "segments"),
    [
        ("", "GSM-7", 1),
        ("a" * 306, "GSM-7", 2),
        ("a" * 307, "GSM-7", 3),
        ("Ç" * 160, "GSM-7", 1),
        ("`", "UCS-2", 1),  # the backtick is not GSM-7
        ("😀" * 35, "UCS-2", 1),  # surrogate pairs: 2 UTF-16 units each
        ("😀" * 36, "UCS-2", 2),
    ],
)
def test_twilio_estimate(text: str, encoding: str, segments: int) -> None:
    estimate = twilio_estimate(text)
    assert (estimate.encoding, estimate.segments) == (encoding, segments)


def test_telnyx_uses_its_reduced_gsm_set() -> None:
    # Valid GSM-7 for Twilio, outside Telnyx's published set (PROTOCOLS.md F.3).
    for char in "ÇΔ€§":
        assert twilio_estimate(char).encoding == "GSM-7"
        assert telnyx_estimate(char).encoding == "UCS-2"
    assert telnyx_estimate("[" * 80).segments == 1
    assert telnyx_estimate("[" * 81).segments == 2


def test_generated_credentials_have_provider_formats() -> None:
    first, second = SandboxCredentials.generate(), SandboxCredentials.generate()
    assert re.fullmatch(r"AC[0-9a-f]{32}", first.twilio_account_sid)
    assert re.fullmatch(r"[0-9a-f]{32}", first.twilio_auth_token)
    assert first.telnyx_api_key.startswith("KEY")
    assert first != second


def test_fixed_credentials_are_stable_and_well_formed() -> None:
    fixed = SandboxCredentials.fixed()
    assert fixed == SandboxCredentials.fixed()
    assert re.fullmatch(r"AC[0-9a-f]{32}", fixed.twilio_account_sid)


def test_telnyx_key_pair_public_half_is_raw_base64() -> None:
    fixed, fresh = SandboxCredentials.fixed(), SandboxCredentials.generate()
    assert fixed.telnyx_public_key == SandboxCredentials.fixed().telnyx_public_key
    assert fresh.telnyx_public_key != SandboxCredentials.generate().telnyx_public_key
    for credentials in (fixed, fresh):
        raw = base64.b64decode(credentials.telnyx_public_key, validate=True)
        assert len(raw) == 32  # what the Telnyx SDKs require (PROTOCOLS.md B.1)
        signed = credentials.telnyx_signing_key.sign(b"123|{}")
        VerifyKey(raw).verify(signed.message, signed.signature)
    assert "signing_key" not in repr(fixed)


async def test_router_serves_the_very_state_it_was_given() -> None:
    # Litestar deep-copies routers on registration; the state must not be copied with them.
    own = SandboxState(credentials=SandboxCredentials.fixed(), clock=lambda: 1_000_000.0)
    app = Litestar(route_handlers=[create_sandbox_router(own)])

    async with AsyncTestClient(app=app) as client:
        response = await client.post("/sandbox/twilio/outage", json={"seconds": 5})

    assert response.status_code == 200
    assert own.twilio.outage is not None
    assert own.twilio.outage.ends_at == 1_000_005.0


def test_default_state() -> None:
    state = SandboxState()
    assert state.hang_seconds == 30.0
    assert state.settle_after_seconds == 0.0
    assert state.twilio.name == "twilio"
    assert state.telnyx.name == "telnyx"
    assert state.twilio.created == state.telnyx.created == []


async def test_gateway_authentication_does_not_guard_the_sandbox() -> None:
    class RejectEveryone(AbstractAuthenticationMiddleware):
        async def authenticate_request(
            self, connection: ASGIConnection[Any, Any, Any, Any]
        ) -> AuthenticationResult:
            raise NotAuthorizedException("no gateway API key")

    @get("/v1/ping")
    async def ping() -> str:
        return "pong"

    own = SandboxState()
    app = Litestar(
        route_handlers=[ping, create_sandbox_router(own)],
        middleware=[DefineMiddleware(RejectEveryone)],
    )

    async with AsyncTestClient(app=app) as client:
        assert (await client.get("/v1/ping")).status_code == 401
        assert (await client.get("/sandbox/twilio/outage")).status_code == 200
        telnyx = await client.post(
            "/sandbox/telnyx/v2/messages",
            json={"to": "+15551230000", "from": "+15550001111", "text": "x"},
            headers={"Authorization": f"Bearer {own.credentials.telnyx_api_key}"},
        )
        assert telnyx.status_code == 200


def test_openapi_lists_sandbox_routes_without_gateway_security(app) -> None:
    paths = app.openapi_schema.to_schema()["paths"]
    operations = [
        op for path, item in paths.items() if path.startswith("/sandbox") for op in item.values()
    ]
    assert len(operations) == 14  # 2 x (create, fetch, 3 outage verbs, inbound, messages)
    for operation in operations:
        assert operation["tags"] == ["sandbox"]
        assert operation["security"] == [{}]


@pytest.mark.parametrize(
    "params",
    [
        {"MessageSid": "SM" + "0f" * 16, "MessageStatus": "sent", "From": "+15017122661"},
        # Empty values are signed too; spaces, reserved and non-ASCII characters encoded.
        {"Body": "Fish & chips = 2 for £5, ok?", "FromCity": "", "To": "whatsapp:+1555"},
        {"Body": "~a_b.c-d ∑ 日本 😀", "ApiVersion": "2010-04-01", "NumMedia": "0"},
    ],
)
def test_twilio_form_is_what_the_reference_code_makes(params: dict[str, str]) -> None:
    # The reference: twilio's RequestValidator over a plain dict, urllib's urlencode.
    url = "https://gateway.test/webhooks/sms?ref=01J0000000&x=%20y"
    token = SandboxCredentials.fixed().twilio_auth_token
    body, headers = twilio_form(url, params, token)
    expected_body, expected = reference_twilio_form(url, params, token)
    assert body == expected_body
    assert headers["X-Twilio-Signature"] == expected["X-Twilio-Signature"]
    assert RequestValidator(token).validate(
        url, dict(parse_qsl(body.decode(), keep_blank_values=True)), headers["X-Twilio-Signature"]
    )


def test_form_encode_is_urlencode_byte_for_byte() -> None:
    # Every ASCII character, alone and in company, a few non-ASCII ones, empty values.
    texts = [chr(code) for code in range(128)] + [
        "",
        "a b",
        "+1555",
        "ä",
        "日本",
        "😀",
        "a~b_c.d-e",
    ]
    for text in texts:
        params = {"Name": text, text: "value", "Empty": ""}
        assert form_encode(params) == urlencode(params).encode(), repr(text)
