"""The Twilio simulator at the wire level: resource shape, validation, auth, behaviours."""

import base64
import re
from email.utils import parsedate_to_datetime

import pytest

from gateway.sandbox import Outcome, SandboxState, TwilioMessage

OK_TO = "+15551230000"


def assert_twilio_error(response, status: int, code: int) -> dict:
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()
    assert error["code"] == code
    assert error["status"] == status
    assert error["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    assert isinstance(error["message"], str)
    return error


async def test_create_answers_the_message_resource(twilio, state: SandboxState) -> None:
    response = await twilio.send(OK_TO, "Hello there")

    assert response.status_code == 201
    resource = response.json()
    sid = resource["sid"]
    assert re.fullmatch(r"SM[0-9a-f]{32}", sid)
    account = state.credentials.twilio_account_sid
    assert resource == resource | {
        "account_sid": account,
        "messaging_service_sid": None,
        "from": "+15017122661",
        "to": OK_TO,
        "body": "Hello there",
        "status": "queued",
        "direction": "outbound-api",
        "num_segments": "1",
        "num_media": "0",
        "price": None,
        "price_unit": "USD",
        "error_code": None,
        "error_message": None,
        "date_sent": None,
        "api_version": "2010-04-01",
        "uri": f"/2010-04-01/Accounts/{account}/Messages/{sid}.json",
    }
    assert resource["subresource_uris"]["media"].endswith(f"/Messages/{sid}/Media.json")
    # RFC 2822 with a numeric zone, as Twilio writes it.
    assert re.fullmatch(
        r"\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} \+0000", resource["date_created"]
    )
    assert parsedate_to_datetime(resource["date_created"]).timestamp() == state.now()

    [stored] = state.twilio.created
    assert isinstance(stored, TwilioMessage)
    assert (stored.id, stored.to, stored.from_, stored.body, stored.media, stored.status) == (
        sid,
        OK_TO,
        "+15017122661",
        "Hello there",
        [],
        "queued",
    )


async def test_repeated_media_urls_are_all_kept(twilio, state: SandboxState) -> None:
    response = await twilio.create(
        [
            ("To", OK_TO),
            ("From", "+15017122661"),
            ("MediaUrl", "https://example.com/a.png"),
            ("MediaUrl", "https://example.com/b.png"),
        ]
    )

    assert response.status_code == 201
    resource = response.json()
    assert resource["sid"].startswith("MM")
    assert resource["num_media"] == "2"
    assert resource["body"] == ""
    assert state.twilio.created[0].media == [
        "https://example.com/a.png",
        "https://example.com/b.png",
    ]


async def test_messaging_service_without_from_is_accepted_and_gets_a_sender(twilio) -> None:
    service = "MG" + "a" * 32
    response = await twilio.create([("To", OK_TO), ("MessagingServiceSid", service), ("Body", "x")])

    assert response.status_code == 201
    created = response.json()
    assert created["status"] == "accepted"
    assert created["from"] is None
    assert created["num_segments"] == "0"
    assert created["messaging_service_sid"] == service

    fetched = (await twilio.fetch(created["sid"])).json()
    assert fetched["status"] == "delivered"
    assert fetched["from"].startswith("+")
    assert fetched["num_segments"] == "1"


@pytest.mark.parametrize(
    ("body", "segments", "price"),
    [
        ("a" * 160, "1", "-0.00830"),
        ("a" * 161, "2", "-0.01660"),
        ("€" * 80, "1", "-0.00830"),  # extension characters: 2 septets each
        ("€" * 81, "2", "-0.01660"),
        ("ж" * 70, "1", "-0.00830"),
        ("ж" * 71, "2", "-0.01660"),  # UCS-2: 67 per concatenated segment
        ("ж" * 135, "3", "-0.02490"),
    ],
    ids=["gsm-160", "gsm-161", "euro-80", "euro-81", "ucs2-70", "ucs2-71", "ucs2-135"],
)
async def test_segments_and_price(twilio, body: str, segments: str, price: str) -> None:
    created = (await twilio.send(OK_TO, body)).json()
    assert created["num_segments"] == segments

    fetched = (await twilio.fetch(created["sid"])).json()
    assert fetched["price"] == price


async def test_fetch_reports_delivered_with_price_and_sent_date(twilio, state, clock) -> None:
    sid = (await twilio.send(OK_TO)).json()["sid"]
    clock.advance(30)

    response = await twilio.fetch(sid)

    assert response.status_code == 200
    resource = response.json()
    assert resource["status"] == "delivered"
    assert resource["price"] == "-0.00830"
    assert resource["error_code"] is None
    # Settled at creation time (settle_after_seconds = 0), however late the fetch.
    assert parsedate_to_datetime(resource["date_sent"]).timestamp() == clock.now - 30
    assert state.twilio.created[0].status == "delivered"


async def test_status_stays_initial_until_settle_time(twilio, state, clock) -> None:
    state.settle_after_seconds = 10
    sid = (await twilio.send(OK_TO)).json()["sid"]

    clock.advance(9.5)
    early = (await twilio.fetch(sid)).json()
    clock.advance(0.5)
    late = (await twilio.fetch(sid)).json()

    assert (early["status"], early["price"], early["date_sent"]) == ("queued", None, None)
    assert late["status"] == "delivered"
    assert parsedate_to_datetime(late["date_sent"]).timestamp() == clock.now


async def test_fetch_unknown_message_is_20404(twilio) -> None:
    error = assert_twilio_error(await twilio.fetch("SM" + "0" * 32), 404, 20404)
    assert "was not found" in error["message"]


async def test_fetch_without_json_suffix_is_20404(twilio) -> None:
    sid = (await twilio.send(OK_TO)).json()["sid"]
    response = await twilio.client.get(f"{twilio.base}/Messages/{sid}", auth=twilio.auth)
    assert_twilio_error(response, 404, 20404)


# -- validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ([("From", "+15017122661"), ("Body", "x")], 21604),
        ([("To", ""), ("From", "+15017122661"), ("Body", "x")], 21604),
        ([("To", OK_TO), ("Body", "x")], 21603),
        ([("To", OK_TO), ("From", "+15017122661")], 21602),
        ([("To", OK_TO), ("From", "+15017122661"), ("Body", "")], 21602),
        ([("To", OK_TO), ("From", "+15017122661"), ("Body", "x" * 1601)], 21617),
        ([("To", "12345"), ("From", "+15017122661"), ("Body", "x")], 21211),
    ],
)
async def test_validation_errors(twilio, state, fields, code: int) -> None:
    assert_twilio_error(await twilio.create(fields), 400, code)
    assert state.twilio.created == []


