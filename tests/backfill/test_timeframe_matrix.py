"""Every emulated exchange x every timeframe it serves x aligned and misaligned starts:
stored rows and coverage against the emulator's ground truth, through real ccxt.

The ranges end a few candles before now, where every exchange (Kraken's last 720
candles included) can answer; ``test_timeframes.py`` covers deep ranges, pages and
the exchanges' quirks for ``1w``, ``1M`` and ``3d``.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from mdcollect import DatasetKey, Interval, IntervalSet, Timeframe, load_ohlcv, open_storage
from mdcollect.exchanges import exchange_info
from mdcollect.testing import ExchangeEmulator

from .test_timeframes import COLUMNS, assert_coverage_backed_by_rows, client, pages, truth

SYMBOLS = {
    "binance": "BTC/USDT",
    "binance_futures": "BTC/USDT:USDT",
    "okx": "BTC/USDT",
    "okx_futures": "BTC/USDT:USDT",
    "bybit": "BTC/USDT",
    "bybit_futures": "BTC/USDT:USDT",
    "kraken": "BTC/USDT",
    "coinbase": "BTC/USD",
}
CASES = [
    (exchange, tf, aligned)
    for exchange in SYMBOLS
    for tf in exchange_info(exchange).timeframes
    for aligned in (True, False)
]
NOW = 1_735_000_000_000  # 2024-12-24 00:26:40 UTC, a Tuesday, mid-month


@pytest.fixture
def emu() -> ExchangeEmulator:
    with ExchangeEmulator(rate_limits=False, clock=lambda: NOW) as e:
        yield e  # type: ignore[misc]


def utc(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


@pytest.mark.parametrize(
    ("exchange", "tf", "aligned"), CASES,
    ids=[f"{e}-{t}-{'aligned' if a else 'misaligned'}" for e, t, a in CASES],
)  # fmt: skip
def test_rows_and_coverage_equal_the_exchanges_candles(
    emu: ExchangeEmulator, exchange: str, tf: str, aligned: bool
) -> None:
    timeframe, symbol = Timeframe.parse(tf), SYMBOLS[exchange]
    # five candles, the last closing at least three candles before now
    first = timeframe.add(timeframe.floor(NOW), -8)
    lo = first if aligned else first + (timeframe.add(first, 1) - first) // 3
    hi = timeframe.add(first, 5) + (0 if aligned else 1)
    want_lo, want_hi = timeframe.ceil(lo), timeframe.ceil(hi)  # candles starting in [lo, hi)
    store, c = open_storage("memory://"), client(emu, exchange, clock=lambda: NOW)
    frame = load_ohlcv(symbol, tf, utc(lo), utc(hi), exchange=c, storage=store, progress=False,
                       clock=lambda: NOW)  # fmt: skip
    want = truth(emu, exchange, symbol, tf, want_lo, want_hi)
    assert len(want) == timeframe.count(want_lo, want_hi) == 5
    pd.testing.assert_frame_equal(frame[COLUMNS], want, check_freq=False)
    key = DatasetKey(exchange, symbol, "ohlcv", tf)
    assert store.coverage(key) == IntervalSet([Interval(want_lo, want_hi)])
    assert_coverage_backed_by_rows(store, key, want)
    assert 1 <= len(pages(emu)) <= 3, [(q.path, q.params) for q in pages(emu)]
    n = len(emu.requests)
    again = load_ohlcv(symbol, tf, utc(lo), utc(hi), exchange=c, storage=store, progress=False,
                       clock=lambda: NOW)  # fmt: skip
    pd.testing.assert_frame_equal(again, frame)
    assert len(emu.requests) == n, "a second identical call must ask the exchange nothing"
