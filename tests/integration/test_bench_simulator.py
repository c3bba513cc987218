"""bench/simulator.py, the provider stand-in of the dispatch and end-to-end benchmarks:
both apps serve the sandbox's APIs with the seed's credentials, and collect garbage as
the gateway's serving processes do once started (bench.instructions measures it so)."""

from __future__ import annotations

import gc
import importlib
import sys
from collections.abc import Iterator
from types import ModuleType

import pytest
from litestar.testing import TestClient

from gateway.sandbox import SandboxCredentials
from gateway.system.gc_tuning import THRESHOLDS


@pytest.fixture
def simulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.setenv("GATEWAY_SANDBOX_SEED", "bench-simulator-test")
    monkeypatch.delitem(sys.modules, "bench.simulator", raising=False)
    thresholds = gc.get_threshold()
    try:
        yield importlib.import_module("bench.simulator")
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


@pytest.mark.parametrize("name", ["app", "with_callbacks"])
def test_the_simulator_serves_with_the_seed_and_tuned_collector(
    simulator: ModuleType, name: str
) -> None:
    gc.set_threshold(700, 10, 10)  # CPython's defaults
    credentials = SandboxCredentials.from_seed("bench-simulator-test")
    with TestClient(getattr(simulator, name)) as client:
        assert gc.get_threshold() == THRESHOLDS
        answer = client.get(
            f"/sandbox/twilio/2010-04-01/Accounts/{credentials.twilio_account_sid}"
            "/Messages/SM0.json",
            auth=(credentials.twilio_account_sid, credentials.twilio_auth_token),
        )
    assert answer.status_code == 404  # authenticated: the seed's credentials; no such message
    assert answer.json()["code"] == 20404
