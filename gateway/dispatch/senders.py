"""Choosing a sender number from an account's pool, as Twilio's Messaging Services do:
the recipient keeps the number they had before (sticky sender), otherwise a number in
their area code, then in their country, then any; ties are spread by a stable hash of
the recipient so a pool shares the load without reshuffling anyone.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import phonenumbers
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.db.models import StickySender
from gateway.db.upsert import insert_or_update


def _parsed(number: str) -> phonenumbers.PhoneNumber | None:
    if not number.startswith("+"):
        return None  # short codes and alphanumeric IDs have no geography
    try:
        return phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return None


def area_code(number: str) -> str | None:
    """The geographic area code of an E.164 number (NANP: the 3 digits after +1)."""
    parsed = _parsed(number)
    if parsed is None:
        return None
    national = phonenumbers.national_significant_number(parsed)
    length = phonenumbers.length_of_geographical_area_code(parsed)
    if parsed.country_code == 1:
        length = 3
    return f"{parsed.country_code}-{national[:length]}" if length else None


def country(number: str) -> str | None:
    parsed = _parsed(number)
    return phonenumbers.region_code_for_number(parsed) if parsed is not None else None


def choose_sender(pool: tuple[str, ...], recipient: str, sticky: str | None) -> str:
    """The pool's best number for ``recipient``; ``sticky`` wins while it is in the pool."""
    if sticky is not None and sticky in pool:
        return sticky
    area, land = area_code(recipient), country(recipient)
    candidates = [s for s in pool if area is not None and area_code(s) == area]
    candidates = candidates or [s for s in pool if land is not None and country(s) == land]
    candidates = candidates or list(pool)
    digest = int.from_bytes(hashlib.sha256(recipient.encode()).digest()[:8], "big")
    return candidates[digest % len(candidates)]


async def sticky_sender(session: AsyncSession, account: str, recipient: str) -> str | None:
    return (
        await session.execute(
            select(StickySender.sender).where(
                StickySender.account == account, StickySender.recipient == recipient
            )
        )
    ).scalar_one_or_none()


_REMEMBER = insert_or_update(
    StickySender,
    ("account", "recipient", "sender", "updated_at"),
    ("account", "recipient"),
    ("sender", "updated_at"),
)


async def remember_sender(
    session: AsyncSession, account: str, recipient: str, sender: str, now: datetime
) -> None:
    await session.execute(
        _REMEMBER,
        {"account": account, "recipient": recipient, "sender": sender, "updated_at": now},
    )
