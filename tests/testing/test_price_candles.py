"""Unmodified ccxt's fetch_mark_ohlcv / fetch_index_ohlcv / fetch_premium_index_ohlcv
against the emulator's mark, index and premium-index candle endpoints."""

from __future__ import annotations

import math
from typing import Any

import ccxt
import pytest
from emulator_helpers import DAY, HOUR, MINUTE, NOW, sync_exchange

from mdcollect.testing import ExchangeEmulator, Limit
from mdcollect.testing.dialects.okx import Okx

T0 = NOW - NOW % DAY - 30 * DAY
METHODS = {
    "mark": "fetch_mark_ohlcv",
    "index": "fetch_index_ohlcv",
    "premium": "fetch_premium_index_ohlcv",
}
# (ccxt id, kind, route, the most candles one request returns)
CASES = [
    ("binanceusdm", "mark", "markPriceKlines", 1000),
    ("binanceusdm", "index", "indexPriceKlines", 1000),
    ("binanceusdm", "premium", "premiumIndexKlines", 1000),
    ("okx", "mark", "market/history-mark-price-candles", 100),
    ("okx", "index", "market/history-index-candles", 100),
    ("bybit", "mark", "market/mark-price-kline", 1000),
    ("bybit", "index", "market/index-price-kline", 1000),
    ("bybit", "premium", "market/premium-index-price-kline", 1000),
]


def truth(emu: ExchangeEmulator, ex: str, sym: str, kind: Any, lo: int, hi: int) -> list[Any]:
    rows = emu.market.price_candles(ex, sym, kind, "1m", lo, hi).to_list()
    return [r[:5] for r in rows]


@pytest.mark.parametrize(("ex_id", "kind", "route", "page"), CASES, ids=lambda c: str(c))
@pytest.mark.parametrize("symbol", ["BTC/USDT:USDT", "ETH/USDT:USDT"])
def test_ccxt_reads_the_ground_truth_a_page_at_a_time(
    emu: ExchangeEmulator, ex_id: str, kind: str, route: str, page: int, symbol: str
) -> None:
    ex = sync_exchange(emu, ex_id)
    emu.clear_requests()
    fetch = getattr(ex, METHODS[kind])
    params = {"type": "HistoryCandles"} if ex_id == "okx" else {}
    rows = fetch(symbol, "1m", T0, 1000, params)  # OKX answers 100 of them
    assert len(rows) == page
    assert [r[:5] for r in rows] == truth(emu, ex_id, symbol, kind, T0, T0 + page * MINUTE)
    # the volume ccxt parses: Binance writes "0", OKX and Bybit write none
    assert all(r[5] == (0.0 if ex_id == "binanceusdm" else None) for r in rows)
    assert [q.route for q in emu.requests] == [route]
    # the series is consistent with the market: close to the last price, not equal
    last = emu.market.candles(ex_id, symbol, "1m", T0, T0 + page * MINUTE).to_list()
    if kind == "premium":
        assert all(abs(r[4]) < 0.001 for r in rows)
    else:
        ratios = [r[4] / c[4] - 1 for r, c in zip(rows, last, strict=True)]
        assert 0 < max(abs(x) for x in ratios) < 0.0005


def test_premium_is_mark_over_index_minus_one(emu: ExchangeEmulator) -> None:
    lo, hi = T0, T0 + 2 * DAY
    for ex in ("binanceusdm", "bybit"):
        mark = emu.market.price_candles(ex, "BTC/USDT:USDT", "mark", "1h", lo, hi).to_list()
        index = emu.market.price_candles(ex, "BTC/USDT:USDT", "index", "1h", lo, hi).to_list()
        prem = emu.market.price_candles(ex, "BTC/USDT:USDT", "premium", "1h", lo, hi).to_list()
        assert len(prem) == 48
        for m, i, p in zip(mark, index, prem, strict=True):
            for col in (1, 4):  # open and close exactly (to 1e-8)
                assert p[col] == pytest.approx(m[col] / i[col] - 1, abs=1e-8)
            assert p[2] >= max(p[1], p[4]) and p[3] <= min(p[1], p[4])


def test_binance_weights_and_index_by_pair(emu: ExchangeEmulator) -> None:
    ex = sync_exchange(emu, "binanceusdm")
    emu.clear_requests()
    ex.fetch_mark_ohlcv("BTC/USDT:USDT", "1h", T0, 1000)
    ex.fetch_index_ohlcv("BTC/USDT:USDT", "1h", T0, 99)
    ex.fetch_premium_index_ohlcv("BTC/USDT:USDT", "1h", T0, 499)
    assert [(q.route, q.weight) for q in emu.requests] == [
        ("markPriceKlines", 5), ("indexPriceKlines", 1), ("premiumIndexKlines", 2),
    ]  # fmt: skip
    assert "pair" in emu.requests[1].params and "symbol" not in emu.requests[1].params
    # a spot symbol has no mark-price klines on USD-M
    with pytest.raises(ccxt.BadSymbol):
        ex.fapiPublicGetMarkPriceKlines({"symbol": "NOPEUSDT", "interval": "1h"})


