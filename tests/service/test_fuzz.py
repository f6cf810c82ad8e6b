"""Fuzz the live service from its own OpenAPI document: no input may cause a 5xx."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from mdcollect.service import create_app
from mdcollect.testing import ExchangeEmulator

from .conftest import LiveServer, emulated


@pytest.fixture(scope="module")
def fuzzed(emu: ExchangeEmulator) -> Iterator[LiveServer]:
    # small bounds: a generated sync that passes validation runs for real against the
    # emulator, briefly, or goes to the background and is cancelled at shutdown
    app = create_app(
        "memory://", exchange_factory=emulated(emu), api_token="", sync_timeout=0.5,
        max_sync_candles=5_000,
    )  # fmt: skip
    with LiveServer(app) as server:
        yield server


# the document the fuzzed app serves (checked equal below), loaded at collection
DOCUMENT = create_app("memory://", api_token="").state.service.openapi
# positive and negative inputs; the "coverage" phase (boundary values of every schema,
# computed at collection) takes over a minute on the sync body and is left out
CONFIG = schemathesis.Config.from_dict(
    {"generation": {"mode": "all"}, "phases": {"coverage": {"enabled": False}}}
)
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)


def test_fuzzed_document_is_the_served_one(fuzzed: LiveServer) -> None:
    import httpx

    assert httpx.get(f"{fuzzed.url}/openapi.json").json() == DOCUMENT


@schema.parametrize()
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_input_causes_a_server_error(fuzzed: LiveServer, case: schemathesis.Case) -> None:
    response = case.call(base_url=fuzzed.url)
    assert response.status_code < 500, (case.as_curl_command(), response.text)
    # the media type the document declares for that answer (/metrics: Prometheus text)
    op = DOCUMENT["paths"][case.path][case.method.lower()]
    declared = op["responses"].get(str(response.status_code), {}).get("content", {})
    media = response.headers["content-type"][0].split(";")[0]
    assert media in (set(declared) or {"application/json"}), (case.as_curl_command(), media)


def test_every_read_of_every_kind_is_fuzzed() -> None:
    """The fuzzed operations include the candle kinds' ``kind`` and ``/api/v1/data``."""
    operations = {(op.ok().method.upper(), op.ok().path) for op in schema.get_all_operations()}
    assert {("GET", "/api/v1/ohlcv"), ("GET", "/api/v1/data")} <= operations
    control = {("GET", "/api/v1/collectors"), ("POST", "/api/v1/collectors/{name}/{action}")}
    assert control | {("GET", "/api/v1/sync"), ("DELETE", "/api/v1/sync/{job_id}")} <= operations
    ohlcv = DOCUMENT["paths"]["/api/v1/ohlcv"]["get"]["parameters"]
    assert "kind" in {p["name"] for p in ohlcv}
