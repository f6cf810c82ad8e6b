"""Funding-rate history end to end: real ccxt against the emulator's funding endpoints,
compared row for row with the emulator's ground truth (``emu.market.funding``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

import mdcollect
from mdcollect import DatasetKey, InvalidRequest, ensure_data, load, load_funding, open_storage
from mdcollect.backfill import JOBS, FundingBackfill
from mdcollect.exchanges import ExchangeClient, RetryPolicy
from mdcollect.testing import ExchangeEmulator, Fault

HOUR = 3_600_000
DAY = 24 * HOUR
NOW = 1_735_693_200_000  # 2025-01-01 01:00 UTC
END = 1_735_689_600_000  # the end of "2024-12-31", the end date every test asks for
#: Every kind of history, as an InvalidRequest for a bad kind names them.
ALLOWED_KINDS = "'ohlcv', 'trades', 'funding', 'mark', 'index', 'premium', 'open_interest'"
CHANGE = 1_717_200_000_000  # 2024-06-01: the default ETH perps go from 8-hourly to 4-hourly

# exchange key, emulator venue, funding route, a start within the exchange's depth
VENUES = [
    ("binance_futures", "binance", "/fapi/v1/fundingRate", "2024-01-01"),
    ("okx_futures", "okx", "/api/v5/public/funding-rate-history", "2024-10-10"),
    ("bybit_futures", "bybit", "/v5/market/funding/history", "2024-01-01"),
]
VENUE_IDS = [v[0] for v in VENUES]


def _now() -> int:
    return NOW


@pytest.fixture
def emu() -> Iterator[ExchangeEmulator]:
    with ExchangeEmulator(rate_limits=False, clock=_now) as e:
        yield e


def client(emu: ExchangeEmulator, key: str, **kw: Any) -> ExchangeClient:
    kw.setdefault("enableRateLimit", False)
    kw.setdefault("retry", RetryPolicy(max_attempts=5, base_delay=0.001, max_delay=0.01))
    return ExchangeClient(key, base_url=emu.url, clock=_now, **kw)


def truth(emu: ExchangeEmulator, venue: str, symbol: str, lo: int, hi: int) -> pd.DataFrame:
    """The emulator's settlements in ``[lo, hi)``."""
    events = emu.market.funding(venue, symbol, lo, hi - 1)
    index = pd.DatetimeIndex(pd.to_datetime([t for t, _, _ in events], unit="ms", utc=True))
    return pd.DataFrame(
        {"rate": [r for _, r, _ in events], "mark_price": [p for _, _, p in events]},
        index=index.rename("timestamp"),
    )


def funding_requests(emu: ExchangeEmulator, route: str) -> int:
    return sum(1 for r in emu.requests if r.path == route)


def ensure(emu: ExchangeEmulator, key: str, symbol: str, start: str, store: Any, **kw: Any) -> Any:
    kw.setdefault("kinds", ("funding",))
    return ensure_data(
        [symbol], "1h", start, "2024-12-31", client(emu, key), padding_days=0, storage=store,
        progress=False, clock=_now, **kw,
    )  # fmt: skip


def assert_matches(frame: pd.DataFrame, expected: pd.DataFrame, with_mark: bool) -> None:
    assert len(frame) == len(expected) > 0
    assert frame.index.equals(expected.index)
    np.testing.assert_array_equal(frame["rate"].to_numpy(), expected["rate"].to_numpy())
    if with_mark:  # only Binance gives the mark price at the settlement
        np.testing.assert_array_equal(
            frame["mark_price"].to_numpy(), expected["mark_price"].to_numpy()
        )
    else:
        assert frame["mark_price"].isna().all()


# -- every venue: ground truth, zero requests again, refill a deleted span ---------------


