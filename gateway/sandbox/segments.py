"""A simple segment estimate for the simulated ``num_segments`` (Twilio) and ``parts`` (Telnyx).

Deliberately naive: ceil(units / 153) or ceil(units / 67) after the single-segment limits of
160 / 70, counting GSM-7 extension characters as 2 septets and UCS-2 in UTF-16 code units.
Real providers never split an escape pair or a grapheme across segments, so they can count
one segment more in edge cases (PROTOCOLS.md F.2). The gateway's own calculator lives in
``gateway.costs``; the sandbox does not borrow it, because a simulator that shares the code
under test cannot catch that code's mistakes.
"""

from dataclasses import dataclass
from typing import Final, Literal

# GSM 03.38 basic table (PROTOCOLS.md F.1), 127 characters (ESC excluded).
_GSM7_BASIC: Final = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENSION: Final = frozenset("\f^{}\\[~]|€")

# Telnyx publishes a reduced set (PROTOCOLS.md F.3): no Greek capitals, Ç, ¤, §, € or form feed.
_TELNYX_BASIC: Final = frozenset(
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz\n\r !\"#$%&'()*+,-./:;<=>?@_"
    "£¥èéùìòØøÅåÆæßÉ¡ÄÖÑÜ¿äöñüà"
)
_TELNYX_EXTENSION: Final = frozenset("~^|\\{}[]")

Encoding = Literal["GSM-7", "UCS-2"]


@dataclass(frozen=True, slots=True)
class SegmentEstimate:
    encoding: Encoding
    segments: int


def _estimate(text: str, basic: frozenset[str], extension: frozenset[str]) -> SegmentEstimate:
    septets = 0
    for char in text:
        if char in basic:
            septets += 1
        elif char in extension:
            septets += 2
        else:
            units = len(text.encode("utf-16-le")) // 2
            return SegmentEstimate("UCS-2", _count(units, single=70, multi=67))
    return SegmentEstimate("GSM-7", _count(septets, single=160, multi=153))


def _count(units: int, *, single: int, multi: int) -> int:
    if units <= single:
        return 1  # an empty body (MMS) is still one message
    return -(-units // multi)


def twilio_estimate(text: str) -> SegmentEstimate:
    return _estimate(text, _GSM7_BASIC, _GSM7_EXTENSION)


def telnyx_estimate(text: str) -> SegmentEstimate:
    return _estimate(text, _TELNYX_BASIC, _TELNYX_EXTENSION)
