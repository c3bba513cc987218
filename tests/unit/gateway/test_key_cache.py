"""The in-process cache of verified API keys: what it keeps, and for how long."""

from __future__ import annotations

import asyncio

from gateway.auth.cache import MAX_ENTRIES, KeyCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_verified_key_is_trusted_until_it_expires() -> None:
    clock = Clock()
    cache = KeyCache(5.0, clock)
    cache.remember("digest-a", "billing")
    clock.now += 4.9
    assert cache.app_for("digest-a") == "billing"
    clock.now += 0.1
    assert cache.app_for("digest-a") is None  # expired: the database is asked again
    assert cache.app_for("digest-a") is None


def test_unknown_digests_are_not_found() -> None:
    cache = KeyCache(5.0, Clock())
    cache.remember("digest-a", "billing")
    assert cache.app_for("digest-b") is None


def test_zero_seconds_keeps_nothing() -> None:
    cache = KeyCache(0.0, Clock())
    cache.remember("digest-a", "billing")
    assert cache.app_for("digest-a") is None


def test_memory_is_bounded() -> None:
    cache = KeyCache(60.0, Clock())
    for i in range(MAX_ENTRIES + 1):
        cache.remember(f"digest-{i}", "billing")
    assert cache.app_for(f"digest-{MAX_ENTRIES}") == "billing"
    assert cache.app_for("digest-0") is None  # cleared when full, then verified again


async def test_concurrent_requests_with_one_key_make_one_lookup() -> None:
    cache = KeyCache(5.0, Clock())
    lookups = 0
    release = asyncio.Event()

    async def verify() -> str | None:
        nonlocal lookups
        lookups += 1
        await release.wait()
        return "billing"

    waiting = [asyncio.create_task(cache.app_for_key("digest-a", verify)) for _ in range(50)]
    release.set()  # the tasks have not run yet: all fifty meet the one pending look-up
    assert await asyncio.gather(*waiting) == ["billing"] * 50
    assert lookups == 1
    assert cache.app_for("digest-a") == "billing"  # and remembered


async def test_a_refused_key_is_not_remembered() -> None:
    cache = KeyCache(5.0, Clock())

    async def verify() -> str | None:
        return None

    assert await cache.app_for_key("digest-x", verify) is None
    assert cache.app_for("digest-x") is None
