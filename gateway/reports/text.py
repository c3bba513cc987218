"""The report as plain-text tables, for ``sms-gateway costs``."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.reports.schemas import CostGroup, CostReport, Money


def _money(value: Money | None) -> str:
    return "-" if value is None else f"{value.amount} {value.currency}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned text columns, numbers right-aligned (they start with a digit or '-')."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str], *, header: bool = False) -> str:
        parts = []
        for cell, width in zip(cells, widths, strict=True):
            numeric = not header and (cell[:1].isdigit() or cell.startswith("-0"))
            parts.append(cell.rjust(width) if numeric else cell.ljust(width))
        return "  ".join(parts).rstrip()

    return [line(headers, header=True), "  ".join("-" * w for w in widths)] + [
        line(r) for r in rows
    ]


def _group_cells(group: CostGroup, keys: Sequence[str], accounts: Sequence[str]) -> list[str]:
    return [
        *(group.group.get(key) or "-" for key in keys),
        str(group.messages),
        str(group.segments),
        _money(group.billed_cost),
        _money(group.estimated_cost),
        _money(group.difference),
        *(_money(group.what_if.get(a)) for a in accounts),
    ]


def render_report(report: CostReport) -> str:
    by_currency = any("currency" in g.group for g in report.groups)
    keys = [*report.group_by, *(["currency"] if by_currency else [])]
    accounts = list(report.totals.what_if)
    lines = [
        f"Costs {report.since:%Y-%m-%dT%H:%M:%SZ} .. {report.until:%Y-%m-%dT%H:%M:%SZ} "
        f"({report.scope}); what-if: the same traffic at each account's list price",
        "",
    ]
    headers = [*keys, "messages", "segments", "billed", "estimated", "difference"]
    headers += [f"at {a}" for a in accounts]
    rows = [_group_cells(g, keys, accounts) for g in report.groups]
    total = _group_cells(report.totals, keys, accounts)
    if keys:
        total[0] = "TOTAL"
    rows.append(total)
    lines += _table(headers, rows)

    lines += ["", "Cheapest choice per country (saving: what the traffic cost minus it)", ""]
    lines += _table(
        ["country", "messages", "segments", "cost", "cheapest", "at cheapest", "saving"],
        [
            [
                c.country or "-",
                str(c.messages),
                str(c.segments),
                _money(c.cost),
                c.cheapest_account or "-",
                _money(c.cheapest_cost),
                _money(c.saving),
            ]
            for c in report.countries
        ],
    )

    lines += ["", "Delivery per account and country (seconds from sent to delivered)", ""]
    lines += _table(
        ["provider", "country", "messages", "delivered", "not", "pending", "rate", "p50", "p95"],
        [
            [
                s.provider,
                s.country or "-",
                str(s.messages),
                str(s.delivered),
                str(s.not_delivered),
                str(s.pending),
                s.delivery_rate or "-",
                "-" if s.p50_seconds is None else f"{s.p50_seconds:.3f}",
                "-" if s.p95_seconds is None else f"{s.p95_seconds:.3f}",
            ]
            for s in report.scorecard
        ],
    )
    return "\n".join(lines)
