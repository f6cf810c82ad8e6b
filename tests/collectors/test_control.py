"""Controlling a running ``DataCollector`` by name: restart one or all, list running
and failed collectors, cap restarts within a window, and row callbacks (``on_rows``)
that never get in the way of storage."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pandas as pd
import pytest

import mdcollect
from mdcollect import DataCollector, DatasetKey, open_storage
from mdcollect.collectors import (
    Backoff,
    LiquidationsCollector,
    ManualClock,
    OHLCVCollector,
    OrderBookCollector,
    TickerCollector,
    TradesCollector,
)
from mdcollect.testing import ExchangeEmulator

from .conftest import client, wait_until
from .test_supervisor import SYM, Unparsable

FAST = {"batch_seconds": 0.2, "poll_interval": 0.2, "flush_timeout": 10.0}
QUICK = Backoff(0.001, 0.001, jitter=0)


class Ending(TickerCollector):
    """A ticker collector whose run ends after each row it stores (the exchange closed
    the stream), advancing the shared manual clock by ``step`` seconds each run."""

    def __init__(self, *args: Any, step: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.step = step
        self.starts = 0

    async def run(self, storage: Any, **kwargs: Any) -> None:
        self.starts += 1
        clock = self.clock
        assert isinstance(clock, ManualClock)
        clock.advance(self.step)
        task = asyncio.create_task(super().run(storage, **kwargs))
        written = self.stats.rows_written
        try:
            await wait_until(lambda: self.stats.rows_written > written or task.done(), 20)
        finally:
            task.cancel()
            await asyncio.wait([task], timeout=10)


def _state(dc: DataCollector, name: str) -> dict[str, Any]:
    st: dict[str, Any] = dc.status()["collectors"][name]
    return st


async def test_restart_one_by_name_leaves_the_others_running(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    cl, cl_b = client(emu), client(emu)  # a shared client's streams close with either
    a = TickerCollector(cl, [SYM], mode="ws", batch_rows=1, name="a", **FAST)  # type: ignore[arg-type]
    b = TickerCollector(cl_b, ["ETH/USDT"], mode="ws", batch_rows=1, name="b", **FAST)  # type: ignore[arg-type]
    dc = DataCollector([a, b], store, clock=ManualClock())
    try:
        async with dc:
            await wait_until(
                lambda: _state(dc, "a")["rows_stored"] and _state(dc, "b")["rows_stored"], 20
            )
            b_task = dc._slots["b"].task
            with pytest.raises(mdcollect.InvalidRequest, match="no collector named 'c'"):
                await dc.restart("c")
            await dc.restart("a")
            after = _state(dc, "a")
            stored = after["rows_stored"]
            await wait_until(lambda: _state(dc, "a")["rows_stored"] > stored, 20)
            assert sorted(dc.running()) == ["a", "b"] and dc.failed() == []
            assert dc._slots["b"].task is b_task  # b was not touched
    finally:
        await cl.close()
        await cl_b.close()
    assert after["restarts"] == 1 and after["last_restart_reason"] == "restarted by hand"
    assert after["last_restart_time"] is not None
    assert _state(dc, "b")["restarts"] == 0


async def test_restart_brings_a_failed_collector_back_with_a_fresh_count(
    emu: ExchangeEmulator,
) -> None:
    store = open_storage("memory://")
    cl = client(emu)
    bad = Unparsable(cl, [SYM], name="bad")
    good = TickerCollector(cl, [SYM], mode="ws", batch_rows=1, name="good", **FAST)  # type: ignore[arg-type]
    dc = DataCollector(
        [bad, good], store, restart_backoff=QUICK, max_crashes=2, clock=ManualClock()
    )
    try:
        async with dc:
            await wait_until(lambda: dc.failed() == ["bad"], 20)
            assert dc.running() == ["good"]
            assert bad.starts == 2
            await dc.restart_all()  # the failed one too; it crashes twice more, then fails
            await wait_until(lambda: bad.starts == 4 and dc.failed() == ["bad"], 20)
            st = _state(dc, "bad")
            await dc.disable("good")
            await dc.restart_all()  # a disabled collector stays disabled
            await wait_until(lambda: bad.starts == 6 and dc.failed() == ["bad"], 20)
            assert _state(dc, "good")["state"] == "disabled" and "good" not in dc.running()
    finally:
        await cl.close()
    assert st["errors"] == 4 and st["state"] == "failed", st


async def test_max_restarts_within_the_window_fails_the_collector(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    cl = client(emu)
    ending = Ending(cl, [SYM], mode="ws", batch_rows=1, name="ending", **FAST)  # type: ignore[arg-type]
    dc = DataCollector(
        [ending],
        store,
        restart_backoff=QUICK,
        max_restarts=3,
        restart_window=60,
        clock=ManualClock(),
    )
    try:
        async with dc:
            await wait_until(lambda: dc.failed() == ["ending"], 30)
            st = _state(dc, "ending")
            starts = ending.starts
    finally:
        await cl.close()
    # three restarts were allowed; the fourth within 60 s failed it
    assert starts == 4 and st["restarts"] == 3, (starts, st)
    assert st["last_error"].startswith("restarted 3 times within 60s; last cause: run ended")
    assert st["issues"][0].startswith("failed: restarted 3 times within 60s"), st
    with pytest.raises(mdcollect.InvalidRequest, match="max_restarts must be a positive integer"):
        DataCollector([], store, max_restarts=0)


async def test_restarts_spread_beyond_the_window_do_not_add_up(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    cl = client(emu)
    # each run takes 40 s of the manual clock: at most two restarts in any 60 s
    ending = Ending(cl, [SYM], mode="ws", batch_rows=1, name="ending", step=40.0, **FAST)  # type: ignore[arg-type]
    dc = DataCollector(
        [ending],
        store,
        restart_backoff=QUICK,
        max_restarts=2,
        restart_window=60,
        clock=ManualClock(),
    )
    try:
        async with dc:
            await wait_until(lambda: ending.starts >= 7, 30)
            st = _state(dc, "ending")
    finally:
        await cl.close()
    assert st["state"] != "failed" and st["restarts"] >= 6, st
    assert st["last_restart_reason"] == "run ended"


async def test_on_rows_calls_sync_and_async_callbacks_with_what_was_stored(
    emu: ExchangeEmulator,
) -> None:
    store = open_storage("memory://")
    cl = client(emu)
    c = TradesCollector(cl, [SYM], mode="ws", candles=["1s"], **FAST)  # type: ignore[arg-type]
    got_sync: list[tuple[DatasetKey, pd.DataFrame]] = []
    got_async: list[tuple[DatasetKey, pd.DataFrame]] = []
    threads: set[int] = set()

    def on_trades(key: DatasetKey, rows: pd.DataFrame) -> None:
        threads.add(threading.get_ident())
        got_sync.append((key, rows))

    async def on_any(key: DatasetKey, rows: pd.DataFrame) -> None:
        got_async.append((key, rows))

    dc = DataCollector([c], store)  # the system clock: it drives the batch flushes
    dc.on_rows("trades", on_trades)
    dc.on_rows(None, on_any)
    with pytest.raises(mdcollect.InvalidRequest, match="kind 'candles' is not valid"):
        dc.on_rows("candles", on_any)
    try:
        async with dc:
            await wait_until(lambda: len(got_sync) >= 3, 20)
            await wait_until(lambda: any(k.kind == "ohlcv" for k, _ in got_async), 20)
    finally:
        await cl.close()
    # after stop, every callback has had every write: together exactly what is stored
    trades_key = DatasetKey("binance", SYM, "trades")
    assert {k for k, _ in got_sync} == {trades_key}
    assert threading.get_ident() not in threads  # sync callbacks run off the loop's thread
    stored = store.read(trades_key)
    heard = pd.concat([r for _, r in got_sync])
    assert sorted(heard["id"]) == sorted(stored["id"]) and len(stored) > 0
    heard_async = pd.concat([r for k, r in got_async if k == trades_key])
    assert sorted(heard_async["id"]) == sorted(stored["id"])
    candle_key = DatasetKey("binance", SYM, "ohlcv", "1s")
    candles = pd.concat([r for k, r in got_async if k == candle_key])
    assert candles.index.isin(store.read(candle_key).index).all()
    stats = dc.status()["callbacks"]
    assert [s["kind"] for s in stats] == ["trades", None]
    assert all(s["errors"] == 0 and s["dropped"] == 0 and s["calls"] > 0 for s in stats)


async def test_a_failing_or_slow_callback_never_holds_up_storage(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    cl = client(emu)
    c = TickerCollector(cl, [SYM], mode="ws", batch_rows=1, **FAST)  # type: ignore[arg-type]
    release = threading.Event()
    slow_calls = 0

    def failing(key: DatasetKey, rows: pd.DataFrame) -> None:
        raise RuntimeError("bot bug")

    def slow(key: DatasetKey, rows: pd.DataFrame) -> None:
        nonlocal slow_calls
        slow_calls += 1
        release.wait(30)

    dc = DataCollector([c], store, clock=ManualClock(), stop_timeout=5)
    dc.on_rows("ticker", failing)
    dc.on_rows("ticker", slow, backlog=2)
    try:
        async with dc:
            # the slow callback is stuck in its first call; writes go on regardless
            await wait_until(lambda: _state(dc, c.name)["rows_stored"] >= 6, 90)
            st = dc.status()
            release.set()
    finally:
        release.set()
        await cl.close()
    failing_stats, slow_stats = st["callbacks"]
    assert failing_stats["errors"] == failing_stats["calls"] >= 5
    assert "bot bug" in failing_stats["last_error"]
    # one batch in hand, two queued, the rest dropped (oldest first) and counted
    assert slow_stats["calls"] == 1 and slow_stats["queued"] == 2 and slow_stats["dropped"] >= 1
    assert st["collectors"][c.name]["is_healthy"] and st["is_healthy"]
    assert slow_calls == 3  # after the release, stop delivered the two queued batches


async def test_symbols_join_and_leave_a_running_collector_without_a_hole(
    emu: ExchangeEmulator,
) -> None:
    store = open_storage("memory://")
    cl = client(emu)
    c = TradesCollector(cl, [SYM], mode="ws", name="t", **FAST)  # type: ignore[arg-type]
    btc, eth = DatasetKey("binance", SYM, "trades"), DatasetKey("binance", "ETH/USDT", "trades")
    dc = DataCollector([c], store)
    try:
        async with dc:
            await wait_until(lambda: bool(list(store.coverage(btc))), 20)
            run_task = dc._slots["t"].task
            with pytest.raises(mdcollect.InvalidRequest, match="NOPE/USDT"):
                await dc.add_symbols("t", ["NOPE/USDT"])
            assert c.symbols == [SYM]
            assert await dc.add_symbols("t", ["ETH/USDT", SYM]) == ["ETH/USDT"]
            await wait_until(lambda: len(store.read(eth)) > 20, 20)
            with pytest.raises(mdcollect.InvalidRequest, match="does not collect"):
                await dc.remove_symbols("t", ["SOL/USDT"])
            with pytest.raises(mdcollect.InvalidRequest, match="would collect nothing"):
                await dc.remove_symbols("t", [SYM, "ETH/USDT"])
            assert await dc.remove_symbols("t", "ETH/USDT") == ["ETH/USDT"]
            eth_rows = len(store.read(eth))
            btc_rows = len(store.read(btc))
            await wait_until(lambda: len(store.read(btc)) > btc_rows + 10, 20)
            assert dc._slots["t"].task is run_task  # never restarted
            st = _state(dc, "t")
    finally:
        await cl.close()
    assert st["restarts"] == 0 and st["errors"] == 0, st
    assert c.symbols == [SYM]
    # BTC's coverage is one span across both changes: nothing was interrupted
    assert len(list(store.coverage(btc))) == 1
    # ETH stopped: at most what was in flight when it left was written after
    assert len(store.read(eth)) <= eth_rows + 50
    # and what its coverage claims is exactly the exchange's trades of that span
    lo, hi = _span(store.coverage(eth))
    truth = emu.market.trades("binance", "ETH/USDT", lo, hi).to_frame()
    stored = store.read(eth, lo, hi)
    assert len(truth) > 10 and sorted(stored["id"]) == sorted(truth["id"])


def _span(cov: Any) -> tuple[int, int]:
    spans = list(cov)
    return spans[0].start, spans[-1].end


async def test_a_stopped_collector_takes_new_symbols_at_its_next_run(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    cl = client(emu)
    c = TickerCollector(cl, [SYM], mode="ws", batch_rows=1, name="tick", **FAST)  # type: ignore[arg-type]
    dc = DataCollector([c], store)
    try:
        assert await dc.add_symbols("tick", ["ETH/USDT"]) == ["ETH/USDT"]
        async with dc:
            await wait_until(
                lambda: len(store.read(DatasetKey("binance", "ETH/USDT", "ticker"))) > 0, 20
            )
    finally:
        await cl.close()
    assert c.symbols == [SYM, "ETH/USDT"]


async def test_on_rows_hands_candles_and_tickers_as_storage_reads_them(
    emu: ExchangeEmulator,
) -> None:
    """A bot gets what ``storage.read`` gives: the UTC ``timestamp`` index and the
    schema's columns, whatever form the collector wrote (ms in a column here)."""
    store = open_storage("memory://")
    cl, cl_b = client(emu), client(emu)
    candles = OHLCVCollector(cl, [SYM], mode="poll", timeframes=["1s"], **FAST)  # type: ignore[arg-type]
    tickers = TickerCollector(cl_b, [SYM], mode="ws", batch_rows=1, **FAST)  # type: ignore[arg-type]
    heard: dict[str, list[pd.DataFrame]] = {"ohlcv": [], "ticker": []}

    async def on_rows(key: DatasetKey, rows: pd.DataFrame) -> None:
        heard[key.kind].append(rows)

    dc = DataCollector([candles, tickers], store)
    dc.on_rows(None, on_rows)
    try:
        async with dc:
            await wait_until(lambda: all(len(v) >= 2 for v in heard.values()), 30)
    finally:
        await cl.close()
        await cl_b.close()
    for kind, frames in heard.items():
        key = DatasetKey("binance", SYM, kind, "1s" if kind == "ohlcv" else None)
        got = pd.concat(frames)
        assert isinstance(got.index, pd.DatetimeIndex) and got.index.name == "timestamp"
        assert str(got.index.tz) == "UTC"
        stored = store.read(key)
        assert list(got.columns) == list(stored.columns)
        pd.testing.assert_frame_equal(got, stored.loc[got.index], check_freq=False)


