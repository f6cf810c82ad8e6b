"""Collectors inside the service: ``create_app(collector=...)`` runs a ``DataCollector``
for the app's lifetime; ``GET /api/v1/collectors`` is its status; restart, enable and
disable by name need the API token; sync jobs are listed and cancelled."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from mdcollect import DataCollectionStorage, DataCollector
from mdcollect.collectors import TickerCollector
from mdcollect.exchanges import ExchangeClient
from mdcollect.testing import ExchangeEmulator, Fault

from .conftest import LiveServer
from .test_load import BTC, body, covered_rows_are_stored, wait_until

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NAME = "binance:ticker:BTC/USDT"


def ticker(emu: ExchangeEmulator, symbol: str = "BTC/USDT", **kwargs: Any) -> TickerCollector:
    client = ExchangeClient("binance", base_url=emu.url, enableRateLimit=False, timeout=10_000)
    return TickerCollector(
        client, [symbol], mode="ws", batch_rows=1, batch_seconds=0.1, flush_timeout=10,
        **kwargs,
    )  # fmt: skip


@pytest.fixture
def collecting(
    serve: Callable[..., LiveServer], emu: ExchangeEmulator, storage: DataCollectionStorage
) -> Iterator[Callable[..., tuple[LiveServer, DataCollector]]]:
    """``collecting(*collectors, **create_app_kwargs)``: a service running them."""

    def start(*collectors: Any, **kwargs: Any) -> tuple[LiveServer, DataCollector]:
        dc = DataCollector(collectors or [ticker(emu)], storage, restart_backoff=0.05)
        kwargs.setdefault("api_token", TOKEN)
        return serve(collector=dc, **kwargs), dc

    yield start


def collectors(live: LiveServer) -> dict[str, Any]:
    r = httpx.get(f"{live.url}/api/v1/collectors", headers=AUTH, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def one(live: LiveServer, name: str = NAME) -> dict[str, Any]:
    return collectors(live)["collectors"][name]  # type: ignore[no-any-return]


def control(live: LiveServer, name: str, action: str, **kwargs: Any) -> httpx.Response:
    kwargs.setdefault("headers", AUTH)
    return httpx.post(f"{live.url}/api/v1/collectors/{name}/{action}", timeout=30, **kwargs)


def test_the_app_runs_the_collector_for_its_lifetime(
    collecting: Callable[..., tuple[LiveServer, DataCollector]], storage: DataCollectionStorage
) -> None:
    live, dc = collecting()
    wait_until(lambda: one(live)["rows_stored"] > 0, "rows stored")
    st = collectors(live)
    assert st["collecting"] is True and st["is_healthy"] is True
    c = st["collectors"][NAME]
    assert c["state"] == "running" and c["rows_per_second"] > 0 and c["lag_seconds"] is not None
    assert st["process"]["rss_bytes"] > 0
    live.__exit__()
    # stopped with the app, everything flushed into the served storage
    assert dc.status()["running"] is False and dc.status()["collectors"][NAME]["state"] == "stopped"
    stored = dc.status()["collectors"][NAME]["rows_stored"]
    assert len(storage.read(dc.collectors[0].keys()[0])) == stored


def test_restart_enable_disable_by_name(
    collecting: Callable[..., tuple[LiveServer, DataCollector]], emu: ExchangeEmulator
) -> None:
    live, dc = collecting(ticker(emu), ticker(emu, "ETH/USDT"))
    other = "binance:ticker:ETH/USDT"
    wait_until(lambda: one(live)["rows_stored"] > 0, "rows stored")
    r = control(live, NAME, "restart")  # the name holds a '/': still one path parameter
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["name"] == NAME and got["action"] == "restart"
    assert got["collector"]["restarts"] == 1
    assert got["collector"]["last_restart_reason"] == "restarted by hand"
    stored = one(live)["rows_stored"]
    wait_until(lambda: one(live)["rows_stored"] > stored, "rows after the restart")
    r = control(live, NAME, "disable")
    assert r.status_code == 200 and r.json()["collector"]["state"] == "disabled"
    assert dc.running() == [other]
    r = control(live, NAME, "enable")
    assert r.status_code == 200
    wait_until(lambda: one(live)["state"] == "running", "running again")
    assert one(live, other)["restarts"] == 0  # the other one was not touched


def test_control_refuses_bad_input_and_unknown_names(
    collecting: Callable[..., tuple[LiveServer, DataCollector]],
) -> None:
    live, dc = collecting()
    r = control(live, NAME, "reboot")
    assert r.status_code == 400
    assert "'reboot'" in r.json()["error"] and "'restart', 'enable', 'disable'" in r.json()["error"]
    r = control(live, "binance:ticker:DOGE/USDT", "restart")
    assert r.status_code == 404
    assert "'binance:ticker:DOGE/USDT'" in r.json()["error"] and NAME in r.json()["error"]
    assert control(live, NAME, "restart", headers={}).status_code == 401
    assert dc.status()["collectors"][NAME]["restarts"] == 0


def test_a_service_without_a_token_refuses_control(
    collecting: Callable[..., tuple[LiveServer, DataCollector]],
) -> None:
    live, dc = collecting(api_token="")
    r = control(live, NAME, "disable", headers={})
    assert r.status_code == 403 and "API token" in r.json()["error"]
    assert one(live)["state"] in ("starting", "running")
    assert dc.status()["collectors"][NAME]["should_be_running"] is True


def test_without_collectors_the_route_says_so(serve: Callable[..., LiveServer]) -> None:
    live = serve(api_token=TOKEN)
    assert collectors(live) == {"collecting": False, "collectors": {}}
    r = control(live, NAME, "restart")
    assert r.status_code == 404 and "this service runs: []" in r.json()["error"]


def test_sync_jobs_are_listed_and_a_running_one_cancelled(
    serve: Callable[..., LiveServer], emu: ExchangeEmulator, storage: DataCollectionStorage
) -> None:
    live = serve(api_token=TOKEN, sync_timeout=0.05)
    fault = emu.faults.add(Fault("slow", route="klines", delay=0.3))
    try:
        r = httpx.post(
            f"{live.url}/api/v1/sync", json=body([BTC], "2024-02-01", "2024-02-10", "1m"),
            headers=AUTH, timeout=10,
        )  # fmt: skip
        assert r.status_code == 202
        job_id = r.json()["job_id"]
        listed = httpx.get(f"{live.url}/api/v1/sync", headers=AUTH, timeout=10).json()
        assert listed["count"] == 1 and listed["jobs"][0]["job_id"] == job_id
        assert listed["jobs"][0]["status"] == "running"
        wait_until(
            lambda: any(storage.coverage(k) for k in storage.keys(kind="ohlcv")), "some rows stored"
        )
        url = f"{live.url}/api/v1/sync/{job_id}"
        unsecured = serve(api_token="")
        r = httpx.delete(f"{unsecured.url}/api/v1/sync/{job_id}", timeout=10)
        assert r.status_code == 403
        r = httpx.delete(url, headers=AUTH, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "cancelled" and r.json()["error"] == "cancelled by request"
    finally:
        emu.faults.remove(fault)
    # stopped mid-way: what it wrote is covered truly, and less than asked
    assert 0 < covered_rows_are_stored(storage, emu) < 10 * 1440
    assert httpx.delete(url, headers=AUTH, timeout=10).status_code == 409
    assert httpx.get(url, headers=AUTH, timeout=10).json()["status"] == "cancelled"
    r = httpx.delete(f"{live.url}/api/v1/sync/{'0' * 32}", headers=AUTH, timeout=10)
    assert r.status_code == 404
    counts = httpx.get(f"{live.url}/api/v1/status", headers=AUTH, timeout=10).json()["jobs"]
    assert counts == {"running": 0, "completed": 0, "failed": 0, "cancelled": 1}


def test_metrics_show_the_collectors_the_service_runs(
    collecting: Callable[..., tuple[LiveServer, DataCollector]],
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    live, _ = collecting()
    wait_until(lambda: one(live)["rows_stored"] > 0, "rows stored")
    resp = httpx.get(f"{live.url}/metrics", headers=AUTH, timeout=10)
    assert resp.status_code == 200, resp.text
    samples = {s.name: s for f in text_string_to_metric_families(resp.text) for s in f.samples}
    # the figures `mdcollect collect --metrics-port` serves, labelled by collector
    stored = samples["mdcollect_collector_rows_stored_total"]
    assert stored.labels == {"collector": NAME, "exchange": "binance", "kind": "ticker"}
    assert stored.value > 0
    assert samples["mdcollect_collector_healthy"].value == 1.0
    assert samples["mdcollect_collector_running"].value == 1.0
