"""Events to apps against the whole gateway: written with each status change and each
inbound message, signed (checked with the ``standardwebhooks`` reference package),
delivered in order per message, retried while the app is down, redelivered after a crash,
given up after the retry window, and listed by ``GET /v1/events``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import respx
from prometheus_client import REGISTRY
from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql
from standardwebhooks.webhooks import Webhook

from gateway.auth.keys import create_key
from gateway.db.models import AppEvent
from gateway.events import outbox, record
from gateway.events.delivery import EventDelivery
from gateway.events.pauses import FAILURES_TO_PAUSE, Endpoint
from gateway.settings import AppQuota, EventsSettings, Settings
from tests.integration.conftest import Gateway, with_settings

pytestmark = pytest.mark.asyncio

HOOK = "https://billing.test/events"
APP_HOOK = "https://billing.test/app-wide"
#: One of the app's tenants' own URL, given as a message's ``callback_url``.
TENANT_HOOK = "https://tenant-7.example/sms-events"


class Receiver:
    """The app's endpoint: verifies every request with the reference implementation,
    records what it accepted, and can be down."""

    def __init__(self, secret: str) -> None:
        self.webhook = Webhook(secret)
        self.down = False
        self.accepted: list[dict[str, Any]] = []
        self.refused = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        payload = self.webhook.verify(request.content, dict(request.headers))
        if self.down:
            self.refused += 1
            return httpx.Response(503)
        self.accepted.append({"id": request.headers["webhook-id"], **payload})
        return httpx.Response(204)

    def types_of(self, subject: str) -> list[str]:
        return [
            e["type"]
            for e in self.accepted
            if subject in (e["data"].get("message_id"), e["data"].get("inbound_id"))
        ]


@pytest.fixture
def app_endpoint() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        yield router


async def _key(gateway: Gateway, app: str) -> tuple[dict[str, str], str]:
    async with gateway.state.sessionmaker() as session:
        issued = await create_key(session, app)
        await session.commit()
    assert issued.signing_secret is not None
    assert issued.signing_secret.startswith("whsec_")
    return {"Authorization": f"Bearer {issued.key}"}, issued.signing_secret


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The app's callback URL is the gateway's configuration, read by the processes that
    write events (they settle an event with nowhere to go as they write it) and by the
    one that delivers them."""
    return with_settings(settings, apps={"billing": AppQuota(callback_url=APP_HOOK)})


def _delivery(gateway: Gateway, client: httpx.AsyncClient, **events: Any) -> EventDelivery:
    settings = with_settings(
        gateway.state.settings,
        events=EventsSettings(**{"backoff_base_seconds": 5.0, **events}),
    )
    return EventDelivery(
        sessionmaker=gateway.state.sessionmaker,
        http_client=client,
        settings=settings,
        clock=gateway.clock,
        owner="test-events",
    )


async def _until_quiet(delivery: EventDelivery, advance: Callable[[], None] | None = None) -> None:
    for _ in range(50):
        if not await delivery.run_once():
            return
        if advance is not None:
            advance()
    raise AssertionError("event delivery did not settle")


async def _stored(gateway: Gateway) -> list[AppEvent]:
    async with gateway.state.sessionmaker() as session:
        return list((await session.execute(select(AppEvent).order_by(AppEvent.event_pk))).scalars())


async def _app_down(
    gateway: Gateway, app_endpoint: respx.MockRouter
) -> tuple[dict[str, str], Receiver]:
    """The app ``billing``'s key, and its endpoint, down."""
    headers, secret = await _key(gateway, "billing")
    receiver = Receiver(secret)
    receiver.down = True
    app_endpoint.post(APP_HOOK).mock(side_effect=receiver)
    return headers, receiver


async def _delivered_message(gateway: Gateway, headers: dict[str, str], **body: Any) -> str:
    response = await gateway.send(headers, to="+14155550100", body="your order", **body)
    assert response.status_code == 202, response.text
    assert await gateway.dispatcher.run_once() == 1
    await gateway.sandbox.drain_callbacks()
    message_id: str = response.json()["message_id"]
    assert (await gateway.message(headers, message_id))["status"] == "delivered"
    return message_id


