"""The Step Functions proxy: the envelope byte for byte, and its metrics."""

from __future__ import annotations

import json
import logging
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import mdcollect.remote
from mdcollect import InvalidRequest
from mdcollect.remote import (
    OPERATIONS,
    DataCollectionClient,
    ListEmitter,
    ProxySettings,
    build_call,
    make_handler,
)

from .conftest import Answer, ScriptedServer

TS = 1_700_000_000_000
CANDLES = {"exchange": "binance_futures", "symbol": "BTC/USDT:USDT", "timeframe": "1h", "count": 1,
           "columns": ["timestamp", "open", "high", "low", "close", "volume"],
           "data": [[1704067200000, 1.0, 2.0, 0.5, 1.5, 10.0]]}  # fmt: skip
SYNCED = {"job_id": "ab12", "status": "completed", "background": False, "report": {"ok": True}}


def ticks() -> Iterator[float]:
    t = 100.0
    while True:
        yield t
        t += 0.0125  # every invocation measures 12.5 ms


@pytest.fixture
def service(scripted: ScriptedServer) -> ScriptedServer:
    scripted.routes = {
        "/api/v1/health": Answer(200, {"status": "healthy"}),
        "/api/v1/symbols": Answer(200, {"symbols": ["BTC/USDT:USDT"], "datasets": []}),
        "/api/v1/status": Answer(200, {"status": "ok", "datasets": 1}),
        "/api/v1/ohlcv": Answer(200, CANDLES),
        "/api/v1/sync": Answer(200, SYNCED),
    }
    return scripted


def handler_for(url: str, emitter: ListEmitter, **client_kw: Any) -> Any:
    clock = ticks()
    return make_handler(
        client_factory=lambda: DataCollectionClient(url, sleep=lambda s: None, **client_kw),
        emitter=emitter, clock=lambda: next(clock), timestamp=lambda: TS,
    )  # fmt: skip


def emf(operation: str, environment: str, errors: int) -> dict[str, Any]:
    return {
        "_aws": {
            "Timestamp": TS,
            "CloudWatchMetrics": [{
                "Namespace": "mdcollect/DataProxy",
                "Dimensions": [["Operation", "Environment"]],
                "Metrics": [
                    {"Name": "ProxyRequests", "Unit": "Count"},
                    {"Name": "ProxyLatency", "Unit": "Milliseconds"},
                    {"Name": "ProxyErrors", "Unit": "Count"},
                ],
            }],
        },
        "Operation": operation, "Environment": environment,
        "ProxyRequests": 1, "ProxyLatency": 12.5, "ProxyErrors": errors,
    }  # fmt: skip


ENSURE = {"symbols": ["BTC/USDT:USDT"], "timeframe": "1h", "start_date": "20240201", "end_date": "20240228"}  # fmt: skip

OK_CASES = [
    ({}, "health", '{"statusCode": 200, "body": {"success": true, "data": {"operation": "health", "result": {"status": "healthy"}}, "environment": "dev"}}'),
    ({"operation": "health"}, "health", '{"statusCode": 200, "body": {"success": true, "data": {"operation": "health", "result": {"status": "healthy"}}, "environment": "dev"}}'),
    ({"operation": "symbols"}, "symbols", '{"statusCode": 200, "body": {"success": true, "data": {"operation": "symbols", "result": {"symbols": ["BTC/USDT:USDT"], "datasets": []}}, "environment": "dev"}}'),
    ({"operation": "status", "params": {}}, "status", '{"statusCode": 200, "body": {"success": true, "data": {"operation": "status", "result": {"status": "ok", "datasets": 1}}, "environment": "dev"}}'),
    ({"operation": "fetch_ohlcv", "params": {"symbol": "BTC/USDT:USDT", "limit": 1}}, "fetch_ohlcv", '{"statusCode": 200, "body": {"success": true, "data": {"operation": "fetch_ohlcv", "result": {"exchange": "binance_futures", "symbol": "BTC/USDT:USDT", "timeframe": "1h", "count": 1, "columns": ["timestamp", "open", "high", "low", "close", "volume"], "data": [[1704067200000, 1.0, 2.0, 0.5, 1.5, 10.0]]}}, "environment": "dev"}}'),
    ({"operation": "ensure-data", "params": ENSURE}, "ensure-data", '{"statusCode": 200, "body": {"success": true, "data": {"operation": "ensure-data", "result": {"job_id": "ab12", "status": "completed", "background": false, "report": {"ok": true}}}, "environment": "dev"}}'),
]  # fmt: skip


@pytest.mark.parametrize(("event", "operation", "expected"), OK_CASES)
def test_each_operation(service: ScriptedServer, event: dict[str, Any], operation: str, expected: str) -> None:  # fmt: skip
    emitter = ListEmitter()
    out = handler_for(service.url, emitter)(event, None)
    assert json.dumps(out) == expected
    assert emitter.documents == [emf(operation, "dev", 0)]
    assert len(service.requests) == 1