@pytest.mark.parametrize("kind", [OHLCVCollector, OrderBookCollector, LiquidationsCollector])
async def test_an_unknown_symbol_fails_its_collector_alone_on_a_shared_client(
    emu: ExchangeEmulator, kind: type[Any]
) -> None:
    """Refused before it opens a stream: the streams of the shared client stay open, so
    the collector beside it is never restarted (no false unhealthy/recovered alerts)."""
    store = open_storage("memory://")
    cl = client(emu)  # as `mdcollect collect` shares one client per exchange
    good = TickerCollector(cl, [SYM], mode="ws", batch_rows=1, name="good", **FAST)  # type: ignore[arg-type]
    dc = DataCollector([good], store, restart_backoff=QUICK, clock=ManualClock())
    try:
        async with dc:
            await wait_until(lambda: _state(dc, "good")["rows_stored"], 20)
            dc.add(kind(cl, ["NOPE/USDT"], mode="ws", name="bad", **FAST))
            await wait_until(lambda: dc.failed() == ["bad"], 20)
            stored = _state(dc, "good")["rows_stored"]
            await wait_until(lambda: _state(dc, "good")["rows_stored"] >= stored + 3, 20)
            assert dc.running() == ["good"]
    finally:
        await cl.close()
    bad = _state(dc, "bad")
    assert bad["restarts"] == 0 and bad["state"] == "failed"  # refused at once, not retried
    assert "symbol 'NOPE/USDT' is not listed on binance" in bad["last_error"]
    assert _state(dc, "good")["restarts"] == 0 and _state(dc, "good")["errors"] == 0
