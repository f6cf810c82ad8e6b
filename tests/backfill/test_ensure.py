"""ensure_data / load_ohlcv through real ccxt against the emulator."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pytest

import mdcollect
from mdcollect import (
    DatasetKey,
    Interval,
    IntervalSet,
    InvalidRequest,
    ensure_data,
    ensure_data_async,
    load_ohlcv,
    open_storage,
)
from mdcollect.backfill import OHLCVBackfill
from mdcollect.exchanges import ExchangeClient, RetryPolicy
from mdcollect.testing import ExchangeEmulator, Fault, MarketSpec

DAY = 86_400_000
HOUR = 3_600_000
T2024 = 1_704_067_200_000  # 2024-01-01


def client(emu: ExchangeEmulator, key: str = "binance", **kw: Any) -> ExchangeClient:
    kw.setdefault("enableRateLimit", False)
    kw.setdefault("retry", RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.01))
    return ExchangeClient(key, base_url=emu.url, **kw)


#: the optional candle columns each venue's candles carry
SERVED = {
    "binance": ("quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume"),
    "binance_futures": ("quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume"),
    "okx": ("quote_volume",),
    "bybit": ("quote_volume",),
    "kraken": ("trades", "vwap"),
}


def truth(emu: ExchangeEmulator, ex: str, sym: str, tf: str, lo: int, hi: int) -> pd.DataFrame:
    return emu.market.candles(ex, sym, tf, lo, hi).to_frame(SERVED.get(ex, ()))


def page_requests(emu: ExchangeEmulator, route: str = "klines") -> list[Any]:
    return [r for r in emu.requests if r.path.endswith(route)]


# -- validation: InvalidRequest before any request or write -----------------------------

BAD = [
    ({"symbols": "BTC/USDT"}, "symbols must be a non-empty list"),
    ({"symbols": []}, "non-empty"),
    ({"symbols": [f"S{i}/USDT" for i in range(51)]}, "at most 50"),
    ({"symbols": ["BTCUSDT"]}, "'BTCUSDT'"),
    ({"symbols": [1]}, "symbol 1"),
    ({"timeframe": "1x"}, "'1x' is not supported by binance; allowed: 1s, 1m, 3m, 5m, 15m"),
    ({"timeframe": "1W"}, r"'1W' is not supported by binance \(did you mean '1w'\?\)"),
    ({"timeframe": "1h\n"}, r"did you mean '1h'\?"),
    ({"timeframe": "2w"}, "'2w' is not supported by binance"),
    ({"timeframe": "7m"}, "not supported by binance"),
    ({"start_date": "2024/01/01"}, "YYYYMMDD"),
    ({"start_date": "20241301"}, "20241301"),
    ({"end_date": "2023-12-31"}, "before start_date"),
    ({"padding_days": -1}, "padding_days"),
    ({"padding_days": 1.5}, "padding_days"),
    ({"padding_days": True}, "padding_days"),
    ({"exchange": "binanse"}, "binance"),
]


@pytest.mark.parametrize(("override", "needle"), BAD)
def test_bad_input_is_refused_before_any_request(
    emu: ExchangeEmulator, override: dict[str, Any], needle: str
) -> None:
    store = open_storage("memory://")
    args: dict[str, Any] = {
        "symbols": ["BTC/USDT"], "timeframe": "1h", "start_date": "2024-01-01",
        "end_date": "2024-01-02", "exchange": "binance", "padding_days": 0,
    }  # fmt: skip
    args.update(override)
    if args["exchange"] == "binance":
        args["exchange"] = client(emu)
    with pytest.raises(InvalidRequest, match=needle):
        ensure_data(storage=store, progress=False, **args)
    assert emu.requests == []
    assert store.keys() == []


def test_unknown_symbol_names_close_matches_and_writes_nothing(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    with pytest.raises(InvalidRequest, match="BTC/USDT"):
        ensure_data(["BTC/USDX"], "1h", "2024-01-01", "2024-01-02", client(emu), 0, store)
    assert store.keys() == []
    assert not any(r.path.endswith("klines") for r in emu.requests)


# -- the main job ------------------------------------------------------------------------


def test_ensure_fetches_exact_candles_and_second_call_asks_nothing(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    c = client(emu, "binance_futures")
    report = ensure_data(["BTC/USDT:USDT", "ETH/USDT:USDT"], "1h", "2024-02-01", "2024-02-28",
                         c, storage=store, progress=False)  # fmt: skip
    lo, hi = T2024 + 1 * DAY, T2024 + 59 * DAY  # 2024-01-02 .. 2024-02-29 (padding 30 days)
    assert report.ok
    assert report.required == Interval(lo, hi)
    for sym in ("BTC/USDT:USDT", "ETH/USDT:USDT"):
        key = DatasetKey("binance_futures", sym, "ohlcv", "1h")
        pd.testing.assert_frame_equal(
            store.read(key), truth(emu, "binance_futures", sym, "1h", lo, hi), check_freq=False
        )
        assert store.coverage(key) == IntervalSet([Interval(lo, hi)])
        assert report[sym].candles_fetched == 58 * 24
    assert report.requests == len(emu.requests) > 0
    # per symbol: exactly its own requests (the two jobs ran concurrently on one
    # client); the call's one market load is counted in the total only
    pages = [q for q in emu.requests if q.path.endswith("klines")]
    markets = [q for q in emu.requests if q.route == "exchangeInfo"]
    assert len(markets) == 1 and len(pages) + len(markets) == len(emu.requests)
    assert sum(s.requests for s in report.symbols) == report.requests - 1
    for sym in ("BTCUSDT", "ETHUSDT"):
        own = [q for q in pages if q.params["symbol"] == sym]
        assert report[sym[:3] + "/USDT:USDT"].requests == len(own)
    n = len(emu.requests)
    again = ensure_data(["BTC/USDT:USDT", "ETH/USDT:USDT"], "1h", "20240201", "20240228", c,
                        storage=store, progress=False)  # fmt: skip
    assert len(emu.requests) == n, "a second identical call must ask the exchange nothing"
    assert again.requests == 0 and again.ok
    assert again["BTC/USDT:USDT"].already_covered == IntervalSet([Interval(lo, hi)])
    assert again["BTC/USDT:USDT"].missing == IntervalSet()


def test_padding_rule_and_dates_forms(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    # a bare date as the end means the end of that day; a Timestamp is a time (exclusive)
    r = ensure_data(["BTC/USDT"], "1d", pd.Timestamp("2024-02-01"), dt.date(2024, 2, 1),
                    client(emu), storage=store, progress=False)  # fmt: skip
    assert r.required == Interval(T2024 + DAY, T2024 + 32 * DAY)  # 2024-01-02 .. 2024-02-02
    r0 = ensure_data(["BTC/USDT"], "1d", "20240201", "20240201", client(emu), padding_days=0,
                     storage=store, progress=False)  # fmt: skip
    assert r0.required == Interval(T2024 + 31 * DAY, T2024 + 32 * DAY)


def test_end_is_clipped_to_the_last_closed_candle() -> None:
    now = T2024 + 10 * DAY + 5 * HOUR + 17 * 60_000
    with ExchangeEmulator(rate_limits=False, clock=lambda: now) as emu:
        store = open_storage("memory://")
        r = ensure_data(["BTC/USDT"], "1h", "2024-01-11", "2024-01-11", client(emu, clock=lambda: now),
                        padding_days=0, storage=store, progress=False, clock=lambda: now)  # fmt: skip
        key = DatasetKey("binance", "BTC/USDT", "ohlcv", "1h")
        assert r.required == Interval(T2024 + 10 * DAY, T2024 + 10 * DAY + 5 * HOUR)
        out = store.read(key)
        assert len(out) == 5  # 00:00 .. 04:00; the 05:00 candle is still open
        assert store.coverage(key) == IntervalSet([r.required])


def test_hole_in_a_stored_year_fetches_only_that_day(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    c = client(emu)
    ensure_data(["BTC/USDT"], "1m", "2023-01-01", "2023-01-20", c, 0, store, progress=False)
    key = DatasetKey("binance", "BTC/USDT", "ohlcv", "1m")
    full = store.read(key)
    hole = Interval(1_673_740_800_000, 1_673_740_800_000 + DAY)  # 2023-01-15
    store.delete(key, hole.start, hole.end)
    emu.clear_requests()
    r = ensure_data(["BTC/USDT"], "1m", "2023-01-01", "2023-01-20", c, 0, store, progress=False)
    klines = page_requests(emu)
    assert r.ok and r["BTC/USDT"].candles_fetched == 1440
    assert r["BTC/USDT"].missing == IntervalSet([hole])
    # windows go out together: which pages, not in which order they were answered
    assert sorted(int(q.params["startTime"]) for q in klines) == [
        hole.start,
        hole.start + 1000 * 60_000,
    ]
    assert all(int(q.params["startTime"]) >= hole.start for q in klines)
    pd.testing.assert_frame_equal(store.read(key), full, check_freq=False)


def test_before_listing_is_covered_with_one_cheap_request() -> None:
    listed = T2024 + 5 * DAY + 3 * HOUR
    with ExchangeEmulator(
        rate_limits=False, markets=[MarketSpec("NEW/USDT", listed=listed, exchange="binance")]
    ) as emu:
        store = open_storage("memory://")
        r = ensure_data(
            ["NEW/USDT"], "1h", "2023-06-01", "2024-01-10", client(emu), 0, store, progress=False
        )
        key = DatasetKey("binance", "NEW/USDT", "ohlcv", "1h")
        assert r.ok
        # the first window's page (empty: not listed yet), one listing request (since=0)
        # and one page for the 5 listed days: no scan of 7 months
        assert [int(q.params["startTime"]) for q in page_requests(emu)] == [
            1_685_577_600_000,
            0,
            listed,
        ]
        assert store.coverage(key) == IntervalSet([Interval(1_685_577_600_000, T2024 + 10 * DAY)])
        out = store.read(key)
        assert int(out.index[0].value // 1_000_000) == listed
        assert len(out) == 24 * 5 - 3


def test_outage_is_covered_without_rows() -> None:
    outage = (T2024 + 2 * DAY, T2024 + 2 * DAY + 6 * HOUR)
    spec = MarketSpec("OUT/USDT", outages=[outage], exchange="binance")
    with ExchangeEmulator(rate_limits=False, markets=[spec]) as emu:
        store = open_storage("memory://")
        r = ensure_data(
            ["OUT/USDT"], "1h", "2024-01-01", "2024-01-04", client(emu), 0, store, progress=False
        )
        key = DatasetKey("binance", "OUT/USDT", "ohlcv", "1h")
        assert r.ok
        out = store.read(key)
        assert len(out) == 4 * 24 - 6
        assert not any(outage[0] <= t < outage[1] for t in out.index.asi8 // 1_000_000)
        assert store.coverage(key) == IntervalSet([Interval(T2024, T2024 + 4 * DAY)])
        pd.testing.assert_frame_equal(
            out, truth(emu, "binance", "OUT/USDT", "1h", T2024, T2024 + 4 * DAY), check_freq=False
        )


def test_failed_window_is_reported_not_covered_and_refetched_next_time(
    emu: ExchangeEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one window at a time, so that the 4 failures below all hit the first window
    monkeypatch.setattr(OHLCVBackfill, "windows_in_flight", 1)
    store = open_storage("memory://")
    c = client(emu)
    key = DatasetKey("binance", "BTC/USDT", "ohlcv", "1m")
    # the day before is stored, so no listing request is needed below
    assert ensure_data(
        ["BTC/USDT"], "1m", "2023-02-28", "2023-02-28", c, 0, store, progress=False
    ).ok
    # the next page fails on all of its 4 attempts, the rest succeed
    emu.faults.add(Fault("503", route="klines", count=4))
    r = ensure_data(
        ["BTC/USDT"], "1m", "2023-03-01", "2023-03-02", c, 0, store, progress=False, concurrency=1
    )
    assert not r.ok
    failed = r["BTC/USDT"].windows_failed
    lo, hi = 1_677_628_800_000, 1_677_628_800_000 + 2 * DAY
    assert failed == [Interval(lo, lo + 1000 * 60_000)]
    assert "503" in r["BTC/USDT"].errors[0]
    assert store.coverage(key) == IntervalSet([Interval(lo - DAY, hi)]) - failed[0]
    assert not any(
        failed[0].start <= t < failed[0].end for t in store.read(key).index.asi8 // 1_000_000
    )
    emu.clear_requests()
    r2 = ensure_data(["BTC/USDT"], "1m", "2023-03-01", "2023-03-02", c, 0, store, progress=False)
    assert r2.ok and r2["BTC/USDT"].missing == IntervalSet([failed[0]])
    assert [int(q.params["startTime"]) for q in emu.requests if q.path.endswith("klines")] == [lo]
    pd.testing.assert_frame_equal(
        store.read(key), truth(emu, "binance", "BTC/USDT", "1m", lo - DAY, hi), check_freq=False
    )


def test_exchange_failure_while_preparing_fails_the_job_not_the_run(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    emu.faults.add(Fault("503", route="klines", count=4))  # the listing request, 4 attempts
    r = ensure_data(["BTC/USDT", "ETH/USDT"], "1h", "2023-03-01", "2023-03-02", client(emu), 0, store,
                    progress=False, concurrency=1)  # fmt: skip
    assert not r.ok
    assert [s.ok for s in r.symbols] == [False, True]
    assert r["BTC/USDT"].windows_failed == [
        Interval(1_677_628_800_000, 1_677_628_800_000 + 2 * DAY)
    ]
    assert store.coverage(DatasetKey("binance", "BTC/USDT", "ohlcv", "1h")) == IntervalSet()
    assert len(store.read(DatasetKey("binance", "ETH/USDT", "ohlcv", "1h"))) == 48


def test_load_ohlcv_date_rule_and_exact_range(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    c = client(emu)
    day = load_ohlcv(
        "BTC/USDT", "1h", "2024-01-01", "2024-01-01", exchange=c, storage=store, progress=False
    )
    assert len(day) == 24
    pd.testing.assert_frame_equal(
        day, truth(emu, "binance", "BTC/USDT", "1h", T2024, T2024 + DAY), check_freq=False
    )
    key = DatasetKey("binance", "BTC/USDT", "ohlcv", "1h")
    assert store.coverage(key) == IntervalSet([Interval(T2024, T2024 + DAY)])  # no padding
    part = load_ohlcv("BTC/USDT", "1h", "2024-01-01T00:00:00Z", "2024-01-01T05:00:00Z",
                      exchange=c, storage=store, progress=False)  # fmt: skip
    assert len(part) == 5  # a time of day is an exclusive bound
    both = load_ohlcv(["BTC/USDT", "ETH/USDT"], "1h", "2024-01-01", "2024-01-02", exchange=c,
                      storage=store, progress=False)  # fmt: skip
    assert set(both) == {"BTC/USDT", "ETH/USDT"} and all(len(f) == 48 for f in both.values())
    assert list(day.columns) == ["open", "high", "low", "close", "volume", "quote_volume",
                                 "trades", "taker_buy_volume", "taker_buy_quote_volume"]  # fmt: skip
    assert str(day.index.tz) == "UTC" and day.index.name == "timestamp"
    with pytest.raises(InvalidRequest, match="after start"):
        load_ohlcv(
            "BTC/USDT", "1h", "2024-01-02", "2024-01-01T00:00:00Z", exchange=c, storage=store
        )


async def test_sync_form_works_inside_a_running_loop(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    # as in a Jupyter cell: a loop is running in this thread
    r = ensure_data(["BTC/USDT"], "1h", "2024-01-01", "2024-01-02", "binance" if False else client(emu), 0,
                    store, progress=False)  # fmt: skip
    assert r.ok and r["BTC/USDT"].candles_fetched == 48
    r2 = await ensure_data_async(
        ["BTC/USDT"], "1h", "2024-01-01", "2024-01-02", client(emu), 0, store
    )
    assert r2.requests == 0


def test_kraken_candles_from_trades_equal_the_emulators_candles(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    r = ensure_data(
        ["BTC/USDT"],
        "1h",
        "2024-01-01",
        "2024-01-01",
        client(emu, "kraken"),
        0,
        store,
        progress=False,
    )
    assert r.ok
    key = DatasetKey("kraken", "BTC/USDT", "ohlcv", "1h")
    got = store.read(key)
    want = emu.market.candles("kraken", "BTC/USDT", "1h", T2024, T2024 + DAY).to_frame()
    assert len(got) == 24
    pd.testing.assert_frame_equal(got[["open", "high", "low", "close", "volume"]],
                                  want[["open", "high", "low", "close", "volume"]], check_freq=False)  # fmt: skip
    assert np.array_equal(got["trades"].to_numpy(), want["trades"].to_numpy())
    assert any("Trades" in q.path for q in emu.requests)
    assert not any(q.path.endswith("OHLC") for q in emu.requests)


def test_cancellation_stops_at_a_window_boundary_and_resumes(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    key = DatasetKey("binance", "BTC/USDT", "ohlcv", "1m")
    emu.faults.add(Fault("slow", route="klines", delay=0.05))

    async def run_and_cancel() -> None:
        progressed = asyncio.Event()
        windows: list[int] = []

        def on_progress(job: Any, done: int, total: int) -> None:
            windows.append(done)
            if len(windows) >= 2:  # cancel in the middle: two windows written, more to go
                progressed.set()

        task = asyncio.create_task(
            ensure_data_async(
                ["BTC/USDT"], "1m", "2023-05-01", "2023-05-10", client(emu), 0, store,
                progress=False, progress_callback=on_progress,
            )
        )  # fmt: skip
        await asyncio.wait_for(progressed.wait(), 60)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run_and_cancel())
    cov = store.coverage(key)
    lo, hi = 1_682_899_200_000, 1_682_899_200_000 + 10 * DAY
    assert cov and cov != IntervalSet([Interval(lo, hi)])
    got = store.read(key)
    # coverage never claims rows that are not stored
    for iv in cov:
        assert (
            len(
                got.loc[
                    pd.Timestamp(iv.start, unit="ms", tz="UTC") : pd.Timestamp(
                        iv.end - 1, unit="ms", tz="UTC"
                    )
                ]
            )
            == (iv.end - iv.start) // 60_000
        )
    emu.faults.clear()
    r = ensure_data(
        ["BTC/USDT"], "1m", "2023-05-01", "2023-05-10", client(emu), 0, store, progress=False
    )
    assert r.ok
    pd.testing.assert_frame_equal(
        store.read(key), truth(emu, "binance", "BTC/USDT", "1m", lo, hi), check_freq=False
    )


# -- one client across calls and event loops ---------------------------------------------

REUSE_DAYS = [("2024-01-01", "2024-01-02"), ("2024-01-05", "2024-01-06"),
              ("2024-01-09", "2024-01-10"), ("2024-01-13", "2024-01-14")]  # fmt: skip


def _check_reuse_results(emu: ExchangeEmulator, store: Any, reports: list[Any]) -> None:
    for (lo, _hi), r in zip(REUSE_DAYS, reports, strict=True):
        assert r.ok and r["BTC/USDT"].candles_fetched == 48
        start = int(pd.Timestamp(lo, tz="UTC").value // 1_000_000)
        got = store.read(DatasetKey("binance", "BTC/USDT", "ohlcv", "1h"), start, start + 2 * DAY)
        pd.testing.assert_frame_equal(
            got, truth(emu, "binance", "BTC/USDT", "1h", start, start + 2 * DAY),
            check_freq=False,
        )  # fmt: skip


def test_one_client_across_sync_and_async_calls(emu: ExchangeEmulator) -> None:
    """sync, sync, async (a new loop), sync inside a running loop: each returns, and each
    fetches its own window (ccxt's throttler of an ended loop used to hang the second)."""
    store, c = open_storage("memory://"), client(emu, enableRateLimit=True)
    kw: dict[str, Any] = {"exchange": c, "storage": store, "padding_days": 0, "progress": False}
    reports = [ensure_data(["BTC/USDT"], "1h", *REUSE_DAYS[0], **kw)]
    reports.append(ensure_data(["BTC/USDT"], "1h", *REUSE_DAYS[1], **kw))

    async def in_loop() -> list[Any]:
        a = await asyncio.wait_for(ensure_data_async(["BTC/USDT"], "1h", *REUSE_DAYS[2], **kw), 60)
        b = ensure_data(["BTC/USDT"], "1h", *REUSE_DAYS[3], **kw)  # a notebook cell
        await c.close()
        return [a, b]

    reports += asyncio.run(in_loop())
    _check_reuse_results(emu, store, reports)
    # once the markets are loaded, each call is one page request
    assert [r.requests for r in reports][1:] == [1, 1, 1]


async def test_one_client_in_a_notebook_loop_then_awaited(emu: ExchangeEmulator) -> None:
    """As in Jupyter: the sync form twice in a running loop, then the async form in it."""
    store, c = open_storage("memory://"), client(emu, enableRateLimit=True)
    kw: dict[str, Any] = {"exchange": c, "storage": store, "padding_days": 0, "progress": False}
    reports = [ensure_data(["BTC/USDT"], "1h", *REUSE_DAYS[i], **kw) for i in (0, 1)]
    reports.append(
        await asyncio.wait_for(ensure_data_async(["BTC/USDT"], "1h", *REUSE_DAYS[2], **kw), 60)
    )
    reports.append(ensure_data(["BTC/USDT"], "1h", *REUSE_DAYS[3], **kw))
    await c.close()
    _check_reuse_results(emu, store, reports)


async def test_an_attempt_stuck_in_ccxts_throttle_queue_times_out(emu: ExchangeEmulator) -> None:
    """Nothing waits forever: an attempt that cannot leave ccxt's queue fails as transient."""
    import mdcollect.exchanges._client as client_module

    c = client(emu, retry=RetryPolicy(max_attempts=1), timeout=100)
    await c.load_markets()
    # a bucket that refills at one token a day: the next request waits in the queue
    c.exchange.throttler.config.update(tokens=-1.0, refillRate=1e-9)
    c.exchange.enableRateLimit = True
    original = client_module.ATTEMPT_QUEUE_SECONDS
    client_module.ATTEMPT_QUEUE_SECONDS = 0.2  # type: ignore[misc]
    try:
        with pytest.raises(mdcollect.ExchangeError) as info:
            await asyncio.wait_for(c.fetch_ohlcv("BTC/USDT", "1h", T2024, T2024 + DAY), 30)
    finally:
        client_module.ATTEMPT_QUEUE_SECONDS = original  # type: ignore[misc]
        await c.close()
    assert info.value.transient


def test_kraken_candle_strategy_is_refused_for_ranges_its_endpoint_cannot_serve(
    emu: ExchangeEmulator,
) -> None:
    """Kraken's OHLC serves its latest 720 candles whatever ``since`` is: asking it for
    an older range is refused before any request (it used to cover the range empty)."""
    store = open_storage("memory://")
    with pytest.raises(InvalidRequest, match=r"latest 720 candles.*'auto' or 'trades'"):
        ensure_data(["BTC/USDT"], "1h", "2023-01-01", "2023-01-03", client(emu, "kraken"), 0,
                    store, progress=False, strategy="ohlcv")  # fmt: skip
    assert emu.requests == []
    assert store.keys() == []
    # a recent range is within its reach
    now = emu.market.now()
    recent = dt.datetime.fromtimestamp((now - 5 * DAY) / 1000, tz=dt.UTC).date()
    r = ensure_data(["BTC/USDT"], "1h", recent, recent, client(emu, "kraken"), 0, store,
                    progress=False, strategy="ohlcv")  # fmt: skip
    assert r.ok and r["BTC/USDT"].candles_fetched == 24
