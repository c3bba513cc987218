"""Status callbacks: the simulators call the gateway back, signed as Twilio and Telnyx sign.

The fake gateway (conftest) checks every signature with the providers' reference code;
``drain_callbacks()`` is the only synchronisation: no sleeps.
"""

import asyncio
import logging
import uuid

import pytest

from gateway.sandbox import CallbackAttempt, SandboxState

OK_TO = "+15551230000"
GATEWAY_WEBHOOK = "https://gateway.test/webhooks/sms"  # the conftest's fake gateway


@pytest.fixture
def wire_client(same_loop_client):
    # The callback tasks run in the test's own loop, beside the test.
    return same_loop_client


# --- Twilio (PROTOCOLS.md C.6) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("to", "statuses", "error_code"),
    [
        (OK_TO, ["sent", "delivered"], None),
        ("+15551239005", ["sent", "undelivered"], "30003"),
        ("+15551239007", ["sent"], None),
    ],
)
async def test_twilio_status_callbacks_per_outcome(
    twilio, gateway, state, to, statuses, error_code
) -> None:
    created = await twilio.send(to, "Hi")
    sid = created.json()["sid"]
    assert created.json()["status"] == "queued"  # no callback for the initial status

    await state.drain_callbacks()

    assert gateway.twilio_statuses() == statuses  # each signature checked on the way
    assert [received.url for received in gateway.requests] == [GATEWAY_WEBHOOK] * len(statuses)
    assert [received.stored_status for received in gateway.requests] == statuses
    sent, *final = [gateway.twilio(received) for received in gateway.requests]
    assert sent == {
        "MessageSid": sid,
        "SmsSid": sid,
        "MessageStatus": "sent",
        "SmsStatus": "sent",
        "AccountSid": state.credentials.twilio_account_sid,
        "From": "+15017122661",
        "To": to,
        "ApiVersion": "2010-04-01",
    }
    for params in final:
        assert params["RawDlrDoneDate"] == "2601010000"  # YYMMDDhhmm of the fake clock, UTC
        assert params.get("ErrorCode") == error_code
        assert params["SmsStatus"] == params["MessageStatus"]
    fetched = (await twilio.fetch(sid)).json()
    assert fetched["status"] == statuses[-1]
    assert fetched["error_code"] == (None if error_code is None else int(error_code))
    assert fetched["price"] == "-0.00830"
    assert all(attempt.ok for attempt in state.callback_attempts)


async def test_twilio_status_callback_param_overrides_the_gateway_url(
    twilio, gateway, state
) -> None:
    own = "https://hooks.example:8443/twilio/status?tenant=a&x=1"
    await twilio.create(
        [
            ("To", OK_TO),
            ("MessagingServiceSid", "MG" + "1" * 32),
            ("Body", "Hi"),
            ("StatusCallback", own),
        ]
    )
    await state.drain_callbacks()

    assert [received.url for received in gateway.requests] == [own, own]
    assert gateway.twilio_statuses() == ["sent", "delivered"]  # signed over that URL
    params = gateway.twilio(gateway.requests[0])
    assert params["MessagingServiceSid"] == "MG" + "1" * 32
    assert params["From"] == "+15005550006"  # the number the service "picked"


async def test_twilio_retries_once_after_an_error(twilio, gateway, state) -> None:
    gateway.answers = [500, 200, 0, 0]  # sent: 500 then 200; delivered: refused twice
    sid = (await twilio.send(OK_TO)).json()["sid"]
    await state.drain_callbacks()

    assert gateway.twilio_statuses() == ["sent", "sent", "delivered", "delivered"]
    first, retry = gateway.requests[:2]
    assert (first.body, first.headers["x-twilio-signature"]) == (
        retry.body,
        retry.headers["x-twilio-signature"],
    )
    assert state.callback_attempts == [
        CallbackAttempt("twilio", "sent", sid, GATEWAY_WEBHOOK, 1, 500),
        CallbackAttempt("twilio", "sent", sid, GATEWAY_WEBHOOK, 2, 200),
        CallbackAttempt("twilio", "delivered", sid, GATEWAY_WEBHOOK, 1, None, "ConnectError"),
        CallbackAttempt("twilio", "delivered", sid, GATEWAY_WEBHOOK, 2, None, "ConnectError"),
    ]
    # Given up on, the report is still the simulator's truth.
    assert (await twilio.fetch(sid)).json()["status"] == "delivered"


