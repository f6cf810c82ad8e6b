"""Trades backfill under pages cut short or empty: a page with fewer trades than asked
for is not the end of a window, so coverage never claims trades that are not stored.
Through real ccxt against the emulator, compared with its ground truth."""

from __future__ import annotations

import collections

import pandas as pd
import pytest

from mdcollect import DatasetKey, Interval, IntervalSet, ensure_data, open_storage
from mdcollect._schema import normalize_frame
from mdcollect.exchanges import ExchangeClient, RetryPolicy
from mdcollect.testing import ExchangeEmulator, Fault

HOUR = 3_600_000
DAY = 24 * HOUR
NOW = 1_735_693_200_000  # 2025-01-01 01:00 UTC
LO = 1_733_011_200_000  # 2024-12-01
HI = LO + DAY

#: (exchange key, symbol, trades route, empty answers in a row). After the first page,
#: each page is asked from a trade known to exist, so an empty answer there is asked
#: again however often it comes; OKX's first page is asked before a time, where two
#: answers that agree are taken: one empty answer.
CASES = [
    ("binance", "BTC/USDT", "aggTrades", 2),
    ("binance_futures", "ETH/USDT:USDT", "aggTrades", 2),
    ("kraken", "BTC/USDT", "Trades", 2),
    ("okx", "BTC/USDT", "market/history-trades", 1),
]


def _now() -> int:
    return NOW


@pytest.mark.parametrize(("key", "symbol", "route", "empties"), CASES, ids=[c[0] for c in CASES])
def test_short_and_empty_trades_pages_never_end_a_window(
    key: str, symbol: str, route: str, empties: int
) -> None:
    with ExchangeEmulator(rate_limits=False, clock=_now) as emu:
        emu.faults.add(Fault("short", route=route, count=1))
        emu.faults.add(Fault("empty", route=route, count=empties))
        retry = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.01)
        client = ExchangeClient(key, base_url=emu.url, clock=_now, enableRateLimit=False,
                                retry=retry)  # fmt: skip
        store = open_storage("memory://")
        report = ensure_data(
            [symbol], "1h", "2024-12-01", "2024-12-01", client, padding_days=0,
            storage=store, progress=False, clock=_now, kinds=("trades",),
        )  # fmt: skip
        met = collections.Counter(q.fault for q in emu.requests if q.fault)
        truth = emu.market.trades(key, symbol, LO, HI).to_frame()
    assert report.ok, report
    assert met == {"short": 1, "empty": empties}  # every fault was met
    dataset = DatasetKey(key, symbol, "trades")
    assert store.coverage(dataset) == IntervalSet([Interval(LO, HI)])
    # coverage never runs ahead of the rows: every trade of the covered day is stored
    assert len(truth) > 1000
    pd.testing.assert_frame_equal(store.read(dataset), normalize_frame("trades", truth))
