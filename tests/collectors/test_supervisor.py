"""The supervisor's contract with collectors: the real storage and a write observer, a
cap on crash loops, storage reads off the event loop, and the deprecated old module."""

from __future__ import annotations

import asyncio
import threading
import warnings
from typing import Any

import pandas as pd
import pytest

import mdcollect
from mdcollect import DataCollector, DatasetKey, Interval, IntervalSet, open_storage
from mdcollect.collectors import (
    Backoff,
    DataSourceCollector,
    ManualClock,
    Message,
    TickerCollector,
    TradesCollector,
)
from mdcollect.collectors._gaps import GapRefiller
from mdcollect.storage import DataCollectionStorage
from mdcollect.storage.memory import MemoryStorage
from mdcollect.testing import ExchangeEmulator

from .conftest import client, wait_until

SYM = "BTC/USDT"
FAST = {"batch_seconds": 0.2, "poll_interval": 0.2, "flush_timeout": 10.0}


class Unparsable(DataSourceCollector):
    """A collector whose parser meets a message it does not know: ``KeyError`` on the
    first batch, every run (the faulty part; the supervisor is under test)."""

    kind = "ticker"
    ws_method = "watchTicker"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.starts = 0

    async def _feed(self, client: Any, queue: asyncio.Queue[Message]) -> None:
        self.starts += 1
        await self._put(queue, Message(SYM, [(self.clock.time_ms(), 1.0)]))
        await asyncio.Event().wait()  # cancelled when the run ends

    def _frames(self, items: list[Message]) -> list[Any]:
        raise KeyError("bidPx")


async def test_a_crash_loop_gives_up_at_the_cap(emu: ExchangeEmulator) -> None:
    """A collector that crashes at once on every run (not an exchange error) is
    restarted ``max_crashes - 1`` times (default 20 crashes), then ``failed`` with
    the error in ``status()``; it is not started again until :meth:`enable`."""
    store = open_storage("memory://")
    cl = client(emu)
    bad = Unparsable(cl, [SYM], name="bad")
    good = TickerCollector(cl, [SYM], mode="ws", batch_rows=1, **FAST)  # type: ignore[arg-type]
    dc = DataCollector(
        [bad, good], store, restart_backoff=Backoff(0.001, 0.001, jitter=0), clock=ManualClock()
    )

    def bad_status() -> dict[str, Any]:
        st: dict[str, Any] = dc.status()["collectors"]["bad"]
        return st

    try:
        async with dc:
            await wait_until(lambda: bad_status()["state"] == "failed", 30)
            st = bad_status()
            starts = bad.starts
            # while the healthy collector takes three more messages, the failed one
            # is not started again
            seen = good.stats.messages_received
            await wait_until(lambda: good.stats.messages_received >= seen + 3, 20)
            assert bad.starts == starts and bad_status()["state"] == "failed"
            dc.enable("bad")  # tried again on request: a fresh count
            await wait_until(lambda: bad_status()["errors"] == 40, 30)
            await wait_until(lambda: bad_status()["state"] == "failed", 10)
            again = bad_status()
    finally:
        await cl.close()
    assert starts == 20 and st["errors"] == 20 and st["restarts"] == 19, st
    assert "KeyError" in st["last_error"] and "bidPx" in st["last_error"], st
    assert not st["is_healthy"] and st["issues"][0].startswith("failed: KeyError"), st
    assert again["errors"] == 40 and again["restarts"] == 38 and bad.starts == 40, again
    assert dc.status()["collectors"][good.name]["errors"] == 0


