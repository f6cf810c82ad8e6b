"""End to end on loopback: collectors and DataCollector against the emulator (REST and ws)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mdcollect import (
    DatasetKey,
    IntervalSet,
    InvalidRequest,
    ensure_data_async,
    open_storage,
)
from mdcollect.collectors import (
    Backoff,
    DataCollector,
    DataSourceCollector,
    ManualClock,
    Message,
    TickerCollector,
    TradesCollector,
)
from mdcollect.collectors._base import _RowQueue
from mdcollect.exchanges import ExchangeClient, RetryPolicy
from mdcollect.storage import DataCollectionStorage, Stamp
from mdcollect.storage.memory import MemoryStorage
from mdcollect.testing import ExchangeEmulator, Fault, MarketSpec

from ..conftest import RedisServer
from .conftest import OHLCV, client, truth_candles, truth_trades, wait_until

SYM = "BTC/USDT"
SYMS = [SYM, "ETH/USDT"]
FAST = {"batch_seconds": 0.2, "poll_interval": 0.2, "flush_timeout": 10.0}


def check_trades(store: DataCollectionStorage, emu: ExchangeEmulator, sym: str) -> int:
    key = DatasetKey("binance", sym, "trades")
    cov = list(store.coverage(key))
    assert len(cov) == 1, cov  # one span: no hole
    lo, hi = cov[0].start, cov[0].end
    got = store.read(key, lo, hi)
    exp = truth_trades(emu, sym, lo, hi)
    assert len(exp) > 0
    pd.testing.assert_frame_equal(got[["id", "price", "amount", "side"]], exp, check_freq=False)
    assert "received" in got.columns
    recv = got["received"].to_numpy()
    ts = got.index.asi8 // 1_000_000
    assert np.all(recv >= ts)  # received after it happened
    return len(got)


def check_candles(store: DataCollectionStorage, emu: ExchangeEmulator, sym: str, tf: str) -> int:
    key = DatasetKey("binance", sym, "ohlcv", tf)
    cov = list(store.coverage(key))
    assert len(cov) == 1, (tf, cov)
    lo, hi = cov[0].start, cov[0].end
    got = store.read(key, lo, hi)
    exp = truth_candles(emu, sym, tf, lo, hi)
    assert len(got) == len(exp) == (hi - lo) // (1000 if tf == "1s" else 60_000)
    pd.testing.assert_frame_equal(got[OHLCV], exp[OHLCV], check_freq=False)
    return len(got)


@pytest.mark.parametrize("mode", ["poll", "ws"])
async def test_trades_and_candles_equal_the_market(emu: ExchangeEmulator, mode: str) -> None:
    store = open_storage("memory://")
    cl = client(emu)
    c = TradesCollector(
        cl, [SYM, "ETH/USDT"], mode=mode, candles=["1s", "5s"], poll_lag=0.2, **FAST
    )  # type: ignore[arg-type]
    trades = [DatasetKey("binance", s, "trades") for s in SYMS]
    candles = [DatasetKey("binance", s, "ohlcv", "1s") for s in SYMS]
    try:
        async with DataCollector([c], store, max_silence=5):
            await wait_until(
                lambda: (
                    all(_covered_rows(store, k) > 5 for k in trades)
                    and all(_covered_until(store, k) > 0 for k in candles)
                ),
                30,
            )
    finally:
        await cl.close()
    for sym in (SYM, "ETH/USDT"):
        assert check_trades(store, emu, sym) > 5
        assert check_candles(store, emu, sym, "1s") >= 1
    assert c.stats.rows_dropped == 0


@pytest.mark.slow  # half a minute of a real market, then up to a minute for its holes
async def test_half_minute_of_drops_and_silence_leaves_no_hole(emu: ExchangeEmulator) -> None:
    """~30 s of trades and 1s/1m candles for two symbols while the feed drops twice and
    stalls once: every stored span equals the market, with no hole and no duplicate.

    1m candles of the day so far were stored by ``ensure_data`` first, as a user
    would: the hole between them and the first live candle is refilled too, so
    the 1m check spans whole minutes however the half minute falls.
    """
    store = open_storage("memory://")
    cl = client(emu)
    today = pd.Timestamp(emu.market.now(), unit="ms", tz="UTC").strftime("%Y-%m-%d")
    await ensure_data_async(
        SYMS, "1m", today, today, exchange=cl, storage=store, padding_days=0, progress=False
    )
    c = TradesCollector(cl, SYMS, mode="ws", candles=["1s", "1m"], **FAST)  # type: ignore[arg-type]
    dc = DataCollector([c], store, max_silence=1.5, restart_backoff=Backoff(0.2, 1.0))
    try:
        async with dc:
            begun = emu.market.now()
            # the sleeps space the faults over half a minute of data (the scenario);
            # each fault then waits for its effect, however slow the machine
            await asyncio.sleep(6)
            for _ in range(2):
                restarts = dc.status()["collectors"][c.name]["restarts"]
                emu.ws.drop()
                await wait_until(
                    lambda: dc.status()["collectors"][c.name]["restarts"] > restarts,  # noqa: B023
                    30,
                )
                await asyncio.sleep(6)
            emu.ws.silence(4)
            await wait_until(lambda: dc.status()["collectors"][c.name]["silent_restarts"] >= 1, 30)
            resumed = emu.market.now()
            trade_keys = [DatasetKey("binance", s, "trades") for s in SYMS]
            candle_keys = [DatasetKey("binance", s, "ohlcv", "1s") for s in SYMS]
            # half a minute of data in all (what the checks below count), past the stall
            await wait_until(
                lambda: (
                    all(_covered_until(store, k) > resumed + 2_000 for k in trade_keys)
                    and all(_covered_span(store, k) >= 28_000 for k in candle_keys)
                ),
                60,
            )
            # holes reaching into the open minute are refilled once it closes
            await wait_until(lambda: _gaps_done(dc, c), 75)
            st = dc.status()["collectors"][c.name]
        stopped = emu.market.now() // 60_000 * 60_000
    finally:
        await cl.close()
    assert st["restarts"] >= 3 and st["silent_restarts"] >= 1, st
    # 3 outages x 2 symbols x (trades, 1s, 1m), and the 1m hole after ensure_data
    assert st["gaps_found"] >= 20 and st["gaps_waiting"] == 0, st
    assert st["rows_dropped"] == 0 and st["state"] == "running"
    for sym in SYMS:
        assert check_trades(store, emu, sym) > 100
        # one span from before the first drop to after the silence
        (span,) = store.coverage(DatasetKey("binance", sym, "trades"))
        assert span.start < begun + 6_000 and span.end > resumed + 2_000, (span, begun, resumed)
        assert check_candles(store, emu, sym, "1s") >= 25
        day = pd.Timestamp(today, tz="UTC").value // 1_000_000
        minutes = check_candles(store, emu, sym, "1m")
        cov = store.coverage(DatasetKey("binance", sym, "ohlcv", "1m"))
        assert cov[0].start == max(day, emu.market.spec("binance", sym).listed)
        assert cov[0].end in (stopped - 60_000, stopped)  # up to the last closed minute
        assert minutes == (cov[0].end - cov[0].start) // 60_000


class Crashing(DataSourceCollector):
    kind = "ticker"
    ws_method = "watchTicker"
    starts = 0

    async def _feed(self, client: object, queue: object) -> None:
        type(self).starts += 1
        raise RuntimeError("boom")

    def _frames(self, items: object) -> list:  # type: ignore[type-arg]
        return []


async def test_crash_loop_backs_off_without_spinning(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    cl = client(emu)
    bad = Crashing(cl, [SYM], name="bad")
    good = TickerCollector(cl, [SYM], mode="ws", interval=0.2, **FAST)  # type: ignore[arg-type]
    dc = DataCollector([bad, good], store, restart_backoff=Backoff(0.05, 0.8, jitter=0.1))
    cpu0, t0 = time.process_time(), time.monotonic()
    try:
        async with dc:
            await wait_until(
                lambda: (
                    dc.status()["collectors"]["bad"]["restarts"] >= 7
                    and dc.status()["collectors"][good.name]["rows_stored"] >= 2
                ),
                30,
            )
            st = dc.status()["collectors"]
            elapsed = time.monotonic() - t0
    finally:
        await cl.close()
    cpu = time.process_time() - cpu0
    slot = dc._slots["bad"]
    # 0.05, 0.1, 0.2, 0.4, 0.8, 0.8...: each restart waited its delay, none spun
    n = st["bad"]["restarts"]
    assert len(slot.delays) == n and elapsed >= sum(slot.delays[: n - 1]), (elapsed, slot.delays)
    assert slot.delays[3] > slot.delays[0] * 4 and max(slot.delays) <= 0.8
    assert st["bad"]["errors"] == st["bad"]["restarts"] and "boom" in st["bad"]["last_error"]
    assert not st["bad"]["is_healthy"]
    assert st[good.name]["restarts"] == 0 and st[good.name]["rows_stored"] >= 2
    assert cpu < 2.5, cpu


@pytest.fixture
def own_redis(tmp_path: Path) -> RedisServer:
    server = RedisServer(tmp_path)
    server.start()
    yield server  # type: ignore[misc]
    server.stop()


@pytest.mark.parametrize("buffer_rows", [1_000_000, 10])
async def test_storage_outage(
    emu: ExchangeEmulator, own_redis: RedisServer, buffer_rows: int
) -> None:
    import redis

    store = open_storage(own_redis.url)
    cl = client(emu)
    c = TradesCollector(cl, [SYM], mode="ws", buffer_rows=buffer_rows, **FAST)  # type: ignore[arg-type]
    # gap backfill would refill dropped rows from REST: off, to count drops exactly
    dc = DataCollector([c], store, max_silence=30, backfill_gaps=buffer_rows > 100)
    try:
        async with dc:
            await wait_until(lambda: c.stats.rows_written > 0, 20)
            # an outage that keeps what was written (SHUTDOWN SAVE; reloaded on start)
            redis.Redis(port=own_redis.port).shutdown(save=True)
            assert own_redis.proc is not None
            own_redis.proc.wait(10)
            own_redis.proc = None
            # writes fail, and with a small buffer rows are dropped
            await wait_until(
                lambda: c.stats.write_errors >= 2 and (buffer_rows > 100 or c.stats.rows_dropped),
                30,
            )
            written = c.stats.rows_written
            own_redis.start()
            await wait_until(lambda: c.stats.rows_written > written, 30)
    finally:
        await cl.close()
    key = DatasetKey("binance", SYM, "trades")
    stored = len(store.read(key))
    assert c.buffered_rows == 0
    if buffer_rows > 100:
        assert c.stats.rows_dropped == 0
        assert stored == c.stats.rows_received
        check_trades(store, emu, SYM)
    else:
        assert c.stats.rows_dropped > 0
        assert stored + c.stats.rows_dropped == c.stats.rows_received
        assert dc.status()["collectors"][c.name]["rows_dropped"] == c.stats.rows_dropped
    store.close()


async def test_stop_under_heavy_flow_loses_nothing(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    cl = client(emu)
    # a long batch interval: at stop most rows are still buffered
    c = TradesCollector(
        cl, [SYM, "ETH/USDT"], mode="ws", candles=["1s"], batch_seconds=30, batch_rows=10**6
    )
    try:
        dc = DataCollector([c], store)
        await dc.start()
        await wait_until(lambda: c.buffered_rows > 20, 30)
        await dc.stop()
    finally:
        await cl.close()
    stored = sum(len(store.read(DatasetKey("binance", s, "trades"))) for s in (SYM, "ETH/USDT"))
    assert stored == c.stats.rows_received > 0
    assert c.buffered_rows == 0


class SlowStore(MemoryStorage):
    """A memory store whose writes take a while (a busy disk or a slow network store),
    counting the trade rows handed to it."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.trade_rows_written = 0
        self.writing = threading.Event()

    def _write(
        self, key: DatasetKey, frame: pd.DataFrame, covered: IntervalSet | None, stamp: Stamp
    ) -> int:
        self.writing.set()
        time.sleep(self.seconds)
        n = super()._write(key, frame, covered, stamp)
        if key.kind == "trades":
            self.trade_rows_written += len(frame)
        return n


