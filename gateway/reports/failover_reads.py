"""How a report finds the messages taken by more than one account and reads their sends
(what it then does with them: :mod:`gateway.reports.failovers`).

The messages to look at are those a provider took that were claimed more than once, or
are back in the queue (``RESENT_PREDICATE``), found by creation time through the partial
index ``ix_messages_resent`` (revision 0013) without reading the window's other messages;
each one's attempts are read through their unique index, and only those one of whose sends
was followed are corrected (a message retried before its only send is not). PostgreSQL
adds the corrections up itself and sends back a few hundred sums
(:func:`corrections_by_postgresql`); SQLite's rows are added up in Python
(:func:`gateway.reports.failovers.send_by_send`; the same arithmetic:
tests/integration/test_reports_sends.py compares both engines on random traffic).

The cost follows the number of messages claimed more than once: 2.5 ms (three round trips)
with none, as in ``bench/cost_report.py``'s month; 0.42 s on the same machine for a month
of a million with 40,000 of them (1 % failed over on a report, 3 % retried before their
send), against 0.30 s for the rest of that report, mostly reading those messages' rows and
attempts from disk. The report makes this read in the same snapshot as its others
(:func:`gateway.reports.queries.begin_snapshot`), so what it takes out is exactly what they
counted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    String,
    bindparam,
    case,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
    true,
    tuple_,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.costs.attempts import COUNTED_OUTCOMES
from gateway.db.models import RESENT_PREDICATE, Attempt, Message
from gateway.reports.failovers import (
    QUEUED_AGAIN,
    Corrections,
    MessageFigures,
    TakenAttempt,
    send_by_send,
)
from gateway.reports.params import ReportParams
from gateway.reports.queries import (
    DELIVERY_KEY_SQL,
    NOT_DELIVERED_KEY,
    PENDING_KEY,
    DeliveryCounts,
    TrafficRow,
    delivery_key,
    is_sqlite,
    mms_flag,
    plan_for_the_window,
)
from gateway.reports.rollup import NO_COMPLETION_KEY, SIGNED_TRAFFIC


async def failover_corrections(session: AsyncSession, params: ReportParams) -> Corrections:
    """The corrections for the window's messages a send of which was followed by another
    attempt or by a return to the queue (:func:`failover_query`): on PostgreSQL added up
    by the server (:func:`corrections_by_postgresql`), on SQLite in Python."""
    await plan_for_the_window(session)
    if is_sqlite(session):
        return await corrections_here(session, params)
    return await corrections_by_postgresql(session, params)


async def corrections_here(session: AsyncSession, params: ReportParams) -> Corrections:
    """:func:`send_by_send` over the rows of :func:`failover_query` (either engine)."""
    sqlite = is_sqlite(session)
    # Core, not the session's ORM execution: plain rows, read by position.
    connection = await session.connection()
    rows = await connection.execute(
        _taken(sqlite=sqlite, app=params.app is not None), _parameters(params)
    )
    messages: dict[str, tuple[MessageFigures, list[TakenAttempt]]] = {}
    for row in rows.tuples():
        found = messages.get(row[0])
        if found is None:
            found = messages[row[0]] = (_figures(row, sqlite=sqlite), [])
        found[1].append(TakenAttempt(*row[_ATTEMPT]))
    return send_by_send(messages.values())


async def corrections_by_postgresql(session: AsyncSession, params: ReportParams) -> Corrections:
    """:func:`send_by_send` in SQL, over the same rows: a month with thousands of
    failovers sends back some hundred sums, not every send (read and added up in Python,
    they took longer than the report's other reads together)."""
    connection = await session.connection()
    # Costed per candidate, the plan looks big enough to the planner to compile it (JIT:
    # 50 ms of 0.48 s at 40,000 candidates) for rows that are few by design.
    await connection.execute(text("SET LOCAL jit = off"))
    traffic: list[TrafficRow] = []
    delivery: DeliveryCounts = defaultdict(dict)
    summed = _summed_by_postgresql(app=params.app is not None)
    for row in (await connection.execute(summed, _parameters(params))).tuples():
        traffic_row, account, country, app, currency, mms, key, repeats, handed, *sums = row
        if traffic_row:
            traffic.append(
                TrafficRow.from_row(
                    (account, country, app, currency, mms, *sums), Decimal
                ).with_repeats(int(repeats))
            )
        elif handed:
            delivery[(account, country)][None if key == NO_COMPLETION_KEY else key] = int(handed)
    return Corrections(traffic=traffic, delivery=delivery)


@cache
def _summed_by_postgresql(*, app: bool) -> Select[Any]:
    """:func:`send_by_send`'s arithmetic over :func:`failover_query`'s rows: each
    message's row out (signed -1), each send in (+1), then summed per traffic group and
    per (account, country, delivery key) at once (grouping sets). Built once (building it
    took 4 ms, more than running it when there is nothing to correct); the window is
    bound when it runs (:func:`_parameters`)."""
    taken = _taken(sqlite=False, app=app).cte("taken")
    # Once per provider message, the latest attempt (gateway.costs.attempts.sends).
    copies = select(
        taken,
        func.row_number()
        .over(
            partition_by=(
                taken.c.message_id,
                taken.c.attempt_account,
                func.coalesce(taken.c.provider_message_id, cast(taken.c.attempt_id, String)),
            ),
            order_by=taken.c.attempt_number.desc(),
        )
        .label("copy"),
    ).subquery("copies")
    made = (
        select(
            copies,
            func.row_number()
            .over(partition_by=copies.c.message_id, order_by=copies.c.attempt_number.desc())
            .label("from_last"),
        )
        .where(copies.c.copy == 1)
        .cte("made")
    )
    own_key = func.coalesce(made.c.delivery_key, NO_COMPLETION_KEY)
    row_out = select(
        literal(-1).label("sign"),
        literal(0).label("repeat"),
        made.c.provider_account,
        made.c.country,
        made.c.app,
        made.c.cost_currency,
        made.c.mms,
        made.c.segments,
        made.c.billed_cost,
        made.c.estimated_cost,
        case((made.c.sent_at.is_not(None), own_key)).label("delivery_key"),
    ).where(made.c.from_last == 1)
    followed = or_(
        made.c.from_last > 1,
        made.c.status == QUEUED_AGAIN,
        made.c.attempt_number < made.c.latest,
    )
    send_in = select(
        literal(1),
        case((made.c.from_last > 1, 1), else_=0),
        made.c.attempt_account,
        made.c.country,
        made.c.app,
        made.c.attempt_currency,
        made.c.mms,
        made.c.segments,
        made.c.attempt_billed,
        made.c.attempt_estimated,
        case(
            (followed, NOT_DELIVERED_KEY),
            (made.c.sent_at.is_(None), PENDING_KEY),
            else_=own_key,
        ),
    )
    moves = union_all(row_out, send_in).cte("moves")
    traffic_group = (
        moves.c.provider_account,
        moves.c.country,
        moves.c.app,
        moves.c.cost_currency,
        moves.c.mms,
    )
    return select(
        func.grouping(moves.c.delivery_key).label("traffic_row"),
        *traffic_group,
        moves.c.delivery_key,
        func.sum(moves.c.repeat),
        func.sum(case((moves.c.delivery_key.is_not(None), moves.c.sign), else_=0)),
        *(literal_column(figure) for figure in SIGNED_TRAFFIC),
    ).group_by(
        func.grouping_sets(
            tuple_(*traffic_group),
            tuple_(moves.c.provider_account, moves.c.country, moves.c.delivery_key),
        )
    )


def failover_query(params: ReportParams, *, sqlite: bool) -> Select[Any]:
    """:func:`_taken` with the window of ``params`` bound (to compile it, for a plan)."""
    return _taken(sqlite=sqlite, app=params.app is not None).params(_parameters(params))


def _parameters(params: ReportParams) -> dict[str, object]:
    """The window's values for :func:`_taken`'s parameters."""
    bound: dict[str, object] = {"since": params.since, "until": params.until}
    if params.app is not None:
        bound["app"] = params.app
    return bound


def _in_bound_window(*, app: bool) -> list[ColumnElement[bool]]:
    """The messages of :func:`gateway.reports.queries.in_window`, the window's values
    bound when the statement runs."""
    conditions = [
        Message.created_at >= bindparam("since", type_=Message.created_at.type),
        Message.created_at < bindparam("until", type_=Message.created_at.type),
        Message.provider_account.is_not(None),
    ]
    if app:
        conditions.append(Message.app == bindparam("app", type_=Message.app.type))
    return conditions


@cache
def _taken(*, sqlite: bool, app: bool) -> Select[Any]:
    """The attempts a provider took of the window's messages one of whose sends was
    followed (by a later attempt, or by the message's return to the queue), each with its
    message's figures as the scans count them. The window (``since``, ``until``, ``app``
    when ``app``) is bound when it runs.

    The candidates come from ``ix_messages_resent`` (the index's predicate word for word:
    both engines need to see it), and each one's attempts from their unique index: on
    PostgreSQL through a ``LATERAL`` (its window functions keep it from being flattened
    into a join), which reads a few attempts per candidate instead of hashing all of
    ``message_attempts``, as a join planned for thousands of candidates did (0.35 s over a
    million attempts). SQLite joins by index lookups anyway."""
    candidates = (
        select(
            Message.message_id,
            Message.provider_account,
            Message.country,
            Message.app,
            Message.cost_currency,
            mms_flag(sqlite=sqlite).label("mms"),
            Message.segments,
            Message.status,
            Message.sent_at,
            Message.completed_at,
            Message.billed_cost,
            Message.estimated_cost,
            # PostgreSQL: the key exactly as its scans and totals compute it; SQLite's
            # scan computes it in Python (delivery_key), and so does this.
            (
                literal_column("NULL", Integer)
                if sqlite
                else literal_column(DELIVERY_KEY_SQL, Integer)
            ).label("delivery_key"),
        )
        .where(*_in_bound_window(app=app), text(f"({RESENT_PREDICATE})"))
        .subquery("m")
    )
    # TakenAttempt's fields, in order (then the outcome, only to filter on).
    attempt_columns = (
        Attempt.attempt_number,
        Attempt.attempt_id,
        Attempt.provider_account.label("attempt_account"),
        Attempt.provider_message_id,
        Attempt.estimated_cost.label("attempt_estimated"),
        Attempt.billed_cost.label("attempt_billed"),
        Attempt.cost_currency.label("attempt_currency"),
        Attempt.outcome,
    )
    first_send = func.min(case((Attempt.outcome.in_(COUNTED_OUTCOMES), Attempt.attempt_number)))
    if sqlite:
        joined = (
            select(
                candidates,
                *attempt_columns,
                func.max(Attempt.attempt_number)
                .over(partition_by=Attempt.message_id)
                .label("latest"),
                first_send.over(partition_by=Attempt.message_id).label("first_send"),
            )
            .join_from(candidates, Attempt, Attempt.message_id == candidates.c.message_id)
            .subquery("r")
        )
    else:
        attempts = (
            select(
                *attempt_columns,
                func.max(Attempt.attempt_number).over().label("latest"),
                first_send.over().label("first_send"),
            )
            .where(Attempt.message_id == candidates.c.message_id)
            .lateral("a")
        )
        joined = select(candidates, attempts).join_from(candidates, attempts, true()).subquery("r")
    columns = joined.c
    return select(
        *(columns[name] for name in _MESSAGE_COLUMNS),
        columns.latest,
        *(columns[name] for name in _ATTEMPT_COLUMNS),
    ).where(
        columns.outcome.in_(COUNTED_OUTCOMES),
        or_(columns.first_send < columns.latest, columns.status == QUEUED_AGAIN),
    )


#: The query's columns, in the order the rows are read: the message's, as the scans count
#: it, its latest attempt's number, then a taken attempt's (TakenAttempt's fields).
_MESSAGE_COLUMNS = (
    "message_id",
    "provider_account",
    "country",
    "app",
    "cost_currency",
    "mms",
    "segments",
    "status",
    "sent_at",
    "completed_at",
    "billed_cost",
    "estimated_cost",
    "delivery_key",
)
_ATTEMPT_COLUMNS = (
    "attempt_number",
    "attempt_id",
    "attempt_account",
    "provider_message_id",
    "attempt_estimated",
    "attempt_billed",
    "attempt_currency",
)
_ATTEMPT = slice(len(_MESSAGE_COLUMNS) + 1, len(_MESSAGE_COLUMNS) + 1 + len(_ATTEMPT_COLUMNS))


def _figures(row: Sequence[Any], *, sqlite: bool) -> MessageFigures:
    (
        _message_id,
        account,
        country,
        app,
        currency,
        mms,
        segments,
        status,
        sent_at,
        completed_at,
        billed,
        estimated,
        key,
        latest,
    ) = row[: len(_MESSAGE_COLUMNS) + 1]
    if sqlite and sent_at is not None:
        key = delivery_key(status, sent_at, completed_at)
    return MessageFigures(
        account=account,
        country=country,
        app=app,
        currency=currency,
        mms=bool(mms),
        segments=segments,
        status=status,
        handed=sent_at is not None,
        delivery_key=key,
        billed=billed,
        estimated=estimated,
        latest_attempt=latest,
    )