async def test_the_crash_cap_is_an_option(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    cl = client(emu)
    bad = Unparsable(cl, [SYM], name="bad")
    dc = DataCollector(
        [bad],
        store,
        restart_backoff=Backoff(0.001, 0.001, jitter=0),
        max_crashes=3,
        clock=ManualClock(),
    )
    try:
        async with dc:
            await wait_until(lambda: dc.status()["collectors"]["bad"]["state"] == "failed", 20)
            st = dc.status()["collectors"]["bad"]
    finally:
        await cl.close()
    assert bad.starts == st["errors"] == 3 and st["restarts"] == 2, st
    with pytest.raises(mdcollect.InvalidRequest, match="max_crashes must be a positive integer"):
        DataCollector([], store, max_crashes=0)


class StoresThenCrashes(DataSourceCollector):
    """A collector that stores a row, then meets a message it cannot parse, every run."""

    kind = "ticker"
    ws_method = "watchTicker"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.starts = 0

    async def _feed(self, client: Any, queue: asyncio.Queue[Message]) -> None:
        self.starts += 1
        written = self.stats.rows_written
        await self._put(queue, Message(SYM, [(self.clock.time_ms(), 1.0, 1.1, 1.05, 2.0, 3.0)]))
        await wait_until(lambda: self.stats.rows_written > written, 10)  # the good row is stored
        await self._put(queue, Message(SYM, [(self.clock.time_ms(), "?")]))
        await asyncio.Event().wait()

    def _frames(self, items: list[Message]) -> list[Any]:
        rows = [r for m in items for r in m.rows]
        if any(len(r) != 6 for r in rows):
            raise KeyError("bidPx")
        cols = ["timestamp", "bid", "ask", "last", "bid_size", "ask_size"]
        return [(DatasetKey(self.exchange, SYM, "ticker"), pd.DataFrame(rows, columns=cols), None)]


async def test_crashes_after_storing_data_do_not_add_up(emu: ExchangeEmulator) -> None:
    """The cap counts crashes in a row with nothing stored in between: a collector that
    stores rows between its crashes keeps being restarted (its errors are reported)."""
    store = open_storage("memory://")
    cl = client(emu)
    flaky = StoresThenCrashes(cl, [SYM], name="flaky", batch_rows=1)
    dc = DataCollector(
        [flaky],
        store,
        restart_backoff=Backoff(0.001, 0.001, jitter=0),
        max_crashes=3,
        clock=ManualClock(),
    )
    try:
        async with dc:
            await wait_until(lambda: dc.status()["collectors"]["flaky"]["errors"] >= 7, 20)
            st = dc.status()["collectors"]["flaky"]
    finally:
        await cl.close()
    assert st["state"] != "failed" and st["rows_stored"] >= 7 and flaky.starts >= 7, st
    assert "KeyError" in st["last_error"]


class Watching(TickerCollector):
    """A ticker collector that keeps the storage each run was given."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.given: list[DataCollectionStorage] = []

    async def run(self, storage: DataCollectionStorage, **kwargs: Any) -> None:
        self.given.append(storage)
        await super().run(storage, **kwargs)


async def test_collectors_get_the_real_storage(emu: ExchangeEmulator) -> None:
    """The supervisor hands each collector the storage itself, not a subclass of the
    storage ABC wrapping it: a method added to ``DataCollectionStorage`` reaches
    the live path unchanged (no wrapper to forget forwarding it)."""
    store = open_storage("memory://")
    cl = client(emu)
    c = Watching(cl, [SYM], mode="ws", batch_rows=1, **FAST)  # type: ignore[arg-type]
    try:
        async with DataCollector([c], store) as dc:
            await wait_until(lambda: dc.status()["collectors"][c.name]["rows_stored"] > 0, 20)
            stored = dc.status()["collectors"][c.name]["rows_stored"]
    finally:
        await cl.close()
    assert c.given and all(type(s) is type(store) and s is store for s in c.given)
    assert stored == c.stats.rows_written > 0  # counted from what reached storage


async def test_the_write_observer_sees_what_landed(emu: ExchangeEmulator) -> None:
    """``run(storage, on_write=...)``: the observer is called after each write with
    the frame and coverage that reached storage, and the rows written; together
    they are exactly what the store holds."""
    store = open_storage("memory://")
    cl = client(emu)
    c = TradesCollector(cl, [SYM], mode="ws", candles=["1s"], **FAST)  # type: ignore[arg-type]
    seen: list[tuple[DatasetKey, pd.DataFrame, IntervalSet, int, bool]] = []

    def on_write(key: DatasetKey, frame: pd.DataFrame, covered: IntervalSet, rows: int) -> None:
        on_loop = threading.current_thread() is threading.main_thread()
        seen.append((key, frame, covered, rows, on_loop))

    trades = DatasetKey("binance", SYM, "trades")
    candles = DatasetKey("binance", SYM, "ohlcv", "1s")
    run = asyncio.create_task(c.run(store, on_write=on_write))
    try:
        await wait_until(
            lambda: len(store.read(trades)) > 20 and len(store.coverage(candles)) > 0, 30
        )
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        await cl.close()
    assert c.buffered_rows == 0  # the final flush went through the observer too
    for key in (trades, candles):
        mine = [s for s in seen if s[0] == key]
        assert mine, key
        frames = pd.concat([s[1] for s in mine if len(s[1])])
        stored = store.read(key)
        assert sum(s[3] for s in mine) == len(stored) == len(frames), key
        covered = IntervalSet(span for s in mine for span in s[2])
        assert covered == store.coverage(key) and len(covered) == 1, (key, covered)
        if key.kind == "trades":
            assert sorted(frames["id"]) == sorted(stored["id"])
        else:
            assert list(pd.DatetimeIndex(frames.index)) == list(stored.index)
    assert not any(s[4] for s in seen)  # in the writer thread, not on the event loop


class CoverageThreads(MemoryStorage):
    """A memory store that notes, for each coverage read, whether it ran on the
    event loop's thread."""

    def __init__(self) -> None:
        super().__init__()
        self.on_loop: list[bool] = []

    def coverage(self, key: DatasetKey | str) -> IntervalSet:
        self.on_loop.append(threading.current_thread() is threading.main_thread())
        return super().coverage(key)


async def test_refilling_a_gap_reads_coverage_off_the_event_loop() -> None:
    """Before refilling a gap the supervisor reads the dataset's coverage (the hole
    may be filled already): a storage read, in a worker thread as writes are."""
    store = CoverageThreads()
    key = DatasetKey("binance", SYM, "trades")
    frame = pd.DataFrame(
        {"id": ["1"], "price": [1.0], "amount": [1.0], "side": ["buy"]},
        index=pd.DatetimeIndex([pd.Timestamp(1_700_000_000_500, unit="ms", tz="UTC")]),
    )
    store.write(key, frame, covered=Interval(1_700_000_000_000, 1_700_000_060_000))
    c = TradesCollector("binance", [SYM])
    refiller = GapRefiller(store, ManualClock(), Backoff(), check_interval=0.05)
    store.on_loop.clear()
    done = await refiller.backfill(c, key, Interval(1_700_000_010_000, 1_700_000_020_000))
    assert done  # covered already: nothing to fetch
    assert store.on_loop == [False]


def test_supervisor_options_are_checked() -> None:
    """Every DataCollector option is checked up front, naming it and what is allowed."""
    store = open_storage("memory://")
    bad: list[tuple[dict[str, Any], str]] = [
        ({"stop_timeout": -1}, "stop_timeout must be a number >= 0, got -1"),
        (
            {"check_interval": 0},
            r"check_interval must be a positive number \(seconds\) or None, got 0",
        ),
        ({"backfill_gaps": "yes"}, "backfill_gaps must be true or false, got 'yes'"),
        ({"max_silence": 0}, "max_silence must be a positive number, got 0"),
        ({"restart_backoff": "fast"}, "restart_backoff must be a Backoff, seconds or a table"),
        ({"restart_backoff": {"initail": 1}}, r"unknown field\(s\) \['initail'\]"),
    ]
    for kwargs, message in bad:
        with pytest.raises(mdcollect.InvalidRequest, match=message):
            DataCollector([], store, **kwargs)
    with pytest.raises(mdcollect.InvalidRequest, match="fill_empty must be true or false"):
        TradesCollector("binance", [SYM], fill_empty="no")  # type: ignore[arg-type]
    with pytest.raises(mdcollect.InvalidRequest, match="poll_lag must be a number >= 0"):
        TradesCollector("binance", [SYM], poll_lag=-1)


def test_old_module_warns_and_forwards(monkeypatch: pytest.MonkeyPatch) -> None:
    """``mdcollect.collector`` (the supervisor's old home) still gives its names, with a
    DeprecationWarning once per name pointing to ``mdcollect.collectors``."""
    import mdcollect.collector as old
    import mdcollect.collectors as new

    monkeypatch.setattr(old, "_warned", set())
    for name in ("DataCollector", "Backoff", "load_collectors", "load_config"):
        with pytest.warns(DeprecationWarning, match="import it from mdcollect.collectors"):
            value = getattr(old, name)
        assert value is getattr(new, name)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert getattr(old, name) is value  # once
    assert old.DataCollector is mdcollect.DataCollector
    assert old.Backoff(0.2, 1.0) == Backoff(initial=0.2, maximum=1.0)  # positional order kept
    with pytest.raises(AttributeError):
        _ = old.GAP_GRACE