async def test_each_status_change_is_posted_signed_and_in_order(
    gateway: Gateway, app_endpoint: respx.MockRouter
) -> None:
    headers, secret = await _key(gateway, "billing")
    receiver = Receiver(secret)
    app_endpoint.post(HOOK).mock(side_effect=receiver)
    message_id = await _delivered_message(gateway, headers, callback_url=HOOK)

    stored = [e for e in await _stored(gateway) if e.subject_id == message_id]
    statuses = [e.status for e in stored]
    assert statuses[0] == "sending"
    assert statuses[-1] == "delivered"
    assert [e.seq for e in stored] == list(range(1, len(stored) + 1))
    assert all(e.state == "pending" for e in stored)  # written with the change, not sent yet

    async with httpx.AsyncClient() as client:
        await _until_quiet(_delivery(gateway, client))
    assert receiver.types_of(message_id) == [f"message.{s}" for s in statuses]
    assert [e["id"] for e in receiver.accepted] == [e.event_id for e in stored]
    last = receiver.accepted[-1]["data"]
    assert last["status"] == "delivered"
    assert last["provider"] == "twilio-sandbox"
    assert "body" not in last  # bodies never travel in status events

    listed = (await gateway.client.get("/v1/events", headers=headers)).json()
    assert [e["event_id"] for e in listed["data"]] == [e.event_id for e in stored]
    assert {e["delivery"] for e in listed["data"]} == {"delivered"}


async def test_an_app_that_is_down_for_a_while_receives_everything_afterwards_in_order(
    gateway: Gateway, app_endpoint: respx.MockRouter
) -> None:
    headers, secret = await _key(gateway, "billing")
    receiver = Receiver(secret)
    app_endpoint.post(APP_HOOK).mock(side_effect=receiver)
    receiver.down = True
    first = await _delivered_message(gateway, headers)
    second = await _delivered_message(gateway, headers)
    inbound = await gateway.client.post(
        "/sandbox/twilio/inbound",
        json={"from": "+14155550100", "to": "+15005550006", "body": "thanks!"},
    )
    assert inbound.status_code == 202, inbound.text
    expected = {
        subject: [e.event_type for e in await _stored(gateway) if e.subject_id == subject]
        for subject in (first, second)
    }

    async with httpx.AsyncClient() as client:
        delivery = _delivery(gateway, client)
        # Down: a few rounds an hour apart. Only the head of each message's queue is tried:
        # the two message heads and the inbound, until five failures in a row pause the
        # app (gateway/events/pauses.py); then one probe a round.
        refused = []
        for _ in range(4):
            await delivery.run_once()
            refused.append(receiver.refused)
            gateway.clock.advance(3600)
        assert receiver.accepted == []
        assert refused == [3, 6, 7, 8]
        heads = [e for e in await _stored(gateway) if e.attempts > 0]
        assert {e.seq for e in heads} == {1}
        assert all(e.state == "pending" and e.last_error == "HTTP 503" for e in heads)

        receiver.down = False
        gateway.clock.advance(3600)  # past any backoff (capped at an hour)
        await _until_quiet(delivery, lambda: gateway.clock.advance(3600))

    for subject, types in expected.items():
        assert receiver.types_of(subject) == types
    inbound_events = [e for e in receiver.accepted if e["type"] == "message.inbound"]
    assert [e["data"]["body"] for e in inbound_events] == ["thanks!"]
    assert {e.state for e in await _stored(gateway)} == {"delivered"}


async def test_a_paused_app_is_probed_with_one_event_not_sent_every_event(
    gateway: Gateway, app_endpoint: respx.MockRouter
) -> None:
    """Eight messages' events for an app that is down for ten minutes, a claim round every
    ten seconds: without the pause, each message's head was retried on its own backoff
    (about 60 POSTs, each rewriting its row); paused, the first round's eight and about
    one probe per pause (5, 10, 20, ... seconds)."""
    headers, receiver = await _app_down(gateway, app_endpoint)
    messages = [await _delivered_message(gateway, headers) for _ in range(8)]
    async with httpx.AsyncClient() as client:
        delivery = _delivery(gateway, client)
        for _ in range(60):
            await delivery.run_once()
            gateway.clock.advance(10)
        assert receiver.refused <= 8 + 8
        tried = [e for e in await _stored(gateway) if e.attempts > 0]
        assert sum(e.attempts for e in tried) == receiver.refused
        assert _paused_gauge("billing") == 1

        receiver.down = False
        gateway.clock.advance(3600)  # past the pause (at most the longest backoff)
        await _until_quiet(delivery, lambda: gateway.clock.advance(1))
    assert {e.state for e in await _stored(gateway)} == {"delivered"}
    for message_id in messages:
        assert receiver.types_of(message_id)[-1] == "message.delivered"
    assert _paused_gauge("billing") == 0