# --- Telnyx (PROTOCOLS.md D.4) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("to", "events", "final_status", "error_codes"),
    [
        (OK_TO, ["message.sent", "message.finalized"], "delivered", []),
        ("+15551239005", ["message.sent", "message.finalized"], "delivery_failed", ["40006"]),
        ("+15551239007", ["message.sent"], "sent", []),
    ],
)
async def test_telnyx_webhooks_per_outcome(
    telnyx, gateway, state, to, events, final_status, error_codes
) -> None:
    message_id = (await telnyx.send(to)).json()["data"]["id"]
    await state.drain_callbacks()

    documents = gateway.telnyx_events()  # each Ed25519 signature checked on the way
    assert [document["data"]["event_type"] for document in documents] == events
    assert [received.headers["telnyx-timestamp"] for received in gateway.requests] == [
        "1767225600"
    ] * len(events)
    for document in documents:
        data = document["data"]
        assert uuid.UUID(data["id"]).version == 4
        assert data["record_type"] == "event"
        assert data["occurred_at"] == "2026-01-01T00:00:00.000+00:00"
        assert data["payload"]["id"] == message_id
        assert data["payload"]["cost"] == {"amount": "0.0040", "currency": "USD"}
        assert document["meta"] == {"attempt": 1, "delivered_to": GATEWAY_WEBHOOK}
    assert len({document["data"]["id"] for document in documents}) == len(events)

    sent = documents[0]["data"]["payload"]
    assert (sent["to"][0]["status"], sent["completed_at"], sent["errors"]) == ("sent", None, [])
    last = documents[-1]["data"]["payload"]
    assert last["to"][0]["status"] == final_status
    assert [error["code"] for error in last["errors"]] == error_codes
    assert (last["completed_at"] is None) == (final_status == "sent")
    # A retrieve after the last webhook tells exactly the same story.
    assert (await telnyx.fetch(message_id)).json()["data"] == last


async def test_telnyx_retries_three_times_then_fails_over(telnyx, gateway, state) -> None:
    primary, failover = "https://hooks.example/primary", "https://hooks.example/failover"
    gateway.answers = [500, 503, 0]  # message.sent: the primary URL fails three times
    await telnyx.create(
        {
            "to": OK_TO,
            "from": "+15550001111",
            "text": "Hi",
            "webhook_url": primary,
            "webhook_failover_url": failover,
        }
    )
    await state.drain_callbacks()

    documents = gateway.telnyx_events()
    assert [
        (received.url, document["meta"])
        for received, document in zip(gateway.requests, documents, strict=True)
    ] == [
        (primary, {"attempt": 1, "delivered_to": primary}),
        (primary, {"attempt": 2, "delivered_to": primary}),
        (primary, {"attempt": 3, "delivered_to": primary}),
        (failover, {"attempt": 1, "delivered_to": failover}),
        (primary, {"attempt": 1, "delivered_to": primary}),  # message.finalized
    ]
    # One event, one id, whichever attempt or URL carries it.
    assert len({document["data"]["id"] for document in documents[:4]}) == 1
    assert [attempt.status_code for attempt in state.callback_attempts] == [
        500,
        503,
        None,
        200,
        200,
    ]


