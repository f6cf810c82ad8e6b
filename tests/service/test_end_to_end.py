"""The clients against the real service on loopback, syncing from the emulator."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pandas as pd
import pytest

from mdcollect import DataCollectionStorage, DatasetKey, Interval, IntervalSet, RemoteError
from mdcollect.remote import (
    AsyncDataCollectionClient,
    DataCollectionClient,
    ListEmitter,
    make_handler,
)
from mdcollect.testing import ExchangeEmulator

from .conftest import LiveServer

DAY = 86_400_000
T2024 = 1_704_067_200_000  # 2024-01-01
LO, HI = T2024 + 1 * DAY, T2024 + 59 * DAY  # 2024-01-02 .. 2024-02-29
SYNC = {"symbols": ["BTC/USDT:USDT"], "timeframe": "1h", "start_date": "20240201", "end_date": "20240228"}  # fmt: skip


BINANCE = ("quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume")


def truth(emu: ExchangeEmulator, sym: str, lo: int, hi: int) -> pd.DataFrame:
    # Binance klines carry the quote volume, trade count and taker-buy volumes
    return emu.market.candles("binance_futures", sym, "1h", lo, hi).to_frame(BINANCE)


def test_every_operation_end_to_end(
    live: LiveServer, emu: ExchangeEmulator, storage: DataCollectionStorage
) -> None:
    with DataCollectionClient(live.url, max_retries=0) as client:
        health = client.health()
        assert health["status"] == "healthy"
        assert client.symbols() == []

        answer = client.ensure_data(**SYNC)  # type: ignore[arg-type]
        # what the server received: the start padded by 30 days, dates as YYYY-MM-DD, and
        # padding_days 0 so that the service does not pad again
        posted = [r for r in live.requests if r.path == "/api/v1/sync"]
        assert len(posted) == 1
        assert posted[0].json() == {
            "symbols": ["BTC/USDT:USDT"], "timeframe": "1h", "start_date": "2024-01-02",
            "end_date": "2024-02-28", "exchange": "binance_futures", "padding_days": 0,
        }  # fmt: skip
        assert answer["status"] == "completed" and answer["background"] is False
        report = answer["report"]
        assert report["ok"] and report["required"] == [LO, HI]
        assert report["candles_fetched"] == 58 * 24 and report["requests"] > 0

        # stored, and fetchable through the API
        key = DatasetKey("binance_futures", "BTC/USDT:USDT", "ohlcv", "1h")
        pd.testing.assert_frame_equal(storage.read(key), truth(emu, "BTC/USDT:USDT", LO, HI), check_freq=False)  # fmt: skip
        frame = client.fetch_ohlcv("BTC/USDT:USDT", "1h", limit=10_000, start="2024-01-02", end="2024-02-28")  # fmt: skip
        pd.testing.assert_frame_equal(frame, truth(emu, "BTC/USDT:USDT", LO, HI), check_freq=False)
        assert str(frame.index.tz) == "UTC" and frame.index.name == "timestamp"
        first = client.fetch_ohlcv("BTC/USDT:USDT", "1h", limit=5, start=LO)
        pd.testing.assert_frame_equal(first, truth(emu, "BTC/USDT:USDT", LO, LO + 5 * 3_600_000), check_freq=False)  # fmt: skip
        last = client.fetch_ohlcv("BTC/USDT:USDT", "1h", limit=3, end=HI)
        assert list(last.index.asi8 // 1_000_000) == [HI - 3 * 3_600_000 + i * 3_600_000 for i in range(3)]  # fmt: skip
        assert (
            len(client.fetch_ohlcv("BTC/USDT:USDT", "1h")) == 0
        )  # default: the last 1000 h, nothing stored
        assert client.fetch_ohlcv("ETH/USDT:USDT", "1h", start=LO).empty

        assert client.symbols() == ["BTC/USDT:USDT"]
        status = client.status()
        assert status["datasets"] == 1 and status["jobs"]["completed"] == 1
        assert status["storage"] == "memory://" and status["auth"] is False
        job = client.sync_status(answer["job_id"])
        assert job["status"] == "completed" and job["report"] == report

        n = len(emu.requests)
        again = client.ensure_data(**SYNC)  # type: ignore[arg-type]
        assert again["report"]["requests"] == 0 and len(emu.requests) == n


async def test_async_client_end_to_end(live: LiveServer, emu: ExchangeEmulator) -> None:
    async with AsyncDataCollectionClient(live.url, max_retries=0) as client:
        assert (await client.health())["status"] == "healthy"
        answer = await client.ensure_data(["ETH/USDT:USDT"], "4h", "2024-02-01", "2024-02-10", padding_days=0)  # fmt: skip
        assert answer["report"]["ok"] and answer["request"]["start_date"] == "2024-02-01"
        frame = await client.fetch_ohlcv("ETH/USDT:USDT", "4h", start="2024-02-01", end="2024-02-10", limit=10_000)  # fmt: skip
        assert len(frame) == 10 * 6
        pd.testing.assert_frame_equal(
            frame,
            emu.market.candles("binance_futures", "ETH/USDT:USDT", "4h", T2024 + 31 * DAY, T2024 + 41 * DAY).to_frame(BINANCE),
            check_freq=False,
        )  # fmt: skip
        assert await client.symbols() == ["ETH/USDT:USDT"]
        assert (await client.status())["jobs"]["completed"] == 1
        assert (await client.sync_status(answer["job_id"]))["status"] == "completed"


def test_slow_sync_goes_to_the_background_with_a_job_id(
    serve: Callable[..., LiveServer], storage: DataCollectionStorage
) -> None:
    live = serve(sync_timeout=0.001)
    with DataCollectionClient(live.url, max_retries=0) as client:
        answer = client.ensure_data(**SYNC)  # type: ignore[arg-type]
        assert answer["status"] == "running" and answer["background"] is True
        assert f"/api/v1/sync/{answer['job_id']}" in answer["message"]
        assert "background" in answer["message"]
        deadline = time.monotonic() + 20
        while (job := client.sync_status(answer["job_id"]))["status"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert job["status"] == "completed" and job["report"]["ok"]
        assert job["report"]["candles_fetched"] == 58 * 24
        with pytest.raises(RemoteError, match="no sync job") as err:
            client.sync_status("0" * 32)
        assert err.value.status_code == 404


def test_unknown_symbol_is_a_400_naming_it(live: LiveServer, emu: ExchangeEmulator) -> None:
    n = len(emu.requests)
    with (
        DataCollectionClient(live.url, max_retries=0) as client,
        pytest.raises(RemoteError, match="BTC/USDX") as err,
    ):
        client.ensure_data(["BTC/USDX:USDT"], "1h", "20240201", "20240202")
    assert err.value.status_code == 400
    assert not any(r.path.endswith("klines") for r in emu.requests[n:])


# -- padding_days: 30 by default on every surface ------------------------------------------

KEY = DatasetKey("binance_futures", "BTC/USDT:USDT", "ohlcv", "1h")


def test_service_pads_30_days_by_default(live: LiveServer, storage: DataCollectionStorage) -> None:
    body = {"symbols": ["BTC/USDT:USDT"], "timeframe": "1h", "start_date": "2024-02-01",
            "end_date": "2024-02-28"}  # fmt: skip
    answer = httpx.post(f"{live.url}/api/v1/sync", json=body, timeout=60).json()
    assert answer["status"] == "completed" and answer["report"]["required"] == [LO, HI]
    assert storage.coverage(KEY) == IntervalSet([Interval(LO, HI)])  # 2024-01-02 .. 2024-02-29
    doc = httpx.get(f"{live.url}/openapi.json", timeout=10).json()
    schema = doc["paths"]["/api/v1/sync"]["post"]["requestBody"]["content"]["application/json"]
    assert schema["schema"]["properties"]["padding_days"]["default"] == 30


def test_lambda_proxy_pads_30_days_once(live: LiveServer, storage: DataCollectionStorage) -> None:
    handler = make_handler(client_factory=lambda: DataCollectionClient(live.url, max_retries=0),
                           emitter=ListEmitter())  # fmt: skip
    out = handler({"operation": "ensure-data", "params": SYNC}, None)
    assert out["body"]["data"]["result"]["report"]["required"] == [LO, HI]
    assert storage.coverage(KEY) == IntervalSet([Interval(LO, HI)])  # padded once, not twice
