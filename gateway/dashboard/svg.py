"""Horizontal bar charts as inline SVG, drawn on the server.

Bar lengths are geometry (floats are fine there); every figure a person reads is the exact
text it was given (``Bar.text``), so money shown on the chart is the report's decimal
string, never a float rounded by the drawing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

_WIDTH = 720
_LABEL = 220
_VALUE = 150
_ROW = 26
_BAR = 16
_TOP = 8


@dataclass(frozen=True)
class Bar:
    label: str
    #: The bar's length relative to the longest (any unit; only ratios matter).
    value: float
    #: What the reader sees at the end of the bar: the exact figure.
    text: str


def bar_chart(chart_id: str, title: str, bars: Sequence[Bar], *, empty: str) -> str:
    if not bars:
        return f'<p class="empty" id="{escape(chart_id)}">{escape(empty)}</p>'
    area = _WIDTH - _LABEL - _VALUE
    top = max((bar.value for bar in bars), default=0.0)
    height = _TOP * 2 + _ROW * len(bars)
    parts = [
        f'<svg id="{escape(chart_id)}" class="chart" role="img" '
        f'aria-labelledby="{escape(chart_id)}-title" viewBox="0 0 {_WIDTH} {height}" '
        f'width="{_WIDTH}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
    ]
    for index, bar in enumerate(bars):
        y = _TOP + index * _ROW
        length = 0.0 if top <= 0 else max(bar.value, 0.0) / top * area
        label, text = escape(bar.label), escape(bar.text)
        parts.append(
            f'<g class="bar" data-label="{label}" data-value="{text}">'
            f"<title>{label}: {text}</title>"
            f'<text x="{_LABEL - 8}" y="{y + _BAR - 3}" text-anchor="end">{label}</text>'
            f'<rect x="{_LABEL}" y="{y}" width="{length:.1f}" height="{_BAR}" rx="2"/>'
            f'<text class="figure" x="{_LABEL + length + 6:.1f}" y="{y + _BAR - 3}">{text}</text>'
            "</g>"
        )
    parts.append("</svg>")
    return "".join(parts)