async def test_telnyx_retry_after_500_succeeds(telnyx, gateway, state) -> None:
    gateway.answers = [500]
    await telnyx.send(OK_TO)
    await state.drain_callbacks()

    events = [
        (document["data"]["event_type"], document["meta"]["attempt"])
        for document in gateway.telnyx_events()
    ]
    assert events == [("message.sent", 1), ("message.sent", 2), ("message.finalized", 1)]


# --- both ------------------------------------------------------------------------------


async def test_no_callbacks_without_a_gateway_url(twilio, telnyx, gateway, state) -> None:
    state.inbound_url = None
    sid = (await twilio.send(OK_TO)).json()["sid"]
    message_id = (await telnyx.send(OK_TO)).json()["data"]["id"]
    await state.drain_callbacks()

    assert gateway.requests == []
    assert state.callback_attempts == []
    # The simulators still settle on fetch, as before callbacks existed.
    assert (await twilio.fetch(sid)).json()["status"] == "delivered"
    assert (await telnyx.fetch(message_id)).json()["data"]["to"][0]["status"] == "delivered"


async def test_no_callbacks_without_an_http_client(twilio, gateway, state) -> None:
    state.http_client = None
    await twilio.send(OK_TO)
    await state.drain_callbacks()
    assert gateway.requests == []
    assert state.callbacks.pending == 0


async def test_the_create_answer_does_not_wait_for_callbacks(twilio, telnyx, gateway, state):
    gateway.gate = asyncio.Event()  # the gateway holds every callback

    assert (await twilio.send(OK_TO)).status_code == 201
    assert (await telnyx.send(OK_TO)).status_code == 200
    assert state.callbacks.pending == 2

    gateway.gate.set()
    await state.drain_callbacks()
    assert len(gateway.requests) == 4
    assert state.callbacks.pending == 0


async def test_drain_waits_for_callbacks_that_callbacks_cause(twilio, gateway, state) -> None:
    async def reply_once(request) -> None:
        # A gateway that sends a follow-up message when it learns of a delivery.
        if b"MessageStatus=delivered" in request.content and len(state.twilio.created) == 1:
            assert (await twilio.send("+15551230001")).status_code == 201

    gateway.on_request = reply_once
    await twilio.send(OK_TO)
    await state.drain_callbacks()

    assert gateway.twilio_statuses() == ["sent", "delivered", "sent", "delivered"]
    assert len({gateway.twilio(received)["To"] for received in gateway.requests}) == 2


async def test_drain_works_across_event_loops(client, gateway, state) -> None:
    # AsyncTestClient runs the app (and so the callback tasks) in a portal thread's loop.
    response = await client.post(
        "/sandbox/telnyx/v2/messages",
        json={"to": OK_TO, "from": "+15550001111", "text": "Hi"},
        headers={"Authorization": f"Bearer {state.credentials.telnyx_api_key}"},
    )
    assert response.status_code == 200
    await state.drain_callbacks()

    events = [document["data"]["event_type"] for document in gateway.telnyx_events()]
    assert events == ["message.sent", "message.finalized"]


async def test_a_fetch_before_the_callbacks_never_moves_a_status_backwards(
    twilio, telnyx, gateway, state
) -> None:
    gateway.gate = asyncio.Event()
    sid = (await twilio.send(OK_TO)).json()["sid"]
    # settle_after_seconds is 0: this fetch settles the message before any callback.
    assert (await twilio.fetch(sid)).json()["status"] == "delivered"
    message_id = (await telnyx.send(OK_TO)).json()["data"]["id"]
    assert (await telnyx.fetch(message_id)).json()["data"]["to"][0]["status"] == "delivered"
    gateway.gate.set()
    await state.drain_callbacks()

    # The events still tell the carrier's story in order.
    twilio_requests = [r for r in gateway.requests if not r.body.startswith(b"{")]
    assert [gateway.twilio(r)["MessageStatus"] for r in twilio_requests] == ["sent", "delivered"]
    telnyx_documents = [gateway.telnyx(r) for r in gateway.requests if r.body.startswith(b"{")]
    assert [d["data"]["payload"]["to"][0]["status"] for d in telnyx_documents] == [
        "sent",
        "delivered",
    ]
    assert state.twilio.get(sid).status == "delivered"
    assert state.telnyx.get(message_id).status == "delivered"


