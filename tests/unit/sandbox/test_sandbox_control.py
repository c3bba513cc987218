"""Outage control: switching on and off, expiry on the fake clock, problem+json rejections."""

import pytest

OK_TO = "+15551230000"


async def test_twilio_outage_answers_every_call_in_twilio_shape(
    client, twilio, state, clock
) -> None:
    sid = (await twilio.send(OK_TO)).json()["sid"]

    started = await client.post("/sandbox/twilio/outage", json={"status": 503, "seconds": 60})

    assert started.status_code == 200
    view = started.json()
    assert view["simulator"] == "twilio"
    assert view["active"] is True
    assert view["status"] == 503
    assert view["ends_at"] == "2026-01-01T00:01:00+00:00"

    for response in (await twilio.send(OK_TO), await twilio.fetch(sid)):
        assert response.status_code == 503
        assert response.json()["code"] == 20503
        assert response.headers["retry-after"] == "60"
    assert len(state.twilio.created) == 1
    # The other simulator is unaffected.
    assert (await client.get("/sandbox/telnyx/outage")).json()["active"] is False


async def test_outage_comes_before_authentication(client, twilio) -> None:
    await client.post("/sandbox/twilio/outage", json={"status": 500, "seconds": 5})
    response = await twilio.create([("To", OK_TO)], auth=("AC" + "0" * 32, "wrong"))
    assert response.status_code == 500
    assert response.json()["code"] == 20500
    assert "retry-after" not in response.headers  # only 429 and 503 carry one


async def test_telnyx_outage_answers_in_telnyx_shape(client, telnyx, clock) -> None:
    await client.post("/sandbox/telnyx/outage", json={"status": 429, "seconds": 90})
    clock.advance(30)

    response = await telnyx.send(OK_TO)

    assert response.status_code == 429
    assert response.json()["errors"][0]["code"] == "10011"
    assert response.headers["retry-after"] == "60"


@pytest.mark.parametrize(
    ("status", "twilio_code", "telnyx_code"),
    [
        (401, 20003, "10009"),
        (403, 20403, "10010"),
        (404, 20404, "10005"),
        (418, 20418, "10015"),
        (500, 20500, "10007"),
        (502, 20502, "10007"),
        (504, 20504, "10008"),
    ],
)
async def test_outage_status_maps_to_provider_codes(
    client, twilio, telnyx, status, twilio_code, telnyx_code
) -> None:
    for simulator in ("twilio", "telnyx"):
        await client.post(f"/sandbox/{simulator}/outage", json={"status": status, "seconds": 1})

    twilio_response = await twilio.send(OK_TO)
    telnyx_response = await telnyx.send(OK_TO)

    assert twilio_response.status_code == telnyx_response.status_code == status
    assert twilio_response.json()["code"] == twilio_code
    assert telnyx_response.json()["errors"][0]["code"] == telnyx_code


async def test_outage_ends_by_itself_on_the_clock(client, twilio, clock) -> None:
    await client.post("/sandbox/twilio/outage", json={"seconds": 10})  # status defaults to 503

    clock.advance(9.99)
    assert (await twilio.send(OK_TO)).status_code == 503
    clock.advance(0.01)
    assert (await twilio.send(OK_TO)).status_code == 201
    assert (await client.get("/sandbox/twilio/outage")).json() == {
        "simulator": "twilio",
        "active": False,
        "status": None,
        "ends_at": None,
    }


async def test_zero_seconds_ends_the_outage(client, telnyx) -> None:
    await client.post("/sandbox/telnyx/outage", json={"status": 503, "seconds": 600})
    ended = await client.post("/sandbox/telnyx/outage", json={"seconds": 0})

    assert ended.status_code == 200
    assert ended.json()["active"] is False
    assert (await telnyx.send(OK_TO)).status_code == 200


async def test_delete_ends_the_outage(client, twilio) -> None:
    await client.post("/sandbox/twilio/outage", json={"status": 503, "seconds": 600})
    response = await client.delete("/sandbox/twilio/outage")

    assert response.status_code == 204
    assert response.content == b""
    assert (await twilio.send(OK_TO)).status_code == 201


async def test_get_shows_the_outage(client, clock) -> None:
    await client.post("/sandbox/telnyx/outage", json={"status": 502, "seconds": 100})
    clock.advance(25)

    view = (await client.get("/sandbox/telnyx/outage")).json()

    assert view["active"] is True
    assert view["status"] == 502
    assert view["seconds_left"] == 75


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{not json",
        b"[]",
        b"{}",
        b'{"status": 503}',
        b'{"status": 200, "seconds": 10}',
        b'{"status": 600, "seconds": 10}',
        b'{"status": "503", "seconds": 10}',
        b'{"status": 503, "seconds": -1}',
        b'{"status": 503, "seconds": 3601}',
        b'{"status": 503, "seconds": 10, "extra": true}',
    ],
)
async def test_bad_outage_bodies_are_problem_json(client, state, content: bytes) -> None:
    response = await client.post(
        "/sandbox/twilio/outage", content=content, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert set(problem) == {"type", "title", "status", "detail"}
    assert problem["status"] == 400
    assert state.twilio.outage is None


async def test_control_routes_need_no_gateway_credentials(app) -> None:
    # The auth middleware of the gateway honours this opt key on every sandbox route.
    for route in app.routes:
        if route.path.startswith("/sandbox"):
            for handler in route.route_handlers:  # type: ignore[union-attr]
                assert handler.opt.get("exclude_from_auth") is True, route.path
                assert "sandbox" in (handler.resolve_tags() or ())
