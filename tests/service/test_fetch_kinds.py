"""Reading every kind of history back from the service: ``GET /api/v1/ohlcv?kind=mark``
for the candle kinds and ``GET /api/v1/data?kind=funding`` for the others, through
both clients, against the real service syncing from the emulator."""

from __future__ import annotations

import httpx
import pandas as pd
import pytest

from mdcollect import DataCollectionStorage, DatasetKey, InvalidRequest
from mdcollect.remote import (
    AsyncDataCollectionClient,
    DataCollectionClient,
    ListEmitter,
    make_handler,
)
from mdcollect.testing import ExchangeEmulator

from .conftest import LiveServer

PERP = "BTC/USDT:USDT"
HOUR = 3_600_000
DAY = 24 * HOUR
LO = 1_706_745_600_000  # 2024-02-01
HI = LO + 3 * DAY
CANDLES = ["open", "high", "low", "close", "volume"]


def test_mark_candles_and_funding_read_back_as_stored(
    live: LiveServer, emu: ExchangeEmulator, storage: DataCollectionStorage
) -> None:
    with DataCollectionClient(live.url, max_retries=0) as client:
        answer = client.ensure_data([PERP], "1h", "2024-02-01", "2024-02-03", padding_days=0,
                                    kinds=["ohlcv", "mark", "funding"])  # fmt: skip
        assert answer["report"]["ok"]
        mark = client.fetch_ohlcv(PERP, "1h", limit=10_000, start=LO, end=HI, kind="mark")
        last = client.fetch_ohlcv(PERP, "1h", start=LO, end=HI)
        funding = client.fetch_data("funding", PERP, start=LO, end=HI)
        first_two = client.fetch_data("funding", PERP, limit=2, start=LO)
        latest = client.fetch_data("funding", PERP, limit=2, end=HI)
    truth = emu.market.price_candles("binance_futures", PERP, "mark", "1h", LO, HI).to_frame()
    assert len(mark) == 72
    pd.testing.assert_frame_equal(mark, truth[CANDLES], check_freq=False)
    assert not mark.equals(last)  # mark candles, not the last price's
    stored = storage.read(DatasetKey("binance_futures", PERP, "funding"))
    assert len(stored) == 9  # every 8 hours for 3 days
    pd.testing.assert_frame_equal(funding, stored)
    assert [r[0] for r in emu.market.funding("binance_futures", PERP, LO, HI - 1)] == list(
        funding.index.asi8 // 1_000_000
    )
    pd.testing.assert_frame_equal(first_two, stored.head(2))
    pd.testing.assert_frame_equal(latest, stored.tail(2))
    asked = [r for r in live.requests if r.path in ("/api/v1/ohlcv", "/api/v1/data")]
    assert "kind=mark" in asked[0].query and "kind" not in asked[1].query  # ohlcv: not sent
    assert "kind=funding" in asked[2].query


async def test_trades_read_back_newest_or_from_a_start_with_the_async_client(
    live: LiveServer, storage: DataCollectionStorage
) -> None:
    async with AsyncDataCollectionClient(live.url, max_retries=0) as client:
        answer = await client.ensure_data([PERP], "1h", "2024-02-01", "2024-02-01",
                                          padding_days=0, kinds=["trades"])  # fmt: skip
        assert answer["report"]["ok"]
        stored = storage.read(DatasetKey("binance_futures", PERP, "trades"))
        assert len(stored) > 3000
        every = await client.fetch_data("trades", PERP, limit=10_000, start="2024-02-01",
                                        end="2024-02-01")  # fmt: skip
        first = await client.fetch_data("trades", PERP, limit=5, start=LO + 6 * HOUR)
        newest = await client.fetch_data("trades", PERP, limit=7)  # before now: the latest
    pd.testing.assert_frame_equal(every, stored)
    pd.testing.assert_frame_equal(
        first, stored[stored.index.asi8 >= (LO + 6 * HOUR) * 10**6].head(5)
    )
    pd.testing.assert_frame_equal(newest, stored.tail(7))
    assert list(every.columns) == ["id", "price", "amount", "side"]


def test_kinds_are_checked_by_the_client_and_the_service(live: LiveServer) -> None:
    with DataCollectionClient(live.url, max_retries=0) as client:
        with pytest.raises(InvalidRequest, match="kind 'funding' is not valid; allowed: 'ohlcv', 'mark', 'index', 'premium'"):  # fmt: skip
            client.fetch_ohlcv(PERP, "1h", kind="funding")  # type: ignore[arg-type]
        with pytest.raises(InvalidRequest, match="kind 'mark' is not valid; allowed: 'trades', 'funding'"):  # fmt: skip
            client.fetch_data("mark", PERP)
    assert not [r for r in live.requests if r.path in ("/api/v1/ohlcv", "/api/v1/data")]
    for path, message in [
        ("/api/v1/ohlcv?symbol=BTC/USDT:USDT&kind=trades", "kind 'trades' is not valid"),
        ("/api/v1/data?symbol=BTC/USDT:USDT&kind=ohlcv", "kind 'ohlcv' is not valid"),
        ("/api/v1/data?symbol=BTC/USDT:USDT", "the kind and symbol parameters are required"),
        ("/api/v1/data?kind=funding&symbol=BTC/USDT:USDT&timeframe=1h", "unknown parameter 'timeframe'"),
    ]:  # fmt: skip
        answer = httpx.get(live.url + path)
        assert answer.status_code == 400 and message in answer.json()["error"], answer.text


def test_the_document_and_the_lambda_proxy_know_the_kinds(live: LiveServer) -> None:
    document = httpx.get(f"{live.url}/openapi.json").json()
    ohlcv = {p["name"]: p for p in document["paths"]["/api/v1/ohlcv"]["get"]["parameters"]}
    assert ohlcv["kind"]["schema"]["enum"] == ["ohlcv", "mark", "index", "premium"]
    data = {p["name"]: p for p in document["paths"]["/api/v1/data"]["get"]["parameters"]}
    assert data["kind"]["required"] and data["kind"]["schema"]["enum"] == ["trades", "funding"]
    handler = make_handler(
        client_factory=lambda: DataCollectionClient(live.url, max_retries=0), emitter=ListEmitter()
    )
    out = handler({"operation": "fetch_data", "params": {"kind": "funding", "symbol": PERP}}, None)
    assert out["statusCode"] == 200
    result = out["body"]["data"]["result"]
    assert result["kind"] == "funding" and result["columns"][0] == "timestamp"
