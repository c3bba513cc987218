"""``/dashboard`` rendered by a real headless Chromium against a real ``serve --sandbox``
process whose database holds known messages; and ``sms-gateway costs`` on the same data.

Chromium is Debian's (``apt-get install chromium``, done by ``.ci/run``). A machine without
it fails these tests: the page is only checked when a browser has rendered it.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.db.engine import create_engine, create_sessionmaker
from gateway.reports.histogram import RESOLUTION
from tests.e2e.conftest import ProcessGroup, RunningGateway, cli_env, run_cli, start_sandbox
from tests.integration.test_reports import known_rows

CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "dashboard-token-" + "0123456789abcdef" * 2
WINDOW = "since=2026-11-01&until=2026-11-02"


async def _store(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            session.add_all(known_rows())
            await session.commit()
    finally:
        await engine.dispose()


@pytest.fixture
def env(database_url: str) -> dict[str, str]:
    env = cli_env(database_url, GATEWAY_DASHBOARD_TOKEN=TOKEN)
    migrated = run_cli("migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    asyncio.run(_store(database_url))
    return env


@pytest.fixture
def gateway(env: dict[str, str], tmp_path: Path) -> Iterator[RunningGateway]:
    group = ProcessGroup(tmp_path)
    try:
        yield start_sandbox(group, env)
    finally:
        group.stop_all()


def _render(url: str, profile: Path) -> str:
    """The DOM after Chromium has loaded and laid out the page."""
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install -y chromium"
    profile.mkdir()
    done = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _chart(dom: str, chart: str) -> str:
    svg = re.search(rf'<svg id="{chart}".*?</svg>', dom, re.S)
    assert svg is not None, f"no {chart} in the rendered page"
    return svg.group(0)


def _bars(dom: str, chart: str) -> dict[str, str]:
    return dict(re.findall(r'data-label="([^"]+)" data-value="([^"]+)"', _chart(dom, chart)))


def test_dashboard_in_headless_chromium(gateway: RunningGateway, tmp_path: Path) -> None:
    host = gateway.base_url.removeprefix("http://")
    dom = _render(f"http://operator:{TOKEN}@{host}/dashboard?{WINDOW}", tmp_path / "chromium")

    assert "<title>SMS gateway: cost and delivery</title>" in dom
    # Every app's traffic: the billing app's six messages and the other app's one.
    assert re.search(r'id="total-messages">7<', dom)
    assert re.search(r'id="total-cost">0\.212600 USD<', dom)  # 0.2012 + the other app's 0.0114
    assert _bars(dom, "cost-chart") == {
        "telnyx-sandbox · GB": "0.039000 USD",
        "telnyx-sandbox · US": "0.016000 USD",
        "twilio-sandbox · GB": "0.080000 USD",
        "twilio-sandbox · US": "0.077600 USD",  # billing's 0.0662 + other's 0.0114
    }
    assert _bars(dom, "delivery-chart") == {
        "telnyx-sandbox · GB": "100.00 %",
        "telnyx-sandbox · US": "0.00 %",
        "twilio-sandbox · GB": "no outcome yet",
        "twilio-sandbox · US": "100.00 %",
    }
    # The longest bar is the largest cost: the chart is drawn to scale.
    widths = dict(
        re.findall(
            r'data-label="([^"]+)"[^>]*>.*?<rect[^>]*width="([0-9.]+)"',
            _chart(dom, "cost-chart"),
            re.S,
        )
    )
    assert max(widths, key=lambda label: float(widths[label])) == "twilio-sandbox · GB"


def test_dashboard_refuses_without_the_operator_password(gateway: RunningGateway) -> None:
    anonymous = httpx.get(f"{gateway.base_url}/dashboard", timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic ")
    wrong = httpx.get(f"{gateway.base_url}/dashboard", auth=("operator", "nope"), timeout=10)
    assert wrong.status_code == 401
    # An app's API key is not the operator's password.
    keyed = httpx.get(f"{gateway.base_url}/dashboard", headers=gateway.headers, timeout=10)
    assert keyed.status_code == 401
    page = httpx.get(f"{gateway.base_url}/dashboard?{WINDOW}", auth=("operator", TOKEN), timeout=10)
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert "script-src" not in page.headers["content-security-policy"]


def test_costs_command_prints_the_report(env: dict[str, str]) -> None:
    done = run_cli(
        "costs", "--since", "2026-11-01", "--until", "2026-11-02", "--group-by", "app", env=env
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    billing = next(line for line in lines if line.startswith("billing "))
    assert billing.split()[:4] == ["billing", "6", "10", "0.101200"]
    other = next(line for line in lines if line.startswith("other "))
    assert other.split()[:4] == ["other", "1", "1", "0.011400"]
    total = next(line for line in lines if line.startswith("TOTAL "))
    assert total.split()[:4] == ["TOTAL", "7", "11", "0.112600"]
    scored = next(line for line in lines if line.startswith("twilio-sandbox  US"))
    # twilio US: 4 messages (billing 3, other 1) all delivered, in 2, 4, 10 and 1 s: p50 3 s,
    # p95 9.1 s, to the report's resolution (1 %: they come from a histogram).
    assert scored.split()[2:7] == ["4", "4", "0", "0", "1.0000"]
    p50, p95 = (float(cell) for cell in scored.split()[7:9])
    assert p50 == pytest.approx(3.0, rel=RESOLUTION)
    assert p95 == pytest.approx(9.1, rel=RESOLUTION)

    bad = run_cli("costs", "--group-by", "carrier", env=env)
    assert bad.returncode == 2
    assert "group_by: unknown key 'carrier'" in bad.stderr
