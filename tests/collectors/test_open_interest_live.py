"""The live OpenInterestCollector writes closed periods to the ``open_interest`` dataset
that open-interest history fills, and agrees with the history row for row. Time is a
:class:`ManualClock` shared with the emulator: the test advances it a period at a time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from mdcollect import DatasetKey, Interval, IntervalSet, InvalidRequest, open_storage
from mdcollect.collectors import ManualClock, OpenInterestCollector
from mdcollect.ensure import load_open_interest
from mdcollect.exchanges import ExchangeClient, RetryPolicy
from mdcollect.testing import ExchangeEmulator, Fault

from .conftest import wait_until

PERP = "BTC/USDT:USDT"
FIVE = 300_000
#: 2024-12-30 12:02:00 UTC: two minutes into a 5m period
START = 1_735_560_000_000 + 2 * 60_000
ROUTES = {
    "binance_futures": "/futures/data/openInterestHist",
    "okx_futures": "/api/v5/rubik/stat/contracts/open-interest-history",
    "bybit_futures": "/v5/market/open-interest",
}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def emu(clock: ManualClock) -> Iterator[ExchangeEmulator]:
    with ExchangeEmulator(rate_limits=False, clock=clock.time_ms) as e:
        yield e


def client(emu: ExchangeEmulator, key: str, clock: ManualClock) -> ExchangeClient:
    return ExchangeClient(
        key, base_url=emu.url, enableRateLimit=False, clock=clock.time_ms,
        retry=RetryPolicy(max_attempts=5, base_delay=0.001, max_delay=0.01),
    )  # fmt: skip


def collector(emu: ExchangeEmulator, key: str, clock: ManualClock) -> OpenInterestCollector:
    return OpenInterestCollector(
        client(emu, key, clock), [PERP], period="5m", poll_lag=0, poll_interval=0.01,
        batch_rows=1, clock=clock,
    )  # fmt: skip


async def collect(
    c: OpenInterestCollector, clock: ManualClock, store: object, periods: int
) -> None:
    """Run ``c`` while the clock moves on ``periods`` periods, one at a time, each time
    waiting until the period just closed is written."""
    task = asyncio.create_task(c.run(store))  # type: ignore[arg-type]
    try:
        await wait_until(lambda: c.stats.rows_written >= 1, 10)
        for i in range(periods):
            clock.advance(FIVE / 1000)
            await wait_until(lambda i=i: c.stats.rows_written >= i + 2, 10)  # type: ignore[misc]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await c.client().close()


@pytest.mark.parametrize("key", list(ROUTES))
async def test_live_open_interest_agrees_with_history_row_for_row(
    emu: ExchangeEmulator, clock: ManualClock, key: str
) -> None:
    store = open_storage("memory://")
    c = collector(emu, key, clock)
    await collect(c, clock, store, 3)
    dataset = DatasetKey(key, PERP, "open_interest", "5m")
    live = store.read(dataset)
    first = START - START % FIVE - FIVE  # the period closed when it started
    t = live.index.asi8 // 1_000_000
    assert t.tolist() == [first + i * FIVE for i in range(4)]
    # covered: exactly the periods it got, and one request a period
    assert store.coverage(dataset) == IntervalSet([Interval(first, first + 4 * FIVE)])
    assert sum(1 for r in emu.requests if r.path == ROUTES[key]) == 4

    # the history of the same span, in another store: the same rows
    history = load_open_interest(
        PERP, "5m", first, first + 4 * FIVE, exchange=client(emu, key, clock),
        storage=open_storage("memory://"), progress=False, clock=clock.time_ms,
    )  # fmt: skip
    pd.testing.assert_frame_equal(history, live)
    expected = emu.market.open_interest(key.split("_")[0], PERP, FIVE, first, first + 4 * FIVE)
    if key == "bybit_futures":
        np.testing.assert_array_equal(live["open_interest"].to_numpy(), [a for _, a, _ in expected])

    # one truth: history asks nothing for what the live collector covered
    emu.clear_requests()
    again = load_open_interest(
        PERP, "5m", first, first + 4 * FIVE, exchange=client(emu, key, clock), storage=store,
        progress=False, clock=clock.time_ms,
    )  # fmt: skip
    pd.testing.assert_frame_equal(again, live)
    assert [r for r in emu.requests if r.path == ROUTES[key]] == []


async def test_a_poll_missing_periods_covers_only_what_it_got(
    emu: ExchangeEmulator, clock: ManualClock
) -> None:
    store = open_storage("memory://")
    c = collector(emu, "binance_futures", clock)
    # the second poll's answer comes back empty: nothing of it is covered, and the next
    # poll asks from the period it missed
    task = asyncio.create_task(c.run(store))
    dataset = DatasetKey("binance_futures", PERP, "open_interest", "5m")
    try:
        await wait_until(lambda: c.stats.rows_written >= 1, 10)
        emu.faults.add(Fault("empty", route=ROUTES["binance_futures"], count=1))
        clock.advance(FIVE / 1000)  # the empty answer
        await wait_until(lambda: len(emu.faults) == 0, 10)
        clock.advance(FIVE / 1000)
        await wait_until(lambda: c.stats.rows_written >= 3, 10)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await c.client().close()
    first = START - START % FIVE - FIVE
    assert (store.read(dataset).index.asi8 // 1_000_000).tolist() == [
        first, first + FIVE, first + 2 * FIVE
    ]  # fmt: skip
    assert store.coverage(dataset) == IntervalSet([Interval(first, first + 3 * FIVE)])


def test_a_period_the_exchange_does_not_keep_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="okx_futures keeps open interest at the periods"):
        OpenInterestCollector("okx_futures", [PERP], period="15m")
    with pytest.raises(InvalidRequest, match="period must be the exchange's open-interest"):
        OpenInterestCollector("okx_futures", [PERP], period=5)  # type: ignore[arg-type]
    c = OpenInterestCollector("bybit_futures", [PERP], period="1h")
    assert c.keys() == [DatasetKey("bybit_futures", PERP, "open_interest", "1h")]
