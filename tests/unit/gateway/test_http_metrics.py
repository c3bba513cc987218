"""gateway/system/http_metrics.py keeps Litestar's Prometheus metrics exactly as the stock
middleware does (names, label names and values, what counts as an error), while caching
the labelled children; a configuration it does not handle falls back to the stock code."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from litestar import Litestar, get
from litestar.params import FromPath
from litestar.plugins.prometheus import PrometheusConfig, PrometheusMiddleware
from litestar.testing import TestClient
from prometheus_client import REGISTRY

from gateway.system.http_metrics import CachedPrometheusMiddleware
from gateway.system.metrics import prometheus_config

PREFIX = "sms_gateway_http"


@get("/probe-metrics/ok/{n:int}")
async def ok(n: FromPath[int]) -> dict[str, int]:
    return {"n": n}


@get("/probe-metrics/broken")
async def broken() -> None:
    raise RuntimeError("a bug")


@get("/health-probe-metrics")
async def excluded() -> None:
    return None


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(f"{PREFIX}_{name}", labels) or 0.0


def labels(path: str, status: int) -> dict[str, str]:
    return {"method": "GET", "path": path, "status_code": str(status), "app_name": "sms_gateway"}


@pytest.fixture
def client() -> Iterator[TestClient[Litestar]]:
    config = prometheus_config()
    config.exclude = [*(config.exclude or []), "^/health-probe-metrics"]
    app = Litestar([ok, broken, excluded], middleware=[config.middleware], debug=False)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def test_the_gateway_uses_the_cached_middleware() -> None:
    assert prometheus_config().middleware_class is CachedPrometheusMiddleware


def test_requests_are_counted_by_route_template_and_status(client: TestClient[Litestar]) -> None:
    path = "/probe-metrics/ok/{n}"  # the route's template, whatever the id
    before_count = sample("requests_total", **labels(path, 200))
    before_seconds = sample("request_duration_seconds_count", **labels(path, 200))
    for n in range(3):  # three label lookups, one cached child
        assert client.get(f"/probe-metrics/ok/{n}").status_code == 200
    assert sample("requests_total", **labels(path, 200)) == before_count + 3
    assert sample("request_duration_seconds_count", **labels(path, 200)) == before_seconds + 3
    assert sample("request_duration_seconds_sum", **labels(path, 200)) > 0
    # In progress: up and down again, labelled with status 200 as the stock gauge is.
    assert sample("requests_in_progress", **labels(path, 200)) == 0
    # No error counted for a success.
    assert sample("requests_error_total", **labels(path, 200)) == 0


def test_a_server_error_is_counted_as_one(client: TestClient[Litestar]) -> None:
    path = "/probe-metrics/broken"
    before = sample("requests_error_total", **labels(path, 500))
    before_count = sample("requests_total", **labels(path, 500))
    assert client.get(path).status_code == 500
    assert client.get(path).status_code == 500
    assert sample("requests_error_total", **labels(path, 500)) == before + 2
    assert sample("requests_total", **labels(path, 500)) == before_count + 2


def test_excluded_paths_are_not_counted(client: TestClient[Litestar]) -> None:
    assert client.get("/health-probe-metrics").status_code == 200
    assert (
        REGISTRY.get_sample_value(f"{PREFIX}_requests_total", labels("/health-probe-metrics", 200))
        is None
    )


def test_another_configuration_falls_back_to_the_stock_middleware() -> None:
    """Extra labels are the stock middleware's business: they are still applied."""
    config = PrometheusConfig(
        app_name="probe_fallback",
        prefix="probe_fallback_http",
        group_path=True,
        labels={"tenant": "acme"},
        middleware_class=CachedPrometheusMiddleware,
    )
    assert issubclass(CachedPrometheusMiddleware, PrometheusMiddleware)
    app = Litestar([ok], middleware=[config.middleware], debug=False)
    with TestClient(app) as test_client:
        assert test_client.get("/probe-metrics/ok/1").status_code == 200
    value = REGISTRY.get_sample_value(
        "probe_fallback_http_requests_total",
        {
            "method": "GET",
            "path": "/probe-metrics/ok/{n}",
            "status_code": "200",
            "app_name": "probe_fallback",
            "tenant": "acme",
        },
    )
    assert value == 1.0
