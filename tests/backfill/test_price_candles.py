"""Mark, index and premium-index candles: backfilled through real ccxt from the emulator.

Binance USD-M (``markPriceKlines``, ``indexPriceKlines``, ``premiumIndexKlines``),
OKX (``history-mark-price-candles``, ``history-index-candles``) and Bybit
(``mark-price-kline``, ``index-price-kline``, ``premium-index-price-kline``).
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mdcollect import DatasetKey, Interval, IntervalSet, InvalidRequest, open_storage
from mdcollect.backfill import OHLCVBackfill, make_job
from mdcollect.ensure import backfill_async
from mdcollect.exchanges import ExchangeClient, RetryPolicy, exchange_info, request_seconds
from mdcollect.testing import ExchangeEmulator, Fault

DAY = 86_400_000
MINUTE = 60_000
T0 = 1_706_745_600_000  # 2024-02-01
SYMBOL = "BTC/USDT:USDT"

#: (exchange key, kind, the emulator route ccxt reaches, candles a request)
CASES = [
    ("binance_futures", "mark", "markPriceKlines", 1000),
    ("binance_futures", "index", "indexPriceKlines", 1000),
    ("binance_futures", "premium", "premiumIndexKlines", 1000),
    ("okx_futures", "mark", "market/history-mark-price-candles", 100),
    ("okx_futures", "index", "market/history-index-candles", 100),
    ("bybit_futures", "mark", "market/mark-price-kline", 1000),
    ("bybit_futures", "index", "market/index-price-kline", 1000),
    ("bybit_futures", "premium", "market/premium-index-price-kline", 1000),
]
IDS = [f"{ex}-{kind}" for ex, kind, _, _ in CASES]


def client(emu: ExchangeEmulator, key: str, **kw: Any) -> ExchangeClient:
    kw.setdefault("enableRateLimit", False)
    kw.setdefault("retry", RetryPolicy(max_attempts=10, base_delay=0.001, max_delay=0.01))
    return ExchangeClient(key, base_url=emu.url, **kw)


def truth(emu: ExchangeEmulator, ex: str, kind: Any, tf: str, lo: int, hi: int) -> pd.DataFrame:
    frame = emu.market.price_candles(ex, SYMBOL, kind, tf, lo, hi, closed_only=True).to_frame()
    return frame[["open", "high", "low", "close"]]


def routed(emu: ExchangeEmulator, route: str) -> list[Any]:
    return [q for q in emu.requests if q.route == route]


MARKET_ROUTES = ("exchangeInfo", "public/instruments", "market/instruments-info")


def backfill(*args: Any, **kw: Any) -> Any:
    """``backfill_async`` in a loop of its own, releasing the client's session after."""
    c = args[4]

    async def run() -> Any:
        try:
            return await backfill_async(*args, **kw)
        finally:
            await c.release()

    return asyncio.run(run())


def fill(store: Any, c: ExchangeClient, kind: str, lo: int, hi: int, tf: str = "15m") -> Any:
    return backfill([SYMBOL], tf, lo, hi, c, store, kind=kind, progress=False)


