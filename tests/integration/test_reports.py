"""``GET /v1/reports/costs`` over known stored messages, asserted to the cent (to the
millionth, the stored scale) on SQLite and PostgreSQL. The rows are inserted directly: a
report reads stored data, whoever wrote it."""

from __future__ import annotations

import math
import random
import shutil
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, text

from gateway.costs.pricing import PriceBook, parse_price_table
from gateway.db.engine import create_engine, create_sessionmaker
from gateway.db.models import Message
from gateway.reports.histogram import RESOLUTION
from gateway.reports.params import ReportParams
from gateway.reports.queries import Delivery, delivery, delivery_counts_query, traffic_rows
from gateway.settings import Settings
from tests.integration.conftest import Gateway, with_settings
from tests.support.postgres import PostgresServer

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
WINDOW = {"since": "2026-11-01", "until": "2026-11-02T00:00:00Z"}


def _table(kind: str, countries: dict[str, Any]) -> Any:
    document = {
        "kind": kind,
        "currency": "USD",
        "sources": {
            "test": {
                "description": "test figures",
                "evidence": "third-party",
                "as_of": datetime(2026, 11, 1).date(),
            }
        },
        "countries": countries,
    }
    return parse_price_table(document, name=kind, source=f"{kind}.toml")


def _figure(amount: str) -> dict[str, str]:
    return {"amount": amount, "source": "test"}


#: twilio US SMS 0.0079 + 0.0035 carrier fee, MMS 0.0200, GB 0.0400; telnyx US SMS
#: 0.0040 + 0.0035, MMS 0.0150, and no GB price (unknown, never zero).
PRICES = PriceBook(
    {
        "twilio": _table(
            "twilio",
            {
                "US": {
                    "sms": {
                        "outbound": {"rate": _figure("0.0079"), "carrier_fee": _figure("0.0035")}
                    },
                    "mms": {"outbound": {"rate": _figure("0.0200")}},
                },
                "GB": {"sms": {"outbound": {"rate": _figure("0.0400")}}},
            },
        ),
        "telnyx": _table(
            "telnyx",
            {
                "US": {
                    "sms": {
                        "outbound": {"rate": _figure("0.0040"), "carrier_fee": _figure("0.0035")}
                    },
                    "mms": {"outbound": {"rate": _figure("0.0150")}},
                },
            },
        ),
    }
)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return with_settings(settings, prices=PRICES)


def _message(
    n: int,
    *,
    account: str | None,
    country: str | None,
    segments: int = 1,
    status: str = "delivered",
    estimated: str | None = None,
    billed: str | None = None,
    delivered_after: float | None = None,
    mms: bool = False,
    app: str = "billing",
    created: datetime = T0,
) -> Message:
    sent_at = created + timedelta(seconds=1) if account else None
    completed = (
        sent_at + timedelta(seconds=delivered_after)
        if sent_at is not None and delivered_after is not None
        else None
    )
    return Message(
        message_id=f"msg_{n:04d}",
        app=app,
        to_number="+14155550100" if country == "US" else "+447400123456",
        body="x",
        media_urls=["https://example.com/a.png"] if mms else [],
        encoding="GSM-7",
        segments=segments,
        status=status,
        provider_account=account,
        provider_kind=account.split("-")[0] if account else None,
        message_metadata={},
        attempt_count=1 if account else 0,
        created_at=created,
        updated_at=created,
        sent_at=sent_at,
        completed_at=completed,
        country=country,
        estimated_cost=Decimal(estimated) if estimated else None,
        billed_cost=Decimal(billed) if billed else None,
        cost_currency="USD" if (estimated or billed) else None,
    )


def known_rows() -> list[Message]:
    """Six messages of the app ``billing`` in the window, and three that stay out of it."""
    tw, tx = "twilio-sandbox", "telnyx-sandbox"
    return [
        _message(
            1, account=tw, country="US", estimated="0.0114", billed="0.0120", delivered_after=2
        ),
        _message(
            2,
            account=tw,
            country="US",
            segments=3,
            estimated="0.0342",
            billed="0.0342",
            delivered_after=4,
        ),
        _message(3, account=tw, country="US", mms=True, estimated="0.0200", delivered_after=10),
        _message(
            4,
            account=tx,
            country="US",
            segments=2,
            status="undelivered",
            estimated="0.0150",
            billed="0.0160",
            delivered_after=3,
        ),
        _message(5, account=tx, country="GB", billed="0.0390", delivered_after=6),
        _message(6, account=tw, country="GB", segments=2, status="sent", estimated="0.0800"),
        # Another app's traffic, a message outside the window, one never handed to a
        # provider: none of them in the billing app's report.
        _message(
            7,
            account=tw,
            country="US",
            estimated="0.0114",
            billed="0.0114",
            app="other",
            delivered_after=1,
        ),
        _message(
            8,
            account=tw,
            country="US",
            estimated="9.0",
            billed="9.0",
            created=T0 - timedelta(days=2),
        ),
        _message(9, account=None, country="US", status="accepted"),
    ]


