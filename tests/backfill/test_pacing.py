"""Backfill rides the rate limit: windows of one symbol in flight together, the
exchange's real rolling budget spent (and a lower one obeyed), no page too many."""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

import pandas as pd
import pytest

from mdcollect import (
    DatasetKey,
    Interval,
    IntervalSet,
    ensure_data,
    ensure_data_async,
    open_storage,
)
from mdcollect.exchanges import ExchangeClient, RetryPolicy
from mdcollect.testing import ExchangeEmulator, Fault, Limit

DAY = 86_400_000
MINUTE = 60_000
JAN1 = 1_672_531_200_000  # 2023-01-01
PAGE = 1000


def client(emu: ExchangeEmulator, **kw: Any) -> ExchangeClient:
    kw.setdefault("enableRateLimit", False)
    kw.setdefault("retry", RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.01))
    return ExchangeClient("binance", base_url=emu.url, **kw)


def truth(emu: ExchangeEmulator, sym: str, lo: int, hi: int) -> pd.DataFrame:
    # Binance klines carry the quote volume, trade count and taker-buy volumes
    return emu.market.candles("binance", sym, "1m", lo, hi).to_frame(
        ("quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume")
    )


def klines(emu: ExchangeEmulator) -> list[Any]:
    return [r for r in emu.requests if r.route == "klines"]


@pytest.mark.parametrize(
    ("end_date", "days", "pages"),
    [("2023-01-25", 25, 36), ("2023-01-03", 3, 5)],  # 36,000 candles exactly; 4,320
)
def test_pages_stop_at_the_range_end(
    emu: ExchangeEmulator, end_date: str, days: int, pages: int
) -> None:
    store = open_storage("memory://")
    r = ensure_data(["BTC/USDT"], "1m", "2023-01-01", end_date, client(emu), 0, store,
                    progress=False)  # fmt: skip
    assert r.ok
    assert len(klines(emu)) == pages == -(-days * 1440 // PAGE)
    # every page asked for at most the range's end, and no page twice
    asked = [int(q.params["startTime"]) for q in klines(emu)]
    assert sorted(asked) == [JAN1 + i * PAGE * MINUTE for i in range(pages)]
    assert max(int(q.params["endTime"]) for q in klines(emu)) == JAN1 + days * DAY - 1
    key = DatasetKey("binance", "BTC/USDT", "ohlcv", "1m")
    pd.testing.assert_frame_equal(
        store.read(key), truth(emu, "BTC/USDT", JAN1, JAN1 + days * DAY), check_freq=False
    )


def test_cancel_with_four_windows_in_flight_then_resume(emu: ExchangeEmulator) -> None:
    """One symbol's windows are fetched four at a time; cancelling then leaves
    coverage a prefix of the rows, and the next run fetches only the missing pages."""
    store = open_storage("memory://")
    key = DatasetKey("binance", "BTC/USDT", "ohlcv", "1m")
    days = 10  # 14,400 candles: 15 pages
    lo, hi = JAN1, JAN1 + days * DAY
    c = client(emu)
    emu.faults.add(Fault("slow", route="klines", delay=0.3))

    async def run_and_cancel() -> int:
        written = asyncio.Event()

        def on_progress(job: Any, done: int, total: int) -> None:
            written.set()

        task = asyncio.create_task(
            ensure_data_async(["BTC/USDT"], "1m", "2023-01-01", "2023-01-10", c, 0, store,
                              progress=False, progress_callback=on_progress)
        )  # fmt: skip
        await asyncio.wait_for(written.wait(), 60)
        deadline = time.monotonic() + 30
        # sent by the client, not yet answered by the emulator: in flight
        while c.request_count - len(emu.requests) < 4:
            assert time.monotonic() < deadline, "never 4 windows in flight"
            await asyncio.sleep(0.005)
        in_flight = c.request_count - len(emu.requests)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return in_flight

    assert asyncio.run(run_and_cancel()) >= 4
    emu.faults.clear()
    # the cancelled run's requests are still being answered (0.3 s each): once the
    # emulator has logged them all, the log below holds only the resumed run's
    deadline = time.monotonic() + 30
    while len(emu.requests) < c.request_count:
        assert time.monotonic() < deadline, "the emulator never answered the cancelled requests"
        time.sleep(0.01)
    cov = store.coverage(key)
    got = store.read(key)
    # coverage is a prefix from the start, never ahead of the rows
    assert len(cov) == 1 and cov.start == lo and cov.end is not None and cov.end < hi
    assert len(got) == (cov.end - lo) // MINUTE
    assert got.index[-1] < pd.Timestamp(cov.end, unit="ms", tz="UTC")
    missing_pages = -(-(hi - cov.end) // (PAGE * MINUTE))
    emu.clear_requests()
    r = ensure_data(["BTC/USDT"], "1m", "2023-01-01", "2023-01-10", client(emu), 0, store,
                    progress=False)  # fmt: skip
    assert r.ok
    assert len(klines(emu)) == missing_pages
    pd.testing.assert_frame_equal(store.read(key), truth(emu, "BTC/USDT", lo, hi),
                                  check_freq=False)  # fmt: skip
    assert store.coverage(key) == IntervalSet([Interval(lo, hi)])


def test_a_budget_lower_than_published_gets_no_429() -> None:
    """The emulator allows 300 weight per 10 s (Binance publishes 6,000 a minute) and
    says so in exchangeInfo and its X-MBX-USED-WEIGHT-10S header: the backfill paces
    by it (a klines page weighs 2) and is never refused."""
    with ExchangeEmulator(rate_limits={"binance.spot": Limit(300, 10.0)}) as emu:
        store = open_storage("memory://")
        c = emu.client("binance", retry=RetryPolicy(max_attempts=6, base_delay=0.01))
        # 2 symbols x 50 days: 144 pages, 288 weight + exchangeInfo 20: over one window
        r = ensure_data(["BTC/USDT", "ETH/USDT"], "1m", "2023-01-01", "2023-02-19", c, 0,
                        store, progress=False)  # fmt: skip
        statuses = collections.Counter(q.status for q in emu.requests)
        assert statuses == {200: len(emu.requests)}, statuses
        assert r.ok
        assert sum(q.weight for q in emu.requests) > 300
        for sym in ("BTC/USDT", "ETH/USDT"):
            key = DatasetKey("binance", sym, "ohlcv", "1m")
            pd.testing.assert_frame_equal(
                store.read(key), truth(emu, sym, JAN1, JAN1 + 50 * DAY), check_freq=False
            )
