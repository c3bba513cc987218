"""A benchmark's child command gets its random values whole, whatever they begin with."""

from __future__ import annotations

from bench import provider_floor


def test_a_seed_beginning_with_a_dash_reaches_the_provider_floor() -> None:
    # secrets.token_urlsafe draws "-" as a first character one time in 64: passed as a
    # separate word, argparse took "-l1rF…" for an option and the sitting stopped.
    seed = "-l1rFsE53SnfRPmraz7R1dKp5iIWhk30"
    args = provider_floor.parse(
        provider_floor.arguments("http://127.0.0.1:9", seed, count=5000, concurrency=32)
    )
    assert (args.simulator, args.seed, args.n, args.concurrency) == (
        "http://127.0.0.1:9",
        seed,
        5000,
        32,
    )
