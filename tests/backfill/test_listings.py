"""The default markets' own listing days through the library: a range that starts before
a market was listed is covered whole, its rows start at the listing, and a second call
asks nothing (the emulator's AVAX, listed 2021-09-22, on every venue with perpetuals)."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest

from mdcollect import (
    DataCollectionStorage,
    DatasetKey,
    EnsureReport,
    Interval,
    IntervalSet,
    ensure_data,
    open_storage,
)
from mdcollect.exchanges import ExchangeClient, RetryPolicy
from mdcollect.testing import ExchangeEmulator

HOUR = 3_600_000
DAY = 24 * HOUR
LISTED = 1_632_268_800_000  # 2021-09-22, AVAX
NOW = LISTED + 20 * DAY
LO, HI = LISTED - 7 * DAY, LISTED + 8 * DAY  # "2021-09-15" .. "2021-09-29"
SYMBOL = "AVAX/USDT:USDT"


def _now() -> int:
    return NOW


@pytest.fixture(scope="module")
def emu() -> Iterator[ExchangeEmulator]:
    with ExchangeEmulator(rate_limits=False, clock=_now) as e:
        yield e


@pytest.mark.parametrize("key", ["binance_futures", "okx_futures", "bybit_futures"])
def test_a_range_from_before_the_listing_is_covered_from_its_start(
    emu: ExchangeEmulator, key: str
) -> None:
    retry = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.01)

    def ensure(store: DataCollectionStorage) -> EnsureReport:
        client = ExchangeClient(key, base_url=emu.url, clock=_now, enableRateLimit=False,
                                retry=retry)  # fmt: skip
        return ensure_data(
            [SYMBOL], "1h", "2021-09-15", "2021-09-29", client, padding_days=0, storage=store,
            progress=False, clock=_now, kinds=("ohlcv", "funding"),
        )  # fmt: skip

    store = open_storage("memory://")
    assert ensure(store).ok
    venue = emu.market.venue(key)
    candles = store.read(DatasetKey(key, SYMBOL, "ohlcv", "1h"))
    truth = emu.market.candles(venue, SYMBOL, "1h", LO, HI).to_frame(
        ("quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume", "vwap")
    )
    assert candles.index[0].value // 1_000_000 == LISTED and len(candles) == 8 * 24
    pd.testing.assert_frame_equal(candles, truth[list(candles.columns)], check_freq=False)
    funding = store.read(DatasetKey(key, SYMBOL, "funding"))
    assert list(funding.index.asi8 // 1_000_000) == [
        t for t, *_ in emu.market.funding(venue, SYMBOL, LO, HI - 1)
    ]
    assert funding.index[0].value // 1_000_000 == LISTED
    for kind, timeframe in (("ohlcv", "1h"), ("funding", None)):
        dataset = DatasetKey(key, SYMBOL, kind, timeframe)  # type: ignore[arg-type]
        assert store.coverage(dataset) == IntervalSet([Interval(LO, HI)])
    emu.clear_requests()
    assert ensure(store).requests == 0 and not emu.requests