def test_ensure_data_posts_padded_dates(service: ScriptedServer) -> None:
    handler_for(service.url, ListEmitter())({"operation": "ensure-data", "params": ENSURE}, None)
    method, path, body = service.requests[0]
    assert (method, path) == ("POST", "/api/v1/sync")
    assert (
        body
        == b'{"symbols":["BTC/USDT:USDT"],"timeframe":"1h","start_date":"2024-01-02","end_date":"2024-02-28","exchange":"binance_futures","padding_days":0}'
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def failure_cases(port: int) -> list[tuple[dict[str, Any], str, str]]:
    return [
        ({"operation": "delete"}, "delete", '{"statusCode": 200, "body": {"success": true, "data": {"operation": "delete", "result": {"error": "operation \'delete\' is not known; allowed: health, fetch_ohlcv, symbols, status, ensure-data, fetch_data, datasets, sync_status"}}, "environment": "dev"}}'),
        ({"operation": 7}, "7", '{"statusCode": 200, "body": {"success": true, "data": {"operation": "7", "result": {"error": "operation must be a string, got 7"}}, "environment": "dev"}}'),
        ({"operation": "status", "params": ["x"]}, "status", '{"statusCode": 200, "body": {"success": true, "data": {"operation": "status", "result": {"error": "params must be an object, got [\'x\']"}}, "environment": "dev"}}'),
        ({"operation": "health", "params": {"verbose": True}}, "health", '{"statusCode": 200, "body": {"success": true, "data": {"operation": "health", "result": {"error": "unknown parameter(s) [\'verbose\'] for health; allowed: none"}}, "environment": "dev"}}'),
        ({"operation": "fetch_ohlcv", "params": {"symbol": "BTCUSDT"}}, "fetch_ohlcv", '{"statusCode": 200, "body": {"success": true, "data": {"operation": "fetch_ohlcv", "result": {"error": "symbol \'BTCUSDT\' is not valid: symbols are ccxt unified symbols containing \'/\', such as \'BTC/USDT\' or \'BTC/USDT:USDT\'"}}, "environment": "dev"}}'),
        ({"operation": "fetch_ohlcv", "params": {"symbol": "BTC/USDT:USDT", "limit": 0}}, "fetch_ohlcv", '{"statusCode": 200, "body": {"success": true, "data": {"operation": "fetch_ohlcv", "result": {"error": "limit 0 is not valid; use an integer from 1 to 10000"}}, "environment": "dev"}}'),
        ({"operation": "ensure-data", "params": {**ENSURE, "symbols": []}}, "ensure-data", '{"statusCode": 200, "body": {"success": true, "data": {"operation": "ensure-data", "result": {"error": "symbols must be a non-empty list; got an empty list"}}, "environment": "dev"}}'),
        ({"operation": "ensure-data", "params": {**ENSURE, "exchange": "kraken"}}, "ensure-data", '{"statusCode": 200, "body": {"success": true, "data": {"operation": "ensure-data", "result": {"error": "exchange \'kraken\' is not allowed; allowed: binance_futures, bybit_futures, okx_futures"}}, "environment": "dev"}}'),
    ]  # fmt: skip


@pytest.mark.parametrize("case", range(len(failure_cases(0))))
def test_each_failure_is_a_200_with_an_error(service: ScriptedServer, case: int) -> None:
    event, operation, expected = failure_cases(0)[case]
    emitter = ListEmitter()
    out = handler_for(service.url, emitter)(event, None)
    assert json.dumps(out) == expected
    assert emitter.documents == [emf(operation, "dev", 1)]
    assert service.requests == [], "invalid requests are never sent"


def test_service_unreachable_after_retries() -> None:
    port = closed_port()
    emitter = ListEmitter()
    out = handler_for(f"http://127.0.0.1:{port}", emitter, max_retries=2)(
        {"operation": "status"}, None
    )
    expected = (
        '{"statusCode": 200, "body": {"success": true, "data": {"operation": "status", "result": '
        f'{{"error": "GET http://127.0.0.1:{port}/api/v1/status: the data-collection service is '
        'unreachable after 3 attempt(s): ConnectError: [Errno 111] Connection refused"}}, '
        '"environment": "dev"}}'
    )
    assert json.dumps(out) == expected
    assert emitter.documents == [emf("status", "dev", 1)]


def test_service_error_answer(service: ScriptedServer) -> None:
    service.routes["/api/v1/ohlcv"] = Answer(400, {"error": "timeframe '7m' is not supported by binance_futures"})  # fmt: skip
    service.routes["/api/v1/status"] = Answer(503, {"error": "storage down"})
    emitter = ListEmitter()
    handler = handler_for(service.url, emitter, max_retries=1)
    out = handler({"operation": "fetch_ohlcv", "params": {"symbol": "BTC/USDT:USDT"}}, None)
    assert json.dumps(out) == (
        '{"statusCode": 200, "body": {"success": true, "data": {"operation": "fetch_ohlcv", "result": '
        '{"error": "GET /api/v1/ohlcv failed with 400: timeframe \'7m\' is not supported by '
        'binance_futures"}}, "environment": "dev"}}'
    )
    out = handler({"operation": "status"}, None)
    assert json.dumps(out) == (
        '{"statusCode": 200, "body": {"success": true, "data": {"operation": "status", "result": '
        f'{{"error": "GET {service.url}/api/v1/status failed with 503 after 2 attempt(s): '
        'storage down"}}, "environment": "dev"}}'
    )
    assert emitter.documents == [emf("fetch_ohlcv", "dev", 1), emf("status", "dev", 1)]


def test_a_bug_still_answers_200(service: ScriptedServer) -> None:
    def broken() -> DataCollectionClient:
        raise RuntimeError("boom")

    emitter = ListEmitter()
    out = make_handler(client_factory=broken, emitter=emitter, timestamp=lambda: TS)({}, None)
    assert out["statusCode"] == 200
    assert out["body"]["data"]["result"] == {"error": "RuntimeError: boom"}
    assert emitter.documents[0]["ProxyErrors"] == 1


def cold_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget the entry point, as a new Lambda execution environment would."""
    monkeypatch.setattr(mdcollect.remote, "_entry_point", None)


def test_environment_and_default_log_emitter(
    service: ScriptedServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The real entry point: configured from the environment, metrics as EMF log lines."""
    monkeypatch.setenv("DATA_COLLECTION_URL", service.url)
    monkeypatch.setenv("ENVIRONMENT", "staging")
    cold_start(monkeypatch)
    lambda_handler = mdcollect.remote.lambda_handler
    assert lambda_handler is mdcollect.remote.lambda_handler  # made once
    caplog.set_level(logging.INFO, logger="mdcollect.remote.metrics")
    out = lambda_handler({"operation": "health"}, object())
    assert json.dumps(out) == (
        '{"statusCode": 200, "body": {"success": true, "data": {"operation": "health", "result": '
        '{"status": "healthy"}}, "environment": "staging"}}'
    )
    lambda_handler({"operation": "nope"}, None)
    records = [r for r in caplog.records if r.name == "mdcollect.remote.metrics"]
    assert len(records) == 2
    docs = [json.loads(r.getMessage()) for r in records]
    for doc, (op, errors) in zip(docs, [("health", 0), ("nope", 1)], strict=True):
        assert isinstance(doc["_aws"]["Timestamp"], int)
        assert doc["ProxyLatency"] >= 0
        expected = emf(op, "staging", errors)
        expected["_aws"]["Timestamp"] = doc["_aws"]["Timestamp"]
        expected["ProxyLatency"] = doc["ProxyLatency"]
        assert doc == expected
    assert "\n" not in records[0].getMessage()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("REQUEST_TIMEOUT", "soon", "REQUEST_TIMEOUT='soon' is not valid: REQUEST_TIMEOUT must be a positive number, got 'soon'"),
        ("REQUEST_TIMEOUT", "0", "REQUEST_TIMEOUT='0' is not valid"),
        ("MAX_RETRIES", "-1", "MAX_RETRIES='-1' is not valid"),
        ("MAX_RETRIES", "two", "MAX_RETRIES='two' is not valid"),
        ("DATA_COLLECTION_URL", "data-collection:8002", "DATA_COLLECTION_URL: base_url 'data-collection:8002' is not valid"),
        ("METRICS_NAMESPACE", "my metrics", "METRICS_NAMESPACE: namespace 'my metrics' is not a CloudWatch namespace"),
    ],
)  # fmt: skip
def test_a_bad_setting_fails_the_cold_start(
    scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    """A bad setting is refused when the runtime loads the handler, before any call."""
    monkeypatch.setenv(name, value)
    import mdcollect.remote as fresh  # importing alone reads nothing

    cold_start(monkeypatch)
    with pytest.raises(InvalidRequest) as caught:
        fresh.lambda_handler  # noqa: B018 - the runtime's attribute lookup at cold start
    assert message in str(caught.value)
    with pytest.raises(InvalidRequest):
        make_handler()
    assert scripted.requests == []


def test_settings_in_a_cold_process(tmp_path: Any) -> None:
    """The real runtime's order: import, look the handler up (the cold start), then call."""
    import subprocess
    import sys

    code = (
        "import mdcollect.remote as r\n"
        "try:\n"
        "    r.lambda_handler\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "REQUEST_TIMEOUT": "-3", "PYTHONPATH": ":".join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == (
        "InvalidRequest environment variable REQUEST_TIMEOUT='-3' is not valid: "
        "REQUEST_TIMEOUT must be a positive number, got -3.0"
    ), out.stderr


def test_settings_object_configures_the_client_and_namespace(service: ScriptedServer) -> None:
    """``settings=`` and ``namespace=`` replace the environment; the token stays hidden."""
    emitter = ListEmitter()
    settings = ProxySettings(
        environment="prod", service_url=service.url, request_timeout=5, max_retries=0,
        namespace="tradai", api_token="s3cr3t-token",
    )  # fmt: skip
    assert "s3cr3t" not in repr(settings)
    assert settings.metrics_namespace == "tradai/DataProxy"
    out = make_handler(settings=settings, emitter=emitter, timestamp=lambda: TS)(
        {"operation": "health"}, None
    )
    assert out["body"]["environment"] == "prod"
    assert out["body"]["data"]["result"] == {"status": "healthy"}
    assert service.headers[-1]["authorization"] == "Bearer s3cr3t-token"
    doc = emitter.documents[0]
    assert doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "tradai/DataProxy"
    assert doc["Environment"] == "prod"
    other = make_handler(settings=settings, namespace="ops/DataProxy", emitter=emitter)
    other({"operation": "health"}, None)
    assert emitter.documents[1]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "ops/DataProxy"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"request_timeout": 0}, "request_timeout must be a positive number, got 0.0"),
        ({"max_retries": 1.5}, "max_retries must be an integer >= 0, got 1.5"),
        ({"environment": " "}, "environment must be a non-empty string, got ' '"),
        ({"service_url": "ftp://x"}, "base_url 'ftp://x' is not valid"),
        ({"namespace": "a b"}, "namespace 'a b' is not a CloudWatch namespace"),
    ],
)  # fmt: skip
def test_settings_refuse_bad_values(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message.replace("(", r"\(").replace(".", r"\.")):
        ProxySettings(**{"service_url": "http://127.0.0.1:1", **kwargs})