def _paused_gauge(app: str) -> float | None:
    return REGISTRY.get_sample_value("sms_gateway_event_app_paused", {"app": app})


async def test_a_message_url_that_keeps_failing_is_paused_alone_and_the_app_s_others_flow(
    gateway: Gateway, app_endpoint: respx.MockRouter
) -> None:
    """One tenant's own ``callback_url`` is down: it alone is paused. Its backlog, due
    first, neither takes the app's claim slots nor holds back the events bound for the
    app's configured URL, which are all delivered while it stays down."""
    headers, secret = await _key(gateway, "billing")
    app_receiver, tenant = Receiver(secret), Receiver(secret)
    tenant.down = True
    app_endpoint.post(APP_HOOK).mock(side_effect=app_receiver)
    app_endpoint.post(TENANT_HOOK).mock(side_effect=tenant)
    tenant_messages = [
        await _delivered_message(gateway, headers, callback_url=TENANT_HOOK) for _ in range(12)
    ]
    app_messages = [await _delivered_message(gateway, headers) for _ in range(3)]
    async with httpx.AsyncClient() as client:
        # Two slots for the app, eight events claimed at most: the twelve tenant heads,
        # due first, would fill every claim if a paused URL's events were claimed.
        delivery = _delivery(gateway, client, concurrency=2, per_app_concurrency=2)
        for _ in range(30):
            await delivery.run_once()
            gateway.clock.advance(2)
        assert _paused_gauge("billing") == 1
        for message_id in app_messages:
            assert app_receiver.types_of(message_id)[-1] == "message.delivered"
        # Five refusals paused it; then a probe per pause (5 s, 10 s, 20 s ...).
        assert FAILURES_TO_PAUSE <= tenant.refused <= FAILURES_TO_PAUSE + 4
        tenant_events = [e for e in await _stored(gateway) if e.url == TENANT_HOOK]
        assert {e.state for e in tenant_events} == {"pending"}
        assert sum(e.attempts for e in tenant_events) == tenant.refused

        tenant.down = False
        gateway.clock.advance(3600)
        await _until_quiet(delivery, lambda: gateway.clock.advance(1))
    assert {e.state for e in await _stored(gateway)} == {"delivered"}
    for message_id in tenant_messages:
        assert tenant.types_of(message_id)[-1] == "message.delivered"
    assert not any(app_receiver.types_of(m) for m in tenant_messages)
    assert _paused_gauge("billing") == 0


async def test_a_probed_endpoint_s_backlog_is_read_one_probe_at_a_time(
    gateway: Gateway, app_endpoint: respx.MockRouter
) -> None:
    """A paused endpoint whose pause is over gets one probe; its backlog, due first, is not
    read into the claim's window, where it would push the app's other events out."""
    headers, _ = await _key(gateway, "billing")
    tenant_messages = [
        await _delivered_message(gateway, headers, callback_url=TENANT_HOOK) for _ in range(12)
    ]
    app_messages = [await _delivered_message(gateway, headers) for _ in range(2)]

    async with gateway.state.sessionmaker() as session, session.begin():
        claimed = await outbox.claim_events(
            session,
            owner="probe-round",
            now=gateway.clock(),
            lease=timedelta(seconds=60),
            limit=2,  # a window of 8 candidates: the twelve tenant heads come first
            app_slots={"billing": 8},
            default_slots=8,
            endpoint_slots={Endpoint("billing", TENANT_HOOK): 1},
            app_urls={"billing": APP_HOOK},
        )
    by_url = {event.url: event.payload["data"]["message_id"] for event in claimed}
    assert len(claimed) == 2
    assert by_url[TENANT_HOOK] == tenant_messages[0]  # the probe: the oldest head
    assert by_url[None] == app_messages[0]  # and the app's own, not crowded out


async def test_a_paused_app_s_events_past_their_window_are_given_up_without_a_post(
    gateway: Gateway, app_endpoint: respx.MockRouter
) -> None:
    headers, receiver = await _app_down(gateway, app_endpoint)
    for _ in range(6):
        await _delivered_message(gateway, headers)
    async with httpx.AsyncClient() as client:
        delivery = _delivery(gateway, client)
        await delivery.run_once()  # six heads refused: paused
        gateway.clock.advance(86400 + 60)  # a day on: every event is past its window
        await _until_quiet(delivery, lambda: gateway.clock.advance(60))
    stored = await _stored(gateway)
    assert {e.state for e in stored} == {"failed"}
    untried = [e for e in stored if e.attempts == 0]
    assert untried  # given up by the sweep, never posted
    assert {e.last_error for e in untried} == {outbox.EXPIRED}
    assert receiver.accepted == []