@pytest.mark.parametrize("symbol", ["BTC/USDT:USDT", "ETH/USDT:USDT"])
@pytest.mark.parametrize(("key", "venue", "route", "start"), VENUES, ids=VENUE_IDS)
def test_ensure_matches_truth_then_nothing_then_refills_a_deleted_span(
    emu: ExchangeEmulator, key: str, venue: str, route: str, start: str, symbol: str
) -> None:
    store = open_storage("memory://")
    report = ensure(emu, key, symbol, start, store)
    assert report.ok, report
    dataset = DatasetKey(key, symbol, "funding")
    lo = int(pd.Timestamp(start, tz="UTC").value // 1_000_000)
    hi = END
    expected = truth(emu, venue, symbol, lo, hi)
    assert_matches(store.read(dataset), expected, with_mark=venue == "binance")
    assert report.by_kind("funding")[0].candles_fetched == len(expected)
    page = JOBS["funding"](
        mdcollect.exchanges.exchange_info(key), symbol, mdcollect.Timeframe.parse("1h"),
        lo, hi, "auto", NOW,
    ).window_ms(mdcollect.exchanges.exchange_info(key)) // (8 * HOUR) + 1  # fmt: skip
    if symbol == "BTC/USDT:USDT":  # 8-hourly: one request a window, a window a page less one
        windows = -(-(hi - lo) // ((page - 1) * 8 * HOUR))
        assert funding_requests(emu, route) == windows

    emu.clear_requests()
    again = ensure(emu, key, symbol, start, store)
    assert again.requests == 0 and emu.requests == []

    # a 10-day hole is refilled with one request, and the data is the same again
    hole_lo, hole_hi = lo + 20 * DAY + 5 * HOUR, lo + 30 * DAY + 5 * HOUR
    store.delete(dataset, hole_lo, hole_hi)
    assert len(store.read(dataset)) < len(expected)
    refill = ensure(emu, key, symbol, start, store)
    assert refill.ok
    assert funding_requests(emu, route) == 1
    assert_matches(store.read(dataset), expected, with_mark=venue == "binance")


def test_a_year_of_8_hourly_funding_on_binance_is_two_requests(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    report = ensure(emu, "binance_futures", "BTC/USDT:USDT", "2024-01-01", store)
    assert report.ok
    frame = store.read(DatasetKey("binance_futures", "BTC/USDT:USDT", "funding"))
    assert len(frame) == 366 * 3  # 2024 is a leap year
    assert funding_requests(emu, "/fapi/v1/fundingRate") == 2
    assert report.requests == 3  # + the markets


@pytest.mark.parametrize(("key", "venue", "route", "start"), VENUES, ids=VENUE_IDS)
def test_a_symbol_whose_interval_changed_stays_exact(
    emu: ExchangeEmulator, key: str, venue: str, route: str, start: str
) -> None:
    store = open_storage("memory://")
    lo = CHANGE - 40 * DAY if venue != "okx" else NOW - 80 * DAY
    if venue == "okx":  # OKX keeps 3 months: move the change inside them
        at = (NOW - 40 * DAY) // DAY * DAY
        emu.market.configure(venue, "ETH/USDT:USDT", funding_intervals=((at, 4 * HOUR),))
    else:
        at = CHANGE
    start_date = pd.Timestamp(lo, unit="ms", tz="UTC").strftime("%Y-%m-%d")
    report = ensure(emu, key, "ETH/USDT:USDT", start_date, store)
    assert report.ok
    frame = store.read(DatasetKey(key, "ETH/USDT:USDT", "funding"))
    ts = frame.index.asi8 // 1_000_000
    steps = np.diff(ts)
    assert set(steps[ts[1:] <= at].tolist()) == {8 * HOUR}
    assert set(steps[ts[:-1] >= at].tolist()) == {4 * HOUR}
    lo_ms = int(pd.Timestamp(start_date, tz="UTC").value // 1_000_000)
    assert_matches(frame, truth(emu, venue, "ETH/USDT:USDT", lo_ms, END), venue == "binance")


@pytest.mark.parametrize(("key", "venue", "route", "start"), VENUES, ids=VENUE_IDS)
def test_a_listing_inside_the_range_is_covered_after_two_agreeing_answers(
    emu: ExchangeEmulator, key: str, venue: str, route: str, start: str
) -> None:
    lo = int(pd.Timestamp(start, tz="UTC").value // 1_000_000)
    listed = lo + 20 * DAY + 3 * HOUR
    emu.market.configure(venue, "BTC/USDT:USDT", listed=listed)
    store = open_storage("memory://")
    report = ensure(emu, key, "BTC/USDT:USDT", start, store)
    assert report.ok
    dataset = DatasetKey(key, "BTC/USDT:USDT", "funding")
    assert_matches(
        store.read(dataset), truth(emu, venue, "BTC/USDT:USDT", lo, END), venue == "binance"
    )
    assert store.read(dataset).index[0].value // 1_000_000 == listed - 3 * HOUR + 8 * HOUR
    assert store.coverage(dataset) == mdcollect.IntervalSet([mdcollect.Interval(lo, END)])
    emu.clear_requests()
    assert ensure(emu, key, "BTC/USDT:USDT", start, store).requests == 0


# -- faults leave the same data as a clean run ------------------------------------------


@pytest.mark.parametrize(("key", "venue", "route", "start"), VENUES, ids=VENUE_IDS)
def test_faults_leave_the_same_data_as_a_clean_run(
    emu: ExchangeEmulator, key: str, venue: str, route: str, start: str
) -> None:
    symbol = "ETH/USDT:USDT"
    clean = open_storage("memory://")
    assert ensure(emu, key, symbol, start, clean).ok
    faulty = open_storage("memory://")
    for fault in (
        Fault("503", route=route, count=2),
        Fault("429", route=route, count=1, retry_after=0.01),
        Fault("timeout", route=route, count=1, delay=3),
        Fault("drop", route=route, count=1),
        Fault("malformed", route=route, count=1),
        Fault("empty", route=route, count=1),
        Fault("short", route=route, count=1),
    ):
        emu.faults.add(fault)
    # the faults may all meet the same request one after another: retries enough for them
    retry = RetryPolicy(max_attempts=8, base_delay=0.001, max_delay=0.01)
    report = ensure_data(
        [symbol], "1h", start, "2024-12-31", client(emu, key, timeout=1000, retry=retry),
        padding_days=0,
        storage=faulty, progress=False, clock=_now, kinds=("funding",),
    )  # fmt: skip
    assert report.ok, report
    assert len(emu.faults) == 0  # every fault was met
    dataset = DatasetKey(key, symbol, "funding")
    pd.testing.assert_frame_equal(faulty.read(dataset), clean.read(dataset))
    assert faulty.coverage(dataset) == clean.coverage(dataset)


# -- depth, bad kinds: refused before any request ----------------------------------------


def test_okx_funding_older_than_3_months_is_refused_before_any_request(
    emu: ExchangeEmulator,
) -> None:
    with pytest.raises(InvalidRequest, match=r"last 90 days only.*oldest start it can fill now"):
        ensure(emu, "okx_futures", "BTC/USDT:USDT", "2024-06-01", open_storage("memory://"))
    assert emu.requests == []


@pytest.mark.parametrize(
    ("kinds", "match"),
    [
        (("fundng",), r"kind 'fundng' is not valid; allowed: " + ALLOWED_KINDS),
        ("funding", r"kinds must be a non-empty list or tuple"),
        ((), r"kinds must not be empty"),
        (("ticker",), r"kind 'ticker' is not valid"),
    ],
)
def test_bad_kinds_are_refused_before_any_request(
    emu: ExchangeEmulator, kinds: Any, match: str
) -> None:
    with pytest.raises(InvalidRequest, match=match):
        ensure(emu, "binance_futures", "BTC/USDT:USDT", "2024-12-01", "memory://", kinds=kinds)
    with pytest.raises(InvalidRequest, match="allowed: " + ALLOWED_KINDS):
        load("fundng", "BTC/USDT:USDT", "2024-12-01", "2024-12-02",  # type: ignore[call-overload]
             exchange=client(emu, "binance_futures"), storage="memory://")  # fmt: skip
    assert emu.requests == []


def test_funding_on_an_exchange_without_it_is_refused(emu: ExchangeEmulator) -> None:
    with pytest.raises(InvalidRequest, match="binance_futures, okx_futures, bybit_futures"):
        ensure(emu, "binance", "BTC/USDT", "2024-12-01", "memory://")
    assert emu.requests == []


# -- several kinds in one call; load(kind, ...) ------------------------------------------


def test_ensure_several_kinds_pads_each_and_reports_per_kind(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    kw: dict[str, Any] = dict(
        exchange=client(emu, "binance_futures"), padding_days=3, storage=store, progress=False,
        clock=_now, kinds=("ohlcv", "funding"),
    )  # fmt: skip
    report = ensure_data(["BTC/USDT:USDT", "ETH/USDT:USDT"], "1h", "2024-12-20", "2024-12-21", **kw)
    assert report.ok and report.kinds == ("ohlcv", "funding")
    padded_lo = 1_734_652_800_000 - 3 * DAY  # 2024-12-20 less the padding
    for kind in ("ohlcv", "funding"):
        part = report.by_kind(kind)
        assert [s.symbol for s in part] == ["BTC/USDT:USDT", "ETH/USDT:USDT"]
        assert all(s.key.kind == kind and s.required is not None for s in part)
        assert {s.required.start for s in part if s.required} == {padded_lo}
    candles = store.read(DatasetKey("binance_futures", "BTC/USDT:USDT", "ohlcv", "1h"))
    funding = store.read(DatasetKey("binance_futures", "BTC/USDT:USDT", "funding"))
    assert len(candles) == 5 * 24 and len(funding) == 5 * 3
    emu.clear_requests()
    assert (
        ensure_data(
            ["BTC/USDT:USDT", "ETH/USDT:USDT"], "1h", "2024-12-20", "2024-12-21", **kw
        ).requests
        == 0
    )
    assert emu.requests == []


def test_load_funding_and_load_ensure_first_and_agree(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    c = client(emu, "bybit_futures")
    frame = load_funding("BTC/USDT:USDT", "2024-12-01", "2024-12-10", exchange=c, storage=store,
                         progress=False, clock=_now)  # fmt: skip
    lo = 1_733_011_200_000  # 2024-12-01
    assert_matches(frame, truth(emu, "bybit", "BTC/USDT:USDT", lo, lo + 10 * DAY), False)
    emu.clear_requests()
    both = load("funding", ["BTC/USDT:USDT"], "2024-12-01", "2024-12-10", exchange=c,
                storage=store, progress=False, clock=_now)  # fmt: skip
    assert emu.requests == []
    pd.testing.assert_frame_equal(both["BTC/USDT:USDT"], frame)
    with pytest.raises(InvalidRequest, match="takes no timeframe"):
        load("funding", "BTC/USDT:USDT", "2024-12-01", "2024-12-10", timeframe="1h", exchange=c)
    with pytest.raises(InvalidRequest, match="timeframe such as '1h' is required"):
        load("ohlcv", "BTC/USDT:USDT", "2024-12-01", "2024-12-10", exchange=c)


def test_load_trades_ensures_the_trades(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    lo = 1_735_603_200_000  # 2024-12-31
    frame = mdcollect.load_trades(
        "BTC/USDT", lo, lo + HOUR, exchange=client(emu, "binance"), storage=store,
        progress=False, clock=_now,
    )  # fmt: skip
    expected = emu.market.trades("binance", "BTC/USDT", lo, lo + HOUR)
    assert len(frame) == len(expected) > 0
    np.testing.assert_array_equal(frame["price"].to_numpy(), np.asarray(expected.price))


def test_funding_job_is_the_table_entry() -> None:
    info = mdcollect.exchanges.exchange_info("binance_futures")
    job = JOBS["funding"](
        info, "BTC/USDT:USDT", mdcollect.Timeframe.parse("1h"), NOW - DAY, NOW, "auto", NOW
    )
    assert isinstance(job, FundingBackfill)
    assert job.window_ms(info) == 999 * 8 * HOUR
