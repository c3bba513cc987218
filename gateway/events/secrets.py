"""Each app's signing secret (Standard Webhooks ``whsec_`` + Base64 of 32 random bytes).

The gateway signs, so it must be able to read the secret back: a hash would not do.
With ``GATEWAY_SECRETS_KEY`` set (Base64 of 32 bytes, kept in the environment like the
provider credentials) the stored form is the secret sealed with XSalsa20-Poly1305
(PyNaCl's ``SecretBox``): a copy of the database alone does not reveal it. Without the
key the secret is stored as is (``plain:``), protected only by access to the database;
the README says to set the key in production. The secret is shown once, when created.
"""

from __future__ import annotations

import base64
import secrets as random_source
from collections.abc import Collection
from datetime import datetime

from nacl.exceptions import CryptoError
from nacl.secret import SecretBox
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.db.dialect import insert
from gateway.db.models import AppSigningSecret

SECRET_PREFIX = "whsec_"  # noqa: S105 (the scheme's prefix, not a secret)


class SecretUnavailable(Exception):
    """The stored secret cannot be read (sealed, and the key is missing or wrong)."""


def generate_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(random_source.token_bytes(32)).decode()


def seal(secret: str, key: str | None) -> str:
    if key is None:
        return "plain:" + secret
    box = SecretBox(base64.b64decode(key))
    return "box:" + base64.b64encode(box.encrypt(secret.encode())).decode()


def unseal(sealed: str, key: str | None) -> str:
    kind, _, value = sealed.partition(":")
    if kind == "plain":
        return value
    if kind == "box" and key is not None:
        try:
            return SecretBox(base64.b64decode(key)).decrypt(base64.b64decode(value)).decode()
        except CryptoError as exc:
            raise SecretUnavailable("GATEWAY_SECRETS_KEY does not open this secret") from exc
    raise SecretUnavailable("the signing secret is sealed: set GATEWAY_SECRETS_KEY")


async def ensure_signing_secret(
    session: AsyncSession, app: str, *, key: str | None, now: datetime
) -> str | None:
    """Create the app's signing secret if it has none; returns it only when created (it
    is shown once). Two concurrent creations: the first insert wins, the other gets
    ``None`` and the app keeps the first secret."""
    secret = generate_secret()
    created = (
        await session.execute(
            insert(session, AppSigningSecret)
            .values(app=app, sealed=seal(secret, key), created_at=now)
            .on_conflict_do_nothing(index_elements=["app"])
            .returning(AppSigningSecret.app)
        )
    ).scalar_one_or_none()
    return secret if created is not None else None


async def signing_secrets(
    session: AsyncSession, apps: Collection[str], *, key: str | None
) -> dict[str, str | SecretUnavailable]:
    """The signing secret of each of ``apps`` that has one, or why it cannot be read: one
    query for a whole claim of events, not one a delivery."""
    if not apps:
        return {}
    rows = await session.execute(
        select(AppSigningSecret.app, AppSigningSecret.sealed).where(
            AppSigningSecret.app.in_(sorted(apps))
        )
    )
    secrets: dict[str, str | SecretUnavailable] = {}
    for app, sealed in rows.tuples():
        try:
            secrets[app] = unseal(sealed, key)
        except SecretUnavailable as unavailable:
            secrets[app] = unavailable
    return secrets
