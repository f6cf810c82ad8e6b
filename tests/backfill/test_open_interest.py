"""Open-interest history end to end: real ccxt against the emulator's open-interest
endpoints, compared row for row with the emulator's ground truth
(``emu.market.open_interest``)."""

from __future__ import annotations

from collections.abc import Iterator
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
    load,
    load_open_interest,
    open_storage,
)
from mdcollect.backfill import JOBS, OpenInterestBackfill
from mdcollect.exchanges import ExchangeClient, RetryPolicy, exchange_info
from mdcollect.testing import ExchangeEmulator, Fault

MINUTE = 60_000
HOUR = 3_600_000
DAY = 24 * HOUR
NOW = 1_735_693_200_000  # 2025-01-01 01:00 UTC
END = 1_735_689_600_000  # the end of "2024-12-31", the end date every test asks for
START = "2024-12-22"  # within every venue's depth at 1h (Binance, OKX: 30 days)
LO = 1_734_825_600_000  # 2024-12-22

# exchange key, emulator venue, open-interest route, page size, OKX-style contracts (10**k)
VENUES = [
    ("binance_futures", "binance", "/futures/data/openInterestHist", 500),
    ("okx_futures", "okx", "/api/v5/rubik/stat/contracts/open-interest-history", 100),
    ("bybit_futures", "bybit", "/v5/market/open-interest", 200),
]
VENUE_IDS = [v[0] for v in VENUES]
#: OKX counts open interest in contracts of ctVal base units (the emulator's ctVal).
OKX_CONTRACTS = {"BTC/USDT:USDT": 2, "ETH/USDT:USDT": 1}


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


def truth(
    emu: ExchangeEmulator, venue: str, symbol: str, period: int, lo: int, hi: int
) -> pd.DataFrame:
    """The emulator's open interest in ``[lo, hi)``, as each venue's dataset holds it:
    contracts (OKX: of ctVal) and the value where the venue gives it (not Bybit)."""
    rows = emu.market.open_interest(venue, symbol, period, lo, hi)
    k = OKX_CONTRACTS[symbol] if venue == "okx" else 0
    index = pd.DatetimeIndex(pd.to_datetime([t for t, _, _ in rows], unit="ms", utc=True))
    return pd.DataFrame(
        {
            "open_interest": [round(a * 10**k, 3 - k) for _, a, _ in rows],
            "open_interest_value": [v if venue != "bybit" else np.nan for _, _, v in rows],
        },
        index=index.rename("timestamp"),
    )


def requests_to(emu: ExchangeEmulator, route: str) -> int:
    return sum(1 for r in emu.requests if r.path == route)


def ensure(
    emu: ExchangeEmulator, key: str, symbol: str, start: str, store: Any, **kw: Any
) -> mdcollect.EnsureReport:
    kw.setdefault("kinds", ("open_interest",))
    kw.setdefault("padding_days", 0)
    timeframe = kw.pop("timeframe", "1h")
    exchange = kw.pop("exchange", None) or client(emu, key)
    return ensure_data(
        [symbol], timeframe, start, "2024-12-31", exchange, storage=store, progress=False,
        clock=_now, **kw,
    )  # fmt: skip


