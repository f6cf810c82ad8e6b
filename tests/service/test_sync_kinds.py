"""``POST /api/v1/sync`` with ``kinds``: the clients send them, the service ensures each."""

from __future__ import annotations

import httpx
import pytest

from mdcollect import DataCollectionStorage, DatasetKey, InvalidRequest
from mdcollect.remote import AsyncDataCollectionClient, DataCollectionClient

from .conftest import LiveServer

PERP = "BTC/USDT:USDT"
#: Every kind of history, as an InvalidRequest for a bad kind names them.
ALLOWED_KINDS = "'ohlcv', 'trades', 'funding', 'mark', 'index', 'premium', 'open_interest'"


def test_sync_with_kinds_ensures_candles_and_funding(
    live: LiveServer, storage: DataCollectionStorage
) -> None:
    with DataCollectionClient(live.url, max_retries=0) as client:
        answer = client.ensure_data(
            [PERP], "8h", "2024-02-01", "2024-02-10", padding_days=0, kinds=["ohlcv", "funding"]
        )
    posted = [r for r in live.requests if r.path == "/api/v1/sync"]
    assert posted[-1].json()["kinds"] == ["ohlcv", "funding"]
    report = answer["report"]
    assert report["ok"] and report["kinds"] == ["ohlcv", "funding"]
    assert [s["key"] for s in report["symbols"]] == [
        "binance_futures:ohlcv:8h:BTC/USDT:USDT",
        "binance_futures:funding::BTC/USDT:USDT",
    ]
    assert len(storage.read(DatasetKey("binance_futures", PERP, "ohlcv", "8h"))) == 30
    assert len(storage.read(DatasetKey("binance_futures", PERP, "funding"))) == 30


def test_sync_without_kinds_sends_none_and_ensures_candles(live: LiveServer) -> None:
    with DataCollectionClient(live.url, max_retries=0) as client:
        client.ensure_data([PERP], "1d", "2024-02-01", "2024-02-02", padding_days=0)
    posted = [r for r in live.requests if r.path == "/api/v1/sync"]
    assert "kinds" not in posted[-1].json()


async def test_bad_kinds_are_refused_by_the_client_and_the_service(live: LiveServer) -> None:
    async with AsyncDataCollectionClient(live.url, max_retries=0) as client:
        with pytest.raises(InvalidRequest, match="allowed: " + ALLOWED_KINDS):
            await client.ensure_data([PERP], "1h", "2024-02-01", "2024-02-02", kinds=["fundng"])  # type: ignore[list-item]
    assert not [r for r in live.requests if r.path == "/api/v1/sync"]
    body = {"symbols": [PERP], "start_date": "2024-02-01", "end_date": "2024-02-02",
            "kinds": ["ohlcv", "ticker"]}  # fmt: skip
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"{live.url}/api/v1/sync", json=body)
    assert answer.status_code == 400
    assert "kind 'ticker' is not valid; allowed: " + ALLOWED_KINDS in answer.text