async def _store(gateway: Gateway) -> None:
    async with gateway.state.sessionmaker() as session:
        session.add_all(known_rows())
        await session.commit()


def _amount(money: dict[str, str] | None) -> Decimal | None:
    if money is None:
        return None
    assert money["currency"] == "USD"
    assert isinstance(money["amount"], str)  # decimals travel as strings, never floats
    return Decimal(money["amount"])


def _groups(report: dict[str, Any]) -> dict[tuple[str | None, ...], dict[str, Any]]:
    return {tuple(g["group"].values()): g for g in report["groups"]}


async def test_costs_by_provider_and_country_to_the_cent(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    await _store(gateway)
    response = await gateway.client.get(
        "/v1/reports/costs", params={**WINDOW, "group_by": "provider,country"}, headers=headers
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["scope"] == "app:billing"
    assert report["group_by"] == ["provider", "country"]
    groups = _groups(report)
    assert list(groups) == [
        ("telnyx-sandbox", "GB"),
        ("telnyx-sandbox", "US"),
        ("twilio-sandbox", "GB"),
        ("twilio-sandbox", "US"),
    ]

    us = groups[("twilio-sandbox", "US")]
    assert (us["messages"], us["segments"], us["billed_messages"]) == (3, 5, 2)
    assert _amount(us["billed_cost"]) == Decimal("0.0462")
    assert _amount(us["estimated_cost"]) == Decimal("0.0656")
    assert _amount(us["difference"]) == Decimal("0.0006")  # 0.0120 - 0.0114, 0.0342 - 0.0342
    assert _amount(us["cost"]) == Decimal("0.0662")  # billed 0.0462 + the MMS's estimate
    # 4 SMS segments and 1 MMS: twilio 4 x 0.0114 + 0.0200, telnyx 4 x 0.0075 + 0.0150.
    assert _amount(us["what_if"]["twilio-sandbox"]) == Decimal("0.0656")
    assert _amount(us["what_if"]["telnyx-sandbox"]) == Decimal("0.0450")

    gb = groups[("telnyx-sandbox", "GB")]
    assert _amount(gb["billed_cost"]) == Decimal("0.0390")
    assert gb["estimated_cost"] is None
    assert gb["difference"] is None
    assert _amount(gb["what_if"]["twilio-sandbox"]) == Decimal("0.0400")
    assert gb["what_if"]["telnyx-sandbox"] is None  # no GB price: unknown, not free

    pending = groups[("twilio-sandbox", "GB")]
    assert pending["billed_cost"] is None
    assert pending["billed_messages"] == 0
    assert _amount(pending["cost"]) == Decimal("0.0800")

    totals = report["totals"]
    assert totals["group"] == {}
    assert (totals["messages"], totals["segments"], totals["billed_messages"]) == (6, 10, 4)
    assert _amount(totals["billed_cost"]) == Decimal("0.1012")
    assert _amount(totals["estimated_cost"]) == Decimal("0.1606")
    assert _amount(totals["difference"]) == Decimal("0.0016")
    assert _amount(totals["cost"]) == Decimal("0.2012")
    assert _amount(totals["what_if"]["twilio-sandbox"]) == Decimal("0.2084")
    assert totals["what_if"]["telnyx-sandbox"] is None

    countries = {c["country"]: c for c in report["countries"]}
    assert countries["US"]["cheapest_account"] == "telnyx-sandbox"
    assert _amount(countries["US"]["cost"]) == Decimal("0.0822")
    assert _amount(countries["US"]["cheapest_cost"]) == Decimal("0.0600")
    assert _amount(countries["US"]["saving"]) == Decimal("0.0222")
    # GB: only twilio has a price; the traffic cost 0.119, twilio would charge 0.120.
    assert countries["GB"]["cheapest_account"] == "twilio-sandbox"
    assert _amount(countries["GB"]["saving"]) == Decimal("-0.0010")


async def test_scorecard_delivery_rate_and_percentiles(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    await _store(gateway)
    response = await gateway.client.get("/v1/reports/costs", params=WINDOW, headers=headers)
    assert response.status_code == 200, response.text
    score = {(s["provider"], s["country"]): s for s in response.json()["scorecard"]}
    twilio_us = score[("twilio-sandbox", "US")]
    assert (twilio_us["messages"], twilio_us["delivered"], twilio_us["pending"]) == (3, 3, 0)
    assert twilio_us["delivery_rate"] == "1.0000"
    # Durations 2, 4 and 10 s: p50 = 4; p95 interpolates at rank 1.9: 4 + 0.9 x 6 = 9.4;
    # both to the report's resolution (1 %: they come from a histogram).
    assert twilio_us["p50_seconds"] == pytest.approx(4.0, rel=RESOLUTION)
    assert twilio_us["p95_seconds"] == pytest.approx(9.4, rel=RESOLUTION)
    telnyx_us = score[("telnyx-sandbox", "US")]
    assert (telnyx_us["delivered"], telnyx_us["not_delivered"]) == (0, 1)
    assert telnyx_us["delivery_rate"] == "0.0000"
    assert telnyx_us["p50_seconds"] is None
    twilio_gb = score[("twilio-sandbox", "GB")]
    assert (twilio_gb["pending"], twilio_gb["delivery_rate"]) == (1, None)
    assert score[("telnyx-sandbox", "GB")]["p95_seconds"] == pytest.approx(6.0, rel=RESOLUTION)


async def test_an_app_sees_only_its_own_traffic(gateway: Gateway) -> None:
    await _store(gateway)
    other = await gateway.key_for("other")
    response = await gateway.client.get(
        "/v1/reports/costs", params={**WINDOW, "group_by": "app"}, headers=other
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["scope"] == "app:other"
    assert [g["group"] for g in report["groups"]] == [{"app": "other"}]
    assert _amount(report["totals"]["billed_cost"]) == Decimal("0.0114")


async def test_empty_group_by_gives_totals_only(gateway: Gateway, headers: dict[str, str]) -> None:
    await _store(gateway)
    response = await gateway.client.get(
        "/v1/reports/costs", params={**WINDOW, "group_by": ""}, headers=headers
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert [g["group"] for g in report["groups"]] == [{}]
    assert report["groups"][0]["messages"] == report["totals"]["messages"] == 6


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-11-01T09:00:00"}, "until"),  # no zone
        ({"since": "2026-11-02", "until": "2026-11-01"}, "since"),
        ({"since": "2024-01-01", "until": "2026-01-01"}, "since"),  # over 366 days
        ({"group_by": "provider,carrier"}, "group_by"),
    ],
)
async def test_bad_parameters_are_422_problems(
    gateway: Gateway, headers: dict[str, str], params: dict[str, str], field: str
) -> None:
    response = await gateway.client.get("/v1/reports/costs", params=params, headers=headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["errors"][0]["field"] == field


async def test_the_report_needs_an_api_key(gateway: Gateway) -> None:
    response = await gateway.client.get("/v1/reports/costs")
    assert response.status_code == 401


def _delivered_rows(
    durations: list[timedelta | None], status: str = "delivered"
) -> list[dict[str, Any]]:
    """Messages of two accounts and two countries, one per duration (``None``: none known)."""
    rows = []
    for n, elapsed in enumerate(durations):
        created = T0 + timedelta(seconds=n)
        rows.append(
            {
                "message_id": f"msg_t{n:06d}",
                "app": "billing",
                "to_number": "+14155550100",
                "body": "x",
                "media_urls": [],
                "encoding": "GSM-7",
                "segments": 1,
                "status": status,
                "provider_account": ("twilio-sandbox", "telnyx-sandbox")[n % 2],
                "provider_kind": ("twilio", "telnyx")[n % 2],
                "message_metadata": {},
                "attempt_count": 1,
                "created_at": created,
                "updated_at": created,
                "sent_at": created,
                "completed_at": None if elapsed is None else created + elapsed,
                "country": ("US", "GB")[n // 2 % 2],
            }
        )
    return rows


async def _delivery_on(url: str, rows: list[dict[str, Any]]) -> dict[Any, Delivery]:
    engine = create_engine(url)
    try:
        async with create_sessionmaker(engine)() as session:
            await session.execute(insert(Message), rows)
            await session.commit()
            return await delivery(session, _DAY)
    finally:
        await engine.dispose()


_DAY = ReportParams(since=T0, until=T0 + timedelta(days=1), group_by=("provider", "country"))


@pytest.mark.postgres
async def test_both_engines_give_the_same_percentiles_within_one_percent(
    postgres: PostgresServer, sqlite_template: Path, tmp_path: Path
) -> None:
    rng = random.Random(6)
    durations: list[timedelta | None] = [
        timedelta(microseconds=int(rng.lognormvariate(15.0, 1.5))) for _ in range(3000)
    ]
    # A provider clock behind ours, under a millisecond, over a day, bucket edges.
    durations += [timedelta(seconds=-3), timedelta(microseconds=400), timedelta(days=1, hours=2)]
    durations += [timedelta(microseconds=round(1000 * 1.01**k)) for k in range(0, 1200, 7)]
    delivered = _delivered_rows(durations)
    others = [
        *_delivered_rows([None] * 5),  # delivered, no time reported: counted, not timed
        *_delivered_rows([timedelta(seconds=3)] * 6, status="undelivered"),
        *_delivered_rows([timedelta(seconds=3)] * 7, status="failed"),
        *_delivered_rows([None] * 9, status="sent"),
    ]
    for n, row in enumerate(others):
        row["message_id"] = f"msg_o{n:06d}"
    rows = delivered + others
    shutil.copyfile(sqlite_template, tmp_path / "same.db")
    on_sqlite = await _delivery_on(f"sqlite+aiosqlite:///{tmp_path / 'same.db'}", rows)
    on_postgresql = await _delivery_on(
        postgres.create_database("report_same_figures", template="gateway_template"), rows
    )
    assert len(on_sqlite) == 4
    assert on_postgresql == on_sqlite  # the same keys, the same interpolation
    assert sum(d.handed for d in on_sqlite.values()) == len(rows)
    assert sum(d.delivered for d in on_sqlite.values()) == len(delivered) + 5
    assert sum(d.not_delivered for d in on_sqlite.values()) == 13

    exact: dict[Any, list[float]] = {}
    for row in delivered:
        elapsed = (row["completed_at"] - row["sent_at"]).total_seconds()
        exact.setdefault((row["provider_account"], row["country"]), []).append(elapsed)
    for key, values in exact.items():
        for fraction, figure in ((0.5, on_sqlite[key].p50), (0.95, on_sqlite[key].p95)):
            truth = _percentile_cont(values, fraction)
            assert figure is not None
            # The report's promise, plus its rounding to milliseconds.
            assert abs(figure - truth) <= RESOLUTION * truth + 0.0005, (key, fraction)


def _percentile_cont(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    lower, upper = math.floor(position), math.ceil(position)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


@pytest.mark.postgres
async def test_the_planner_knows_the_bucket_count_from_migration_0009(
    postgres: PostgresServer,
) -> None:
    """Without the statistics object the planner takes every delivered message for a group
    of its own, and counts the buckets in one process instead of parallel workers. It only
    helps while the migration's expression is the query's, constants included."""
    # 2,000 messages over 40 buckets, in 4 (account, country) pairs: 160 groups.
    rows = _delivered_rows([timedelta(seconds=1.01 ** (n % 40)) for n in range(2000)])
    url = postgres.create_database("report_bucket_statistics", template="gateway_template")
    engine = create_engine(url)
    query = delivery_counts_query(_DAY).compile(
        dialect=engine.dialect, compile_kwargs={"literal_binds": True}
    )

    async def estimated_groups() -> int:
        async with engine.begin() as connection:
            await connection.execute(text("ANALYZE messages"))
            plan = (await connection.execute(text(f"EXPLAIN (FORMAT JSON) {query}"))).scalar_one()
        return int(plan[0]["Plan"]["Plan Rows"])

    try:
        async with engine.begin() as connection:
            await connection.execute(insert(Message), rows)
        with_statistics = await estimated_groups()
        async with engine.begin() as connection:
            await connection.execute(text("DROP STATISTICS st_messages_delivery_key"))
        without = await estimated_groups()
    finally:
        await engine.dispose()
    assert with_statistics <= 400
    assert without >= 1000  # what the statistics are there to correct


@pytest.mark.postgres
async def test_the_report_is_planned_for_its_window_in_its_transaction_only(
    postgres: PostgresServer,
) -> None:
    """A generic plan (PostgreSQL's choice after five runs of a prepared statement) does not
    know the window and scans it serially through an index: each run is planned afresh."""
    url = postgres.create_database("report_custom_plans", template="gateway_template")
    engine = create_engine(url)
    show = text("SHOW plan_cache_mode")
    try:
        async with create_sessionmaker(engine)() as session:
            assert (await session.execute(show)).scalar_one() == "auto"
            await traffic_rows(session, _DAY)
            assert (await session.execute(show)).scalar_one() == "force_custom_plan"
            await session.rollback()
            await delivery(session, _DAY)
            assert (await session.execute(show)).scalar_one() == "force_custom_plan"
            await session.commit()
            # SET LOCAL: the pooled connection is back to the server's default.
            assert (await session.execute(show)).scalar_one() == "auto"
    finally:
        await engine.dispose()
