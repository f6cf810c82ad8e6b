"""The clients' retries, configuration and validation, against a scripted real server."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from mdcollect import InvalidRequest, MdcollectError, RemoteError
from mdcollect.remote import AsyncDataCollectionClient, DataCollectionClient, default_base_url

from .conftest import Answer, ScriptedServer

HEALTHY = {"status": "healthy"}


def run(kind: str, url: str, operation: str = "health", params: dict[str, Any] | None = None,
        **kw: Any) -> tuple[Any, list[float]]:  # fmt: skip
    """``operation`` through the sync or async client; returns its result and the sleeps."""
    slept: list[float] = []
    if kind == "sync":
        with DataCollectionClient(url, sleep=slept.append, **kw) as client:
            return client.request(operation, params), slept

    async def record(seconds: float) -> None:
        slept.append(seconds)

    async def main() -> Any:
        async with AsyncDataCollectionClient(url, sleep=record, **kw) as client:
            return await client.request(operation, params)

    return asyncio.run(main()), slept


KINDS = ["sync", "async"]


def assert_jittered(slept: list[float], ceilings: list[float]) -> None:
    """Each wait is drawn from the upper half of its ceiling (1, 2, 4... s): jittered,
    never above the schedule, never below half of it."""
    assert len(slept) == len(ceilings), slept
    for wait, ceiling in zip(slept, ceilings, strict=True):
        assert ceiling / 2 <= wait < ceiling, (slept, ceilings)


# -- the retry matrix ------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_503_503_200_is_retried_and_succeeds(scripted: ScriptedServer, kind: str) -> None:
    scripted.script = [Answer(503), Answer(503), Answer(200, HEALTHY)]
    result, slept = run(kind, scripted.url, max_retries=2)
    assert result == HEALTHY
    assert_jittered(slept, [1.0, 2.0])
    assert len(scripted.requests) == 3


@pytest.mark.parametrize("kind", KINDS)
def test_503_four_times_gives_up_after_max_retries(scripted: ScriptedServer, kind: str) -> None:
    scripted.script = [Answer(503, {"error": "warming up"})] * 4
    with pytest.raises(RemoteError, match=r"503 after 3 attempt.*warming up") as err:
        run(kind, scripted.url, max_retries=2)
    assert err.value.status_code == 503
    assert isinstance(err.value, MdcollectError)
    assert len(scripted.requests) == 3
    assert len(scripted.script) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_400_is_not_retried(scripted: ScriptedServer, kind: str) -> None:
    scripted.script = [Answer(400, {"error": "limit '0' is not valid"}), Answer(200, HEALTHY)]
    slept: list[float] = []
    with pytest.raises(RemoteError, match="400: limit '0' is not valid") as err:
        _, slept = run(kind, scripted.url, max_retries=2)
    assert err.value.status_code == 400
    assert len(scripted.requests) == 1 and slept == []


@pytest.mark.parametrize("kind", KINDS)
def test_timeout_is_retried(scripted: ScriptedServer, kind: str) -> None:
    scripted.script = [Answer(200, HEALTHY, delay=1.0), Answer(200, HEALTHY)]
    result, slept = run(kind, scripted.url, max_retries=2, timeout=0.2)
    assert result == HEALTHY
    assert_jittered(slept, [1.0])
    assert len(scripted.requests) == 2


@pytest.mark.parametrize("kind", KINDS)
def test_timeouts_exhaust_retries_into_a_remote_error(scripted: ScriptedServer, kind: str) -> None:
    scripted.script = [Answer(200, HEALTHY, delay=0.6)] * 2
    with pytest.raises(RemoteError, match=r"unreachable after 2 attempt.*ReadTimeout") as err:
        run(kind, scripted.url, max_retries=1, timeout=0.15)
    assert err.value.status_code is None
    assert isinstance(err.value.__cause__, httpx.ReadTimeout)


@pytest.mark.parametrize("kind", KINDS)
def test_connection_refused_is_retried_then_raised(kind: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens
    with pytest.raises(RemoteError, match=f"127.0.0.1:{port}/api/v1/health.*unreachable after 3") as err:  # fmt: skip
        run(kind, f"http://127.0.0.1:{port}", max_retries=2)
    assert isinstance(err.value.__cause__, httpx.ConnectError)


@pytest.mark.parametrize("kind", KINDS)
def test_backoff_is_1_2_4_jittered_and_injectable(scripted: ScriptedServer, kind: str) -> None:
    scripted.script = [Answer(500)] * 3 + [Answer(200, HEALTHY)]
    result, slept = run(kind, scripted.url, max_retries=3)
    assert result == HEALTHY
    assert_jittered(slept, [1.0, 2.0, 4.0])
    scripted.script = [Answer(502), Answer(200, HEALTHY)]
    assert run(kind, scripted.url, backoff=lambda n: 0.25 * (n + 1)) == (HEALTHY, [0.25])


@pytest.mark.parametrize("kind", KINDS)
def test_retry_after_of_a_503_is_the_floor_of_the_wait(scripted: ScriptedServer, kind: str) -> None:
    busy = {"error": "too many syncs at once"}
    scripted.script = [
        Answer(503, busy, headers={"Retry-After": "1"}),
        Answer(503, busy, headers={"Retry-After": "5"}),
        Answer(200, HEALTHY),
    ]
    result, slept = run(kind, scripted.url, max_retries=2)
    assert result == HEALTHY
    assert slept == [1.0, 5.0]  # the schedule is below 1 s and 2 s: the service's wait wins
    assert len(scripted.requests) == 3
    # an injected schedule keeps the floor too
    scripted.script = [Answer(503, busy, headers={"Retry-After": "3"}), Answer(200, HEALTHY)]
    assert run(kind, scripted.url, backoff=lambda n: 0.25) == (HEALTHY, [3.0])


@pytest.mark.parametrize("kind", KINDS)
def test_429_is_retried_after_its_retry_after(scripted: ScriptedServer, kind: str) -> None:
    scripted.script = [Answer(429, {"error": "slow down"}, headers={"Retry-After": "2"})]
    scripted.script.append(Answer(200, HEALTHY))
    result, slept = run(kind, scripted.url, max_retries=2)
    assert (result, slept, len(scripted.requests)) == (HEALTHY, [2.0], 2)


@pytest.mark.parametrize("kind", KINDS)
def test_a_retry_after_too_long_is_raised_not_waited(scripted: ScriptedServer, kind: str) -> None:
    scripted.script = [Answer(503, {"error": "stopping"}, headers={"Retry-After": "600"})]
    scripted.script.append(Answer(200, HEALTHY))
    slept: list[float] = []
    with pytest.raises(RemoteError, match=r"503 after 1 attempt.*stopping") as err:
        _, slept = run(kind, scripted.url, max_retries=2)
    assert (err.value.transient, err.value.retry_after, err.value.status_code) == (True, 600.0, 503)
    assert len(scripted.requests) == 1 and slept == []


def test_remote_errors_say_whether_retrying_may_help(scripted: ScriptedServer) -> None:
    scripted.script = [Answer(503)] * 2
    with pytest.raises(RemoteError) as busy:
        run("sync", scripted.url, max_retries=1)
    assert (busy.value.transient, busy.value.retry_after) == (True, None)
    scripted.script = [Answer(404, {"error": "no such job"})]
    with pytest.raises(RemoteError) as missing:
        run("sync", scripted.url)
    assert (missing.value.transient, missing.value.status_code) == (False, 404)


def test_default_backoff_is_a_deprecated_alias_of_the_policy_wait() -> None:
    from mdcollect.remote import default_backoff

    with pytest.warns(DeprecationWarning, match="default_backoff is deprecated"):
        waits = [default_backoff(n) for n in range(6)]
    for wait, ceiling in zip(waits, [1, 2, 4, 8, 16, 30], strict=True):
        assert ceiling / 2 <= wait <= ceiling


@pytest.mark.parametrize("kind", KINDS)
def test_non_json_success_is_a_remote_error(kind: str) -> None:
    transport: Any

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>")

    transport = httpx.MockTransport(handler)
    with pytest.raises(RemoteError, match="not JSON"):
        run(kind, "http://service", transport=transport)


# -- configuration from the environment --------------------------------------------------


def test_base_url_from_argument_environment_or_service_discovery(monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    assert default_base_url() == "http://data-collection.tradai.local:8002"
    monkeypatch.setenv("SERVICE_DISCOVERY_NAMESPACE", "prod.internal")
    assert DataCollectionClient().base_url == "http://data-collection.prod.internal:8002"
    monkeypatch.setenv("DATA_COLLECTION_URL", "http://10.0.0.5:9000/")
    assert DataCollectionClient().base_url == "http://10.0.0.5:9000"
    assert DataCollectionClient("https://dc.example").base_url == "https://dc.example"


def test_timeout_and_retries_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    client = DataCollectionClient()
    assert (client.timeout, client.max_retries) == (30.0, 2)
    monkeypatch.setenv("REQUEST_TIMEOUT", "2.5")
    monkeypatch.setenv("MAX_RETRIES", "5")
    client = AsyncDataCollectionClient()
    assert (client.timeout, client.max_retries) == (2.5, 5)
    assert DataCollectionClient(timeout=1, max_retries=0).max_retries == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REQUEST_TIMEOUT", "soon"),
        ("REQUEST_TIMEOUT", "0"),
        ("MAX_RETRIES", "-1"),
        ("MAX_RETRIES", "2.5"),
    ],
)
def test_bad_environment_is_named(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(InvalidRequest, match=f"{name}={value!r}"):
        DataCollectionClient()


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"base_url": "data-collection:8002"}, "base_url"),
        ({"timeout": 0}, "timeout"),
        ({"max_retries": -1}, "max_retries"),
    ],
)
def test_bad_arguments_are_named(kw: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidRequest, match=needle):
        DataCollectionClient(**kw)


# -- validation before anything is sent --------------------------------------------------

LONG = "B" * 48 + "/USDT"
BAD_CALLS: list[tuple[str, dict[str, Any], str]] = [
    ("fetch_ohlcv", {"symbol": "BTCUSDT"}, "'BTCUSDT'"),
    ("fetch_ohlcv", {"symbol": LONG}, "at most 50"),
    ("fetch_ohlcv", {"symbol": "BTC/USDT:USDT", "timeframe": "1H"}, r"'1H'.*did you mean '1h'"),
    ("fetch_ohlcv", {"symbol": "BTC/USDT:USDT", "timeframe": "7m"}, "not supported"),
    ("fetch_ohlcv", {"symbol": "BTC/USDT:USDT", "limit": 0}, "limit 0"),
    ("fetch_ohlcv", {"symbol": "BTC/USDT:USDT", "limit": 10_001}, "limit 10001"),
    ("fetch_ohlcv", {"symbol": "BTC/USDT:USDT", "limit": True}, "limit True"),
    (
        "fetch_ohlcv",
        {"symbol": "BTC/USDT:USDT", "exchange": "binance"},
        "exchange 'binance' is not allowed",
    ),
    ("fetch_ohlcv", {"symbol": "BTC/USDT:USDT", "start": "soon"}, "'soon'"),
    (
        "fetch_ohlcv",
        {"symbol": "BTC/USDT:USDT", "start": "2024-02-02", "end": "2024-02-01"},
        "after start",
    ),
    ("ensure_data", {"symbols": []}, "non-empty"),
    ("ensure_data", {"symbols": "BTC/USDT:USDT"}, "non-empty list"),
    ("ensure_data", {"symbols": [f"S{i}/USDT" for i in range(51)]}, "at most 50"),
    ("ensure_data", {"symbols": ["BTCUSDT"]}, "'BTCUSDT'"),
    ("ensure_data", {"symbols": [LONG]}, "at most 50"),
    ("ensure_data", {"symbols": ["BTC/USDT:USDT"], "timeframe": "1x"}, "'1x'"),
    ("ensure_data", {"symbols": ["BTC/USDT:USDT"], "start_date": "2024/02/01"}, "'2024/02/01'"),
    ("ensure_data", {"symbols": ["BTC/USDT:USDT"], "end_date": "2024-01-01"}, "before start_date"),
    ("ensure_data", {"symbols": ["BTC/USDT:USDT"], "start_date": None}, "required"),
    (
        "ensure_data",
        {"symbols": ["BTC/USDT:USDT"], "exchange": "kraken"},
        "'kraken' is not allowed",
    ),
    ("ensure_data", {"symbols": ["BTC/USDT:USDT"], "padding_days": -3}, "padding_days"),
]
DATES = {"start_date": "2024-02-01", "end_date": "2024-02-02"}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("method", "args", "needle"), BAD_CALLS)
def test_bad_input_is_refused_before_sending(
    scripted: ScriptedServer, kind: str, method: str, args: dict[str, Any], needle: str
) -> None:
    if method == "ensure_data":
        args = {**DATES, **args}

    async def call_async() -> None:
        async with AsyncDataCollectionClient(scripted.url) as client:
            await getattr(client, method)(**args)

    with pytest.raises(InvalidRequest, match=needle):
        if kind == "sync":
            with DataCollectionClient(scripted.url) as client:
                getattr(client, method)(**args)
        else:
            asyncio.run(call_async())
    assert scripted.requests == [], "nothing may be sent"


def test_padding_and_date_formats_of_ensure_data(scripted: ScriptedServer) -> None:
    scripted.routes["/api/v1/sync"] = Answer(200, {"status": "completed"})
    with DataCollectionClient(scripted.url) as client:
        client.ensure_data(["BTC/USDT:USDT"], "1h", "20240201", "20240228")
        client.ensure_data(["BTC/USDT:USDT"], "1h", "2024-02-01", "2024-02-28", "okx_futures", padding_days=0)  # fmt: skip
    bodies = [json.loads(body) for _, _, body in scripted.requests]
    assert bodies[0] == {
        "symbols": ["BTC/USDT:USDT"], "timeframe": "1h", "start_date": "2024-01-02",
        "end_date": "2024-02-28", "exchange": "binance_futures", "padding_days": 0,
    }  # fmt: skip
    assert (bodies[1]["start_date"], bodies[1]["exchange"]) == ("2024-02-01", "okx_futures")


def test_fetch_ohlcv_sends_ms_bounds_and_parses_the_frame(scripted: ScriptedServer) -> None:
    scripted.routes["/api/v1/ohlcv"] = Answer(200, {
        "exchange": "binance_futures", "symbol": "BTC/USDT:USDT", "timeframe": "1h", "count": 2,
        "columns": ["timestamp", "open", "high", "low", "close", "volume"],
        "data": [[1704067200000, 1, 2, 0.5, 1.5, 10], [1704070800000, 1.5, 2, 1, None, 0]],
    })  # fmt: skip
    with DataCollectionClient(scripted.url, api_token="tok") as client:
        frame = client.fetch_ohlcv("BTC/USDT:USDT", "1h", 2, "2024-01-01", "2024-01-01")
    _, path, _ = scripted.requests[0]
    assert path == (
        "/api/v1/ohlcv?symbol=BTC%2FUSDT%3AUSDT&timeframe=1h&limit=2&exchange=binance_futures"
        "&start=1704067200000&end=1704153600000"
    )
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert str(frame.index.tz) == "UTC" and frame.index.name == "timestamp"
    assert frame["close"].isna().tolist() == [False, True]
    assert all(str(t) == "float64" for t in frame.dtypes)


def test_malformed_candles_are_a_remote_error(scripted: ScriptedServer) -> None:
    scripted.routes["/api/v1/ohlcv"] = Answer(200, {"rows": []})
    with (
        DataCollectionClient(scripted.url) as client,
        pytest.raises(RemoteError, match="malformed"),
    ):
        client.fetch_ohlcv("BTC/USDT:USDT")


def test_bearer_token_is_sent(scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, json=HEALTHY)

    monkeypatch.setenv("MDCOLLECT_API_TOKEN", "from-env")
    for kw in ({}, {"api_token": "given"}, {"api_token": ""}):
        with DataCollectionClient("http://svc", transport=httpx.MockTransport(handler), **kw) as c:
            c.health()
    assert seen == ["Bearer from-env", "Bearer given", None]


def test_sync_and_async_share_one_core() -> None:
    from mdcollect.remote._client import _Core

    assert issubclass(DataCollectionClient, _Core) and issubclass(AsyncDataCollectionClient, _Core)
    public: Callable[[type], set[str]] = lambda c: {n for n in vars(c) if not n.startswith("_")}  # noqa: E731
    assert public(DataCollectionClient) - {"close"} == public(AsyncDataCollectionClient) - {
        "aclose"
    }