def test_okx_recent_endpoints_and_page_limit(emu: ExchangeEmulator) -> None:
    ex = sync_exchange(emu, "okx")
    emu.clear_requests()
    since = NOW - NOW % MINUTE - 200 * MINUTE  # within the latest 1440 candles
    # ccxt picks the recent endpoint by its own clock; this emulator's is frozen in 2023
    recent = {"type": "Candles"}
    rows = ex.fetch_mark_ohlcv("BTC/USDT:USDT", "1m", since, 100, recent)
    idx = ex.fetch_index_ohlcv("BTC/USDT:USDT", "1m", since, 100, recent)
    assert [q.route for q in emu.requests] == ["market/mark-price-candles", "market/index-candles"]
    assert emu.requests[1].params["instId"] == "BTC-USDT"  # the index, by instFamily
    assert [r[:5] for r in rows] == truth(
        emu, "okx", "BTC/USDT:USDT", "mark", since, since + 100 * MINUTE
    )
    assert [r[:5] for r in idx] == truth(
        emu, "okx", "BTC/USDT:USDT", "index", since, since + 100 * MINUTE
    )
    # OKX answers at most 100 mark candles, whatever limit is asked
    emu.clear_requests()
    raw = ex.publicGetMarketHistoryMarkPriceCandles(
        {"instId": "BTC-USDT-SWAP", "bar": "1m", "limit": "300", "after": str(T0 + DAY)}
    )
    assert len(raw["data"]) == 100 and len(raw["data"][0]) == 6
    # OKX has no premium-index candles: ccxt says so itself
    assert not ex.has.get("fetchPremiumIndexOHLCV")


def test_the_open_candle_is_served_and_marked_unconfirmed(emu: ExchangeEmulator) -> None:
    ex = sync_exchange(emu, "okx")
    raw = ex.publicGetMarketMarkPriceCandles({"instId": "BTC-USDT-SWAP", "bar": "1H", "limit": "2"})
    newest, before = raw["data"]
    assert int(newest[0]) == NOW - NOW % HOUR and newest[5] == "0"
    assert int(before[0]) == NOW - NOW % HOUR - HOUR and before[5] == "1"


def test_bybit_spot_category_is_refused(emu: ExchangeEmulator) -> None:
    ex = sync_exchange(emu, "bybit")
    with pytest.raises(ccxt.BadRequest):
        ex.publicGetV5MarketMarkPriceKline(
            {"category": "spot", "symbol": "BTCUSDT", "interval": "1"}
        )
    rows = ex.publicGetV5MarketPremiumIndexPriceKline(
        {"category": "linear", "symbol": "BTCUSDT", "interval": "60", "limit": "3"}
    )["result"]["list"]
    assert len(rows) == 3 and all(len(r) == 5 for r in rows)
    assert int(rows[0][0]) > int(rows[1][0])  # newest first
    assert math.isfinite(float(rows[0][4]))


def test_okx_price_candles_have_their_own_rate_limits() -> None:
    # each endpoint its own bucket, as OKX documents (history 10 / 2 s, recent 20 / 2 s)
    assert Okx.limits["history-mark-price-candles"] == Limit(10, 2.0)
    assert Okx.limits["history-index-candles"] == Limit(10, 2.0)
    assert Okx.limits["mark-price-candles"] == Okx.limits["index-candles"] == Limit(20, 2.0)
    limits = {"okx.history-mark-price-candles": Limit(2, 2.0)}
    with ExchangeEmulator(seed=1, clock=lambda: NOW, rate_limits=limits) as emu:
        okx = sync_exchange(emu, "okx")
        history = {"type": "HistoryCandles"}
        okx.fetch_mark_ohlcv("BTC/USDT:USDT", "1h", T0, 100, history)
        okx.fetch_mark_ohlcv("BTC/USDT:USDT", "1h", T0, 100, history)
        okx.fetch_index_ohlcv("BTC/USDT:USDT", "1h", T0, 100, history)  # another bucket
        with pytest.raises(ccxt.RateLimitExceeded):
            okx.fetch_mark_ohlcv("BTC/USDT:USDT", "1h", T0, 100, history)
        assert [q.status for q in emu.requests][-4:] == [200, 200, 200, 429]
