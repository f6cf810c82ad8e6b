"""``DataCollector(audit_interval=...)``: the datasets the collectors write are audited on
the supervisor's clock and what is found is refilled through the gap refiller, at most
``audit_max_refills`` spans waiting at once and none shorter than ``audit_min_gap``;
``status()["audit"]`` says so. The emulator and the supervisor share a ManualClock
(the market moves only when the test advances it); the collector is a real
TradesCollector on the emulator's websocket. The hole is made with the public API:
rows deleted, then their span covered again without rows (what a bug claiming
coverage does)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

from mdcollect import (
    DataCollector,
    DatasetKey,
    Interval,
    IntervalSet,
    InvalidRequest,
    audit,
    open_storage,
)
from mdcollect.collectors import ManualClock, TradesCollector
from mdcollect.storage import DataCollectionStorage
from mdcollect.storage.memory import MemoryStorage
from mdcollect.testing import ExchangeEmulator, MarketSpec

from .conftest import client, wait_until

SYM = "BTC/USDT"
CANDLES = DatasetKey("binance", SYM, "ohlcv", "1s")
FAST = {"batch_seconds": 0.2, "poll_interval": 0.2, "flush_timeout": 10.0}
SECOND = 1000
EVERY = 5.0  # the audit interval, in seconds of the test's clock


@pytest.fixture
def frozen() -> Iterator[tuple[ManualClock, ExchangeEmulator]]:
    clock = ManualClock()
    markets = [MarketSpec(SYM, 30_000.0, trades_per_minute=600)]
    with ExchangeEmulator(seed=5, markets=markets, rate_limits=False, clock=clock.time_ms) as e:
        yield clock, e


def _collector(
    emu: ExchangeEmulator, clock: ManualClock, **options: object
) -> tuple[DataCollector, TradesCollector, DataCollectionStorage]:
    store = open_storage("memory://")
    c = TradesCollector(client(emu), [SYM], mode="ws", candles=["1s"], batch_rows=1, **FAST)  # type: ignore[arg-type]
    dc = DataCollector(
        [c], store, clock=clock, max_silence=3600, first_data_grace=3600, check_interval=0.05,
        audit_interval=EVERY, **options,  # type: ignore[arg-type]
    )  # fmt: skip
    return dc, c, store


async def _seconds_of_candles(
    clock: ManualClock, emu: ExchangeEmulator, store: DataCollectionStorage, n: int
) -> int:
    """Advance the clock a second at a time, each once the candles have caught up to
    within 3 s of it, until they cover ``n`` seconds in one span; its start."""
    await wait_until(lambda: bool(emu.ws.subscriptions), 10)
    start = clock.time_ms()

    def covered_until() -> int:
        return max((iv.end for iv in store.coverage(CANDLES)), default=start)

    def span() -> int:
        return max((iv.end - iv.start for iv in store.coverage(CANDLES)), default=0)

    while span() < n * SECOND:
        clock.advance(1)
        await wait_until(lambda: covered_until() >= clock.time_ms() - 3 * SECOND, 10)
    (covered,) = store.coverage(CANDLES)
    return covered.start


async def _audited(dc: DataCollector, clock: ManualClock) -> dict[str, object]:
    """Advance the clock by the audit interval; the status once that audit ran."""
    runs = dc.status()["audit"]["runs"]
    clock.advance(EVERY)
    await wait_until(lambda: dc.status()["audit"]["runs"] == runs + 1, 10)
    audit: dict[str, object] = dc.status()["audit"]
    return audit


def _hole(store: DataCollectionStorage, lo: int, n: int) -> pd.DataFrame:
    """Remove ``n`` 1s candles from ``lo`` but keep their span covered; returns them."""
    span = Interval(lo, lo + n * SECOND)
    rows = store.read(CANDLES, span.start, span.end)
    store.delete(CANDLES, span.start, span.end)
    store.write(CANDLES, rows.iloc[:0], covered=span)
    return rows


@pytest.mark.parametrize("min_gap", [0.0, 10.0])
async def test_a_scheduled_audit_refills_what_it_finds(
    frozen: tuple[ManualClock, ExchangeEmulator], min_gap: float
) -> None:
    clock, emu = frozen
    dc, c, store = _collector(emu, clock, audit_min_gap=min_gap)
    try:
        async with dc:
            lo = await _seconds_of_candles(clock, emu, store, 8)
            assert dc.status()["audit"]["errors"] == 0
            removed = _hole(store, lo + 2 * SECOND, 3)
            assert len(removed) == 3
            audit = await _audited(dc, clock)
            if min_gap:  # 3 s is shorter than the minimum: left as it is
                assert (audit["errors"], audit["refills"], audit["too_small"]) == (1, 0, 1)
                assert len(store.read(CANDLES, lo + 2 * SECOND, lo + 5 * SECOND)) == 0
                return
            assert (audit["errors"], audit["refills"], audit["too_small"]) == (1, 1, 0), audit
            # the refiller counts a gap filled once its rows are written
            await wait_until(lambda: dc.status()["collectors"][c.name]["gaps_filled"] == 1, 20)
            assert len(store.read(CANDLES, lo + 2 * SECOND, lo + 5 * SECOND)) == 3
            assert (await _audited(dc, clock))["errors"] == 0
    finally:
        await c.client().close()
    cols = ["open", "high", "low", "close", "volume"]
    refilled = store.read(CANDLES, lo + 2 * SECOND, lo + 5 * SECOND)
    pd.testing.assert_frame_equal(refilled[cols], removed[cols])


async def test_refills_waiting_at_once_are_capped(
    frozen: tuple[ManualClock, ExchangeEmulator],
) -> None:
    clock, emu = frozen
    dc, c, store = _collector(emu, clock, audit_max_refills=1, backfill_gaps=False)
    try:
        async with dc:
            lo = await _seconds_of_candles(clock, emu, store, 10)
            _hole(store, lo + 1 * SECOND, 2)
            _hole(store, lo + 6 * SECOND, 2)
            # refilling is off: nothing is deleted or queued, both are deferred
            audit = await _audited(dc, clock)
            assert (audit["errors"], audit["refills"], audit["deferred"]) == (2, 0, 2), audit
            dc.backfill_gaps = True
            # one refill at most waits at once: the other hole waits for a later audit
            audit = await _audited(dc, clock)
            assert (audit["refills"], audit["deferred"]) == (1, 1), audit
            await wait_until(lambda: dc.status()["collectors"][c.name]["gaps_filled"] == 1, 20)
            assert len(store.read(CANDLES, lo + SECOND, lo + 3 * SECOND)) == 2
            audit = await _audited(dc, clock)
            assert (audit["refills"], audit["deferred"]) == (2, 0), audit
            await wait_until(lambda: dc.status()["collectors"][c.name]["gaps_filled"] == 2, 20)
            assert len(store.read(CANDLES, lo + 6 * SECOND, lo + 8 * SECOND)) == 2
            assert (await _audited(dc, clock))["errors"] == 0
    finally:
        await c.client().close()


def test_audit_options_are_checked() -> None:
    with pytest.raises(InvalidRequest, match="audit_interval"):
        DataCollector([], "memory://", audit_interval=-1)
    with pytest.raises(InvalidRequest, match="audit_max_refills"):
        DataCollector([], "memory://", audit_max_refills=0)
    dc = DataCollector([], "memory://")
    assert dc.status()["audit"]["interval"] == 0.0 and dc.status()["audit"]["runs"] == 0


class WritingMeanwhile(MemoryStorage):
    """A memory store where the next candle is written (rows, then coverage, as every
    writer does) right after the audit's first storage call: a collector writing
    while the audit reads, at the worst moment, every time."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: tuple[pd.DataFrame, Interval] | None = None

    def _after_first_call(self) -> None:
        if self.pending is not None:
            frame, span = self.pending
            self.pending = None
            self.write(CANDLES, frame, covered=span)

    def read(self, *args: Any, **kwargs: Any) -> pd.DataFrame:
        out = super().read(*args, **kwargs)
        self._after_first_call()
        return out

    def coverage(self, key: DatasetKey | str) -> IntervalSet:
        out = super().coverage(key)
        self._after_first_call()
        return out


def test_a_write_while_auditing_is_no_hole() -> None:
    store = WritingMeanwhile()
    t0 = 1_704_067_200_000
    rows = pd.DataFrame(
        {"open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 3.0},
        index=pd.DatetimeIndex(
            pd.to_datetime([t0 + i * SECOND for i in range(11)], unit="ms", utc=True),
            name="timestamp",
        ),
    )
    store.write(CANDLES, rows.iloc[:10], covered=Interval(t0, t0 + 10 * SECOND))
    store.pending = (rows.iloc[10:], Interval(t0 + 10 * SECOND, t0 + 11 * SECOND))
    report = audit(store, [CANDLES])
    # at worst the new row is read without its coverage: a warning, never a false hole
    assert report.ok and [f.check for f in report.findings] in ([], ["outside_coverage"])
