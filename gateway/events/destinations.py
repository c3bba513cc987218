"""Which apps have somewhere to send their events, known where events are written.

An event goes to its message's own ``callback_url``, else to its app's configured one. An
event with neither is settled ``skipped`` as it is written (it stays listed for
``GET /v1/events``): written ``pending``, every one of them would be claimed or swept
again by the delivery loop only to be settled the same way, an update of every event a
deployment without callback URLs writes (three a message).

The writers learn the apps from their session: processes that have the settings build
their sessionmaker with :func:`session_info`. A session without it writes every event
``pending``, and the delivery loop's sweep settles those with nowhere to go (as it does
for any written before a restart that removed a URL).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.settings import Settings

__all__ = ["app_urls", "apps_with_url", "nowhere_to_go", "session_info"]

_APPS_WITH_URL = "gateway.events.apps_with_url"


def app_urls(settings: Settings) -> dict[str, str]:
    """Each app's configured ``callback_url``, for the apps that have one."""
    return {
        name: app.callback_url
        for name, app in settings.apps.items()
        if app.callback_url is not None
    }


def apps_with_url(settings: Settings) -> frozenset[str]:
    """The apps with a configured ``callback_url``."""
    return frozenset(app_urls(settings))


def session_info(settings: Settings) -> dict[str, Any]:
    """``Session.info`` for the sessionmaker of a process that writes events."""
    return {_APPS_WITH_URL: apps_with_url(settings)}


def nowhere_to_go(session: AsyncSession, app: str | None, url: str | None) -> bool:
    """An event of ``app`` without a URL of its own has no destination (as far as this
    session knows: without :func:`session_info`, it does not)."""
    known: frozenset[str] | None = session.info.get(_APPS_WITH_URL)
    return url is None and known is not None and app not in known
