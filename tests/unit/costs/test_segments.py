"""Hand-written edge cases for segment counting, beyond the shared vectors."""

from __future__ import annotations

import random

import pytest

from gateway.costs import Encoding, count_segments, segments, split_segments
from gateway.costs.segments import GSM7_BASIC, GSM7_EXTENSION, graphemes

GSM, UCS2 = Encoding.GSM7, Encoding.UCS2
FLAG_IT = "\U0001f1ee\U0001f1f9"  # 🇮🇹: two regional indicators, 4 UTF-16 units
RAINBOW_FLAG = "\U0001f3f3\ufe0f\u200d\U0001f308"  # 🏳️‍🌈: 6 UTF-16 units
FAMILY = "\U0001f469\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # 👩‍👩‍👧‍👦: 11 units
THUMBS_MEDIUM = "\U0001f44d\U0001f3fd"  # 👍🏽: emoji + skin-tone modifier
KEYCAP_ONE = "1\ufe0f\u20e3"  # 1️⃣
E_THREE_ACUTES = "e\u0301\u0301\u0301"
ZHE = "ж"


def _seg(body: str) -> tuple[Encoding, int]:
    result = count_segments(body)
    return result.encoding, result.segments


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("a" * 160, (GSM, 1)),
        ("a" * 161, (GSM, 2)),
        ("a" * 306, (GSM, 2)),
        ("a" * 307, (GSM, 3)),
        (ZHE * 70, (UCS2, 1)),
        (ZHE * 71, (UCS2, 2)),
        (ZHE * 134, (UCS2, 2)),
        (ZHE * 135, (UCS2, 3)),
        ("a" * 1600, (GSM, 11)),  # Twilio's Body limit: 1600 characters
        (ZHE * 1600, (UCS2, 24)),
        ("€" * 800, (GSM, 11)),  # 1600 septets
    ],
)
def test_boundaries(body: str, expected: tuple[Encoding, int]) -> None:
    assert _seg(body) == expected


def test_empty_body_is_one_gsm_segment() -> None:
    result = count_segments("")
    assert (result.encoding, result.segments, result.units, result.characters) == (GSM, 1, 0, 0)
    assert split_segments("") == ("",)


@pytest.mark.parametrize("char", sorted(GSM7_EXTENSION))
def test_extension_char_costs_two_septets(char: str) -> None:
    assert _seg(char + "1" * 158) == (GSM, 1)
    assert _seg(char + "1" * 159) == (GSM, 2)
    assert count_segments(char).characters == 2


def test_euro_at_a_part_boundary_moves_whole() -> None:
    # 152 septets + € (2) does not fit 153: the escape pair goes to the next part.
    body = "a" * 152 + "€" + "a" * 10
    assert count_segments(body).segments == 2
    assert split_segments(body) == ("a" * 152, "€" + "a" * 10)
    # 158 + 2 = 160 still fits a single SMS.
    assert _seg("a" * 158 + "€") == (GSM, 1)
    assert _seg("a" * 159 + "€") == (GSM, 2)


def test_euro_in_ucs2_costs_one_unit() -> None:
    result = count_segments(ZHE * 69 + "€")
    assert (result.encoding, result.segments, result.units) == (UCS2, 1, 70)


@pytest.mark.parametrize(
    ("prefix", "fits", "overflows"),
    [
        ("\U0001f61c", 68, 69),  # 😜: a surrogate pair
        (FLAG_IT, 66, 67),
        (RAINBOW_FLAG, 64, 65),
        (E_THREE_ACUTES, 66, 67),
    ],
)
def test_calculator_single_grapheme_cases(prefix: str, fits: int, overflows: int) -> None:
    assert _seg(prefix + "1" * fits) == (UCS2, 1)
    assert _seg(prefix + "1" * overflows) == (UCS2, 2)


def test_flag_is_never_split_across_parts() -> None:
    body = ZHE * 65 + FLAG_IT + ZHE * 2  # 71 units; the flag would straddle units 66-69
    assert split_segments(body) == (ZHE * 65, FLAG_IT + ZHE * 2)
    result = count_segments(body)
    assert (result.characters, result.unicode_scalars, result.units) == (68, 69, 71)


@pytest.mark.parametrize("cluster", [FLAG_IT, RAINBOW_FLAG, FAMILY, THUMBS_MEDIUM, KEYCAP_ONE])
def test_emoji_sequences_are_one_character(cluster: str) -> None:
    assert list(graphemes(cluster)) == [cluster]
    result = count_segments("hi " + cluster)
    assert result.characters == 4
    assert result.non_gsm == (cluster,)


def test_surrogate_pair_is_never_split() -> None:
    body = ZHE * 66 + "\U0001f600" + ZHE * 3  # the vectors' "71 units" case
    assert split_segments(body) == (ZHE * 66, "\U0001f600" + ZHE * 3)


