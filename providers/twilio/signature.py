"""The arithmetic of Twilio's ``X-Twilio-Signature`` (PROTOCOLS.md A), apart from parsing.

Written here rather than borrowed from ``twilio.request_validator`` because the gateway must
compare bytes in constant time, keep repeated form keys, report *why* a check failed, and
handle credentials together with a port in the URL (which ``remove_port`` mangles, A.4).
The shared vectors file is the judge of this module (tests/unit/providers/test_webhook_vectors.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Final
from urllib.parse import parse_qsl, urlsplit

SIGNATURE_HEADER: Final = "x-twilio-signature"
#: Present when the webhook is signed with a SharedKey: ``key=<id>,algorithm=HMAC_SHA256`` (A.5).
SETTINGS_HEADER: Final = "x-twilio-webhooks-signature-settings"
#: Query parameter Twilio adds to the URL of an ``application/json`` webhook (A.3).
BODY_HASH_PARAM: Final = "bodySHA256"

HMAC_SHA1: Final = "HMAC_SHA1"
HMAC_SHA256: Final = "HMAC_SHA256"
#: Algorithm name (A.5) → ``hmac`` digest name and digest size in bytes.
_DIGESTS: Final[Mapping[str, tuple[str, int]]] = {
    HMAC_SHA1: ("sha1", 20),
    HMAC_SHA256: ("sha256", 32),
}
_DEFAULT_PORTS: Final[Mapping[str, str]] = {"https": "443"}


def signature_algorithm(settings_header: str | None) -> str:
    """The algorithm named by ``X-Twilio-Webhooks-Signature-Settings``, as twilio 9.13.0's
    ``get_signature_algorithm`` reads it: no header (or no ``algorithm=``) means HMAC_SHA1.
    Raises ``ValueError`` for an algorithm this code does not know."""
    algorithm = HMAC_SHA1
    for part in (settings_header or "").split(","):
        name, separator, value = part.partition("=")
        if separator and name.strip() == "algorithm" and value.strip():
            algorithm = value.strip().upper()
    if algorithm not in _DIGESTS:
        raise ValueError(f"unsupported Twilio signature algorithm {algorithm[:32]!r}")
    return algorithm


def decode_signature(header: str, algorithm: str) -> bytes:
    """The digest carried by ``X-Twilio-Signature`` (standard Base64, A.1 step 4).

    Raises ``ValueError`` when it is not Base64 of a digest of ``algorithm``'s size: such a
    header cannot match any secret, and saying so separately helps whoever debugs a proxy.
    """
    try:
        digest = base64.b64decode(header, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("X-Twilio-Signature is not Base64") from exc
    if len(digest) != _DIGESTS[algorithm][1]:
        raise ValueError(f"X-Twilio-Signature is not a {algorithm} digest")
    return digest


def string_to_sign(url: str, params: Iterable[tuple[str, str]]) -> str:
    """A.1 steps 1-3, 5: the URL, then ``name + value`` for each name in code-point order,
    once per *distinct* value with the values sorted (as twilio-python and twilio-node do),
    empty values included."""
    # The distinct pairs sorted as tuples: by name, then by value, which is that order.
    return url + "".join(name + value for name, value in sorted(set(params)))


def compute_digest(
    secret: str, url: str, params: Iterable[tuple[str, str]], algorithm: str
) -> bytes:
    """HMAC of :func:`string_to_sign` keyed with the auth token (A.1 step 4, A.5)."""
    digest_name = _DIGESTS[algorithm][0]
    payload = string_to_sign(url, params).encode("utf-8")
    return hmac.new(secret.encode("utf-8"), payload, digest_name).digest()


def compute_signature(
    secret: str, url: str, params: Iterable[tuple[str, str]], algorithm: str = HMAC_SHA1
) -> str:
    """The header value Twilio would send: Base64 of :func:`compute_digest`."""
    return base64.b64encode(compute_digest(secret, url, params, algorithm)).decode("ascii")


def url_variants(url: str) -> tuple[str, ...]:
    """The URLs to check, as twilio-python's ``validate`` does (A.4): without the port and
    with it (``:443`` for https, ``:80`` otherwise, added only when none is present). The
    URL as received comes first: it is the one signed unless a proxy added or dropped the
    port, so a valid request costs one HMAC, not two.

    Only the host part of the authority is touched, by string surgery: the rest of the URL
    stays byte for byte what Twilio signed (no re-serialisation, A.7), and user info such as
    ``user:pass@`` survives (twilio-python splits at the first ``:``, which breaks it).
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        return (url,)
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    userinfo, at, hostport = authority.rpartition("@")
    host, port = _split_port(hostport)
    prefix = f"{scheme}://{userinfo}{at}"
    without_port = f"{prefix}{host}{tail}"
    with_port = url if port else f"{prefix}{host}:{_DEFAULT_PORTS.get(scheme.lower(), '80')}{tail}"
    other = with_port if without_port == url else without_port
    return (url,) if other == url else (url, other)


def _split_port(hostport: str) -> tuple[str, str | None]:
    if hostport.startswith("["):  # IPv6 literal: the port, if any, follows the bracket
        close = hostport.find("]")
        if (
            close >= 0
            and hostport[close + 1 : close + 2] == ":"
            and hostport[close + 2 :].isdigit()
        ):
            return hostport[: close + 1], hostport[close + 2 :]
        return hostport, None
    host, colon, port = hostport.rpartition(":")
    if colon and port.isascii() and port.isdigit():
        return host, port
    return hostport, None


def body_hash_param(url: str) -> str | None:
    """The ``bodySHA256`` of the URL's query (A.3), ``None`` for a form-bodied webhook.

    Raises ``ValueError`` when it is given more than once: which one would Twilio mean?
    """
    query = urlsplit(url).query  # first: it refuses an unreadable URL (ValueError)
    if BODY_HASH_PARAM not in query and "%" not in query:
        # The name cannot be in the query, not even percent-encoded: no parsing (a status
        # callback's URL is read twice, by verify and by parse).
        return None
    values = [v for k, v in parse_qsl(query, keep_blank_values=True) if k == BODY_HASH_PARAM]
    if len(values) > 1:
        raise ValueError(f"{BODY_HASH_PARAM} appears {len(values)} times in the URL")
    return values[0] if values else None


def body_hash_matches(body: bytes, expected_hex: str) -> bool:
    """Does the raw body hash to the URL's ``bodySHA256`` (lowercase hex, A.3)? Constant time."""
    actual = hashlib.sha256(body).hexdigest().encode("ascii")
    return hmac.compare_digest(actual, expected_hex.encode("utf-8", "replace"))
