"""Every kind of history through one table (``mdcollect.backfill.JOBS``): candles, funding
settlements and mark/index/premium candles ensured and loaded together, through real ccxt
against the emulator, compared with its ground truth."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mdcollect import (
    DatasetKey,
    Interval,
    IntervalSet,
    InvalidRequest,
    ensure_data,
    load,
    open_storage,
)
from mdcollect.backfill import CANDLE_KINDS, HISTORY_KINDS, JOBS, TIMEFRAME_KINDS
from mdcollect.exchanges import ExchangeClient, RetryPolicy
from mdcollect.testing import ExchangeEmulator

HOUR = 3_600_000
DAY = 24 * HOUR
NOW = 1_735_693_200_000  # 2025-01-01 01:00 UTC
LO = 1_733_011_200_000  # 2024-12-01
HI = LO + 10 * DAY  # the end of "2024-12-10"
SYMBOL = "BTC/USDT:USDT"
EX = "binance_futures"
#: Every kind of history, as an InvalidRequest for a bad kind names them.
ALLOWED_KINDS = "'ohlcv', 'trades', 'funding', 'mark', 'index', 'premium', 'open_interest'"
CANDLE_COLUMNS = ["open", "high", "low", "close"]


def _now() -> int:
    return NOW


@pytest.fixture
def emu() -> Iterator[ExchangeEmulator]:
    with ExchangeEmulator(rate_limits=False, clock=_now) as e:
        yield e


def client(emu: ExchangeEmulator, key: str = EX) -> ExchangeClient:
    retry = RetryPolicy(max_attempts=5, base_delay=0.001, max_delay=0.01)
    return ExchangeClient(key, base_url=emu.url, clock=_now, enableRateLimit=False, retry=retry)


def ensure(emu: ExchangeEmulator, store: Any, kinds: Any, key: str = EX) -> Any:
    return ensure_data(
        [SYMBOL], "1h", "2024-12-01", "2024-12-10", client(emu, key), padding_days=0,
        storage=store, progress=False, clock=_now, kinds=kinds,
    )  # fmt: skip


def ohlcv_truth(emu: ExchangeEmulator) -> pd.DataFrame:
    frame = emu.market.candles(EX, SYMBOL, "1h", LO, HI, closed_only=True).to_frame()
    return frame[[*CANDLE_COLUMNS, "volume"]]


def mark_truth(emu: ExchangeEmulator) -> pd.DataFrame:
    frame = emu.market.price_candles(EX, SYMBOL, "mark", "1h", LO, HI, closed_only=True)
    return frame.to_frame()[CANDLE_COLUMNS]


def funding_truth(emu: ExchangeEmulator) -> pd.DataFrame:
    events = emu.market.funding("binance", SYMBOL, LO, HI - 1)
    index = pd.DatetimeIndex(pd.to_datetime([t for t, _, _ in events], unit="ms", utc=True))
    return pd.DataFrame(
        {"rate": [r for _, r, _ in events], "mark_price": [p for _, _, p in events]},
        index=index.rename("timestamp"),
    )


def assert_funding(frame: pd.DataFrame, want: pd.DataFrame) -> None:
    assert len(frame) == len(want) == 30  # 8-hourly: three settlements a day
    assert frame.index.equals(want.index)
    np.testing.assert_array_equal(frame["rate"].to_numpy(), want["rate"].to_numpy())
    np.testing.assert_array_equal(frame["mark_price"].to_numpy(), want["mark_price"].to_numpy())


def test_the_kind_model_is_one_table() -> None:
    assert HISTORY_KINDS == (
        "ohlcv", "trades", "funding", "mark", "index", "premium", "open_interest"
    )  # fmt: skip
    assert set(JOBS) == set(HISTORY_KINDS)
    assert CANDLE_KINDS == ("ohlcv", "mark", "index", "premium")
    assert TIMEFRAME_KINDS[-1] == "open_interest" and TIMEFRAME_KINDS[:-1] == CANDLE_KINDS


def test_ensure_ohlcv_funding_and_mark_equal_ground_truth_then_ask_nothing(
    emu: ExchangeEmulator,
) -> None:
    store = open_storage("memory://")
    report = ensure(emu, store, ("ohlcv", "funding", "mark"))
    assert report.ok, report
    assert report.kinds == ("ohlcv", "funding", "mark")
    assert report.requests == len(emu.requests) > 0
    for kind in report.kinds:
        [one] = report.by_kind(kind)
        assert one.ok and one.symbol == SYMBOL and one.key.kind == kind

    candles = DatasetKey(EX, SYMBOL, "ohlcv", "1h")
    want = ohlcv_truth(emu)
    assert len(want) == 240
    pd.testing.assert_frame_equal(
        store.read(candles)[[*CANDLE_COLUMNS, "volume"]], want, check_freq=False
    )
    mark = DatasetKey(EX, SYMBOL, "mark", "1h")
    pd.testing.assert_frame_equal(
        store.read(mark)[CANDLE_COLUMNS], mark_truth(emu), check_freq=False
    )
    assert_funding(store.read(DatasetKey(EX, SYMBOL, "funding")), funding_truth(emu))
    for key in (candles, mark):
        assert store.coverage(key) == IntervalSet([Interval(LO, HI)])
    # the mark candles came from the mark-price endpoint, one page for 240 candles
    assert sum(1 for q in emu.requests if q.route == "markPriceKlines") == 1
    assert report.by_kind("mark")[0].candles_fetched == 240

    emu.clear_requests()
    again = ensure(emu, store, ("ohlcv", "funding", "mark"))
    assert again.ok and again.requests == 0
    assert emu.requests == []
    # each kind alone is covered too: still no request
    for kind in ("mark", "funding", "ohlcv"):
        assert ensure(emu, store, (kind,)).requests == 0
    assert emu.requests == []


def test_load_mark_fetches_then_reads_what_is_stored(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    frame = load("mark", SYMBOL, "2024-12-01", "2024-12-10", timeframe="1h",
                 exchange=client(emu), storage=store, progress=False, clock=_now)  # fmt: skip
    assert len(frame) == 240
    pd.testing.assert_frame_equal(frame[CANDLE_COLUMNS], mark_truth(emu), check_freq=False)
    assert str(frame.index.tz) == "UTC" and frame.index.name == "timestamp"
    emu.clear_requests()
    both = load("mark", [SYMBOL], "2024-12-01", "2024-12-10", timeframe="1h",
                exchange=client(emu), storage=store, progress=False, clock=_now)  # fmt: skip
    assert list(both) == [SYMBOL]
    pd.testing.assert_frame_equal(both[SYMBOL], frame)
    assert emu.requests == []


@pytest.mark.parametrize(
    ("kind", "timeframe", "match"),
    [
        ("mrk", "1h", r"kind 'mrk' is not valid; allowed: " + ALLOWED_KINDS),
        ("ticker", None, r"kind 'ticker' is not valid; allowed: " + ALLOWED_KINDS),
        ("mark", None, r"a timeframe such as '1h' is required to load 'mark'"),
        ("funding", "1h", r"kind 'funding' takes no timeframe"),
    ],
)
def test_load_refuses_bad_kinds_and_timeframes_before_any_request(
    emu: ExchangeEmulator, kind: str, timeframe: str | None, match: str
) -> None:
    store = open_storage("memory://")
    with pytest.raises(InvalidRequest, match=match):
        load(kind, SYMBOL, "2024-12-01", "2024-12-02", timeframe=timeframe,  # type: ignore[call-overload]
             exchange=client(emu), storage=store, progress=False, clock=_now)  # fmt: skip
    assert emu.requests == []
    assert store.keys() == []


@pytest.mark.parametrize(
    ("key", "kinds", "match"),
    [
        (EX, ("ohlcv", "mrk"), r"kind 'mrk' is not valid; allowed: " + ALLOWED_KINDS),
        (EX, "mark", r"kinds must be a non-empty list or tuple"),
        # OKX serves no premium-index candles: refused with the kinds it serves
        ("okx_futures", ("funding", "premium"), r"okx_futures does not serve 'premium' candles"),
        # a spot exchange has neither mark candles nor funding
        ("binance", ("ohlcv", "mark"), r"binance does not serve 'mark' candles"),
    ],
)
def test_ensure_refuses_bad_or_unserved_kinds_before_any_request(
    emu: ExchangeEmulator, key: str, kinds: Any, match: str
) -> None:
    store = open_storage("memory://")
    with pytest.raises(InvalidRequest, match=match):
        ensure(emu, store, kinds, key)
    assert emu.requests == []
    assert store.keys() == []


def test_load_ohlcv_names_columns_as_backtesting_expects(emu: ExchangeEmulator) -> None:
    from mdcollect import load_ohlcv

    store = open_storage("memory://")
    plain = load_ohlcv(SYMBOL, "1h", "2024-12-01", "2024-12-02", exchange=client(emu),
                       storage=store, progress=False, clock=_now)  # fmt: skip
    bt = load_ohlcv(SYMBOL, "1h", "2024-12-01", "2024-12-02", exchange=client(emu),
                    storage=store, progress=False, clock=_now, columns="backtesting")  # fmt: skip
    assert list(bt.columns) == ["Open", "High", "Low", "Close", "Volume"] and len(bt) == 48
    np.testing.assert_array_equal(
        bt.to_numpy(), plain[["open", "high", "low", "close", "volume"]].to_numpy()
    )
    assert bt.index.equals(plain.index)
    several = load_ohlcv([SYMBOL, "ETH/USDT:USDT"], "1h", "2024-12-01", "2024-12-01",
                         exchange=client(emu), storage=store, progress=False, clock=_now,
                         columns="backtesting")  # fmt: skip
    assert all(list(f.columns) == list(bt.columns) and len(f) == 24 for f in several.values())
    emu.clear_requests()
    with pytest.raises(
        InvalidRequest,
        match="columns 'Backtesting' is not valid; allowed: 'mdcollect', 'backtesting'",
    ):
        load_ohlcv(SYMBOL, "1h", "2024-12-03", "2024-12-04", exchange=client(emu),
                   storage=store, progress=False, clock=_now, columns="Backtesting")  # type: ignore[arg-type]  # fmt: skip
    assert emu.requests == []