def assert_matches(frame: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert len(frame) == len(expected) > 0
    assert frame.index.equals(expected.index)
    assert list(frame.columns) == ["open_interest", "open_interest_value"]
    np.testing.assert_array_equal(
        frame["open_interest"].to_numpy(), expected["open_interest"].to_numpy()
    )
    np.testing.assert_array_equal(
        frame["open_interest_value"].to_numpy(), expected["open_interest_value"].to_numpy()
    )


# -- every venue: ground truth, zero requests again, refill a deleted span ---------------


@pytest.mark.parametrize("symbol", ["BTC/USDT:USDT", "ETH/USDT:USDT"])
@pytest.mark.parametrize(("key", "venue", "route", "page"), VENUES, ids=VENUE_IDS)
def test_ensure_matches_truth_then_nothing_then_refills_a_deleted_span(
    emu: ExchangeEmulator, key: str, venue: str, route: str, page: int, symbol: str
) -> None:
    store = open_storage("memory://")
    report = ensure(emu, key, symbol, START, store)
    assert report.ok, report
    dataset = DatasetKey(key, symbol, "open_interest", "1h")
    expected = truth(emu, venue, symbol, HOUR, LO, END)
    assert len(expected) == 10 * 24
    assert_matches(store.read(dataset), expected)
    assert store.coverage(dataset) == IntervalSet([Interval(LO, END)])
    # one request a page of periods, the fewest there can be
    assert requests_to(emu, route) == -(-len(expected) // page)
    assert report.by_kind("open_interest")[0].candles_fetched == len(expected)

    emu.clear_requests()
    again = ensure(emu, key, symbol, START, store)
    assert again.requests == 0 and emu.requests == []

    # a 50-hour hole is refilled with one request, and the data is the same again
    hole = Interval(LO + 100 * HOUR, LO + 150 * HOUR)
    store.delete(dataset, hole.start, hole.end)
    assert len(store.read(dataset)) == len(expected) - 50
    refill = ensure(emu, key, symbol, START, store)
    assert refill.ok
    assert requests_to(emu, route) == 1
    asked = next(r for r in emu.requests if r.path == route)
    first = {"binance": "startTime", "okx": "begin", "bybit": "startTime"}[venue]
    assert int(asked.params[first]) in (hole.start, hole.start - 1)  # OKX's begin is exclusive
    assert_matches(store.read(dataset), expected)


@pytest.mark.parametrize(("key", "venue", "route", "page"), VENUES, ids=VENUE_IDS)
def test_a_5m_period_equals_the_1h_period_at_the_same_instant(
    emu: ExchangeEmulator, key: str, venue: str, route: str, page: int
) -> None:
    store = open_storage("memory://")
    start = "2024-12-31"  # OKX keeps 5m for 2 days
    assert ensure(emu, key, "BTC/USDT:USDT", start, store, timeframe="5m").ok
    assert ensure(emu, key, "BTC/USDT:USDT", start, store).ok
    five = store.read(DatasetKey(key, "BTC/USDT:USDT", "open_interest", "5m"))
    hour = store.read(DatasetKey(key, "BTC/USDT:USDT", "open_interest", "1h"))
    assert len(five) == 24 * 12 and len(hour) == 24
    pd.testing.assert_frame_equal(five.loc[hour.index], hour, check_freq=False)


def test_a_listing_inside_the_range_is_covered_after_two_agreeing_answers(
    emu: ExchangeEmulator,
) -> None:
    listed = LO + 3 * DAY + 30 * MINUTE
    emu.market.configure("bybit", "BTC/USDT:USDT", listed=listed)
    store = open_storage("memory://")
    report = ensure(emu, "bybit_futures", "BTC/USDT:USDT", START, store)
    assert report.ok
    dataset = DatasetKey("bybit_futures", "BTC/USDT:USDT", "open_interest", "1h")
    frame = store.read(dataset)
    assert_matches(frame, truth(emu, "bybit", "BTC/USDT:USDT", HOUR, LO, END))
    assert frame.index[0].value // 1_000_000 == listed + 30 * MINUTE
    assert store.coverage(dataset) == IntervalSet([Interval(LO, END)])
    # the first window (200 hours) missed periods: asked twice; the second window once
    assert requests_to(emu, "/v5/market/open-interest") == 3
    emu.clear_requests()
    assert ensure(emu, "bybit_futures", "BTC/USDT:USDT", START, store).requests == 0


# -- faults leave the same data as a clean run ------------------------------------------


@pytest.mark.parametrize(("key", "venue", "route", "page"), VENUES, ids=VENUE_IDS)
def test_faults_leave_the_same_data_as_a_clean_run(
    emu: ExchangeEmulator, key: str, venue: str, route: str, page: int
) -> None:
    symbol = "ETH/USDT:USDT"
    clean = open_storage("memory://")
    assert ensure(emu, key, symbol, START, clean).ok
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
    retry = RetryPolicy(max_attempts=8, base_delay=0.001, max_delay=0.01)
    report = ensure(
        emu, key, symbol, START, faulty, exchange=client(emu, key, timeout=1000, retry=retry)
    )
    assert report.ok, report
    assert len(emu.faults) == 0  # every fault was met
    dataset = DatasetKey(key, symbol, "open_interest", "1h")
    pd.testing.assert_frame_equal(faulty.read(dataset), clean.read(dataset))
    assert faulty.coverage(dataset) == clean.coverage(dataset)


@pytest.mark.parametrize("fault", ["empty", "short"])
def test_a_page_cut_short_or_empty_is_asked_again_not_covered(
    emu: ExchangeEmulator, fault: str
) -> None:
    route = "/futures/data/openInterestHist"
    emu.faults.add(Fault(fault, route=route, count=1))
    store = open_storage("memory://")
    assert ensure(emu, "binance_futures", "BTC/USDT:USDT", START, store).ok
    dataset = DatasetKey("binance_futures", "BTC/USDT:USDT", "open_interest", "1h")
    assert_matches(store.read(dataset), truth(emu, "binance", "BTC/USDT:USDT", HOUR, LO, END))
    assert requests_to(emu, route) == 2  # the page, and the page again


# -- depth and periods: refused before any request ---------------------------------------


def test_binance_older_than_30_days_is_refused_saying_how_far_back_it_goes(
    emu: ExchangeEmulator,
) -> None:
    with pytest.raises(
        InvalidRequest,
        match=r"binance_futures keeps open-interest history for 30 days: the oldest available "
        r"is 2024-12-02 02:00:00 UTC \(1h periods\); BTC/USDT:USDT from 2024-11-15 is older",
    ):
        ensure(emu, "binance_futures", "BTC/USDT:USDT", "2024-11-15", open_storage("memory://"))
    with pytest.raises(InvalidRequest, match=r"okx_futures keeps open-interest history for 2 days"):
        ensure(emu, "okx_futures", "BTC/USDT:USDT", "2024-12-25", "memory://", timeframe="5m")
    assert emu.requests == []


def test_the_emulator_refuses_an_old_start_as_binance_does(emu: ExchangeEmulator) -> None:
    import ccxt

    async def ask() -> None:
        async with client(emu, "binance_futures", retry=RetryPolicy(max_attempts=1)) as c:
            await c.exchange.load_markets()
            await c.exchange.fetch_open_interest_history("BTC/USDT:USDT", "1h", NOW - 31 * DAY, 10)

    with pytest.raises(ccxt.BadRequest, match="startTime"):
        mdcollect._sync.run_sync(ask())


def test_padding_reaches_back_no_further_than_the_depth(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    report = ensure(emu, "binance_futures", "BTC/USDT:USDT", "2024-12-20", store, padding_days=30)
    assert report.ok
    dataset = DatasetKey("binance_futures", "BTC/USDT:USDT", "open_interest", "1h")
    oldest = NOW - 30 * DAY + HOUR  # the depth, an hour of margin
    assert store.coverage(dataset) == IntervalSet([Interval(oldest, END)])
    # the other kinds keep their whole padding
    both = open_storage("memory://")
    kinds = ("ohlcv", "open_interest")
    assert ensure(emu, "binance_futures", "ETH/USDT:USDT", "2024-12-20", both, padding_days=30,
                  kinds=kinds).ok  # fmt: skip
    candles = both.coverage(DatasetKey("binance_futures", "ETH/USDT:USDT", "ohlcv", "1h"))
    assert candles.start == 1_734_652_800_000 - 30 * DAY  # 2024-12-20 less 30 days


def test_padding_of_okx_funding_stops_at_its_3_months_too(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    start = "2024-10-20"  # within the 90 days OKX keeps; 30 days of padding are not
    report = ensure(emu, "okx_futures", "BTC/USDT:USDT", start, store, padding_days=30,
                    kinds=("funding",))  # fmt: skip
    assert report.ok
    covered = store.coverage(DatasetKey("okx_futures", "BTC/USDT:USDT", "funding"))
    assert covered.start == NOW - 90 * DAY + DAY
    with pytest.raises(InvalidRequest, match="last 90 days only"):  # the user's own start
        ensure(emu, "okx_futures", "BTC/USDT:USDT", "2024-09-01", store, kinds=("funding",))


@pytest.mark.parametrize(
    ("key", "timeframe", "match"),
    [
        ("okx_futures", "15m", r"okx_futures keeps open interest at the periods 5m, 1h, 1d; "
         r"not '15m'"),
        ("bybit_futures", "2h", r"periods 5m, 15m, 30m, 1h, 4h, 1d; not '2h'"),
        ("binance_futures", "1m", r"periods 5m, 15m, 30m, 1h, 2h, 4h, 6h, 12h, 1d; not '1m'"),
        ("binance", "1h", r"binance has no open-interest history in mdcollect; exchanges that "
         r"have it: binance_futures, okx_futures, bybit_futures"),
    ],
)  # fmt: skip
def test_a_period_the_venue_does_not_keep_is_refused_naming_those_it_does(
    emu: ExchangeEmulator, key: str, timeframe: str, match: str
) -> None:
    with pytest.raises(InvalidRequest, match=match):
        ensure(emu, key, "BTC/USDT:USDT", "2024-12-30", "memory://", timeframe=timeframe)
    assert emu.requests == []


def test_a_spot_symbol_is_refused(emu: ExchangeEmulator) -> None:
    with pytest.raises(InvalidRequest, match="'BTC/USDT' is not listed on okx_futures swap"):
        ensure(emu, "okx_futures", "BTC/USDT", START, "memory://")
    assert requests_to(emu, VENUES[1][2]) == 0


# -- load_open_interest, load("open_interest"), the key ----------------------------------


def test_load_open_interest_and_load_ensure_first_and_agree(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    c = client(emu, "okx_futures")
    frame = load_open_interest("BTC/USDT:USDT", "1h", "2024-12-25", "2024-12-27", exchange=c,
                               storage=store, progress=False, clock=_now)  # fmt: skip
    lo = 1_735_084_800_000  # 2024-12-25
    assert_matches(frame, truth(emu, "okx", "BTC/USDT:USDT", HOUR, lo, lo + 3 * DAY))
    emu.clear_requests()
    both = load("open_interest", ["BTC/USDT:USDT"], "2024-12-25", "2024-12-27", timeframe="1h",
                exchange=c, storage=store, progress=False, clock=_now)  # fmt: skip
    assert emu.requests == []
    pd.testing.assert_frame_equal(both["BTC/USDT:USDT"], frame)
    with pytest.raises(InvalidRequest, match="a timeframe such as '1h' is required"):
        load("open_interest", "BTC/USDT:USDT", "2024-12-25", "2024-12-27", exchange=c)


async def test_load_open_interest_async(emu: ExchangeEmulator) -> None:
    async with client(emu, "bybit_futures") as c:
        frame = await mdcollect.load_open_interest_async(
            "BTC/USDT:USDT", "4h", "2024-12-25", "2024-12-26", exchange=c, storage="memory://",
            progress=False, clock=_now,
        )  # fmt: skip
    assert len(frame) == 12


def test_an_open_interest_key_needs_a_timeframe() -> None:
    key = DatasetKey("binance_futures", "BTC/USDT:USDT", "open_interest", "5m")
    assert str(key) == "binance_futures:open_interest:5m:BTC/USDT:USDT"
    assert DatasetKey.parse(str(key)) == key
    with pytest.raises(InvalidRequest, match="a open_interest DatasetKey needs a timeframe"):
        DatasetKey("binance_futures", "BTC/USDT:USDT", "open_interest")


def test_open_interest_job_is_the_table_entry() -> None:
    info = exchange_info("bybit_futures")
    job = JOBS["open_interest"](
        info, "BTC/USDT:USDT", mdcollect.Timeframe.parse("1h"), NOW - DAY, NOW, "auto", NOW
    )
    assert isinstance(job, OpenInterestBackfill)
    assert job.window_ms(info) == 200 * HOUR
