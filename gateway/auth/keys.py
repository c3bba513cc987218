"""API keys: ``sgw_<lookup prefix>_<secret>``. Only a SHA-256 of the whole key is stored.

A key carries 256 random bits, so a plain SHA-256 resists guessing without password
stretching; the lookup prefix finds the row in one indexed read, and the hash is then
compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime

import msgspec
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.clock import new_id, utcnow
from gateway.db.models import ApiKey
from gateway.events.secrets import ensure_signing_secret
from gateway.settings import APP_NAME

KEY_PREFIX = "sgw"
_KEY_FORMAT = re.compile(r"^sgw_([A-Za-z0-9]{12})_([A-Za-z0-9_-]{43})$")


class IssuedKey(msgspec.Struct, frozen=True):
    key_id: str
    app: str
    key: str  # shown once, never stored
    #: The app's event signing secret (``whsec_…``), when this key's creation made it:
    #: shown once too (stored sealed, see ``gateway.events.secrets``).
    signing_secret: str | None = None


class KeyInfo(msgspec.Struct, frozen=True):
    key_id: str
    app: str
    lookup_prefix: str
    created_at: datetime
    revoked_at: datetime | None


def key_digest(key: str) -> str:
    """The SHA-256 of a whole key, as stored (and as the key cache knows it)."""
    return hashlib.sha256(key.encode()).hexdigest()


async def create_key(
    session: AsyncSession, app: str, *, secrets_key: str | None = None
) -> IssuedKey:
    """A new key for ``app``; the app's first key also creates its signing secret
    (sealed with ``secrets_key``, ``GATEWAY_SECRETS_KEY``)."""
    if not APP_NAME.match(app):
        raise ValueError(
            "app name: 1-64 characters of a-z, 0-9, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    lookup = "".join(
        secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789")
        for _ in range(12)
    )
    key = f"{KEY_PREFIX}_{lookup}_{secrets.token_urlsafe(32)}"
    row = ApiKey(
        key_id=new_id("key"),
        app=app,
        lookup_prefix=lookup,
        secret_hash=key_digest(key),
        created_at=utcnow(),
        revoked_at=None,
    )
    session.add(row)
    await session.flush()
    signing = await ensure_signing_secret(session, app, key=secrets_key, now=row.created_at)
    return IssuedKey(key_id=row.key_id, app=app, key=key, signing_secret=signing)


def well_formed(presented: str) -> bool:
    return _KEY_FORMAT.match(presented) is not None


async def authenticate(session: AsyncSession, presented: str) -> str | None:
    """The app a presented key belongs to, or ``None`` (unknown, malformed or revoked)."""
    match = _KEY_FORMAT.match(presented)
    if match is None:
        return None
    row = (
        await session.execute(select(ApiKey).where(ApiKey.lookup_prefix == match.group(1)))
    ).scalar_one_or_none()
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.secret_hash, key_digest(presented)):
        return None
    return row.app


async def list_keys(session: AsyncSession, app: str | None = None) -> list[KeyInfo]:
    query = select(ApiKey).order_by(ApiKey.app, ApiKey.created_at)
    if app is not None:
        query = query.where(ApiKey.app == app)
    return [
        KeyInfo(
            key_id=row.key_id,
            app=row.app,
            lookup_prefix=row.lookup_prefix,
            created_at=row.created_at,
            revoked_at=row.revoked_at,
        )
        for row in (await session.execute(query)).scalars()
    ]


async def revoke_key(session: AsyncSession, key_id: str) -> bool:
    """Revoke by key id (or lookup prefix); ``False`` when no active key matched."""
    result = await session.execute(
        update(ApiKey)
        .where((ApiKey.key_id == key_id) | (ApiKey.lookup_prefix == key_id))
        .where(ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
