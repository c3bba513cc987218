"""Turns a send request into a message the gateway can store, or a 422 listing every
field to fix (all of them at once: a caller should not need one round trip per error)."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import urlsplit

import msgspec
import phonenumbers

from gateway.api.problems import FieldError, Problem
from gateway.costs.segments import count_segments
from gateway.messages.numbers import InvalidNumber, normalize_number, parse_recipient
from gateway.messages.schemas import MAX_BODY_CHARACTERS, MAX_MEDIA_URLS, SendMessageRequest
from gateway.settings import Settings, is_sender_id

#: Providers hold scheduled messages for at most about a month (Twilio: 35 days).
MAX_SCHEDULE_AHEAD = timedelta(days=35)
MAX_METADATA_KEYS = 16
MAX_METADATA_VALUE = 500
MAX_URL_LENGTH = 2000
#: ``validity_seconds`` bounds: Twilio's ValidityPeriod is 1-36,000 s; a gateway queue may
#: hold a message longer (a provider outage), so up to three days.
MIN_VALIDITY_SECONDS = 5
MAX_VALIDITY_SECONDS = 3 * 24 * 3600


class ValidatedMessage(msgspec.Struct, frozen=True):
    to: str
    body: str
    media_urls: tuple[str, ...]
    sender: str | None
    account: str | None
    send_at: datetime | None
    metadata: dict[str, str]
    callback_url: str | None
    encoding: str
    segments: int
    country: str | None = None
    validity_seconds: int | None = None


def validate_send(
    request: SendMessageRequest, *, settings: Settings, now: datetime
) -> ValidatedMessage:
    errors: list[FieldError] = []

    def fail(field: str, detail: str) -> None:
        errors.append(FieldError(field, detail))

    region = settings.default_region
    if request.country is not None:
        if request.country.upper() not in phonenumbers.SUPPORTED_REGIONS:
            fail("country", f"{request.country!r} is not an ISO 3166 alpha-2 country code")
        else:
            region = request.country.upper()

    to, country = "", None
    try:
        to, country = parse_recipient(request.to, region)
    except InvalidNumber as exc:
        fail("to", str(exc))

    if not request.body and not request.media_urls:
        fail("body", "give a body, media_urls, or both")
    if len(request.body) > MAX_BODY_CHARACTERS:
        fail("body", f"at most {MAX_BODY_CHARACTERS} characters (got {len(request.body)})")
    if len(request.media_urls) > MAX_MEDIA_URLS:
        fail("media_urls", f"at most {MAX_MEDIA_URLS} URLs (got {len(request.media_urls)})")
    for index, url in enumerate(request.media_urls):
        if problem := _url_problem(url):
            fail(f"media_urls[{index}]", problem)

    sender = request.from_
    if sender is not None:
        try:
            sender = normalize_sender(sender)
        except InvalidNumber as exc:
            fail("from", str(exc))

    if request.provider is not None and settings.account(request.provider) is None:
        known = ", ".join(a.name for a in settings.accounts) or "none configured"
        fail("provider", f"no provider account named {request.provider!r} (accounts: {known})")

    send_at = request.send_at
    if send_at is not None:
        if send_at.tzinfo is None:
            fail("send_at", "needs a time zone, e.g. 2026-12-01T09:00:00Z")
        elif send_at > now + MAX_SCHEDULE_AHEAD:
            fail("send_at", "at most 35 days ahead")
        elif send_at <= now:
            send_at = None  # a time already past means "now"

    if len(request.metadata) > MAX_METADATA_KEYS:
        fail("metadata", f"at most {MAX_METADATA_KEYS} keys")
    for key, value in request.metadata.items():
        if not key or len(key) > 40:
            fail(f"metadata.{key}", "keys are 1-40 characters")
        if len(value) > MAX_METADATA_VALUE:
            fail(f"metadata.{key}", f"values are at most {MAX_METADATA_VALUE} characters")

    if request.callback_url is not None and (problem := _url_problem(request.callback_url)):
        fail("callback_url", problem)

    validity = request.validity_seconds
    if validity is not None and not MIN_VALIDITY_SECONDS <= validity <= MAX_VALIDITY_SECONDS:
        fail(
            "validity_seconds",
            f"between {MIN_VALIDITY_SECONDS} and {MAX_VALIDITY_SECONDS} seconds (got {validity})",
        )

    if errors:
        detail = "; ".join(f"{e.field}: {e.detail}" for e in errors)
        raise Problem(422, "invalid-field", "A field is invalid", detail, errors=errors)

    count = count_segments(request.body)
    return ValidatedMessage(
        to=to,
        body=request.body,
        media_urls=tuple(request.media_urls),
        sender=sender,
        account=request.provider,
        send_at=send_at,
        metadata=dict(request.metadata),
        callback_url=request.callback_url,
        encoding=str(count.encoding),
        segments=count.segments,
        country=country,
        validity_seconds=validity,
    )


def normalize_sender(raw: str) -> str:
    """The app's ``from`` as providers take it: a number in E.164, or a short code or
    alphanumeric sender ID as given. Raises :class:`InvalidNumber` saying why not."""
    if raw.startswith("+"):
        return normalize_number(raw, None)
    if not is_sender_id(raw):
        raise InvalidNumber("must be an E.164 number, a short code or an alphanumeric sender ID")
    return raw


def _url_problem(url: str) -> str | None:
    if len(url) > MAX_URL_LENGTH:
        return f"at most {MAX_URL_LENGTH} characters"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "must be an absolute http:// or https:// URL"
    return None