def test_settings_doctests() -> None:
    import doctest

    import mdcollect.remote._settings as settings_module

    result = doctest.testmod(settings_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 5 and result.failed == 0


def test_the_operations_named_are_those_the_proxy_runs(service: ScriptedServer) -> None:
    service.routes["/api/v1/sync/ab12"] = Answer(200, SYNCED)
    event = {"operation": "sync_status", "params": {"job_id": "ab12"}}
    out = handler_for(service.url, ListEmitter())(event, None)
    assert out["body"]["data"]["result"] == SYNCED
    assert "sync_status" in OPERATIONS
    for operation in OPERATIONS:  # each one named is run (its params checked, not "unknown")
        with pytest.raises(InvalidRequest) as err:
            build_call(operation, {"nonsense": 1})
        assert "unknown parameter(s) ['nonsense']" in str(err.value)


def test_the_docs_name_every_operation() -> None:
    root = Path(__file__).parents[2]
    readme = (root / "README.md").read_text()
    service = (root / "docs" / "service.md").read_text()
    for listed in (
        re.search(r"\(operations\s+(`health`.*?)\)", readme, re.S),
        re.search(r"names an operation \((`health`.*?)\)", service, re.S),
    ):
        assert listed is not None
        assert re.findall(r"`([\w-]+)`", listed[1]) == list(OPERATIONS)
    table = readme.split("| operation | method | path | params |")[1].split("\n\n")[0]
    rows = [line.split("|")[1].strip() for line in table.splitlines()[2:]]
    assert rows == list(OPERATIONS)


def test_settings_never_show_the_service_credentials() -> None:
    settings = ProxySettings(service_url="https://svc:s3cr3tpw@data.example:8002?token=T0KEN")
    assert "s3cr3tpw" not in repr(settings) and "T0KEN" not in repr(settings)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"service_url": "http://"}, "service_url 'http://' is not valid"),
        ({"service_url": "https://exa mple:80x"}, "is not valid"),
        ({"request_timeout": "soon"}, "request_timeout must be a positive number, got 'soon'"),
        ({"request_timeout": None}, "request_timeout must be a positive number, got None"),
    ],
)  # fmt: skip
def test_settings_refuse_more_bad_values(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message.replace("(", r"\(").replace(".", r"\.")):
        ProxySettings(**{"service_url": "http://127.0.0.1:1", **kwargs})


def test_the_entry_point_is_made_once_and_not_by_a_star_import(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading

    cold_start(monkeypatch)
    assert "lambda_handler" not in mdcollect.remote.__all__
    made: list[Any] = []
    threads = [
        threading.Thread(target=lambda: made.append(mdcollect.remote.lambda_handler))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 4 and all(h is made[0] for h in made)
