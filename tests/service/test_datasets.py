"""``GET /api/v1/datasets``: the catalog over HTTP, and the client's ``datasets()``."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pandas as pd
import pytest

from mdcollect import DataCollectionStorage, DatasetKey, Interval, InvalidRequest, catalog
from mdcollect.remote import AsyncDataCollectionClient, DataCollectionClient
from tests.conftest import MINUTE, T0, candles

from .conftest import LiveServer

BTC = DatasetKey("binance", "BTC/USDT", "ohlcv", "1m")
ETH = DatasetKey("okx", "ETH/USDT", "ohlcv", "1h")


def _fill(storage: DataCollectionStorage) -> None:
    storage.write(BTC, candles(T0, 60), covered=Interval(T0, T0 + 30 * MINUTE), source="import")
    storage.write(ETH, candles(T0, 3, step=60 * MINUTE), source="backfill:okx candles")


def test_datasets_answers_the_catalog_filtered(
    serve: Callable[..., LiveServer], storage: DataCollectionStorage
) -> None:
    _fill(storage)
    live = serve()
    body = httpx.get(f"{live.url}/api/v1/datasets").json()
    assert body["count"] == 2
    btc = body["datasets"][0]
    assert btc == {
        "key": "binance:ohlcv:1m:BTC/USDT", "exchange": "binance", "symbol": "BTC/USDT",
        "kind": "ohlcv", "timeframe": "1m", "rows": 60, "first": T0, "last": T0 + 59 * MINUTE,
        "covered_from": T0, "covered_to": T0 + 30 * MINUTE, "covered_fraction": 0.5,
        "holes": 1, "bytes": btc["bytes"], "last_write": btc["last_write"],
        "lineage": "import", "sources": ["import"],
    }  # fmt: skip
    okx = httpx.get(f"{live.url}/api/v1/datasets", params={"exchange": "okx", "kind": "ohlcv"})
    assert [d["symbol"] for d in okx.json()["datasets"]] == ["ETH/USDT"]
    none = httpx.get(f"{live.url}/api/v1/datasets", params={"symbol": "SOL/USDT"}).json()
    assert none == {"count": 0, "datasets": []}


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("kind=candles", "kind 'candles' is not valid; allowed: 'ohlcv'"),
        ("exchange=Binance", "exchange 'Binance' is not a valid exchange key"),
        ("symbol=BTCUSDT", "symbol 'BTCUSDT' is not valid"),
        ("kind=ohlcv&kind=trades", "parameter 'kind' is given more than once"),
        ("timeframe=1m", "unknown parameter 'timeframe'; allowed: exchange, kind, symbol"),
    ],
)
def test_bad_datasets_filters_are_a_400_naming_the_value(
    shared: LiveServer, query: str, needle: str
) -> None:
    response = httpx.get(f"{shared.url}/api/v1/datasets?{query}")
    assert response.status_code == 400 and needle in response.json()["error"]


async def test_client_datasets_equal_the_local_catalog(
    serve: Callable[..., LiveServer], storage: DataCollectionStorage
) -> None:
    _fill(storage)
    live = serve()
    local = catalog(storage)
    with DataCollectionClient(live.url) as client:
        remote = client.datasets()
        pd.testing.assert_frame_equal(remote, local)
        assert client.datasets(exchange="okx")["symbol"].tolist() == ["ETH/USDT"]
        with pytest.raises(InvalidRequest, match="kind 'bars' is not valid"):
            client.datasets(kind="bars")  # refused before anything is sent
    async with AsyncDataCollectionClient(live.url) as aclient:
        pd.testing.assert_frame_equal(await aclient.datasets(kind="ohlcv"), local)
    assert [r.path for r in live.requests].count("/api/v1/datasets") == 3