async def test_failed_callbacks_log_neither_body_nor_number(twilio, telnyx, gateway, state, caplog):
    gateway.answers = [500] * 10  # every attempt of both messages fails
    caplog.set_level(logging.INFO, logger="gateway.sandbox")
    await twilio.send(OK_TO, "secret words")
    await telnyx.send(OK_TO, "secret words")
    await state.drain_callbacks()

    ours = " ".join(r.getMessage() for r in caplog.records if r.name.startswith("gateway."))
    assert "gave up" in ours
    assert "secret" not in ours
    for number in (OK_TO, "+15017122661", "+15550001111"):
        assert number[-7:] not in ours  # no phone number, whole or in part


async def test_unusable_urls_and_a_closed_client_are_given_up(twilio, gateway, state) -> None:
    await twilio.create(
        [("To", OK_TO), ("From", "+15017122661"), ("Body", "Hi"), ("StatusCallback", "http://")]
    )
    await state.drain_callbacks()
    assert len(state.callback_attempts) == 4  # sent and delivered, each tried twice
    assert all(attempt.error for attempt in state.callback_attempts)

    state.callback_attempts.clear()
    seen = len(gateway.requests)
    assert state.http_client is not None
    await state.http_client.aclose()  # as the app's lifespan does on shutdown
    await twilio.send(OK_TO)
    await state.drain_callbacks()
    assert [attempt.error for attempt in state.callback_attempts] == ["RuntimeError"] * 4
    assert len(gateway.requests) == seen


@pytest.mark.parametrize("url", ["http://", "ftp://gateway.test/webhooks/sms", "/webhooks/sms"])
async def test_a_callback_url_without_http_or_a_host_never_reaches_the_transport(
    twilio, gateway, state, url: str
) -> None:
    # The test's transport would answer any request: the refusal is the simulator's own.
    await twilio.create(
        [("To", OK_TO), ("From", "+15017122661"), ("Body", "Hi"), ("StatusCallback", url)]
    )
    await state.drain_callbacks()
    assert [(a.event, a.error) for a in state.callback_attempts] == [
        ("sent", "UnsupportedProtocol"),
        ("sent", "UnsupportedProtocol"),
        ("delivered", "UnsupportedProtocol"),
        ("delivered", "UnsupportedProtocol"),
    ]
    assert gateway.requests == []


async def test_a_url_httpx_cannot_parse_is_tried_and_recorded(twilio, gateway, state) -> None:
    # The URL is parsed once for a message's callbacks; one httpx refuses must fail each
    # attempt (recorded with the URL as given), not the callback task.
    url = "http://[::1"
    await twilio.create(
        [("To", OK_TO), ("From", "+15017122661"), ("Body", "Hi"), ("StatusCallback", url)]
    )
    await state.drain_callbacks()
    assert [(a.event, a.url, a.error) for a in state.callback_attempts] == [
        ("sent", url, "InvalidURL"),
        ("sent", url, "InvalidURL"),
        ("delivered", url, "InvalidURL"),
        ("delivered", url, "InvalidURL"),
    ]
    assert gateway.requests == []


def test_the_record_of_callback_attempts_keeps_only_the_latest() -> None:
    state = SandboxState(keep_callback_attempts=10)
    attempts = [
        CallbackAttempt("twilio", "sent", f"SM{n}", "http://gateway.test/", 1, 200)
        for n in range(12)
    ]
    for attempt in attempts[:11]:
        state.record_callback_attempt(attempt)
    assert state.callback_attempts == attempts[:11]
    state.record_callback_attempt(attempts[11])
    assert state.callback_attempts == attempts[2:]