async def test_stop_while_a_write_is_in_flight_writes_each_row_once(
    emu: ExchangeEmulator,
) -> None:
    """Cancelling the writer mid-write waits for that write and records it: the final
    flush neither loses its rows nor writes them a second time."""
    store = SlowStore(0.4)
    cl = client(emu)
    c = TradesCollector(cl, SYMS, mode="ws", batch_seconds=0.1)
    try:
        dc = DataCollector([c], store)
        await dc.start()
        await wait_until(lambda: c.stats.rows_received > 0, 10)
        store.writing.clear()
        await wait_until(store.writing.is_set, 10)  # stop lands inside a write
        await dc.stop()
    finally:
        await cl.close()
    stored = sum(len(store.read(DatasetKey("binance", s, "trades"))) for s in SYMS)
    assert stored == c.stats.rows_received == c.stats.rows_written > 0
    assert store.trade_rows_written == stored  # nothing written twice
    assert c.buffered_rows == 0


async def test_duplicates_from_the_feed_are_dropped(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    cl = client(emu)
    c = TradesCollector(cl, SYMS, mode="ws", **FAST)  # type: ignore[arg-type]
    emu.ws.duplicate(1.0, venue="binance")
    try:
        async with DataCollector([c], store, max_silence=30):
            await wait_until(
                lambda: (
                    c.stats.duplicates > 5
                    and all(
                        _covered_rows(store, DatasetKey("binance", s, "trades")) > 5 for s in SYMS
                    )
                ),
                30,
            )
    finally:
        emu.ws.duplicate(0, venue="binance")
        await cl.close()
    assert c.stats.duplicates > 0
    for sym in SYMS:
        check_trades(store, emu, sym)  # equal to the market: no row twice


async def test_busy_loop_overflowing_ccxts_cache_loses_nothing(emu: ExchangeEmulator) -> None:
    """ccxt.pro keeps the last ``tradesLimit`` trades of a symbol; a loop too busy to
    read them in time loses the older ones inside ccxt. The collector notices (a read
    that fills the cache), restarts coverage there and refills the span from REST:
    the stored trades and candles still equal the market, in one span each."""
    store = open_storage("memory://")
    cl = ExchangeClient(
        "binance", base_url=emu.url, enableRateLimit=False, options={"tradesLimit": 5}
    )
    assert cl.ws_trades_limit == 5
    c = TradesCollector(cl, SYMS, mode="ws", candles=["1s"], **FAST)  # type: ignore[arg-type]
    dc = DataCollector([c], store, max_silence=30)
    try:
        async with dc:
            await wait_until(lambda: c.stats.rows_received > 20, 10)
            for i in range(2):
                time.sleep(1.5)  # noqa: ASYNC251 - the loop is busy: ~15 BTC trades pile up
                await wait_until(lambda: c.stats.feed_overflows > i, 10)  # noqa: B023
            # the resynced spans reach storage as gaps, and are refilled: every dataset
            # is one span again, reaching past the last busy second
            busy_end = emu.market.now()
            keys = [DatasetKey("binance", s, k, tf) for s in SYMS for k, tf in CANDLES_TOO]
            await wait_until(
                lambda: all(_one_span_past(store, k, busy_end) for k in keys) and _gaps_done(dc, c),
                30,
            )
            st = dc.status()["collectors"][c.name]
    finally:
        await cl.close()
    assert c.stats.feed_overflows >= 2 and st["feed_overflows"] == c.stats.feed_overflows
    assert st["restarts"] == 0 and st["gaps_found"] >= 2
    for sym in SYMS:
        check_trades(store, emu, sym)
        check_candles(store, emu, sym, "1s")


async def test_feed_queue_is_bounded_in_rows() -> None:
    """Messages carry up to a thousand trades each: the queue between feed and
    processor is full at ``queue_rows`` rows, not only at ``queue_size`` messages."""
    c = TradesCollector("binance", [SYM], queue_size=1000, queue_rows=2500)
    queue = _RowQueue(c.queue_size, c.queue_rows)
    msg = Message(SYM, [(1, "1", 1.0, 1.0, "buy", 1)] * 1000, 2)
    for _ in range(3):
        queue.put_nowait(msg)  # 2,000 rows then 3,000: the third fits, a fourth waits
    put = asyncio.ensure_future(queue.put(msg))
    await asyncio.sleep(0.05)
    assert not put.done() and queue.qsize() == 3 and queue.full()
    queue.get_nowait()
    await asyncio.wait_for(put, 1)
    assert queue.rows == 3000
    with pytest.raises(InvalidRequest, match="queue_rows"):
        TradesCollector("binance", [SYM], queue_rows=0)


def test_duplicate_memory_is_bounded() -> None:
    """The ids kept to spot re-sent trades cover the last 10 s of the feed, whatever
    the rate, and re-sends inside that window are still caught."""
    c = TradesCollector("binance", [SYM])
    t0 = 1_700_000_000_000
    kept = []
    for sec in range(60):  # a minute at 1,000 trades a second
        rows = [(t0 + sec * 1000 + i, str(sec * 1000 + i), 1.0, 1.0, "buy", 0) for i in range(1000)]
        c._symbol_frames(SYM, [Message(SYM, rows, t0 + (sec + 1) * 1000)])
        kept.append(len(c._seen[SYM]))
    assert max(kept) <= 11_000
    again = [(t0 + 55_000, "55000", 1.0, 1.0, "buy", 0)]
    before = c.stats.duplicates
    c._symbol_frames(SYM, [Message(SYM, again, t0 + 60_000)])
    assert c.stats.duplicates == before + 1
    assert c.stats.rows_received == 60_000


async def test_add_remove_enable_disable(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    cl = client(emu)
    a = TickerCollector(cl, [SYM], mode="ws", interval=0.2, **FAST)  # type: ignore[arg-type]
    b = TradesCollector(cl, [SYM], mode="ws", **FAST)  # type: ignore[arg-type]
    try:
        async with DataCollector([a], store) as dc:
            dc.add(b)
            with pytest.raises(InvalidRequest, match="already"):
                dc.add(b)
            ticker = DatasetKey("binance", SYM, "ticker")
            await wait_until(lambda: a.stats.rows_written > 0 and b.stats.rows_written > 0, 20)
            await dc.disable(a.name)
            st = dc.status()["collectors"]
            assert st[a.name]["state"] == "disabled" and not st[a.name]["should_be_running"]
            n = len(store.read(ticker))
            # while the other collector stores three more batches, the disabled one stores none
            batches = b.stats.messages_received
            await wait_until(lambda: b.stats.messages_received >= batches + 3, 20)
            assert len(store.read(ticker)) == n
            dc.enable(a.name)
            await wait_until(lambda: len(store.read(ticker)) > n, 20)
            assert dc.status()["collectors"][a.name]["state"] == "running"
            await dc.remove(b.name)
            assert list(dc.status()["collectors"]) == [a.name]
            h = dc.health()
            assert set(h) == {"is_healthy", "issues", "collectors"}
    finally:
        await cl.close()
    assert n > 0


@pytest.fixture
def frozen() -> Iterator[tuple[ManualClock, ExchangeEmulator]]:
    """An emulated busy market whose time moves only when the test advances the clock
    the collectors read too: nothing the test checks depends on how fast this machine is."""
    clock = ManualClock()
    markets = [MarketSpec(SYM, 30_000.0, trades_per_minute=600)]
    with ExchangeEmulator(seed=5, markets=markets, rate_limits=False, clock=clock.time_ms) as e:
        yield clock, e


async def _noticed_frame(c: DataSourceCollector) -> None:
    """Wait until the collector notices a websocket frame (a keep-alive pong) at the
    clock's present: its heartbeat is now."""
    await wait_until(lambda: c.heartbeat() == c.clock.monotonic(), 10)


@pytest.mark.parametrize("venue", ["binance", "okx"])
async def test_quiet_feed_is_not_restarted(
    frozen: tuple[ManualClock, ExchangeEmulator], venue: str
) -> None:
    """No data for 4x max_silence on a live connection: pongs are a heartbeat, no reconnects.

    ccxt pings Binance every 180 s by default, far beyond max_silence: without the
    collector's keep-alive this feed would be restarted every 1.5 s. The clock moves
    0.5 s at a time, each step once the keep-alive's pong has come: 6 s of silence
    however late the pongs come on a loaded machine.
    """
    clock, emu = frozen
    store = open_storage("memory://")
    cl = client(emu, venue)
    c = TradesCollector(cl, [SYM], mode="ws", **FAST)  # type: ignore[arg-type]
    dc = DataCollector([c], store, max_silence=1.5, restart_backoff=Backoff(0.2, 1.0), clock=clock)
    try:
        async with dc:
            await wait_until(lambda: bool(emu.ws.subscriptions), 10)
            clock.advance(2)  # two seconds of trades
            await wait_until(lambda: c.stats.rows_received > 0, 10)
            emu.ws.pause(venue=venue)
            for _ in range(2):  # frames sent before the pause are in before these pongs
                await _noticed_frame(c)
                clock.advance(0.5)
            await wait_until(lambda: c.queued_messages == 0, 10)
            received = c.stats.rows_received
            for _ in range(12):
                await _noticed_frame(c)
                clock.advance(0.5)
            await _noticed_frame(c)
            assert c.stats.rows_received == received  # quiet indeed
            st = dc.status()["collectors"][c.name]
            emu.ws.resume()
            await wait_until(lambda: c.stats.rows_received > received, 10)
    finally:
        emu.ws.resume()
        await cl.close()
    assert st["restarts"] == 0 and st["silent_restarts"] == 0 and st["errors"] == 0, st
    assert st["state"] == "running" and st["time_since_heartbeat"] == 0, st
    assert len(emu.ws.connections) == 1  # one connection throughout, none at stop
    if venue == "binance":
        check_trades(store, emu, SYM)  # the held trades were delivered: no hole


async def test_silent_feed_is_replaced_on_the_clock(
    frozen: tuple[ManualClock, ExchangeEmulator],
) -> None:
    """A connection that sends nothing, not even pongs, is replaced once max_silence has
    passed on the collector's clock, not before; the hole it left is refilled once the
    last candle it reaches into has closed (GAP_GRACE later, on the same clock).

    max_silence is 30 s of the test's clock, which moves only when told: the real
    keep-alive pings every 10 s, so ccxt never gives up on the connection itself."""
    clock, emu = frozen
    store = open_storage("memory://")
    cl = client(emu)
    c = TradesCollector(cl, [SYM], mode="ws", candles=["1s"], batch_rows=1, **FAST)  # type: ignore[arg-type]
    dc = DataCollector(
        [c], store, max_silence=30, restart_backoff=0.05, check_interval=0.05, clock=clock
    )

    def status() -> dict[str, Any]:
        st: dict[str, Any] = dc.status()["collectors"][c.name]
        return st

    try:
        async with dc:
            await wait_until(lambda: bool(emu.ws.subscriptions), 10)
            clock.advance(2)
            await wait_until(lambda: c.stats.rows_written > 0, 10)
            emu.ws.silence(3600)  # the open connection: no data, no pongs
            await _let_checks_run(dc)  # frames sent before are noticed now
            hb = c.heartbeat()
            assert hb is not None
            clock.advance(29.9 - (clock.monotonic() - hb))  # not yet max_silence: kept
            await _let_checks_run(dc)
            assert status()["silent_restarts"] == 0 and len(emu.ws.connections) == 1
            clock.advance(0.2)  # past it
            await wait_until(lambda: status()["silent_restarts"] == 1, 10)
            await wait_until(
                lambda: sum(s.action == "subscribe" for s in emu.ws.subscriptions) == 2, 10
            )
            clock.advance(1)  # trades on the new connection: coverage resumes after a hole
            await wait_until(
                lambda: (
                    status()["gaps_waiting"] >= 2
                    and status()["gaps_waiting"] == status()["gaps_found"]
                ),
                10,
            )
            assert status()["gaps_filled"] == 0
            clock.advance(2)  # the candles it reaches into have closed, and GAP_GRACE passed
            await wait_until(lambda: _gaps_done(dc, c), 20)
            st = status()
    finally:
        await cl.close()
    assert st["restarts"] == 1 and st["silent_restarts"] == 1 and st["errors"] == 0, st
    assert st["gaps_waiting"] == 0 and st["gaps_filled"] == st["gaps_found"] >= 2, st
    check_trades(store, emu, SYM)  # one span equal to the market: the hole was refilled
    check_candles(store, emu, SYM, "1s")


async def _let_checks_run(dc: DataCollector) -> None:
    """Real time for the supervisor's silence checks to run at the clock's present (for
    checks that something does NOT happen; the clock itself stands still)."""
    await asyncio.sleep(5 * dc.check_interval)


async def test_no_data_past_the_grace_is_unhealthy(
    frozen: tuple[ManualClock, ExchangeEmulator],
) -> None:
    """A live feed that stores nothing (a market with no trades: the clock stands
    still) is healthy for first_data_grace seconds after it started, then unhealthy,
    saying why; its first row makes it healthy again."""
    clock, emu = frozen
    store = open_storage("memory://")
    cl = client(emu)
    c = TradesCollector(cl, [SYM], mode="ws", batch_rows=1, **FAST)  # type: ignore[arg-type]
    dc = DataCollector([c], store, first_data_grace=5, clock=clock)
    try:
        async with dc:
            await wait_until(lambda: bool(emu.ws.subscriptions), 10)
            clock.advance(4.9)
            within = dc.health()
            clock.advance(0.2)
            past = dc.health()
            emu.ws.pause()  # the next trades are held: the verdict is the clock's alone
            clock.advance(1)
            past_status = dc.status()
            emu.ws.resume()
            await wait_until(lambda: c.stats.rows_written > 0, 10)
            after = dc.health()
    finally:
        emu.ws.resume()
        await cl.close()
    assert within["is_healthy"] and within["issues"] == [], within
    assert not past["is_healthy"], past
    assert past["issues"] == [f"{c.name}: no data stored in the 5s since it started (allowed: 5s)"]
    assert not past_status["is_healthy"] and past_status["issues"] == [
        f"{c.name}: no data stored in the 6s since it started (allowed: 5s)"
    ]
    assert after["is_healthy"], after


async def test_only_errors_is_unhealthy_between_restarts_too(
    frozen: tuple[ManualClock, ExchangeEmulator],
) -> None:
    """A collector whose markets never load has only errors: unhealthy at every look,
    while it retries ("running") as much as while it waits to restart ("backoff")."""
    clock, emu = frozen
    emu.faults.add(Fault("503", route="exchangeInfo"))
    store = open_storage("memory://")
    cl = ExchangeClient(
        "binance", base_url=emu.url, enableRateLimit=False,
        retry=RetryPolicy(max_attempts=2, base_delay=0.2, max_delay=0.2, jitter="none"),
    )  # fmt: skip
    c = TradesCollector(cl, [SYM], mode="ws", **FAST)  # type: ignore[arg-type]
    dc = DataCollector([c], store, restart_backoff=Backoff(0.2, 0.2, jitter=0), clock=clock)
    looks: list[dict[str, Any]] = []

    def look() -> bool:
        looks.append(dc.status()["collectors"][c.name])
        seen = {st["state"] for st in looks if st["errors"]}
        return looks[-1]["errors"] >= 3 and seen >= {"running", "backoff"}

    try:
        async with dc:
            await wait_until(look, 30)
    finally:
        emu.faults.clear()
        await cl.close()
    errored = [st for st in looks if st["errors"]]
    assert {st["state"] for st in errored} >= {"running", "backoff"}, errored
    assert all(not st["is_healthy"] for st in errored), errored
    issue = errored[-1]["issues"][-1]
    assert issue.startswith("only errors since it started 0s ago ("), issue
    assert "no data stored); last: " in issue, issue
    assert "503" in issue or "ExchangeNotAvailable" in issue or "ExchangeError" in issue, issue
    assert looks[-1]["rows_stored"] == 0


async def test_permanent_exchange_error_fails_the_collector(emu: ExchangeEmulator) -> None:
    """The emulated Kraken serves no ticker endpoint: a 404 three times in a row is final."""
    store = open_storage("memory://")
    kraken = client(emu, "kraken")
    cl = client(emu)
    bad = TickerCollector(kraken, [SYM], mode="poll", interval=0.2, **FAST)  # type: ignore[arg-type]
    good = TickerCollector(cl, [SYM], mode="ws", interval=0.2, **FAST)  # type: ignore[arg-type]
    dc = DataCollector([bad, good], store, restart_backoff=Backoff(0.05, 0.2))
    emu.clear_requests()
    try:
        async with dc:
            await wait_until(lambda: dc.status()["collectors"][bad.name]["state"] == "failed", 10)
            await asyncio.sleep(0.5)  # not restarted again
            st = dc.status()["collectors"]
            asked = [r for r in emu.requests if r.path.endswith("/Ticker")]
            dc.enable(bad.name)  # tried again, on request
            await wait_until(lambda: dc.status()["collectors"][bad.name]["errors"] == 6, 10)
    finally:
        await kraken.close()
        await cl.close()
    assert st[bad.name]["errors"] == 3 and st[bad.name]["restarts"] == 2, st[bad.name]
    assert "404" in st[bad.name]["last_error"] and not st[bad.name]["is_healthy"]
    assert any("failed" in i for i in st[bad.name]["issues"])
    assert len(asked) == 3
    assert st[good.name]["state"] == "running" and st[good.name]["errors"] == 0


@pytest.mark.parametrize("resume_window", [3600.0, 0.5])
async def test_restarted_daemon_refills_the_hole_it_left(
    frozen: tuple[ManualClock, ExchangeEmulator], resume_window: float
) -> None:
    """A second DataCollector (the daemon restarted) refills trades and 1s candles
    missed while it was down, when the hole fits ``resume_window``.

    The daemon is down for 2 s of the clock the collectors and the market share, which
    moves only when told: the hole is 2 s however slow the machine."""
    clock, emu = frozen
    store = open_storage("memory://")
    cl = client(emu)
    ckey = DatasetKey("binance", SYM, "ohlcv", "1s")
    try:
        for run in range(2):
            c = TradesCollector(cl, [SYM], mode="ws", candles=["1s"], batch_rows=1, **FAST)  # type: ignore[arg-type]
            dc = DataCollector([c], store, resume_window=resume_window, clock=clock)
            t0 = clock.time_ms()
            async with dc:
                await wait_until(
                    lambda: sum(s.action == "subscribe" for s in emu.ws.subscriptions) > run,  # noqa: B023
                    10,
                )
                clock.advance(4)  # four seconds of trades
                # this run stored candles of its own
                await wait_until(lambda: _covered_until(store, ckey) > t0 + 2000, 10)  # noqa: B023
                await wait_until(lambda: _gaps_done(dc, c), 10)  # noqa: B023
                st = dc.status()["collectors"][c.name]
            clock.advance(2)  # down
    finally:
        await cl.close()
    trades = store.coverage(DatasetKey("binance", SYM, "trades"))
    candles = store.coverage(ckey)
    if resume_window > 2:
        assert st["gaps_found"] == st["gaps_filled"] == 2, st  # trades and 1s
        assert check_trades(store, emu, SYM) > 0 and check_candles(store, emu, SYM, "1s") > 3
    else:  # a hole longer than the window stays, and is logged
        assert st["gaps_found"] == 0, st
        assert len(trades) == len(candles) == 2
        assert trades[1].start - trades[0].end > 2000


CANDLES_TOO = [("trades", None), ("ohlcv", "1s")]


def _one_span_past(store: DataCollectionStorage, key: DatasetKey, t: int) -> bool:
    cov = store.coverage(key)
    return len(cov) == 1 and cov[0].end > t


def _covered_rows(store: DataCollectionStorage, key: DatasetKey) -> int:
    """Rows stored inside the dataset's coverage (0 unless it is one span)."""
    cov = store.coverage(key)
    return len(store.read(key, cov[0].start, cov[0].end)) if len(cov) == 1 else 0


def _covered_span(store: DataCollectionStorage, key: DatasetKey) -> int:
    """From the start of the first covered range to the end of the last (ms)."""
    cov = store.coverage(key)
    return cov[-1].end - cov[0].start if cov else 0


def _covered_until(store: DataCollectionStorage, key: DatasetKey) -> int:
    cov = store.coverage(key)
    return cov[-1].end if cov else 0


def _gaps_done(dc: DataCollector, c: DataSourceCollector) -> bool:
    st = dc.status()["collectors"][c.name]
    return bool(st["gaps_filled"] == st["gaps_found"])
