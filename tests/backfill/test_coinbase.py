"""Coinbase backfill end to end, like the other venues: real ccxt ``coinbase`` against the
emulator's Advanced Trade dialect. Ensure a range against the ground truth, a second
call asks nothing, a deleted span is refilled with only the 300-candle pages it needs,
faults leave the data of a clean run, and what Coinbase cannot serve (other
timeframes, trade history) is refused before any request."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

from mdcollect import (
    DatasetKey,
    Interval,
    IntervalSet,
    InvalidRequest,
    ensure_data,
    load_trades,
    open_storage,
)
from mdcollect.backfill import make_job
from mdcollect.exchanges import ExchangeClient, RetryPolicy, exchange_info
from mdcollect.testing import ExchangeEmulator, Fault

MINUTE = 60_000
DAY = 86_400_000
NOW = 1_735_693_200_000  # 2025-01-01 01:00 UTC
T0 = 1_709_251_200_000  # 2024-03-01
COLUMNS = ["open", "high", "low", "close", "volume"]
MARKET_ROUTES = ("currencies", "currencies/crypto", "exchange-rates", "market/products")
#: What ccxt's coinbase.timeframes maps to Coinbase's granularities, in its order.
ALLOWED = "1m, 5m, 15m, 30m, 1h, 2h, 6h, 1d"


def _now() -> int:
    return NOW


@pytest.fixture
def emu() -> Iterator[ExchangeEmulator]:
    with ExchangeEmulator(rate_limits=False, clock=_now) as e:
        yield e


def client(emu: ExchangeEmulator, key: str = "coinbase", **kw: Any) -> ExchangeClient:
    kw.setdefault("enableRateLimit", False)
    kw.setdefault("retry", RetryPolicy(max_attempts=10, base_delay=0.001, max_delay=0.01))
    return ExchangeClient(key, base_url=emu.url, clock=_now, **kw)


def truth(emu: ExchangeEmulator, symbol: str, tf: str, lo: int, hi: int) -> pd.DataFrame:
    return emu.market.candles("coinbase", symbol, tf, lo, hi, closed_only=True).to_frame()[COLUMNS]


def ensure(c: ExchangeClient, symbols: list[str], tf: str, start: str, end: str, store: Any,
           **kw: Any) -> Any:  # fmt: skip
    return ensure_data(symbols, tf, start, end, c, padding_days=0, storage=store, progress=False,
                       clock=_now, **kw)  # fmt: skip


def candle_pages(emu: ExchangeEmulator) -> list[Any]:
    return [q for q in emu.requests if q.route == "market/candles"]


def test_ensure_equals_ground_truth_then_asks_nothing_then_refills_a_hole(
    emu: ExchangeEmulator,
) -> None:
    store, c = open_storage("memory://"), client(emu)
    lo, hi = T0, T0 + 10 * DAY  # 960 candles of 15m each: four pages of at most 300
    report = ensure(c, ["BTC/USD", "ETH/USD"], "15m", "2024-03-01", "2024-03-10", store)
    assert report.ok, [s.errors for s in report.symbols]
    for symbol in ("BTC/USD", "ETH/USD"):
        key = DatasetKey("coinbase", symbol, "ohlcv", "15m")
        want = truth(emu, symbol, "15m", lo, hi)
        assert len(want) == 960
        pd.testing.assert_frame_equal(store.read(key)[COLUMNS], want, check_freq=False)
        assert store.coverage(key) == IntervalSet([Interval(lo, hi)])
    # one request a page of 300 candles (the last one 60), each spanning no more than
    # Coinbase allows; besides them only the market list
    pages = candle_pages(emu)
    spans = sorted((int(q.params["start"]), int(q.params["end"])) for q in pages)
    starts = [lo // 1000 + k * 300 * 900 for k in range(4)]
    assert sorted({s for s, _ in spans}) == starts and len(spans) == 8
    assert all(0 < end - start <= 300 * 900 for start, end in spans)
    assert {q.params["granularity"] for q in pages} == {"FIFTEEN_MINUTE"}
    markets = [q for q in emu.requests if q.route in MARKET_ROUTES]
    assert len(markets) == 5
    assert report.requests == len(emu.requests) == len(pages) + len(markets)

    # a second call asks nothing
    n = len(emu.requests)
    again = ensure(c, ["BTC/USD", "ETH/USD"], "15m", "2024-03-01", "2024-03-10", store)
    assert again.ok and again.requests == 0 and len(emu.requests) == n

    # a deleted day (96 candles) is refilled with the one page it needs, nothing else
    key = DatasetKey("coinbase", "BTC/USD", "ohlcv", "15m")
    before = store.read(key)
    hole = Interval(T0 + 4 * DAY, T0 + 5 * DAY)
    store.delete(key, hole.start, hole.end)
    emu.clear_requests()
    refill = ensure(c, ["BTC/USD"], "15m", "2024-03-01", "2024-03-10", store)
    assert refill.ok and refill["BTC/USD"].missing == IntervalSet([hole])
    assert [(q.route, q.params["start"]) for q in emu.requests] == [
        ("market/candles", str(hole.start // 1000))
    ]
    assert int(emu.requests[0].params["end"]) < hole.end // 1000
    pd.testing.assert_frame_equal(store.read(key), before, check_freq=False)


def test_faults_leave_the_same_data_as_a_clean_run() -> None:
    lo, hi = T0, T0 + 3 * DAY  # 864 candles of 5m: three pages
    route = "market/candles"
    with ExchangeEmulator(rate_limits=False, seed=11, clock=_now) as emu:
        clean = open_storage("memory://")
        assert ensure(client(emu), ["BTC/USD"], "5m", "2024-03-01", "2024-03-03", clean).ok
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
        r = ensure(client(emu, timeout=1000), ["BTC/USD"], "5m", "2024-03-01", "2024-03-03",
                   faulty)  # fmt: skip
        statuses = collections.Counter(q.status for q in emu.requests)
        faults = collections.Counter(q.fault for q in emu.requests if q.fault)
        assert r.ok, [s.errors for s in r.symbols]
        assert statuses[500] >= 2 and statuses[503] >= 1 and statuses[429] >= 2, statuses
        assert faults["short"] >= 1 and faults["empty"] >= 1 and faults["timeout"] == 1, faults
        key = DatasetKey("coinbase", "BTC/USD", "ohlcv", "5m")
        pd.testing.assert_frame_equal(faulty.read(key), clean.read(key))
        pd.testing.assert_frame_equal(
            faulty.read(key)[COLUMNS], truth(emu, "BTC/USD", "5m", lo, hi), check_freq=False
        )
        assert faulty.coverage(key) == clean.coverage(key) == IntervalSet([Interval(lo, hi)])


#: (symbol, timeframe, start, end, the granularities the search for the first candle
#: asks): SOL/USD is listed 2021-06-02 12:00 UTC, DOGE/USD 2021-06-03 14:00 UTC
ACROSS_LISTINGS = [
    ("SOL/USD", "1h", "2021-05-25", "2021-06-10", ["ONE_DAY", "ONE_HOUR"]),
    ("DOGE/USD", "1m", "2021-06-03", "2021-06-03", ["ONE_DAY", "ONE_HOUR", "ONE_MINUTE"]),
    # more than a page of days before the listing: the next page of days is asked
    ("DOGE/USD", "15m", "2020-01-01", "2021-06-05",
     ["ONE_DAY", "ONE_DAY", "ONE_DAY", "ONE_HOUR", "ONE_MINUTE"]),
    # wholly before the listing: covered without a row
    ("SOL/USD", "6h", "2021-01-01", "2021-01-10", ["ONE_DAY", "ONE_HOUR"]),
]  # fmt: skip


@pytest.mark.parametrize(("symbol", "tf", "start", "end", "search"), ACROSS_LISTINGS)
def test_a_range_across_a_listing_is_covered_before_it_and_exact_after(
    emu: ExchangeEmulator, symbol: str, tf: str, start: str, end: str, search: list[str]
) -> None:
    # Coinbase publishes no listing time: the first candle after the range's start is
    # found from there (a page of days, then hours, then minutes), only when the first
    # page shows candles starting later than asked
    store, c = open_storage("memory://"), client(emu)
    lo = int(pd.Timestamp(start, tz="UTC").value // 1_000_000)
    hi = int(pd.Timestamp(end, tz="UTC").value // 1_000_000) + DAY
    report = ensure(c, [symbol], tf, start, end, store)
    assert report.ok, [s.errors for s in report.symbols]
    key = DatasetKey("coinbase", symbol, "ohlcv", tf)
    want = truth(emu, symbol, tf, lo, hi)
    got = store.read(key)
    assert len(got) == len(want)
    if len(want):
        pd.testing.assert_frame_equal(got[COLUMNS], want, check_freq=False)
    assert store.coverage(key) == IntervalSet([Interval(lo, hi)])
    granularity = {"1m": "ONE_MINUTE", "15m": "FIFTEEN_MINUTE", "1h": "ONE_HOUR", "6h": "SIX_HOUR"}
    pages = candle_pages(emu)
    asked = [q.params["granularity"] for q in pages[1:1 + len(search)]]  # fmt: skip
    assert pages[0].params["granularity"] == granularity[tf]  # the first window's page
    assert asked == search
    n = len(emu.requests)
    assert ensure(c, [symbol], tf, start, end, store).requests == 0 and len(emu.requests) == n


@pytest.mark.parametrize("tf", ["3m", "4h", "12h", "1w", "1M"])
def test_a_timeframe_coinbase_does_not_serve_is_refused_before_any_request(
    emu: ExchangeEmulator, tf: str
) -> None:
    store = open_storage("memory://")
    refused = rf"timeframe '{tf}' is not supported by coinbase( \(did you mean .*\))?; allowed: "
    with pytest.raises(InvalidRequest, match=refused + ALLOWED):
        ensure(client(emu), ["BTC/USD"], tf, "2024-03-01", "2024-03-10", store)
    assert emu.requests == [] and store.keys() == []


@pytest.mark.parametrize(("key", "symbol"), [("coinbase", "BTC/USD"), ("bybit", "BTC/USDT")])
def test_trade_history_is_refused_before_any_request(
    emu: ExchangeEmulator, key: str, symbol: str
) -> None:
    # Coinbase's trades endpoint answers the newest trades of a span and has no cursor,
    # so past trades cannot be paged without gaps (Bybit spot keeps recent trades only)
    store = open_storage("memory://")
    refused = rf"{key} serves only recent trades \(no trade history by time\)"
    with pytest.raises(InvalidRequest, match=refused):
        ensure(client(emu, key), [symbol], "1h", "2024-03-01", "2024-03-02", store,
               strategy="trades")  # fmt: skip
    with pytest.raises(InvalidRequest, match=refused):
        ensure(client(emu, key), [symbol], "1h", "2024-03-01", "2024-03-02", store,
               kinds=("trades",))  # fmt: skip
    with pytest.raises(InvalidRequest, match=refused):
        load_trades(symbol, "2024-03-01", "2024-03-02", exchange=client(emu, key), storage=store,
                    progress=False)  # fmt: skip
    with pytest.raises(InvalidRequest, match=refused):
        make_job(exchange_info(key), symbol, "1h", T0, T0 + DAY, strategy="trades")
    assert emu.requests == [] and store.keys() == []


def test_the_registry_knows_coinbases_pages_timeframes_and_history() -> None:
    info = exchange_info("coinbase")
    assert info.page_limit == 300 and info.deep_history
    assert info.timeframes == tuple(ALLOWED.split(", "))
    assert not info.trades_history and info.trades_page_limit == 1000
    # the products list carries no listing time: the first candle is searched for
    assert info.first_candle == "day_scan"
    # 10 public requests a second: ccxt's throttler spaces candle pages ~0.1 s apart
    assert info.ohlcv_endpoint[-1] == "brokerage/market/products/{product_id}/candles"
    job = make_job(info, "BTC/USD", "1h", T0, T0 + DAY)
    assert job.request_seconds(info) == pytest.approx(0.1, rel=0.1)


@pytest.mark.parametrize("key", ["coinbase", "binance"])
def test_a_hole_whose_first_answers_are_empty_is_still_refilled(
    emu: ExchangeEmulator, key: str
) -> None:
    # the page asked from the hole's start and the one asked again from before it both
    # come back empty (a hiccup, twice): asked again rather than given up on
    symbol = "BTC/USD" if key == "coinbase" else "BTC/USDT"
    store, c = open_storage("memory://"), client(emu, key)
    assert ensure(c, [symbol], "5m", "2024-03-01", "2024-03-02", store).ok
    dataset = DatasetKey(key, symbol, "ohlcv", "5m")
    before = store.read(dataset)
    hole = Interval(T0 + DAY // 2, T0 + DAY // 2 + 6 * 3_600_000)
    store.delete(dataset, hole.start, hole.end)
    emu.faults.add(Fault("empty", count=2))
    emu.clear_requests()
    r = ensure(c, [symbol], "5m", "2024-03-01", "2024-03-02", store)
    assert r.ok, [s.errors for s in r.symbols]
    assert [q.fault for q in emu.requests][:2] == ["empty", "empty"]
    pd.testing.assert_frame_equal(store.read(dataset), before, check_freq=False)
    assert store.coverage(dataset) == IntervalSet([Interval(T0, T0 + 2 * DAY)])


async def test_first_candle_time_is_searched_from_since(emu: ExchangeEmulator) -> None:
    listed = 1_622_635_200_000  # SOL/USD: 2021-06-02 12:00 UTC
    async with client(emu) as c:
        await c.load_markets()
        assert await c.first_candle_time("SOL/USD", "1h") is None  # nowhere to start from
        for tf, since, asked in [
            ("1d", listed - 90 * DAY, 1), ("6h", listed - 90 * DAY, 2),
            ("1h", listed - 5 * DAY, 2), ("5m", listed - 5 * DAY, 3),
        ]:  # fmt: skip
            before = c.request_count
            first = await c.first_candle_time("SOL/USD", tf, since=since)
            assert c.request_count - before == asked, tf
            want = emu.market.candles("coinbase", "SOL/USD", tf, since, listed + DAY)
            assert first == int(want.to_frame().index[0].value // 1_000_000), tf
        # from after the listing: the first candle at or after since's day, not a listing
        after = listed + 30 * DAY + 7 * 3_600_000
        assert (
            await c.first_candle_time("SOL/USD", "1h", since=after)
            == listed + 30 * DAY - 12 * 3_600_000
        )
