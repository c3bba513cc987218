"""The provider-call floor of (c): the same Twilio creates as the raw client, made the way
the dispatcher makes them (``TwilioProvider.send``: twilio-python's ``create_async``
through the gateway's adapter and shared httpx client on the aiohttp transport) with the
same number in flight, and nothing else: no database, claim, routing or recording.

Its rate over the raw client's is the most any dispatcher built on the twilio SDK reaches
on this machine; the gateway's over it is what the dispatcher's own work keeps of that.
Run as its own process, as the worker is; prints one JSON object (rate, own CPU, sent).

    python -m bench.provider_floor --simulator URL --seed SEED -n 5000 --concurrency 32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import uvloop

from gateway.accounts import create_http_client
from gateway.sandbox import SandboxCredentials
from gateway.sandbox_setup import SANDBOX_TWILIO_FROM
from providers.twilio import TwilioProvider
from providers.types import OutboundMessage


async def run(simulator: str, seed: str, count: int, concurrency: int) -> dict[str, float]:
    credentials = SandboxCredentials.from_seed(seed)
    client = create_http_client()
    provider = TwilioProvider(
        "floor",
        account_sid=credentials.twilio_account_sid,
        auth_token=credentials.twilio_auth_token,
        http_client=client,
        from_number=SANDBOX_TWILIO_FROM,
        api_base_url=f"{simulator}/sandbox/twilio",
        timeout=30.0,
    )
    # The raw client's requests (bench/dispatch.py raw_requests), as messages.
    messages = [
        OutboundMessage(
            reference=f"msg_{i:026d}",
            to=f"+1415555{i % 9000:04d}",
            body=f"bench dispatch {i}",
            status_callback_url=f"http://127.0.0.1:9/webhooks/sms?ref=msg_{i:026d}",
        )
        for i in range(count)
    ]
    pending = iter(messages)
    sent = 0

    async def lane() -> None:
        nonlocal sent
        for message in pending:  # shared: each lane takes the next message
            await provider.send(message)
            sent += 1

    try:
        cpu_started, started = time.process_time(), time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
    finally:
        await client.aclose()
    return {"rate": sent / elapsed, "cpu_cores": cpu / elapsed, "sent": sent}


def arguments(simulator: str, seed: str, count: int, concurrency: int) -> list[str]:
    """This command's arguments. ``--seed=…`` in one word: a seed of
    ``secrets.token_urlsafe`` may begin with ``-``, and argparse reads a separate
    ``-l1rF…`` as an option (a sitting stopped on it)."""
    return [
        f"--simulator={simulator}",
        f"--seed={seed}",
        f"-n={count}",
        f"--concurrency={concurrency}",
    ]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--simulator", required=True)
    parser.add_argument("--seed", required=True)
    parser.add_argument("-n", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    return parser.parse_args(argv)


def main() -> int:
    args = parse()
    # uvloop, as the worker runs (uvicorn[standard] installs it).
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(run(args.simulator, args.seed, args.n, args.concurrency))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