async def test_an_event_claimed_by_a_process_that_died_is_delivered_after_its_lease(
    gateway: Gateway, app_endpoint: respx.MockRouter
) -> None:
    headers, secret = await _key(gateway, "billing")
    receiver = Receiver(secret)
    app_endpoint.post(APP_HOOK).mock(side_effect=receiver)
    response = await gateway.send(headers, to="+14155550100", body="x", send_at=None)
    assert await gateway.dispatcher.run_once() == 1  # one event: message.sending … and more
    await gateway.sandbox.drain_callbacks()
    message_id = response.json()["message_id"]

    async with gateway.state.sessionmaker() as session, session.begin():
        dead = await outbox.claim_events(
            session,
            owner="died-mid-post",
            now=gateway.clock(),
            lease=timedelta(seconds=60),
            limit=10,
            app_slots={},
            default_slots=4,
        )
    assert [e.payload["type"] for e in dead] == ["message.sending"]  # only the head

    async with httpx.AsyncClient() as client:
        delivery = _delivery(gateway, client)
        assert await delivery.run_once() == 0  # leased: neither it nor its successors go
        gateway.clock.advance(61)
        await _until_quiet(delivery)
    assert receiver.types_of(message_id)[0] == "message.sending"
    assert receiver.accepted[0]["id"] == dead[0].event_id  # the same id: the app dedupes
    assert receiver.types_of(message_id)[-1] == "message.delivered"


async def test_retries_give_up_after_the_window_and_the_app_catches_up_by_listing(
    gateway: Gateway, app_endpoint: respx.MockRouter
) -> None:
    headers, receiver = await _app_down(gateway, app_endpoint)
    message_id = await _delivered_message(gateway, headers)
    count = len(await _stored(gateway))

    async with httpx.AsyncClient() as client:
        delivery = _delivery(gateway, client)
        # Rounds two hours apart for a little over a day: the head is retried all day long,
        # then given up; its successors (written as long ago) get one try each.
        for _ in range(14 + 2 * count):
            await delivery.run_once()
            gateway.clock.advance(7200)
    stored = await _stored(gateway)
    assert {e.state for e in stored} == {"failed"}
    assert stored[0].attempts >= 12  # retried through the whole day
    assert receiver.accepted == []

    # Catching up: filters, then pages with a cursor.
    failed = await gateway.client.get(
        "/v1/events", params={"delivery": "failed", "message_id": message_id}, headers=headers
    )
    assert len(failed.json()["data"]) == count
    delivered = await gateway.client.get(
        "/v1/events", params={"type": "message.delivered"}, headers=headers
    )
    assert [e["payload"]["data"]["message_id"] for e in delivered.json()["data"]] == [message_id]
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 1} | ({"cursor": cursor} if cursor else {})
        page = (await gateway.client.get("/v1/events", params=params, headers=headers)).json()
        seen += [e["event_id"] for e in page["data"]]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break
    assert seen == [e.event_id for e in stored]
    bad = await gateway.client.get("/v1/events", params={"delivery": "lost"}, headers=headers)
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"


async def test_other_apps_see_none_of_it_and_an_app_without_url_is_skipped(
    gateway: Gateway, app_endpoint: respx.MockRouter
) -> None:
    headers, _secret = await _key(gateway, "marketing")  # no callback URL configured
    other, _ = await _key(gateway, "billing")
    await _delivered_message(gateway, headers)
    async with httpx.AsyncClient() as client:
        await _until_quiet(_delivery(gateway, client))
    assert not app_endpoint.calls
    assert {e.state for e in await _stored(gateway)} == {"skipped"}
    mine = (await gateway.client.get("/v1/events", headers=headers)).json()["data"]
    assert mine
    assert {e["delivery"] for e in mine} == {"skipped"}
    assert (await gateway.client.get("/v1/events", headers=other)).json()["data"] == []


