"""The service's ``/metrics``: Prometheus text, behind the token like the rest."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

from .conftest import LiveServer


def test_the_service_serves_metrics_behind_its_token(serve: Callable[..., LiveServer]) -> None:
    live = serve(api_token="s3cret")
    assert httpx.get(live.url + "/metrics", timeout=10).status_code == 401
    resp = httpx.get(live.url + "/metrics", headers={"Authorization": "Bearer s3cret"}, timeout=10)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    names = {s.name for f in text_string_to_metric_families(resp.text) for s in f.samples}
    assert "process_cpu_seconds_total" in names
    openapi = httpx.get(live.url + "/openapi.json", timeout=10).json()
    assert "/metrics" in openapi["paths"]
