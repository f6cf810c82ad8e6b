"""Every timeframe the exchange serves (``1w``, calendar ``1M``, ``3d``, ``1s``), through real
ccxt against the emulator's ground truth; coverage never runs ahead of the rows."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pandas as pd
import pytest

from mdcollect import (
    DataCollectionStorage,
    DatasetKey,
    Interval,
    IntervalSet,
    InvalidRequest,
    Timeframe,
    ensure_data,
    load_ohlcv,
    open_storage,
)
from mdcollect.exchanges import ExchangeClient, RetryPolicy
from mdcollect.testing import ExchangeEmulator, MarketSpec

DAY = 86_400_000
HOUR = 3_600_000
T2024 = 1_704_067_200_000  # 2024-01-01, a Monday
COLUMNS = ["open", "high", "low", "close", "volume"]
PAGE_ROUTES = ("klines", "history-candles", "kline", "OHLC", "candles")


def client(emu: ExchangeEmulator, key: str, **kw: Any) -> ExchangeClient:
    kw.setdefault("enableRateLimit", False)
    kw.setdefault("retry", RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.01))
    return ExchangeClient(key, base_url=emu.url, **kw)


def truth(emu: ExchangeEmulator, ex: str, sym: str, tf: str, lo: int, hi: int) -> pd.DataFrame:
    return emu.market.candles(ex, sym, tf, lo, hi, closed_only=True).to_frame()[COLUMNS]


def pages(emu: ExchangeEmulator) -> list[Any]:
    return [q for q in emu.requests if q.path.endswith(PAGE_ROUTES)]


def assert_coverage_backed_by_rows(
    store: DataCollectionStorage, key: DatasetKey, want: pd.DataFrame
) -> None:
    """Every candle the exchange has inside a covered range is stored, with its values."""
    got = store.read(key)[COLUMNS]
    for iv in store.coverage(key):
        lo, hi = (
            pd.Timestamp(iv.start, unit="ms", tz="UTC"),
            pd.Timestamp(iv.end, unit="ms", tz="UTC"),
        )
        inside = want[(want.index >= lo) & (want.index < hi)]
        stored = got[(got.index >= lo) & (got.index < hi)]
        pd.testing.assert_frame_equal(stored, inside, check_freq=False, obj=f"{key} in {iv}")


def ms(day: str) -> int:
    return int(pd.Timestamp(day, tz="UTC").value // 1_000_000)


# (exchange, symbol, timeframe); 3d where the exchange serves it
SERVED = [
    ("binance", "BTC/USDT", "1w"),
    ("binance", "BTC/USDT", "1M"),
    ("binance", "BTC/USDT", "3d"),
    ("binance_futures", "BTC/USDT:USDT", "1w"),
    ("binance_futures", "BTC/USDT:USDT", "1M"),
    ("binance_futures", "BTC/USDT:USDT", "3d"),
    ("okx", "BTC/USDT", "1w"),
    ("okx", "BTC/USDT", "1M"),
    ("bybit", "BTC/USDT", "1w"),
    ("bybit", "BTC/USDT", "1M"),
    ("bybit_futures", "BTC/USDT:USDT", "1w"),
    ("kraken", "BTC/USDT", "1w"),
]
# (start_date, end_date) per timeframe: the first starts on a candle, the second does not
RANGES = {
    "1w": [("2024-01-01", "2024-03-31"), ("2024-01-03", "2024-03-27")],
    "1M": [("2024-01-01", "2024-06-30"), ("2024-01-15", "2024-06-10")],
    "3d": [("2024-01-03", "2024-02-28"), ("2024-01-01", "2024-02-27")],
}


@pytest.mark.parametrize("start_aligned", [True, False], ids=["aligned", "misaligned"])
@pytest.mark.parametrize(("exchange", "symbol", "tf"), SERVED)
def test_served_timeframe_stores_exactly_the_exchanges_candles(
    emu: ExchangeEmulator, exchange: str, symbol: str, tf: str, start_aligned: bool
) -> None:
    start, end = RANGES[tf][0 if start_aligned else 1]
    timeframe = Timeframe.parse(tf)
    lo, hi = timeframe.ceil(ms(start)), timeframe.ceil(ms(end) + DAY)
    assert (lo == ms(start)) is start_aligned
    store, c = open_storage("memory://"), client(emu, exchange)
    r = ensure_data([symbol], tf, start, end, c, 0, store, progress=False)
    key = DatasetKey(exchange, symbol, "ohlcv", tf)
    want = truth(emu, exchange, symbol, tf, lo, hi)
    assert r.ok, r[symbol].errors
    assert r.required == Interval(lo, hi)
    assert len(want) == timeframe.count(lo, hi)  # the emulator has every candle of the range
    pd.testing.assert_frame_equal(store.read(key)[COLUMNS], want, check_freq=False)
    assert store.coverage(key) == IntervalSet([Interval(lo, hi)])
    assert_coverage_backed_by_rows(store, key, want)
    assert r[symbol].candles_fetched == len(want)
    # one page holds the range: at most a listing request and the page
    assert 1 <= len(pages(emu)) <= 2, [(q.path, q.params) for q in pages(emu)]
    n = len(emu.requests)
    again = ensure_data([symbol], tf, start, end, c, 0, store, progress=False)
    assert again.ok and again.requests == 0
    assert len(emu.requests) == n, "a second identical call must ask the exchange nothing"


@pytest.mark.parametrize("key", ["bybit", "bybit_futures"])
def test_bybit_weeks_and_months_ask_from_before_the_first_candle(
    emu: ExchangeEmulator, key: str
) -> None:
    """ccxt rounds Bybit's ``start`` up to a multiple of its timeframe length from the
    epoch (weeks from a Thursday, months as 30 days): one request that still starts at
    or before the first wanted candle, which is stored (issue #12: it was lost)."""
    symbol = "BTC/USDT:USDT" if key.endswith("futures") else "BTC/USDT"
    for tf, start, end in [("1w", "2024-01-01", "2024-02-29"), ("1M", "2024-02-01", "2024-08-31")]:
        emu.clear_requests()
        timeframe = Timeframe.parse(tf)
        lo, hi = timeframe.ceil(ms(start)), timeframe.ceil(ms(end) + DAY)
        store = open_storage("memory://")
        assert ensure_data([symbol], tf, start, end, client(emu, key), 0, store, progress=False).ok
        (page,) = [q for q in pages(emu) if q.params["start"] != "0"]  # not the listing
        assert int(page.params["start"]) <= lo
        got = store.read(DatasetKey(key, symbol, "ohlcv", tf))
        assert int(got.index[0].value // 1_000_000) == lo
        pd.testing.assert_frame_equal(got[COLUMNS], truth(emu, key, symbol, tf, lo, hi), check_freq=False)  # fmt: skip


def test_binance_spot_seconds(emu: ExchangeEmulator) -> None:
    store, c = open_storage("memory://"), client(emu, "binance")
    lo = T2024 + 5 * HOUR
    start = pd.Timestamp(lo + 500, unit="ms", tz="UTC")  # misaligned by half a second
    got = load_ohlcv("BTC/USDT", "1s", start, "2024-01-01T05:30:00Z", exchange=c, storage=store,
                     progress=False)  # fmt: skip
    want = truth(emu, "binance", "BTC/USDT", "1s", lo + 1000, lo + 1800 * 1000)
    assert len(want) == 1799
    pd.testing.assert_frame_equal(got[COLUMNS], want, check_freq=False)
    key = DatasetKey("binance", "BTC/USDT", "ohlcv", "1s")
    assert store.coverage(key) == IntervalSet([Interval(lo + 1000, lo + 1800 * 1000)])
    # two pages of 1000 seconds; the first shows the listing is earlier: no listing request
    starts = [int(q.params["startTime"]) for q in emu.requests if q.path.endswith("klines")]
    assert sorted(starts) == [lo + 1000, lo + 1001 * 1000]


@pytest.mark.parametrize(
    ("exchange", "tf", "needle"),
    [
        ("kraken", "1M", "not supported by kraken; allowed: 1m, 5m, 15m, 30m, 1h, 4h, 1d, 1w"),
        ("binance_futures", "1s", "USD-M futures klines have no 1s interval"),
        ("kraken", "2w", "15 days"),
        ("okx", "3d", "not supported by okx"),
    ],
)
def test_timeframes_the_exchange_does_not_serve_are_refused_before_any_request(
    emu: ExchangeEmulator, exchange: str, tf: str, needle: str
) -> None:
    store = open_storage("memory://")
    symbol = "BTC/USDT:USDT" if exchange.endswith("futures") else "BTC/USDT"
    with pytest.raises(InvalidRequest, match=needle):
        ensure_data([symbol], tf, "2024-01-01", "2024-01-31", client(emu, exchange), 0, store)
    assert emu.requests == [] and store.keys() == []


@pytest.mark.parametrize(
    ("tf", "meant"),
    [("1H", "1h"), ("1D", "1d"), ("1W", "1w"), ("1h\n", "1h"), (" 1h", "1h"), ("1hr", "1h"),
     ("60m", "1h"), ("1 month", "1M"), ("1mo", "1M"), ("4 hours", "4h")],
)  # fmt: skip
def test_case_mistakes_and_near_misses_say_what_was_meant(
    emu: ExchangeEmulator, tf: str, meant: str
) -> None:
    store = open_storage("memory://")
    with pytest.raises(InvalidRequest) as info:
        ensure_data(["BTC/USDT"], tf, "2024-01-01", "2024-01-31", client(emu, "binance"), 0, store)
    msg = str(info.value)
    assert f"timeframe {tf!r} is not supported by binance (did you mean {meant!r}?)" in msg
    assert msg.endswith(
        "allowed: 1s, 1m, 3m, 5m, 15m, 30m, 1h, 2h, 4h, 6h, 8h, 12h, 1d, 3d, 1w, 1M"
    )
    assert "\\d" not in msg and "^" not in msg
    assert emu.requests == [] and store.keys() == []


def test_minutes_and_months_are_both_valid_and_never_a_case_mistake(emu: ExchangeEmulator) -> None:
    c = client(emu, "binance")
    store = open_storage("memory://")
    for tf in ("1m", "1M"):
        r = ensure_data(["BTC/USDT"], tf, "2024-01-01", "2024-01-01", c, 0, store, progress=False)
        assert r.ok and r.timeframe == tf
    with pytest.raises(InvalidRequest) as info:  # Kraken has no months: no "did you mean '1m'"
        ensure_data(["BTC/USDT"], "1M", "2024-01-01", "2024-01-31", client(emu, "kraken"), 0, store)
    assert "did you mean" not in str(info.value)


def test_load_ohlcv_and_backfill_share_the_check() -> None:
    from mdcollect.ensure import backfill_async, check_timeframe

    assert check_timeframe("1w", "binance") == Timeframe(1, "w")
    assert check_timeframe("1M", "okx") == Timeframe(1, "M")
    with pytest.raises(InvalidRequest, match=r"did you mean '1h'\?"):
        load_ohlcv("BTC/USDT", "1H", "2024-01-01", "2024-01-02", exchange="binance",
                   storage="memory://")  # fmt: skip
    with pytest.raises(InvalidRequest, match=r"did you mean '1w'\?"):
        asyncio.run(backfill_async(["BTC/USDT"], "1W", "2024-01-01", "2024-02-01", "binance",
                                   "memory://"))  # fmt: skip


# -- the coverage rule: a page proves "no candle" only where it demonstrably answered ----


async def test_a_page_that_ignored_since_is_no_proof_of_absence() -> None:
    """Kraken's OHLC answers only its last 720 candles whatever ``since`` is: a candle job
    asked for an older range (``ensure_data`` refuses that strategy there; the engine's
    own rule is tested here) stores and covers the rows it has, and reports the rest,
    uncovered."""
    from mdcollect.backfill import OHLCVBackfill, run_jobs

    now = T2024 + 10 * DAY + 5 * HOUR
    with ExchangeEmulator(rate_limits=False, clock=lambda: now) as emu:
        oldest = Timeframe.parse("1d").floor(now) - 720 * DAY  # Kraken's first served day
        lo, hi = oldest - 5 * DAY, oldest + 10 * DAY
        key = DatasetKey("kraken", "BTC/USDT", "ohlcv", "1d")
        async with client(emu, "kraken", clock=lambda: now) as c:
            store = open_storage("memory://")
            job = OHLCVBackfill("kraken", "BTC/USDT", "1d", lo, hi)
            (r,) = await run_jobs([job], store, c, now=now, progress=False)
            assert not r.ok
            assert "left uncovered" in r.errors[0]
            assert store.coverage(key) == IntervalSet([Interval(oldest, hi)])
            want = truth(emu, "kraken", "BTC/USDT", "1d", oldest, hi)
            assert len(want) == 10
            pd.testing.assert_frame_equal(store.read(key)[COLUMNS], want, check_freq=False)
            every = truth(emu, "kraken", "BTC/USDT", "1d", lo, hi)
            assert_coverage_backed_by_rows(store, key, every)
            # a whole range out of reach: nothing stored, nothing covered
            old = open_storage("memory://")
            job = OHLCVBackfill("kraken", "BTC/USDT", "1d", ms("2021-01-01"), ms("2021-02-01"))
            (r2,) = await run_jobs([job], old, c, now=now, progress=False)
            assert not r2.ok and old.coverage(key) == IntervalSet() and len(old.read(key)) == 0


def test_recent_kraken_weeks_come_from_the_candle_endpoint(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    r = ensure_data(["BTC/USDT"], "1w", "2024-01-01", "2024-03-31", client(emu, "kraken"), 0,
                    store, progress=False)  # fmt: skip
    assert r.ok
    assert [q.path.rsplit("/", 1)[-1] for q in emu.requests if "Trades" in q.path or "OHLC" in q.path] == ["OHLC"]  # fmt: skip


@pytest.mark.parametrize("hours_before", [0, 3])
def test_an_outage_at_the_start_of_a_window_is_proven_from_an_earlier_candle(
    hours_before: int,
) -> None:
    """The first page starts after the outage, later than asked: that alone proves
    nothing; the same question from before the cursor shows the exchange has nothing there."""
    start = T2024 + 3 * DAY
    outage = (start - hours_before * HOUR, start + 5 * HOUR)
    spec = MarketSpec("OUT/USDT", outages=[outage], exchange="binance")
    with ExchangeEmulator(rate_limits=False, markets=[spec]) as emu:
        store, c = open_storage("memory://"), client(emu, "binance")
        r = ensure_data(["OUT/USDT"], "1h", "2024-01-04", "2024-01-05", c, 0, store, progress=False)
        key = DatasetKey("binance", "OUT/USDT", "ohlcv", "1h")
        assert r.ok, r["OUT/USDT"].errors
        want = truth(emu, "binance", "OUT/USDT", "1h", start, start + 2 * DAY)
        assert len(want) == 48 - 5
        pd.testing.assert_frame_equal(store.read(key)[COLUMNS], want, check_freq=False)
        assert store.coverage(key) == IntervalSet([Interval(start, start + 2 * DAY)])
        starts = [int(q.params["startTime"]) for q in emu.requests if q.path.endswith("klines")]
        # the first page starts late, so the listing is asked (since=0), then the
        # same question from before the cursor
        assert starts == [start, 0, start - 500 * HOUR]
        n = len(emu.requests)
        assert ensure_data(["OUT/USDT"], "1h", "2024-01-04", "2024-01-05", c, 0, store,
                           progress=False).requests == 0  # fmt: skip
        assert len(emu.requests) == n


def test_timeframe_parse_takes_no_surrounding_whitespace() -> None:
    for bad in ("1h\n", " 1h", "1h ", "1\th"):
        with pytest.raises(InvalidRequest, match=repr(bad).replace("\\", "\\\\")):
            Timeframe.parse(bad)
    assert Timeframe.parse("1h") == Timeframe(1, "h")


def test_month_windows_hold_at_most_a_page_and_start_on_the_first() -> None:
    from mdcollect.backfill import split_windows

    month = Timeframe.parse("1M")
    lo, hi = ms("2020-01-01"), ms("2026-01-01")
    windows = split_windows(IntervalSet([Interval(lo, hi)]), 12 * 28 * DAY, month.floor)
    assert windows[0].start == lo and windows[-1].end == hi
    for a, b in itertools.pairwise(windows):
        assert a.end == b.start
    for w in windows:
        assert month.floor(w.start) == w.start and month.floor(w.end) == w.end
        assert 1 <= month.count(w.start, w.end) <= 12
    assert len(windows) == 7  # 72 months, 11 a window (12 * 28 days < 12 months)