async def test_cancel_writes_its_event_in_the_same_commit(gateway: Gateway) -> None:
    headers, _ = await _key(gateway, "billing")
    later = (gateway.clock() + timedelta(days=1)).isoformat()
    response = await gateway.send(headers, to="+14155550100", body="later", send_at=later)
    assert response.status_code == 202, response.text
    message_id = response.json()["message_id"]
    assert await _stored(gateway) == []  # accepted/scheduled: the 202 told the app
    canceled = await gateway.client.delete(f"/v1/messages/{message_id}", headers=headers)
    assert canceled.status_code == 200
    stored = await _stored(gateway)
    assert [(e.event_type, e.subject_id) for e in stored] == [("message.canceled", message_id)]
    assert stored[0].payload["data"]["status"] == "canceled"
    assert stored[0].payload["data"]["previous_status"] is None


async def _six_of_marketing_and_one_of_billing(
    gateway: Gateway, app_endpoint: respx.MockRouter
) -> dict[str, str]:
    """Six messages of ``marketing`` and one of ``billing`` sent and delivered (``billing``'s
    URL answers 204); returns ``marketing``'s headers."""
    quiet, _ = await _key(gateway, "marketing")
    billing, _ = await _key(gateway, "billing")
    app_endpoint.post(APP_HOOK).mock(return_value=httpx.Response(204))
    for n in range(6):
        response = await gateway.send(quiet, to=f"+1415555{n:04d}", body="marketing")
        assert response.status_code == 202
    response = await gateway.send(billing, to="+14155550100", body="with url")
    assert response.status_code == 202
    assert await gateway.dispatcher.run_once() == 7
    await gateway.sandbox.drain_callbacks()
    return quiet


async def test_events_of_an_app_without_a_url_are_settled_as_they_are_written(
    gateway: Gateway, app_endpoint: respx.MockRouter
) -> None:
    """An app without a URL must not cost the delivery loop anything: its events are
    written ``skipped`` (and stay listed), so a round takes only the events that have
    somewhere to go."""
    quiet = await _six_of_marketing_and_one_of_billing(gateway, app_endpoint)  # no URL
    stored = await _stored(gateway)
    nowhere = [e for e in stored if e.app == "marketing"]
    assert len(nowhere) >= 18  # sending, sent and delivered of six messages
    assert {(e.state, e.last_error) for e in nowhere} == {("skipped", outbox.NOWHERE)}
    assert {e.state for e in stored if e.app == "billing"} == {"pending"}
    async with httpx.AsyncClient() as client:
        delivery = _delivery(gateway, client, per_app_concurrency=1, concurrency=1)
        assert await delivery.run_once() == 1  # billing's first event, nothing to sweep
    listed = (await gateway.client.get("/v1/events", headers=quiet)).json()["data"]
    assert len(listed) == len(nowhere)
    assert {e["delivery"] for e in listed} == {"skipped"}


class TestAnAppThatLostItsUrl:
    """Events written while the app had a URL, delivered by a process configured without
    it (a restart with a new configuration): the sweep settles them."""

    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return with_settings(
            settings,
            apps={
                "billing": AppQuota(callback_url=APP_HOOK),
                "marketing": AppQuota(callback_url="https://marketing.test/events"),
            },
        )

    async def test_its_events_are_settled_in_one_round_whatever_the_slots(
        self, gateway: Gateway, app_endpoint: respx.MockRouter
    ) -> None:
        """One claim round settles all of its due events, even with one slot per app,
        while the events of an app with a URL still go through their slots."""
        await _six_of_marketing_and_one_of_billing(gateway, app_endpoint)
        nowhere = [e for e in await _stored(gateway) if e.app == "marketing"]
        assert len(nowhere) >= 12  # at least sent and delivered of six messages
        assert {e.state for e in nowhere} == {"pending"}  # it had a URL when they were written
        without_url = with_settings(
            gateway.state.settings,
            apps={"billing": AppQuota(callback_url=APP_HOOK)},
            events=EventsSettings(per_app_concurrency=1, concurrency=1),
        )
        async with httpx.AsyncClient() as client:
            delivery = EventDelivery(
                sessionmaker=gateway.state.sessionmaker,
                http_client=client,
                settings=without_url,
                clock=gateway.clock,
                owner="test-events",
            )
            taken = await delivery.run_once()
        stored = await _stored(gateway)
        assert {e.state for e in stored if e.app == "marketing"} == {"skipped"}
        assert taken == len(nowhere) + 1  # all settled, one delivered through billing's slot
        billing_states = [e.state for e in stored if e.app == "billing"]
        assert billing_states[0] == "delivered"  # its first event, in order, through one slot
        assert set(billing_states[1:]) == {"pending"}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # its planner's