async def test_missing_to_message_matches_twilio(twilio) -> None:
    error = assert_twilio_error(await twilio.create([("From", "+1501"), ("Body", "x")]), 400, 21604)
    assert error["message"] == "A 'To' phone number is required."


async def test_body_of_exactly_1600_characters_is_accepted(twilio) -> None:
    response = await twilio.send(OK_TO, "x" * 1600)
    assert response.status_code == 201
    assert response.json()["num_segments"] == "11"


# -- authentication ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer something",
        "Basic !!!not-base64",
        "Basic " + base64.b64encode(b"no-colon").decode(),
    ],
)
async def test_missing_or_malformed_auth_is_20003(twilio, state, authorization) -> None:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = await twilio.client.post(
        f"{twilio.base}/Messages.json", content="To=%2B1555&Body=x", headers=headers
    )
    error = assert_twilio_error(response, 401, 20003)
    assert error["message"] == "Authenticate"
    assert response.headers["www-authenticate"].startswith("Basic")
    assert state.twilio.created == []


async def test_wrong_token_is_20003(twilio, state) -> None:
    wrong = (state.credentials.twilio_account_sid, "0" * 32)
    response = await twilio.create([("To", OK_TO), ("From", "+1"), ("Body", "x")], auth=wrong)
    assert_twilio_error(response, 401, 20003)


