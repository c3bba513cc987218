"""The arithmetic of Telnyx's Ed25519 webhook signature (PROTOCOLS.md B.1), apart from parsing.

Implemented here with PyNaCl rather than through the telnyx SDK, whose webhook API changed
shape (and even scheme) between releases (B.2): the gateway's behaviour must not depend on
which telnyx version is installed.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

from nacl.exceptions import CryptoError
from nacl.signing import VerifyKey

SIGNATURE_HEADER: Final = "telnyx-signature-ed25519"
TIMESTAMP_HEADER: Final = "telnyx-timestamp"
#: Both SDKs reject an event more than 300 s away from their clock, either way (B.1).
DEFAULT_TOLERANCE_SECONDS: Final = 300.0
PUBLIC_KEY_BYTES: Final = 32
SIGNATURE_BYTES: Final = 64
# Unix seconds stay within 11 digits until the year 5138; a longer "timestamp" is junk.
_MAX_TIMESTAMP_DIGITS: Final = 12


def decode_public_key(public_key: str) -> VerifyKey:
    """The portal's "public key": Base64 of the raw 32-byte Ed25519 key (B.1).
    Raises ``ValueError`` for anything else, as both SDKs do."""
    try:
        raw = base64.b64decode(public_key, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("the public key is not Base64") from exc
    if len(raw) != PUBLIC_KEY_BYTES:
        raise ValueError(f"the public key is {len(raw)} bytes, not {PUBLIC_KEY_BYTES}")
    return VerifyKey(raw)


def parse_timestamp(header: str) -> int:
    """``telnyx-timestamp``: Unix seconds as plain decimal digits. ``int()`` alone would also
    take signs, spaces and underscores, none of which Telnyx sends. Raises ``ValueError``."""
    if not (header.isascii() and header.isdigit()) or len(header) > _MAX_TIMESTAMP_DIGITS:
        raise ValueError("telnyx-timestamp is not a Unix time in seconds")
    return int(header)


def decode_signature(header: str) -> bytes:
    """``telnyx-signature-ed25519``: Base64 of the 64-byte signature. Raises ``ValueError``."""
    try:
        raw = base64.b64decode(header, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("telnyx-signature-ed25519 is not Base64") from exc
    if len(raw) != SIGNATURE_BYTES:
        raise ValueError(f"telnyx-signature-ed25519 is {len(raw)} bytes, not {SIGNATURE_BYTES}")
    return raw


def signed_message(timestamp_header: str, body: bytes) -> bytes:
    """``{timestamp}|{raw body}``: the header text verbatim and the body byte for byte; any
    re-serialisation of the JSON breaks the signature (B.1)."""
    return timestamp_header.encode("ascii") + b"|" + body


def signature_matches(key: VerifyKey, message: bytes, signature: bytes) -> bool:
    try:
        key.verify(message, signature)
    except CryptoError:  # BadSignatureError, or a key that is not a curve point
        return False
    return True