async def test_the_claim_walks_the_pending_indexes_before_any_statistics(
    gateway: Gateway,
) -> None:
    """The claim's "no earlier pending event of this subject" test once read every
    pending row for each candidate when the table had no statistics yet (a burst after a
    quiet start): 1 s a claim at 5,000 waiting events. With revision 0012's partial
    indexes it is one short index walk each, whatever the planner knows."""
    now = gateway.clock()
    async with gateway.state.sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "INSERT INTO app_events (event_id, app, event_type, subject_id, seq, status,"
                " payload, state, attempts, next_attempt_at, created_at)"
                " SELECT 'evt_plan_' || g, 'billing', 'message.sent', 'msg_plan_' || (g / 2),"
                " 1 + g % 2, 'sent', '{}', 'pending', 0, :now, :now"
                " FROM generate_series(1, 3000) AS g"
            ),
            {"now": now},
        )
    claim = (
        select(AppEvent.event_pk)
        .where(outbox._due(now))  # the claim's own predicate
        .order_by(AppEvent.next_attempt_at, AppEvent.event_pk)
        .limit(128)
    )
    sql = str(claim.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    async with gateway.state.sessionmaker() as session:
        plan = "\n".join((await session.execute(text(f"EXPLAIN {sql}"))).scalars())
    assert "ix_app_events_pending_subject" in plan, plan
    assert "BitmapAnd" not in plan, plan


async def test_the_last_event_of_each_subject_is_one_index_step_before_any_statistics(
    gateway: Gateway,
) -> None:
    """Which status each message's last event had decides whether a change writes an
    event. On PostgreSQL, with no statistics yet, the ``IN``/``max`` form of that lookup
    scanned the whole table for every webhook group (4-9 ms each at 20k events); the
    lateral form is a backward index step per message whatever the planner knows. Both
    engines: the answer itself."""
    now = gateway.clock()
    is_postgres = gateway.state.engine.dialect.name == "postgresql"
    async with gateway.state.sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < 3000)"
                " INSERT INTO app_events (event_id, app, event_type, subject_id, seq, status,"
                " payload, state, attempts, next_attempt_at, created_at)"
                " SELECT 'evt_last_' || g, 'billing', 'message.sent', 'msg_last_' || (g / 2),"
                " 1 + g % 2, CASE WHEN g % 2 = 1 THEN 'delivered' ELSE 'sent' END, '{}',"
                " 'skipped', 0, :now, :now FROM s"
            ),
            {"now": now},
        )
    wanted = ["msg_last_7", "msg_last_1500", "msg_last_none"]
    async with gateway.state.sessionmaker() as session:
        last = await record._last_events(session, wanted)
        # g = 14 (seq 1, sent) and 15 (seq 2, delivered); 3000 alone: seq 1, sent.
        assert last == {"msg_last_7": (2, "delivered"), "msg_last_1500": (1, "sent")}
        if is_postgres:
            plan = "\n".join(
                (
                    await session.execute(
                        text("EXPLAIN " + record._LAST_EVENTS_PG.text), {"ids": wanted}
                    )
                ).scalars()
            )
            assert "Index Scan Backward using uq_app_events_subject_seq" in plan, plan
            assert "Seq Scan on app_events" not in plan, plan


async def test_a_recorded_report_wakes_the_delivery_loop(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    """A provider's report applied by the webhook writes app events: it wakes the
    delivery loop of the same process, which then need not wait for its poll.

    The report is the test's own, posted once the send is recorded: the simulator calls
    back as soon as it answers the create, so its reports may overtake the send's commit
    and be applied by the dispatcher's record instead (counted pending), and the test
    failed now and then (once in CI, 2026-11-25)."""
    response = await gateway.send(headers, to="+14155559007", body="wake up")  # sent only
    assert response.status_code == 202
    message_id = response.json()["message_id"]
    assert await gateway.dispatcher.run_once() == 1
    await gateway.sandbox.drain_callbacks()  # its one report, `sent`, by either path
    message = await gateway.message(headers, message_id)
    assert message["status"] == "sent"
    gateway.state.events_wakeup.clear()
    await gateway.twilio_report(message_id, str(message["provider_message_id"]), "delivered")
    assert gateway.state.events_wakeup.is_set()
