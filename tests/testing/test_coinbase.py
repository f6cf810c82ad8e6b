"""Unmodified ccxt ``coinbase`` against the Coinbase Advanced Trade dialect: products,
candles at Coinbase's granularities (300 a request, newest first, none where nothing
traded), trades from the ticker endpoint shaped like ccxt's recording, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ccxt
import pytest
from emulator_helpers import DAY, HOUR, MINUTE, NOW, sync_exchange

from mdcollect.testing import ExchangeEmulator, Limit

T0 = NOW - NOW % DAY - 10 * DAY
RECORDED = (
    Path(__file__).parents[1] / "data/realdata/exchange_rest_samples/ccxt-static/coinbase.json"
)
TIMEFRAMES = {
    "1m": "ONE_MINUTE",
    "5m": "FIVE_MINUTE",
    "15m": "FIFTEEN_MINUTE",
    "30m": "THIRTY_MINUTE",
    "1h": "ONE_HOUR",
    "2h": "TWO_HOUR",
    "6h": "SIX_HOUR",
    "1d": "ONE_DAY",
}


def candles(ex: Any, product: str, granularity: str, start: int, end: int) -> Any:
    """The raw answer of the candles endpoint, ``start`` and ``end`` in ms."""
    return ex.v3PublicGetBrokerageMarketProductsProductIdCandles(
        {
            "product_id": product,
            "granularity": granularity,
            "start": str(start // 1000),
            "end": str(end // 1000),
        }
    )


def test_markets_are_spot_products_and_futures_are_none(emu: ExchangeEmulator) -> None:
    ex = sync_exchange(emu, "coinbase")
    assert ex.markets["BTC/USD"]["id"] == "BTC-USD" and ex.markets["BTC/USD"]["spot"]
    assert ex.markets["ETH/BTC"]["precision"] == {"amount": 1e-08, "price": 1e-05}
    asked = [(r.path, r.params) for r in emu.requests]
    assert asked == [
        ("/v2/currencies", {}),
        ("/v2/currencies/crypto", {}),
        ("/v2/exchange-rates", {}),
        ("/api/v3/brokerage/market/products", {}),
        ("/api/v3/brokerage/market/products", {"product_type": "FUTURE"}),
    ]
    futures = ex.v3PublicGetBrokerageMarketProducts({"product_type": "FUTURE"})
    assert futures == {"products": [], "num_products": 0}
    assert ex.fetch_time() == NOW - NOW % 1000
    one = ex.v3PublicGetBrokerageMarketProductsProductId({"product_id": "SOL-USD"})
    assert one["product_id"] == "SOL-USD" and one["product_type"] == "SPOT"


@pytest.mark.parametrize("timeframe", list(TIMEFRAMES))
def test_candles_at_each_granularity_newest_first(emu: ExchangeEmulator, timeframe: str) -> None:
    ex = sync_exchange(emu, "coinbase")
    step = ex.parse_timeframe(timeframe) * 1000
    start = T0 - 20 * step
    raw = candles(ex, "ETH-USD", TIMEFRAMES[timeframe], start, start + 20 * step)
    starts = [int(c["start"]) * 1000 for c in raw["candles"]]
    assert starts == [start + i * step for i in range(19, -1, -1)]  # newest first
    assert set(raw["candles"][0]) == {"start", "low", "high", "open", "close", "volume"}
    got = ex.fetch_ohlcv("ETH/USD", timeframe, since=start, limit=20)
    truth = emu.market.candles("coinbase", "ETH/USD", timeframe, start, start + 20 * step)
    assert got == truth.to_list() and len(got) == 20
    req = emu.requests[-1]
    assert req.route == "market/candles" and req.params["granularity"] == TIMEFRAMES[timeframe]


def test_a_span_over_300_candles_is_refused_as_coinbase_does(emu: ExchangeEmulator) -> None:
    ex = sync_exchange(emu, "coinbase")
    full = candles(ex, "BTC-USD", "ONE_MINUTE", T0, T0 + 300 * MINUTE)
    assert len(full["candles"]) == 300
    with pytest.raises(
        ccxt.BadRequest, match="number of candles requested should be less than 300"
    ):
        candles(ex, "BTC-USD", "ONE_MINUTE", T0, T0 + 301 * MINUTE)
    with pytest.raises(ccxt.BadRequest, match="granularity argument is invalid"):
        candles(ex, "BTC-USD", "FOUR_HOUR", T0, T0 + 10 * HOUR)
    with pytest.raises(ccxt.BadRequest, match="valid product_id is required"):
        candles(ex, "NOPE-USD", "ONE_MINUTE", T0, T0 + MINUTE)
    assert [r.status for r in emu.requests[-3:]] == [400, 400, 400]


def test_minutes_without_trades_have_no_candle(emu: ExchangeEmulator) -> None:
    ex = sync_exchange(emu, "coinbase")
    start = T0 + 3 * HOUR
    got = ex.fetch_ohlcv("SOL/USD", "1m", since=start, limit=300)
    truth = emu.market.candles("coinbase", "SOL/USD", "1m", start, start + 300 * MINUTE)
    trades = emu.market.trades("coinbase", "SOL/USD", start, start + 300 * MINUTE)
    traded = sorted({int(t) // MINUTE * MINUTE for t in trades.timestamp})
    assert got == truth.to_list()
    assert [r[0] for r in got] == traded and 0 < len(got) < 300


def test_trades_are_the_newest_of_the_span_shaped_like_the_recording(
    emu: ExchangeEmulator,
) -> None:
    recorded = json.loads(RECORDED.read_text())["methods"]["fetchTicker"][0]
    ex = sync_exchange(emu, "coinbase")
    lo, hi = T0, T0 + HOUR
    truth = emu.market.trades("coinbase", "BTC/USD", lo, hi)
    assert len(truth) > 1000  # a busy hour: more than one request returns
    got = ex.fetch_trades("BTC/USD", since=lo, limit=1000, params={"until": hi})
    assert emu.requests[-1].params == {
        "start": str(lo // 1000),
        "end": str(hi // 1000),
        "limit": "1000",
    }
    # the newest 1000 of the span, not the first: there is no cursor to page back with
    assert [t["timestamp"] for t in got] == [int(t) for t in truth.timestamp[-1000:]]
    assert [t["id"] for t in got] == [str(int(i)) for i in truth.id[-1000:]]
    assert [t["amount"] for t in got] == list(truth.amount[-1000:])
    raw = ex.v3PublicGetBrokerageMarketProductsProductIdTicker(
        {"product_id": "BTC-USD", "limit": 3}
    )
    assert set(raw) == set(recorded["httpResponse"])
    assert [set(t) for t in raw["trades"]] == [set(recorded["httpResponse"]["trades"][0])] * 3
    times = [t["time"] for t in raw["trades"]]
    assert times == sorted(times, reverse=True)  # newest first
    ticker = ex.fetch_ticker("BTC/USD")
    for field, value in recorded["parsedResponse"].items():
        assert (ticker[field] is None) == (value is None), field
    assert ticker["bid"] < ticker["last"] < ticker["ask"]
    with pytest.raises(ccxt.BadRequest, match="limit"):
        ex.v3PublicGetBrokerageMarketProductsProductIdTicker({"product_id": "BTC-USD"})


def test_rate_limit_answers_429_rate_limit_exceeded() -> None:
    limits = {"coinbase.public": Limit(2, 60.0)}
    with ExchangeEmulator(clock=lambda: NOW, rate_limits=limits) as emu:
        ex = emu.ccxt("coinbase", async_=False, enableRateLimit=False)
        ex.load_markets()  # v2 (its own bucket) and the two product lists
        with pytest.raises(ccxt.RateLimitExceeded):
            ex.fetch_ohlcv("BTC/USD", "1h", since=T0, limit=3)
        assert emu.requests[-1].status == 429
        assert [r.route for r in emu.requests if r.status == 429] == ["market/candles"]


def test_an_unknown_path_is_answered_by_the_venue_it_belongs_to(emu: ExchangeEmulator) -> None:
    import urllib.error
    import urllib.request

    answers = {}
    for path in ("/api/v3/brokerage/market/nope", "/api/v3/nope"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(emu.url + path, timeout=5)
        answers[path] = (err.value.code, json.loads(err.value.read()), emu.requests[-1].exchange)
    code, body, venue = answers["/api/v3/brokerage/market/nope"]
    assert (code, body["error"], venue) == (404, "NOT_FOUND", "coinbase")
    code, body, venue = answers["/api/v3/nope"]  # Binance's /api/v3, as before
    assert (code, venue) == (404, "binance") and body["code"] == -5000