@pytest.mark.parametrize(("ex", "kind", "route", "page"), CASES, ids=IDS)
def test_backfill_equals_ground_truth_then_asks_nothing_then_refills_a_hole(
    emu: ExchangeEmulator, ex: str, kind: str, route: str, page: int
) -> None:
    store = open_storage("memory://")
    c = client(emu, ex)
    lo, hi = T0, T0 + 20 * DAY  # 1920 candles of 15m
    report = fill(store, c, kind, lo, hi)
    assert report.ok, [s.errors for s in report.symbols]
    key = DatasetKey(ex, SYMBOL, kind, "15m")  # type: ignore[arg-type]
    got = store.read(key)
    want = truth(emu, ex, kind, "15m", lo, hi)
    assert len(want) == 1920
    pd.testing.assert_frame_equal(got[["open", "high", "low", "close"]], want, check_freq=False)
    assert store.coverage(key) == IntervalSet([Interval(lo, hi)])
    # exact request counts: one page a window of `page` candles, nothing else but the
    # market list (Binance has no listing time, but the first page, starting where it
    # was asked, shows the listing is earlier: no listing-date request)
    pages = routed(emu, route)
    assert len(pages) == -(-1920 // page)
    listing = routed(emu, "klines")
    assert len(listing) == 0
    markets = [q for q in emu.requests if q.route in MARKET_ROUTES]
    assert report.requests == len(emu.requests) == len(pages) + len(listing) + len(markets)
    # the derivation holds where the emulator says so: premium = mark/index - 1
    if kind == "premium":
        mark = truth(emu, ex, "mark", "15m", lo, hi)
        index = truth(emu, ex, "index", "15m", lo, hi)
        np.testing.assert_allclose(
            got["close"].to_numpy(), (mark["close"] / index["close"] - 1).to_numpy(), atol=2e-8
        )
    else:
        last = emu.market.candles(ex, SYMBOL, "15m", lo, hi, closed_only=True).to_frame()
        rel = (got["close"] / last["close"] - 1).abs()
        assert 0 < rel.max() < 0.001  # close to the last price, not equal to it

    # a second call asks nothing
    n = len(emu.requests)
    again = fill(store, c, kind, lo, hi)
    assert again.requests == 0 and len(emu.requests) == n and again.ok

    # a deleted day is refilled with the one page it needs and nothing else
    hole = Interval(T0 + 7 * DAY, T0 + 8 * DAY)
    store.delete(key, hole.start, hole.end)
    emu.clear_requests()
    refill = fill(store, c, kind, lo, hi)
    assert refill.ok and refill[SYMBOL].missing == IntervalSet([hole])
    assert [q.route for q in emu.requests] == [route] * -(-96 // page)
    pd.testing.assert_frame_equal(store.read(key), got, check_freq=False)


@pytest.mark.parametrize(("ex", "kind", "route", "page"), CASES, ids=IDS)
def test_faults_leave_the_same_data_as_a_clean_run(
    ex: str, kind: str, route: str, page: int
) -> None:
    lo, hi = T0, T0 + 3 * DAY
    with ExchangeEmulator(rate_limits=False, seed=11) as emu:
        clean = open_storage("memory://")
        assert fill(clean, client(emu, ex), kind, lo, hi, "5m").ok
        for fault in [
            Fault("500", route=route, count=2), Fault("503", route=route, count=1),
            Fault("429", route=route, count=2, retry_after=0.05),
            Fault("timeout", route=route, count=1, delay=3.0),
            Fault("drop", route=route, count=1), Fault("malformed", route=route, count=1),
            Fault("duplicate", route=route, rate=0.3), Fault("overlap", route=route, rate=0.3),
            Fault("short", route=route, count=2), Fault("empty", route=route, count=2),
        ]:  # fmt: skip
            emu.faults.add(fault)
        emu.clear_requests()
        faulty = open_storage("memory://")
        r = fill(faulty, client(emu, ex, timeout=1000), kind, lo, hi, "5m")
        statuses = collections.Counter(q.status for q in emu.requests)
        faults = collections.Counter(q.fault for q in emu.requests if q.fault)
        assert r.ok, [s.errors for s in r.symbols]
        assert statuses[500] >= 2 and statuses[503] >= 1, statuses
        assert faults["short"] >= 1 and faults["empty"] >= 1, faults
        key = DatasetKey(ex, SYMBOL, kind, "5m")  # type: ignore[arg-type]
        pd.testing.assert_frame_equal(faulty.read(key), clean.read(key))
        assert faulty.coverage(key) == clean.coverage(key) == IntervalSet([Interval(lo, hi)])


def test_unserved_kinds_and_spot_markets_are_refused_before_any_request(
    emu: ExchangeEmulator,
) -> None:
    store = open_storage("memory://")
    lo, hi = T0, T0 + DAY
    with pytest.raises(InvalidRequest, match=r"okx_futures does not serve 'premium' candles "
                       r"\(it serves: ohlcv, mark, index\); exchanges that do: binance_futures"):  # fmt: skip
        fill(store, client(emu, "okx_futures"), "premium", lo, hi)
    with pytest.raises(InvalidRequest, match=r"binance does not serve 'mark' candles"):
        backfill(["BTC/USDT"], "1h", lo, hi, client(emu, "binance"), store, kind="mark",
                 progress=False)  # fmt: skip
    # funding is a kind of history too (backfilled without a timeframe); a live-only kind
    # such as ticker is not
    with pytest.raises(InvalidRequest, match=r"kind 'ticker' is not valid; allowed: 'ohlcv', "
                       r"'trades', 'funding', 'mark', 'index', 'premium'"):  # fmt: skip
        fill(store, client(emu, "binance_futures"), "ticker", lo, hi)
    with pytest.raises(InvalidRequest, match=r"use strategy 'auto' or 'ohlcv' \(not 'trades'\)"):
        make_job(exchange_info("bybit_futures"), SYMBOL, "1h", lo, hi, kind="mark",
                 strategy="trades")  # fmt: skip
    with pytest.raises(InvalidRequest, match="a timeframe such as '1m' is required"):
        backfill([SYMBOL], None, lo, hi, client(emu, "bybit_futures"), store, kind="index",
                 progress=False)  # fmt: skip
    assert emu.requests == []
    assert store.keys() == []


async def test_spot_market_is_refused_before_any_request(emu: ExchangeEmulator) -> None:
    # a client that also loads Bybit's spot markets: ccxt's fetch_mark_ohlcv would
    # answer last-price candles for a spot symbol; the client refuses instead
    both = {"fetchMarkets": {"types": ["spot", "linear"]}}
    async with client(emu, "bybit_futures", options=both) as c:
        await c.load_markets()
        n = len(emu.requests)
        with pytest.raises(InvalidRequest, match=r"'ETH/USDT' on bybit_futures is not a perp"):
            await c.fetch_ohlcv("ETH/USDT", "1h", T0, T0 + DAY, kind="mark")
        assert len(emu.requests) == n
        job = OHLCVBackfill("bybit_futures", "ETH/USDT", "1h", T0, T0 + DAY, kind="index")
        with pytest.raises(InvalidRequest, match=r"'ETH/USDT' on bybit_futures is not a perp"):
            await job.prepare(c, open_storage("memory://"), IntervalSet([Interval(T0, T0 + DAY)]))
        assert len(emu.requests) == n


def test_make_job_builds_the_candle_job_with_the_kind() -> None:
    job = make_job(exchange_info("bybit_futures"), SYMBOL, "1h", T0, T0 + DAY, kind="premium")
    assert isinstance(job, OHLCVBackfill)
    assert job.key == DatasetKey("bybit_futures", SYMBOL, "premium", "1h")
    assert job.required(T0 + 2 * DAY) == Interval(T0, T0 + DAY)


def test_plans_cost_each_kinds_own_endpoint() -> None:
    # OKX's history-index-candles cost ccxt twice history-mark-price-candles; Bybit's
    # price klines cost as kline; the estimate follows the endpoint the kind reaches
    okx = exchange_info("okx_futures")
    mark = make_job(okx, SYMBOL, "1h", T0, T0 + DAY, kind="mark").request_seconds(okx)
    index = make_job(okx, SYMBOL, "1h", T0, T0 + DAY, kind="index").request_seconds(okx)
    assert mark is not None and index == pytest.approx(2 * mark)
    assert mark == request_seconds(okx, ("public", "get", "market/history-mark-price-candles"), 100)
    bybit = exchange_info("bybit_futures")
    job = make_job(bybit, SYMBOL, "1h", T0, T0 + DAY, kind="premium")
    assert job.request_seconds(bybit) == make_job(
        bybit, SYMBOL, "1h", T0, T0 + DAY
    ).request_seconds(bybit)


def test_the_open_candle_is_never_stored_or_covered() -> None:
    now = T0 + 5 * DAY + 90 * MINUTE + 17  # inside the 01:00-02:00 candle
    with ExchangeEmulator(rate_limits=False, clock=lambda: now) as emu:
        store = open_storage("memory://")
        c = client(emu, "bybit_futures", clock=lambda: now)
        r = backfill([SYMBOL], "1h", T0 + 5 * DAY, T0 + 6 * DAY, c, store, kind="mark",
                     progress=False, clock=lambda: now)  # fmt: skip
        assert r.ok
        key = DatasetKey("bybit_futures", SYMBOL, "mark", "1h")
        last_closed = T0 + 5 * DAY + 3_600_000
        assert store.coverage(key) == IntervalSet([Interval(T0 + 5 * DAY, last_closed)])
        got = store.read(key)
        assert list(got.index.asi8 // 1_000_000) == [T0 + 5 * DAY]
        pd.testing.assert_frame_equal(
            got[["open", "high", "low", "close"]],
            truth(emu, "bybit_futures", "mark", "1h", T0 + 5 * DAY, T0 + 6 * DAY),
            check_freq=False,
        )
