"""End to end on loopback: collectors and DataCollector against the emulator (REST and ws)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mdcollect import DatasetKey, Interval, InvalidRequest, ensure_data_async, open_storage
from mdcollect.collector import Backoff, DataCollector
from mdcollect.collectors import DataSourceCollector, Message, TickerCollector, TradesCollector
from mdcollect.collectors._base import _RowQueue
from mdcollect.exchanges import ExchangeClient
from mdcollect.storage import DataCollectionStorage
from mdcollect.storage.memory import MemoryStorage
from mdcollect.testing import ExchangeEmulator

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
    try:
        async with DataCollector([c], store, max_silence=5):
            await asyncio.sleep(3.5)
    finally:
        await cl.close()
    for sym in (SYM, "ETH/USDT"):
        assert check_trades(store, emu, sym) > 5
        assert check_candles(store, emu, sym, "1s") >= 1
    assert c.stats.rows_dropped == 0


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
            await asyncio.sleep(6)
            emu.ws.drop()
            await asyncio.sleep(6)
            emu.ws.drop()
            await asyncio.sleep(6)
            emu.ws.silence(4)
            await asyncio.sleep(4)
            resumed = emu.market.now()
            await asyncio.sleep(6)
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
    cpu0 = time.process_time()
    try:
        async with dc:
            await asyncio.sleep(4)
            st = dc.status()["collectors"]
    finally:
        await cl.close()
    cpu = time.process_time() - cpu0
    slot = dc._slots["bad"]
    # 0.05, 0.1, 0.2, 0.4, 0.8, 0.8...: about 8 restarts in 4 s, not thousands
    assert 4 <= st["bad"]["restarts"] <= 12, st["bad"]
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
            await asyncio.sleep(1.5)
            # an outage that keeps what was written (SHUTDOWN SAVE; reloaded on start)
            redis.Redis(port=own_redis.port).shutdown(save=True)
            assert own_redis.proc is not None
            own_redis.proc.wait(10)
            own_redis.proc = None
            await asyncio.sleep(3)
            assert c.stats.write_errors >= 1
            own_redis.start()
            await asyncio.sleep(2)
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
        await asyncio.sleep(2.5)
        assert c.buffered_rows > 0
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

    def _write(self, key: DatasetKey, frame: pd.DataFrame, covered: Interval | None) -> int:
        self.writing.set()
        time.sleep(self.seconds)
        n = super()._write(key, frame, covered)
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
            await asyncio.sleep(3)
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
            for _ in range(2):
                time.sleep(1.5)  # noqa: ASYNC251 - the loop is busy: ~15 BTC trades pile up
                await asyncio.sleep(1.5)
            await wait_until(lambda: _gaps_done(dc, c), 30)
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
            await asyncio.sleep(1.0)
            await dc.disable(a.name)
            st = dc.status()["collectors"]
            assert st[a.name]["state"] == "disabled" and not st[a.name]["should_be_running"]
            n = len(store.read(DatasetKey("binance", SYM, "ticker")))
            await asyncio.sleep(0.6)
            assert len(store.read(DatasetKey("binance", SYM, "ticker"))) == n
            dc.enable(a.name)
            await asyncio.sleep(0.6)
            assert dc.status()["collectors"][a.name]["state"] == "running"
            await dc.remove(b.name)
            assert list(dc.status()["collectors"]) == [a.name]
            h = dc.health()
            assert set(h) == {"is_healthy", "issues", "collectors"}
    finally:
        await cl.close()
    assert n > 0


@pytest.mark.parametrize("venue", ["binance", "okx"])
async def test_quiet_feed_is_not_restarted(emu: ExchangeEmulator, venue: str) -> None:
    """No data for 4x max_silence on a live connection: pongs are a heartbeat, no reconnects.

    ccxt pings Binance every 180 s by default, far beyond max_silence: without the
    collector's keep-alive this feed would be restarted every 1.5 s.
    """
    store = open_storage("memory://")
    cl = client(emu, venue)
    c = TradesCollector(cl, [SYM], mode="ws", **FAST)  # type: ignore[arg-type]
    dc = DataCollector([c], store, max_silence=1.5, restart_backoff=Backoff(0.2, 1.0))
    emu.ws.clear()
    try:
        async with dc:
            await wait_until(lambda: c.stats.rows_received > 0, 5)
            emu.ws.pause(venue=venue)
            await asyncio.sleep(0.3)  # what was in flight arrives
            received = c.stats.rows_received
            await asyncio.sleep(6)
            assert c.stats.rows_received == received  # quiet indeed
            st = dc.status()["collectors"][c.name]
            emu.ws.resume()
            await wait_until(lambda: c.stats.rows_received > received, 5)
    finally:
        emu.ws.resume()
        await cl.close()
    assert st["restarts"] == 0 and st["silent_restarts"] == 0 and st["errors"] == 0, st
    assert st["state"] == "running" and st["time_since_heartbeat"] < 1.5, st
    assert len(emu.ws.connections) == 1  # one connection throughout
    if venue == "binance":
        check_trades(store, emu, SYM)  # the held trades were delivered: no hole


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
    emu: ExchangeEmulator, resume_window: float
) -> None:
    """A second DataCollector (the daemon restarted) refills trades and 1s candles
    missed while it was down, when the hole fits ``resume_window``."""
    store = open_storage("memory://")
    cl = client(emu)
    ckey = DatasetKey("binance", SYM, "ohlcv", "1s")
    try:
        for _ in range(2):
            c = TradesCollector(cl, [SYM], mode="ws", candles=["1s"], **FAST)  # type: ignore[arg-type]
            dc = DataCollector([c], store, resume_window=resume_window)
            t0 = emu.market.now()
            async with dc:
                # this run stored candles of its own
                await wait_until(lambda: _covered_until(store, ckey) > t0 + 2000, 10)  # noqa: B023
                await wait_until(lambda: _gaps_done(dc, c), 10)  # noqa: B023
                st = dc.status()["collectors"][c.name]
            await asyncio.sleep(2)  # down
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


def _covered_until(store: DataCollectionStorage, key: DatasetKey) -> int:
    cov = store.coverage(key)
    return cov[-1].end if cov else 0


def _gaps_done(dc: DataCollector, c: DataSourceCollector) -> bool:
    st = dc.status()["collectors"][c.name]
    return bool(st["gaps_filled"] == st["gaps_found"])