async def test_path_account_must_match_credentials(twilio, state) -> None:
    other = "AC" + "f" * 32
    response = await twilio.client.post(
        f"/sandbox/twilio/2010-04-01/Accounts/{other}/Messages.json",
        content="To=%2B15551230000&From=%2B15017122661&Body=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        auth=twilio.auth,
    )
    assert_twilio_error(response, 401, 20003)
    assert_twilio_error(
        await twilio.client.get(f"/sandbox/twilio/2010-04-01/Accounts/{other}/Messages/x.json"),
        401,
        20003,
    )


# -- behaviours by last four digits -------------------------------------------------------


async def test_9001_invalid_number(twilio, state) -> None:
    error = assert_twilio_error(await twilio.send("+15551239001"), 400, 21211)
    assert error["message"] == "The 'To' number +15551239001 is not a valid phone number."
    assert state.twilio.created == []


async def test_9002_service_unavailable(twilio, state) -> None:
    assert_twilio_error(await twilio.send("+15551239002"), 503, 20503)
    assert state.twilio.created == []


async def test_9003_rate_limited_with_retry_after(twilio, state) -> None:
    response = await twilio.send("+15551239003")
    error = assert_twilio_error(response, 429, 20429)
    assert error["message"] == "Too Many Requests"
    assert response.headers["retry-after"] == "1"
    assert state.twilio.created == []


async def test_9004_hangs_then_504_and_stores_nothing(twilio, state) -> None:
    state.hang_seconds = 0  # the release path is covered in test_sandbox_hang.py
    assert_twilio_error(await twilio.send("+15551239004"), 504, 20504)
    assert state.twilio.created == []


async def test_9005_accepted_then_undelivered(twilio, state) -> None:
    created = await twilio.send("+15551239005")
    assert created.status_code == 201
    assert created.json()["status"] == "queued"

    fetched = (await twilio.fetch(created.json()["sid"])).json()
    assert fetched["status"] == "undelivered"
    assert fetched["error_code"] == 30003
    assert fetched["error_message"] == "Unreachable destination handset"
    assert fetched["price"] == "-0.00830"  # Twilio charges undelivered messages too
    assert state.twilio.created[0].outcome is Outcome.UNDELIVERED


async def test_9006_opted_out(twilio, state) -> None:
    error = assert_twilio_error(await twilio.send("+15551239006"), 400, 21610)
    assert error["message"] == "Attempt to send to unsubscribed recipient"
    assert state.twilio.created == []


async def test_9007_stays_sent_forever(twilio, clock) -> None:
    sid = (await twilio.send("+15551239007")).json()["sid"]
    first = (await twilio.fetch(sid)).json()
    clock.advance(86_400 * 30)
    later = (await twilio.fetch(sid)).json()

    assert first["status"] == later["status"] == "sent"
    assert later["error_code"] is None
    assert later["date_sent"] is not None


async def test_channel_address_uses_its_number(twilio, state) -> None:
    response = await twilio.send("whatsapp:+15551239006")
    assert_twilio_error(response, 400, 21610)
    assert (await twilio.send("whatsapp:+15551230000")).status_code == 201


async def test_on_created_hooks_receive_the_stored_record(twilio, state) -> None:
    seen: list[TwilioMessage] = []

    async def failing(message: TwilioMessage) -> None:
        raise RuntimeError("a broken hook must not hide the others")

    async def record(message: TwilioMessage) -> None:
        seen.append(message)

    state.twilio.on_created.extend([failing, record])
    response = await twilio.send(OK_TO)

    assert response.status_code == 201
    assert seen == state.twilio.created
    assert seen[0].id == response.json()["sid"]


async def test_a_long_running_sandbox_keeps_only_its_latest_messages(
    twilio, state: SandboxState
) -> None:
    state.twilio.keep = 10
    sids = [(await twilio.send(OK_TO, f"message {n}")).json()["sid"] for n in range(11)]
    assert len(state.twilio.created) == 11  # a tenth over before anything is forgotten
    sids.append((await twilio.send(OK_TO, "message 11")).json()["sid"])
    assert [m.id for m in state.twilio.created] == sids[2:]
    # Forgotten as a deleted message is: unknown to a fetch.
    assert_twilio_error(await twilio.fetch(sids[1]), 404, 20404)
    assert (await twilio.fetch(sids[2])).json()["sid"] == sids[2]
