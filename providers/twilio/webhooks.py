"""Twilio's callbacks: inbound messages (PROTOCOLS.md C.5) and status callbacks (C.6).

One receiver serves every configured Twilio account on the one route: a form callback names
its ``AccountSid``, which picks the auth token to check against (A.1); a JSON-bodied callback
(A.3) is tried against every token. The answer is TwiML (C.8).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, ClassVar, Final
from urllib.parse import unquote

import msgspec
from twilio.twiml.messaging_response import MessagingResponse

from providers.twilio import signature
from providers.types import (
    DeliveryReport,
    DeliveryStatus,
    InboundMessage,
    ProviderEvent,
    WebhookRequest,
)
from providers.webhooks import (
    SignatureError,
    SignatureFailure,
    WebhookAck,
    WebhookParseError,
    WebhookReceiver,
)

#: ``MessageStatus`` of a status callback (C.3) onto the gateway's statuses. Unlike the
#: send path, an unknown word is an error here: mapping it to ``unknown`` would let a word we
#: do not understand move a message's status.
CALLBACK_STATUSES: Final[Mapping[str, DeliveryStatus]] = {
    # Twilio holds the message (as on the send path, providers/twilio/message_resource.py).
    "accepted": DeliveryStatus.QUEUED,
    "scheduled": DeliveryStatus.QUEUED,
    "queued": DeliveryStatus.QUEUED,
    "sending": DeliveryStatus.SENDING,
    # May be final: carriers that return no delivery receipt leave a message ``sent`` (C.3).
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    # Read receipts (WhatsApp/RCS) imply delivery.
    "read": DeliveryStatus.DELIVERED,
    "undelivered": DeliveryStatus.UNDELIVERED,
    "failed": DeliveryStatus.FAILED,
    "canceled": DeliveryStatus.CANCELED,
    # Only part of the message reached the handset (some segments or recipients). It did
    # leave Twilio, so ``sent``; ``delivered`` would claim more than the carrier said, and
    # a terminal failure would be wrong for the parts that arrived. ``sent`` is not terminal,
    # so a later carrier word can still settle it.
    "partially_delivered": DeliveryStatus.SENT,
}
_INBOUND_STATUS: Final = "received"
_FORM_CONTENT_TYPE: Final = "application/x-www-form-urlencoded"
_SID_KEYS: Final = ("MessageSid", "SmsSid")
_DONE_DATE_KEY: Final = "RawDlrDoneDate"
#: ``RawDlrDoneDate`` names a minute, not an instant (C.6): the carrier's done time lies in
#: ``[done date, done date + one minute)``, and a report's ``occurred_at`` is that start.
DONE_DATE_SPAN: Final = timedelta(minutes=1)


class TwilioWebhookAccount(msgspec.Struct, frozen=True, kw_only=True):
    """One Twilio account whose callbacks this gateway accepts."""

    name: str
    account_sid: str
    auth_token: str

    def __repr__(self) -> str:  # keep the token out of every repr and log line
        return f"TwilioWebhookAccount(name={self.name!r}, account_sid={self.account_sid!r})"


class TwilioWebhooks(WebhookReceiver):
    kind: ClassVar[str] = "twilio"

    def __init__(self, accounts: Iterable[TwilioWebhookAccount]) -> None:
        # An account without an auth token cannot prove anything: an HMAC keyed with "" is
        # forgeable by anyone, so such accounts are left out, never checked against.
        self._accounts: tuple[TwilioWebhookAccount, ...] = tuple(
            a for a in accounts if a.auth_token
        )

    # --- detect -------------------------------------------------------------------------

    def detect(self, request: WebhookRequest) -> bool:
        if signature.SIGNATURE_HEADER in request.headers:
            return True
        try:
            # Only Twilio puts bodySHA256 in the URL, for a JSON-bodied webhook (A.3).
            if signature.body_hash_param(request.url) is not None:
                return True
        except ValueError:
            return False  # an unreadable URL, or bodySHA256 given twice: not Twilio's doing
        if not _may_be_form(request):
            return False
        try:
            names = {name for name, _ in _form_pairs(request.body)}
        except (UnicodeDecodeError, ValueError):
            return False
        return any(key in names for key in _SID_KEYS)

    # --- verify -------------------------------------------------------------------------

    def verify(self, request: WebhookRequest) -> str:
        header = request.headers.get(signature.SIGNATURE_HEADER)
        if not header:
            raise SignatureError(SignatureFailure.MISSING, "no X-Twilio-Signature header")
        try:
            algorithm = signature.signature_algorithm(
                request.headers.get(signature.SETTINGS_HEADER)
            )
            expected = signature.decode_signature(header, algorithm)
            body_hash = signature.body_hash_param(request.url)
        except ValueError as exc:
            raise SignatureError(SignatureFailure.MALFORMED, str(exc)) from exc
        if body_hash is not None:
            # A.3: the URL (which carries the body's hash) is signed alone, and the JSON
            # body names no account we could trust before verifying: try every token.
            params: Sequence[tuple[str, str]] = ()
            candidates = self._accounts
        else:
            try:
                params = _form_pairs(request.body)
            except (UnicodeDecodeError, ValueError) as exc:
                raise SignatureError(SignatureFailure.MALFORMED, "form body is not UTF-8") from exc
            candidates = self._accounts_for(params)
        if not candidates:
            raise SignatureError(
                SignatureFailure.UNKNOWN_ACCOUNT, "no Twilio account with an auth token matches"
            )
        urls = signature.url_variants(request.url)
        for account in candidates:
            if _any_matches(account.auth_token, urls, params, algorithm, expected):
                if body_hash is not None and not signature.body_hash_matches(
                    request.body, body_hash
                ):
                    raise SignatureError(SignatureFailure.INVALID, "body does not match bodySHA256")
                return account.name
        raise SignatureError(SignatureFailure.INVALID, "X-Twilio-Signature does not match")

    def _accounts_for(self, params: Sequence[tuple[str, str]]) -> tuple[TwilioWebhookAccount, ...]:
        sids = {value for name, value in params if name == "AccountSid"}
        if not sids:
            return self._accounts  # nothing names the account: any token may have signed it
        if len(sids) > 1:
            raise SignatureError(SignatureFailure.MALFORMED, "several different AccountSid values")
        (sid,) = sids
        return tuple(a for a in self._accounts if a.account_sid == sid)

    # --- parse --------------------------------------------------------------------------

    def parse(self, request: WebhookRequest) -> list[ProviderEvent]:
        try:
            is_json = signature.body_hash_param(request.url) is not None
        except ValueError as exc:
            raise WebhookParseError(str(exc)) from exc
        pairs = _json_pairs(request.body) if is_json else _form_pairs_or_fail(request.body)
        return [callback_event(pairs)]

    # --- ack ----------------------------------------------------------------------------

    def ack(self, reply: str | None = None) -> WebhookAck:
        """TwiML (C.8): an empty ``<Response />``, or one ``<Message>`` to answer an inbound
        message. An empty ``reply`` counts as none: ``<Message />`` would ask Twilio to send
        a message without a body."""
        if not reply:
            return _EMPTY_ACK  # every delivery report's answer: built once
        response = MessagingResponse()
        response.message(reply)
        return WebhookAck(status=200, content_type="text/xml", body=str(response.to_xml()).encode())


_EMPTY_ACK = WebhookAck(
    status=200, content_type="text/xml", body=str(MessagingResponse().to_xml()).encode()
)


def callback_event(pairs: Sequence[tuple[str, str]]) -> ProviderEvent:
    """The event of one callback's parameters: a status callback (C.6) or an inbound message
    (C.5). Twilio sends no event id; the status report's is ``MessageSid:status[:ErrorCode]``,
    so the same word repeated is a duplicate while a later carrier word is a new event."""
    fields = dict(reversed(pairs))  # the first value of each name
    # No name repeated (every callback Twilio documents): the pairs are the raw form.
    raw = dict(pairs) if len(fields) == len(pairs) else _raw(pairs)
    sid = fields.get("MessageSid")
    if not sid:
        raise WebhookParseError("Twilio callback without a MessageSid")
    status = fields.get("MessageStatus") or fields.get("SmsStatus")
    if status == _INBOUND_STATUS or (not status and "Body" in fields):
        return _inbound(sid, fields, raw)
    if not status:
        raise WebhookParseError("Twilio callback with neither a status nor a message body")
    mapped = CALLBACK_STATUSES.get(status.lower())
    if mapped is None:
        raise WebhookParseError(f"unknown Twilio message status {status[:32]!r}")
    error_code = fields.get("ErrorCode") or None  # Twilio sends it only on failure, never ""
    return DeliveryReport(
        event_id=f"{sid}:{status}" + (f":{error_code}" if error_code else ""),
        provider_message_id=sid,
        status=mapped,
        provider_status=status,
        # The start of the done date's minute: see report_time_span for its length.
        occurred_at=dlr_done_date(fields.get(_DONE_DATE_KEY)),
        error_code=error_code,
        segments=_count(fields, "NumSegments"),
        raw=raw,
    )


def _inbound(sid: str, fields: Mapping[str, str], raw: dict[str, Any]) -> InboundMessage:
    sender, recipient = fields.get("From"), fields.get("To")
    if not sender or not recipient:
        raise WebhookParseError("inbound Twilio message without From or To")
    media: list[str] = []
    for index in range(_count(fields, "NumMedia") or 0):
        url = fields.get(f"MediaUrl{index}")
        if not url:
            raise WebhookParseError(f"NumMedia announces MediaUrl{index}, which is missing")
        media.append(url)
    return InboundMessage(
        event_id=sid,
        provider_message_id=sid,
        sender=sender,
        recipient=recipient,
        body=fields.get("Body", ""),
        media_urls=tuple(media),
        segments=_count(fields, "NumSegments"),
        occurred_at=None,  # an inbound callback carries no timestamp (C.5)
        raw=raw,
    )


def dlr_done_date(value: str | None) -> datetime | None:
    """``RawDlrDoneDate`` is the carrier's ``YYMMDDhhmm`` with no time zone (C.6); it is read
    as UTC, which is what carriers' SMPP receipts mostly use, though nothing guarantees it.
    It is the carrier's text passed through, so an unreadable one is dropped (``None``)
    rather than failing the report that carries it."""
    if not value or len(value) != 10 or not value.isascii() or not value.isdigit():
        return None
    try:
        return datetime.strptime(value, "%y%m%d%H%M").replace(tzinfo=UTC)
    except ValueError:
        return None


def report_time_span(raw: Mapping[str, Any]) -> timedelta | None:
    """How long a stretch the time of a stored Twilio report stands for, from ``raw`` (its
    parameters as stored): a status callback's ``occurred_at`` is the start of its
    ``RawDlrDoneDate`` minute (C.6), so :data:`DONE_DATE_SPAN`. ``None`` when its time is
    an instant or when it has none: a callback without a readable done date, or a fetched
    Message resource (its ``date_updated`` is to the second, and it has no such field)."""
    value = raw.get(_DONE_DATE_KEY)
    if isinstance(value, list):  # the name repeated: the first counts, as in callback_event
        value = value[0] if value else None
    if not isinstance(value, str) or dlr_done_date(value) is None:
        return None
    return DONE_DATE_SPAN


def _count(fields: Mapping[str, str], name: str) -> int | None:
    """A count Twilio sends as a decimal string; ``0`` reads as "not known" (C.2)."""
    value = fields.get(name)
    if value is None or value == "":
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 6:
        raise WebhookParseError(f"{name} is not a count")
    return int(value) or None


def _raw(pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The parameters as stored: a name given once maps to its value, a repeated one to the
    list of its values in order."""
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        grouped.setdefault(name, []).append(value)
    return {name: values[0] if len(values) == 1 else values for name, values in grouped.items()}


