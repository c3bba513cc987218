"""The dashboard's HTML: two charts (cost, delivery rate) per provider and country, and
the tables behind them (what-if per country, delivery times)."""

from __future__ import annotations

from decimal import Decimal
from html import escape

from gateway.dashboard.svg import Bar, bar_chart
from gateway.reports.schemas import CostReport, Money

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1d2330; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
.chart rect { fill: #3b6fd8; } .chart text { font-size: 12px; fill: #1d2330; }
#delivery-chart rect { fill: #2e9e62; }
table { border-collapse: collapse; margin-top: 8px; }
th, td { padding: 4px 10px; border-bottom: 1px solid #dde1ea; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.muted { color: #667085; } form { margin: 12px 0; }
"""


def _money(value: Money | None) -> str:
    return "-" if value is None else f"{value.amount} {value.currency}"


def _label(provider: str | None, country: str | None) -> str:
    return f"{provider or '?'} · {country or '??'}"


def _percent(rate: str) -> str:
    return f"{(Decimal(rate) * 100).quantize(Decimal('0.01'))} %"


def _cells(values: list[str], numeric_from: int) -> str:
    return "".join(
        f'<td class="n">{escape(v)}</td>' if i >= numeric_from else f"<td>{escape(v)}</td>"
        for i, v in enumerate(values)
    )


def render_dashboard(report: CostReport) -> str:
    cost_bars = [
        Bar(
            _label(g.group.get("provider"), g.group.get("country")),
            float(g.cost.value) if g.cost else 0.0,
            _money(g.cost) if g.cost else "no cost yet",
        )
        for g in report.groups
    ]
    rate_bars = [
        Bar(
            _label(s.provider, s.country),
            float(Decimal(s.delivery_rate)) if s.delivery_rate else 0.0,
            _percent(s.delivery_rate) if s.delivery_rate else "no outcome yet",
        )
        for s in report.scorecard
    ]
    accounts = list(report.totals.what_if)
    what_if_head = "".join(f"<th>at {escape(a)}</th>" for a in accounts)
    what_if_rows = "".join(
        "<tr>"
        + _cells(
            [
                c.country or "??",
                str(c.messages),
                str(c.segments),
                _money(c.cost),
                *(_money(c.what_if.get(a)) for a in accounts),
                c.cheapest_account or "-",
                _money(c.saving),
            ],
            1,
        )
        + "</tr>"
        for c in report.countries
    )
    delivery_rows = "".join(
        "<tr>"
        + _cells(
            [
                s.provider,
                s.country or "??",
                str(s.messages),
                str(s.delivered),
                str(s.not_delivered),
                str(s.pending),
                _percent(s.delivery_rate) if s.delivery_rate else "-",
                "-" if s.p50_seconds is None else f"{s.p50_seconds:.3f}",
                "-" if s.p95_seconds is None else f"{s.p95_seconds:.3f}",
            ],
            2,
        )
        + "</tr>"
        for s in report.scorecard
    )
    since = report.since.strftime("%Y-%m-%dT%H:%M:%SZ")
    until = report.until.strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>SMS gateway: cost and delivery</title>
<style>{_STYLE}</style></head>
<body>
<h1>Cost and delivery per provider and country</h1>
<p class="muted">Messages created from <span id="since">{since}</span> to
<span id="until">{until}</span> (every app). Cost is the billed cost where the provider has
billed, else the list-price estimate. A message sent again after a negative delivery report
counts under each account that sent it, with that account's bill and outcome; the total
counts it once.</p>
<form method="get" action="/dashboard">
<label>since <input name="since" value="{escape(since)}"></label>
<label>until <input name="until" value="{escape(until)}"></label>
<button type="submit">Show</button></form>
<p>Total: <strong id="total-messages">{report.totals.messages}</strong> messages,
<strong id="total-cost">{escape(_money(report.totals.cost))}</strong>
(billed <span id="total-billed">{escape(_money(report.totals.billed_cost))}</span>).</p>
<h2>Cost per provider and country</h2>
{bar_chart("cost-chart", "Cost per provider and country", cost_bars, empty="No messages.")}
<h2>Delivery rate per provider and country</h2>
{bar_chart("delivery-chart", "Delivery rate", rate_bars, empty="No messages sent.")}
<h2>The same traffic at each account's list price</h2>
<table id="what-if"><thead><tr><th>country</th><th>messages</th><th>segments</th>
<th>cost</th>{what_if_head}<th>cheapest</th><th>saving</th></tr></thead>
<tbody>{what_if_rows}</tbody></table>
<h2>Delivery times (seconds from sent to delivered)</h2>
<table id="delivery"><thead><tr><th>provider</th><th>country</th><th>messages</th>
<th>delivered</th><th>not delivered</th><th>pending</th><th>rate</th><th>p50</th>
<th>p95</th></tr></thead><tbody>{delivery_rows}</tbody></table>
</body></html>
"""
