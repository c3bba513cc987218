"""The HTTP client class of every outbound call (providers, apps' event endpoints, the
sandbox's callbacks): httpx's client, keeping no cookies.

A provider's API or an app's endpoint has no session for us to keep, and one process-wide
client serves every account: a cookie one account's answer set (a load balancer's
affinity cookie, say) must not ride along on another account's requests. Keeping none
also saves the work httpx does to file every answer through ``http.cookiejar``, which
wraps each response and its request in urllib objects whether or not they carry a cookie:
4 % of a dispatch worker's CPU in a profile (bench/README.md).
"""

from __future__ import annotations

import functools

import httpx


class _NoCookies(httpx.Cookies):
    """An empty jar that stays empty."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class CookielessClient(httpx.AsyncClient):
    """``httpx.AsyncClient`` that neither stores nor sends cookies (per-request ``cookies=``
    are still sent: httpx is deprecating them, and nothing here passes any)."""

    _no_cookies = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: httpx._types.CookieTypes) -> None:
        raise AttributeError("this client keeps no cookies")


def httpx_url(url: str) -> httpx.URL | str:
    """``url`` as httpx takes it without parsing it again: httpx parses a str URL at every
    request, about a tenth of a small POST's instructions on loopback (client and server
    counted). One httpx refuses stays a str, so that a request to it fails as it always
    did."""
    try:
        return httpx.URL(url)
    except httpx.InvalidURL:
        return url


#: :func:`httpx_url` for URLs used again and again (apps' endpoints are few): the last
#: 1,024 distinct ones kept.
parsed_url = functools.lru_cache(maxsize=1024)(httpx_url)