def test_lone_surrogate_counts_one_unit_and_does_not_raise() -> None:
    result = count_segments("a\ud83d")
    assert (result.encoding, result.units, result.characters, result.non_gsm) == (
        UCS2,
        2,
        2,
        ("\ud83d",),
    )


def test_surrogate_code_points_pair_up_like_on_the_wire() -> None:
    assert count_segments("\ud83d\ude00") == count_segments("\U0001f600")


def test_gsm_alphabet_corner_cases() -> None:
    assert len(GSM7_BASIC) == 127
    assert _seg("Ç$¤§¡¿ΔΩ\f") == (GSM, 1)  # all GSM-7, form feed from the extension table
    for char in ("ç", "`", "Á", "ő", "\u00a0", "\t"):
        assert count_segments(char).encoding is UCS2, repr(char)


def test_non_gsm_lists_each_offender_once_in_order() -> None:
    assert count_segments("'más'").non_gsm == ("á",)
    assert count_segments("más ç más " + E_THREE_ACUTES).non_gsm == ("á", "ç", E_THREE_ACUTES)
    assert count_segments("plain").non_gsm == ()


def test_crlf_counts_two_septets_and_may_end_a_part() -> None:
    assert count_segments("\nabcde\n\n123\n").characters == 12
    assert count_segments("\r\nabcde\r\n\r\n123\r\n").characters == 16
    body = "a" * 152 + "\r\n" + "a" * 10
    assert split_segments(body) == ("a" * 152 + "\r", "\n" + "a" * 10)


def test_bits_include_one_udh_per_part() -> None:
    one = count_segments("a" * 160)
    assert (one.message_bits, one.total_bits) == (1120, 1120)
    two = count_segments("a" * 161)
    assert (two.message_bits, two.total_bits) == (1127, 1127 + 2 * 48)
    ucs = count_segments(ZHE * 71)
    assert (ucs.message_bits, ucs.total_bits) == (71 * 16, 71 * 16 + 2 * 48)


@pytest.mark.parametrize(
    ("text", "clusters"),
    [
        ("\U0001f1ee\U0001f1f9\U0001f1eb", [FLAG_IT, "\U0001f1eb"]),  # odd regional indicator
        ("\u1100\u1161\u11a8\u1100", ["\u1100\u1161\u11a8", "\u1100"]),  # Hangul L V T | L
        ("\u0600\u0661", ["\u0600\u0661"]),  # Arabic number sign prepends
        ("\u0915\u093f", ["\u0915\u093f"]),  # Devanagari vowel sign (spacing mark)
        ("a\u200db", ["a\u200d", "b"]),  # ZWJ joins emoji only
        ("\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f", None),
        ("\r\n", ["\r\n"]),
        ("a\u0301\tb", ["a\u0301", "\t", "b"]),
    ],
)
def test_graphemes(text: str, clusters: list[str] | None) -> None:
    assert list(graphemes(text)) == (clusters if clusters is not None else [text])


def test_random_bodies_split_consistently() -> None:
    # Invariants over mixed bodies: the parts rebuild the body, their number is the count,
    # each fits its limit, and no grapheme cluster straddles two parts.
    rng = random.Random(20240607)
    pool = ["a", "1", " ", "€", "[", "\n", ZHE, "é", E_THREE_ACUTES, FLAG_IT, FAMILY, "😀"]
    for _ in range(150):
        body = "".join(rng.choice(pool) for _ in range(rng.randint(0, 260)))
        result = count_segments(body)
        parts = split_segments(body)
        assert "".join(parts) == body
        assert len(parts) == result.segments
        if result.segments > 1:
            for part in parts:
                size = count_segments(part).units
                assert size <= (153 if result.encoding is GSM else 67)
        assert [g for p in parts for g in graphemes(p)] == list(graphemes(body))


def test_oversized_cluster_falls_back_to_code_points() -> None:
    body = "a" + "\u0301" * 100  # one "character" longer than a whole UCS-2 part
    parts = split_segments(body)
    assert "".join(parts) == body
    assert count_segments(body).segments == len(parts) == 2


@pytest.mark.parametrize("length", [0, 1, 159, 160, 161, 305, 306, 307, 459, 460, 1600])
def test_basic_gsm7_counted_without_packing_equals_the_packed_count(length: int) -> None:
    """Bodies of basic GSM-7 only are counted arithmetically (segments.py's fast path);
    every field must be what packing them cluster by cluster gives."""
    rng = random.Random(length)
    alphabet = sorted(GSM7_BASIC)
    body = "".join(rng.choice(alphabet) for _ in range(length))
    assert count_segments(body) == segments._count_clusters(body)
    assert count_segments(body).segments == len(split_segments(body))
