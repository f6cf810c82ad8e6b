"""The service's own checks: validation before anything is done, bounds, auth, OpenAPI."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from mdcollect import InvalidRequest, RemoteError
from mdcollect.remote import DataCollectionClient
from mdcollect.service import create_app
from mdcollect.testing import ExchangeEmulator

from .conftest import LiveServer

GOOD = {"symbols": ["BTC/USDT:USDT"], "timeframe": "1h", "start_date": "2024-02-01", "end_date": "2024-02-02"}  # fmt: skip
LONG = "B" * 48 + "/USDT"

BAD_SYNC: list[tuple[dict[str, Any], str]] = [
    ({"symbols": []}, "non-empty"),
    ({"symbols": "BTC/USDT:USDT"}, "symbols must be a non-empty list"),
    ({"symbols": [f"S{i}/USDT" for i in range(51)]}, "at most 50"),
    ({"symbols": ["BTCUSDT"]}, "'BTCUSDT'"),
    ({"symbols": [LONG]}, f"{LONG[:10]}.*at most 50"),
    ({"symbols": [7]}, "symbol 7"),
    ({"timeframe": "1x"}, r"'1x' is not supported by binance_futures"),
    ({"timeframe": "1W"}, "did you mean '1w'"),
    ({"timeframe": "7m"}, "'7m' is not supported by binance_futures"),
    ({"start_date": "2024/02/01"}, "'2024/02/01'"),
    ({"start_date": 20240201}, "start_date must be a string"),
    ({"end_date": "2024-13-01"}, "2024-13-01"),
    ({"end_date": "2024-01-01"}, "before start_date"),
    ({"exchange": "binance"}, "exchange 'binance' is not allowed; allowed: binance_futures"),
    ({"padding_days": -1}, "padding_days"),
    ({"padding_days": 10**9}, "padding_days"),
    ({"bogus": 1}, "unknown field.*'bogus'"),
    ({"start_date": "2000-01-01", "timeframe": "1m"}, "candles; at most"),
]


@pytest.mark.parametrize(("override", "needle"), BAD_SYNC)
def test_bad_sync_is_a_400_naming_the_value_and_does_nothing(
    shared: LiveServer, emu: ExchangeEmulator, override: dict[str, Any], needle: str
) -> None:
    live = shared
    n = len(emu.requests)
    r = httpx.post(f"{live.url}/api/v1/sync", json={**GOOD, **override})
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/json"
    assert re.search(needle, r.json()["error"]), r.json()
    assert len(emu.requests) == n, "nothing may be asked of the exchange"
    assert httpx.get(f"{live.url}/api/v1/status").json()["datasets"] == 0


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, 413, "at most"),
        (json.dumps({**GOOD, "symbols": ["A/B"] * 20_000}).encode(), 413, "at most 65536"),
        (b"[" * 30_000 + b"]" * 30_000, 400, "not valid JSON"),
    ],
)
def test_sync_body_bounds(shared: LiveServer, body: bytes, status: int, needle: str) -> None:
    r = httpx.post(f"{shared.url}/api/v1/sync", content=body, headers={"content-type": "application/json"})  # fmt: skip
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]


def test_chunked_body_over_the_limit_is_a_413(shared: LiveServer) -> None:
    def chunks() -> Any:
        for _ in range(100):
            yield b" " * 1024

    r = httpx.post(f"{shared.url}/api/v1/sync", content=chunks())
    assert r.status_code == 413


BAD_OHLCV: list[tuple[str, str]] = [
    ("timeframe=1h", "symbol parameter is required"),
    ("symbol=BTCUSDT", "'BTCUSDT'"),
    (f"symbol={LONG}", "at most 50"),
    ("symbol=BTC/USDT:USDT&timeframe=1x", "'1x'"),
    ("symbol=BTC/USDT:USDT&limit=0", "limit '0'"),
    ("symbol=BTC/USDT:USDT&limit=10001", "limit '10001'"),
    ("symbol=BTC/USDT:USDT&limit=ten", "limit 'ten'"),
    ("symbol=BTC/USDT:USDT&start=yesterday", "'yesterday'"),
    ("symbol=BTC/USDT:USDT&start=9999999999999999", "out of range"),
    ("symbol=BTC/USDT:USDT&start=2024-02-02&end=2024-02-01", "must be after start"),
    ("symbol=BTC/USDT:USDT&exchange=kraken", "'kraken' is not allowed"),
    ("symbol=BTC/USDT:USDT&symbol=ETH/USDT:USDT", "more than once"),
    ("symbol=BTC/USDT:USDT&sql=drop", "unknown parameter 'sql'"),
]


@pytest.mark.parametrize(("query", "needle"), BAD_OHLCV)
def test_bad_ohlcv_query_is_a_400_naming_the_value(shared: LiveServer, query: str, needle: str) -> None:  # fmt: skip
    r = httpx.get(f"{shared.url}/api/v1/ohlcv?{query}")
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]


def test_more_exchanges_can_be_allowed(serve: Callable[..., LiveServer]) -> None:
    live = serve(allowed_exchanges=["binance_futures", "binance"])
    r = httpx.get(f"{live.url}/api/v1/ohlcv", params={"symbol": "BTC/USDT", "exchange": "binance"})
    assert r.status_code == 200 and r.json()["count"] == 0
    with DataCollectionClient(live.url, allowed_exchanges=["binance"]) as client:
        assert client.fetch_ohlcv("BTC/USDT", exchange="binance").empty
    doc = httpx.get(f"{live.url}/openapi.json").json()
    params = doc["paths"]["/api/v1/ohlcv"]["get"]["parameters"]
    assert next(p for p in params if p["name"] == "exchange")["schema"]["enum"] == ["binance_futures", "binance"]  # fmt: skip


def test_unknown_path_and_method_are_json_4xx(live: LiveServer) -> None:
    r = httpx.get(f"{live.url}/api/v1/nothing")
    assert r.status_code == 404 and "error" in r.json()
    r = httpx.delete(f"{live.url}/api/v1/sync")
    assert r.status_code == 405 and "error" in r.json()


# -- auth ------------------------------------------------------------------------------

ENDPOINTS = [
    ("GET", "/api/v1/status", None),
    ("GET", "/api/v1/symbols", None),
    ("GET", "/api/v1/ohlcv?symbol=BTC/USDT:USDT", None),
    ("POST", "/api/v1/sync", GOOD),
]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_bearer_token(
    serve: Callable[..., LiveServer], method: str, path: str, body: dict[str, Any] | None
) -> None:
    live = serve(api_token="s3cret")
    for headers, status in [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": "Basic s3cret"}, 401),
        ({"Authorization": "Bearer s3cret"}, 200),
    ]:
        r = httpx.request(method, live.url + path, json=body, headers=headers)
        assert r.status_code == status, (headers, r.text)
        if status == 401:
            assert r.headers["www-authenticate"] == "Bearer"
            assert "bearer token" in r.json()["error"]
    assert httpx.get(f"{live.url}/api/v1/health").status_code == 200  # liveness stays open


def test_token_from_environment_and_client(
    serve: Callable[..., LiveServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MDCOLLECT_API_TOKEN", "from-env")
    live = serve(api_token=None)
    assert httpx.get(f"{live.url}/api/v1/status").status_code == 401
    with DataCollectionClient(live.url) as client:  # the client reads the same variable
        assert client.status()["auth"] is True
    with (
        DataCollectionClient(live.url, api_token="nope", max_retries=0) as client,
        pytest.raises(RemoteError, match="401") as err,
    ):
        client.status()
    assert err.value.status_code == 401


# -- configuration and the OpenAPI document ------------------------------------------------


def test_create_app_checks_its_configuration() -> None:
    with pytest.raises(InvalidRequest, match="allowed_exchanges"):
        create_app("memory://", allowed_exchanges=[])
    with pytest.raises(InvalidRequest, match="sync_timeout"):
        create_app("memory://", sync_timeout=0)
    with pytest.raises(InvalidRequest, match="scheme"):
        create_app("nope://x")


def test_openapi_document_describes_every_route(live: LiveServer) -> None:
    doc = httpx.get(f"{live.url}/openapi.json").json()
    assert doc["openapi"].startswith("3.0")
    assert set(doc["paths"]) == {
        "/api/v1/health", "/api/v1/ohlcv", "/api/v1/symbols", "/api/v1/status",
        "/api/v1/sync", "/api/v1/sync/{job_id}", "/api/v1/data",
        "/api/v1/datasets", "/api/v1/audit", "/metrics",
        "/api/v1/collectors", "/api/v1/collectors/{name}/{action}",
    }  # fmt: skip
    import schemathesis
    from jsonschema_rs import validator_for  # noqa: F401 - installed with schemathesis

    schemathesis.openapi.from_dict(doc)  # loads and validates as OpenAPI