@lru_cache(maxsize=64)
def _form_pairs(body: bytes) -> tuple[tuple[str, str], ...]:
    """Every form parameter in order, repeated names and empty values kept (A.1, A.7).
    Kept for the last few bodies: a callback's is read by ``verify`` and again by
    ``parse`` (12 µs of its CPU), and the same bytes always give the same pairs.

    What ``parse_qsl(text, keep_blank_values=True, errors="strict")`` returns, step for
    step (empty fields skipped, a field without ``=`` has the value ``""``, ``+`` is a
    space, then the percent escapes), but each step only where the text needs it: the
    stdlib's call per name and value was most of a callback's parsing."""
    pairs = []
    for field in body.decode("utf-8").split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        pairs.append((_form_text(name), _form_text(value)))
    return tuple(pairs)


def _form_text(text: str) -> str:
    if "+" in text:
        text = text.replace("+", " ")
    return unquote(text, errors="strict") if "%" in text else text


def _form_pairs_or_fail(body: bytes) -> Sequence[tuple[str, str]]:
    try:
        return _form_pairs(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise WebhookParseError("form body is not UTF-8") from exc


def _json_pairs(body: bytes) -> list[tuple[str, str]]:
    """A JSON-bodied callback (A.3) read as the form parameters it stands for: a flat object
    with the same names. Numbers become their text, ``null`` an absent parameter."""
    try:
        document = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise WebhookParseError("Twilio JSON callback is not JSON") from exc
    if not isinstance(document, dict):
        raise WebhookParseError("Twilio JSON callback is not an object")
    pairs: list[tuple[str, str]] = []
    for name, value in document.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise WebhookParseError(f"Twilio JSON callback has a nested value at {name[:32]!r}")
        pairs.append((name, value if isinstance(value, str) else str(value)))
    return pairs


def _any_matches(
    token: str,
    urls: Sequence[str],
    params: Sequence[tuple[str, str]],
    algorithm: str,
    expected: bytes,
) -> bool:
    return any(
        hmac.compare_digest(signature.compute_digest(token, url, params, algorithm), expected)
        for url in urls
    )


def _may_be_form(request: WebhookRequest) -> bool:
    content_type = request.headers.get("content-type", "")
    if content_type and not content_type.lower().startswith(_FORM_CONTENT_TYPE):
        return False
    return not _looks_like_json_object(request.body)


def _looks_like_json_object(body: bytes) -> bool:
    return body.lstrip()[:1] == b"{"
