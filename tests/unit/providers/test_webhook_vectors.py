"""Every webhook vector of the shared vectors file, through the receivers' ``verify``.

Vector fields (PROTOCOLS.md A.6, B.4):
- ``twilio-form``: ``url``, ``params`` (ordered pairs, repeats allowed), ``auth_token``,
  ``expected`` (the header value), ``expect_valid``, optional ``algorithm`` (A.5) and
  ``signed_url`` (the URL the signature was made over, when it differs from the request's).
  ``mode`` names the twilio-python call the vector came from: ``compute_signature`` vectors
  state the signature of ``url`` + ``params``; ``validate`` vectors state whether a request
  at ``url`` carrying ``expected`` is accepted (port variants, A.4). Both are run as a request
  through ``verify``; ``compute_signature`` ones are also checked against the raw arithmetic.
- ``twilio-json``: ``url`` (with ``bodySHA256``), ``body``, ``expected_body_sha256``.
- ``telnyx-ed25519``: ``public_key_b64``, ``headers``, ``raw_body``, ``now``, ``tolerance_s``,
  ``expected`` (bool).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any
from urllib.parse import urlencode

import msgspec
import pytest

from providers import SignatureError, SignatureFailure, WebhookRequest
from providers.telnyx import TelnyxWebhookKey, TelnyxWebhooks
from providers.twilio import TwilioWebhookAccount, TwilioWebhooks
from providers.twilio import signature as twilio_signature
from tests.support.vectors import Vector, load_vectors, require, vector_params

# Entries per kind when this test was written; fewer means the file was truncated or
# replaced, which should be looked at rather than passed.
MIN_VECTORS = {"twilio-form": 9, "twilio-json": 2, "telnyx-ed25519": 4}
TWILIO_MODES = {"compute_signature", "validate"}

TWILIO = load_vectors("twilio-form", "twilio-json")
TELNYX = load_vectors("telnyx-ed25519")


def _describe(vector: Vector) -> str:
    words = str(vector.get("note") or vector.get("mode") or vector["kind"]).split()
    return "-".join([vector["kind"], *words[:6]])


def test_webhook_vectors_are_present_and_complete() -> None:
    for vectors in (TWILIO, TELNYX):
        if vectors.error is not None:
            pytest.fail(vectors.error)
    counts = Counter(v["kind"] for v in (*TWILIO.entries, *TELNYX.entries))
    for kind, minimum in MIN_VECTORS.items():
        assert counts[kind] >= minimum, f"only {counts[kind]} {kind} vectors"


# --- Twilio -------------------------------------------------------------------------------


def _twilio_receiver(vector: Vector) -> TwilioWebhooks:
    # No AccountSid in the vectors' parameters: the receiver tries every account, so a
    # decoy account with another token is configured first.
    return TwilioWebhooks(
        [
            TwilioWebhookAccount(name="decoy", account_sid="AC" + "0" * 32, auth_token="decoy"),
            TwilioWebhookAccount(
                name="vector", account_sid="AC" + "f" * 32, auth_token=vector["auth_token"]
            ),
        ]
    )


def _twilio_request(vector: Vector) -> WebhookRequest:
    headers = {"x-twilio-signature": vector["expected"]}
    if "algorithm" in vector:
        headers["x-twilio-webhooks-signature-settings"] = (
            f"key=webhooks_sharedkey_vector,algorithm={vector['algorithm']}"
        )
    if vector["kind"] == "twilio-json":
        body = vector["body"].encode()
        headers["content-type"] = "application/json"
    else:
        body = urlencode([tuple(pair) for pair in vector["params"]]).encode()
        headers["content-type"] = "application/x-www-form-urlencoded"
    return WebhookRequest(method="POST", url=vector["url"], headers=headers, body=body)


@pytest.mark.parametrize("vector", vector_params(TWILIO, _describe))
def test_twilio_vector(vector: Vector | None) -> None:
    vector = require(TWILIO, vector)
    receiver = _twilio_receiver(vector)
    request = _twilio_request(vector)
    assert receiver.detect(request)
    if vector["expect_valid"]:
        assert receiver.verify(request) == "vector"
    else:
        with pytest.raises(SignatureError) as caught:
            receiver.verify(request)
        assert caught.value.failure is SignatureFailure.INVALID


@pytest.mark.parametrize("vector", vector_params(TWILIO, _describe))
def test_twilio_vector_arithmetic(vector: Vector | None) -> None:
    """The signature is what the vector says for the URL it was made over."""
    vector = require(TWILIO, vector)
    params = [(str(name), str(value)) for name, value in vector.get("params", [])]
    algorithm = vector.get("algorithm", twilio_signature.HMAC_SHA1)
    if vector["kind"] == "twilio-json":
        assert hashlib.sha256(vector["body"].encode()).hexdigest() == vector["expected_body_sha256"]
        assert f"bodySHA256={vector['expected_body_sha256']}" in vector["url"]
    else:
        assert vector["mode"] in TWILIO_MODES, f"unknown mode {vector['mode']!r}"
    signed_url = vector.get("signed_url", vector["url"])
    computed = twilio_signature.compute_signature(
        vector["auth_token"], signed_url, params, algorithm
    )
    assert computed == vector["expected"]


@pytest.mark.parametrize("vector", vector_params(TWILIO, _describe))
def test_twilio_vector_with_a_tampered_body_is_refused(vector: Vector | None) -> None:
    vector = require(TWILIO, vector)
    request = _twilio_request(vector)
    # JSON: trailing whitespace, as a re-serialisation adds (the body hash no longer matches);
    # form: one parameter more.
    extra = b" " if vector["kind"] == "twilio-json" else b"&Tampered=1"
    tampered = msgspec.structs.replace(request, body=request.body + extra)
    with pytest.raises(SignatureError) as caught:
        _twilio_receiver(vector).verify(tampered)
    assert caught.value.failure is SignatureFailure.INVALID


# --- Telnyx -------------------------------------------------------------------------------


def _telnyx_receiver(vector: Vector, now: float | None = None) -> TelnyxWebhooks:
    stamp = int(vector["headers"]["telnyx-timestamp"])
    clock_at = now if now is not None else float(vector.get("now", stamp))
    keys = [
        # Another account's key first: the vector's key must still be found (rotation).
        TelnyxWebhookKey(account="decoy", public_key="A" * 43 + "="),
        TelnyxWebhookKey(account="vector", public_key=vector["public_key_b64"]),
    ]
    return TelnyxWebhooks(
        keys, tolerance_seconds=float(vector.get("tolerance_s", 300)), clock=lambda: clock_at
    )


def _telnyx_request(vector: Vector) -> WebhookRequest:
    headers: dict[str, Any] = {name.lower(): value for name, value in vector["headers"].items()}
    body = vector["raw_body"].encode()
    return WebhookRequest(
        method="POST", url="https://sms.example.com/hook", headers=headers, body=body
    )


def _outside_window(vector: Vector) -> bool:
    stamp = int(vector["headers"]["telnyx-timestamp"])
    now = float(vector.get("now", stamp))
    return abs(now - stamp) > float(vector.get("tolerance_s", 300))


@pytest.mark.parametrize("vector", vector_params(TELNYX, _describe))
def test_telnyx_vector(vector: Vector | None) -> None:
    vector = require(TELNYX, vector)
    receiver = _telnyx_receiver(vector)
    request = _telnyx_request(vector)
    assert receiver.detect(request)
    if vector["expected"]:
        assert receiver.verify(request) == "vector"
    else:
        with pytest.raises(SignatureError) as caught:
            receiver.verify(request)
        expected = SignatureFailure.STALE if _outside_window(vector) else SignatureFailure.INVALID
        assert caught.value.failure is expected


def test_telnyx_vectors_refused_only_for_age_verify_inside_the_window() -> None:
    """The file's positive Telnyx case is the stale one read at its own timestamp: its note
    says the signature is valid, so moving the clock must make it verify."""
    if TELNYX.error is not None:
        pytest.fail(TELNYX.error)
    stale = [
        v
        for v in TELNYX.entries
        if _outside_window(v) and str(v.get("note", "")).startswith("valid signature")
    ]
    assert stale, "no vector with a valid signature refused for its age"
    for vector in stale:
        stamp = float(vector["headers"]["telnyx-timestamp"])
        assert _telnyx_receiver(vector, now=stamp).verify(_telnyx_request(vector)) == "vector"
