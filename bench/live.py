"""Live collection benchmark: trades-to-candles aggregation, and websocket trades end to end.

    .venv/bin/python bench/live.py                 # 10M trades, 60 s end to end
    .venv/bin/python bench/live.py --trades 2e6 --seconds 15
    .venv/bin/python bench/live.py --no-aggregation --symbols 5   # a feed the client keeps up with
    .venv/bin/python bench/live.py --no-aggregation --no-bare --symbols 1 --tracemalloc

1. Aggregation: N synthetic trades into 11 timeframes (1s 5s 10s 15s 30s 1m 5m 15m
   1h 4h 1d) with ``mdcollect.aggregate`` beside pandas ``resample().ohlc()`` and
   polars ``group_by_dynamic`` (when polars is installed) in the same run.
2. End to end on a busy feed: the emulator runs in its own process (the client and
   the emulator get a core each) with ``--symbols`` Binance spot markets of
   ``--trades-per-minute`` trades each (default 15 x 60,000/min = 15,000 trades/s
   offered, more than one Python ccxt.pro client parses). First a bare ``ccxt.pro``
   ``watch_trades`` loop (one task per symbol, ``newUpdates``) storing nothing, then
   ``TradesCollector(mode="ws", candles=["1s", "1m"])`` in a ``DataCollector``
   writing to ArcticDB/LMDB in a temp dir, each for ``--seconds``. Printed: trades/s
   (received by the bare loop; stored in LMDB by the collector, beside those it
   received) and the rate the emulator offered, the CPU% of the client, of the
   emulator and of every other process (whichever of the two is near 100% is the
   bottleneck), how late the client's event loop runs, and the client's RSS every
   5 s split into anonymous memory (``RssAnon``: the heap) and file-backed pages
   (``RssFile``: mostly LMDB's memory map, page cache rather than a leak), with the
   collector's buffered rows and dedup entries beside it. Then the same collector
   watched: two ``on_rows`` callbacks (a function on trades, a coroutine on candles)
   and the Prometheus metrics scraped every second; printed: client CPU per 1,000
   trades stored, plain and watched (target: watching costs < 5% more CPU; skip
   with ``--no-watch``). ``--tracemalloc`` diffs
   live objects and Python allocations over the collector run (slow: it saturates
   the client; use few ``--symbols``).
3. Takeover (``--only-takeover``, skipped with ``--no-takeover``): two ``mdcollect
   collect`` on one config and store, the leader SIGKILLed; seconds until the standby
   leads and until it stores its first row, with the file lease (a Parquet store)
   and the Redis lease (a Redis store, the default ttl; needs ``redis-server``).
4. Workers (``--workers N``, instead of the above): ``mdcollect collect --workers N``
   (the same collector, into ArcticDB/LMDB) beside N bare ``ccxt.pro`` loops, each in
   its own process with that worker's symbols; printed: rows stored/s against trades
   received/s, each process's CPU, the emulator's, and the load average (other
   processes on the machine weigh on the figure). At twice the single-process load:

       .venv/bin/python bench/live.py --workers 2 --symbols 30 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import os
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

TFS = ["1s", "5s", "10s", "15s", "30s", "1m", "5m", "15m", "1h", "4h", "1d"]
PD_RULE = {"s": "s", "m": "min", "h": "h", "d": "D"}


def synthetic(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    t0 = 1_700_000_000_000
    ts = t0 + np.cumsum(rng.integers(0, 60, n, dtype=np.int64))  # ~30 ms apart: ~3.5 days
    price = 100 * np.exp(np.cumsum(rng.normal(0, 1e-4, n)))
    amount = rng.random(n)
    return ts, price, amount


def bench_aggregation(n: int) -> None:
    from mdcollect._time import Timeframe
    from mdcollect.aggregate import aggregate_bins

    ts, price, amount = synthetic(n)
    tfs = [Timeframe.parse(t) for t in TFS]
    t = time.perf_counter()
    bins = aggregate_bins(ts, price, amount, tfs)
    frames = {str(tf): b.to_frame() for tf, b in bins.items()}
    ours = time.perf_counter() - t
    print(f"aggregation of {n:,} trades into {len(TFS)} timeframes")
    print(f"  mdcollect.aggregate     {ours:7.2f} s")

    idx = pd.DatetimeIndex(pd.to_datetime(ts, unit="ms", utc=True))
    df = pd.DataFrame({"price": price, "amount": amount}, index=idx)
    t = time.perf_counter()
    check = None
    for tf in TFS:
        rule = tf[:-1] + PD_RULE[tf[-1]]
        r = df["price"].resample(rule).ohlc()
        r["volume"] = df["amount"].resample(rule).sum()
        r = r.dropna()
        if tf == "1m":
            check = r
    pandas_s = time.perf_counter() - t
    print(f"  pandas resample().ohlc() {pandas_s:6.2f} s   ratio {pandas_s / ours:5.1f}x")
    assert check is not None
    np.testing.assert_allclose(check["close"].to_numpy(), frames["1m"]["close"].to_numpy())

    try:
        import polars as pl
    except ImportError:
        print("  polars group_by_dynamic  unavailable (polars not installed)")
        return
    pdf = pl.DataFrame({"ts": ts, "price": price, "amount": amount}).with_columns(
        pl.col("ts").cast(pl.Datetime("ms"))
    )
    t = time.perf_counter()
    for tf in TFS:
        every = tf.replace("m", "m").replace("1d", "1d")
        pdf.group_by_dynamic("ts", every=every).agg(
            pl.col("price").first().alias("open"),
            pl.col("price").max().alias("high"),
            pl.col("price").min().alias("low"),
            pl.col("price").last().alias("close"),
            pl.col("amount").sum().alias("volume"),
        )
    polars_s = time.perf_counter() - t
    print(f"  polars group_by_dynamic {polars_s:7.2f} s   ratio {polars_s / ours:5.1f}x")


SYMBOLS = [
    "BTC", "ETH", "SOL", "XRP", "DOGE", "ADA", "AVAX", "LINK", "DOT", "TRX",
    "LTC", "BCH", "NEAR", "ATOM", "UNI", "ETC", "FIL", "APT", "ARB", "OP",
]  # fmt: skip


def _status_kb(pid: int | str = "self") -> dict[str, int]:
    """VmRSS, RssAnon and RssFile (kB) of a process."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[name] = int(value.split()[0])
    return out


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _malloc_mb() -> tuple[int, int]:
    """glibc heap (all arenas, mmapped chunks included): (in use, free but kept) in MB."""
    try:
        fn = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return -1, -1
    fn.restype = _MallInfo2
    m = fn()
    return (m.uordblks + m.hblkhd) // 2**20, m.fordblks // 2**20


def _malloc_trim() -> str:
    """Hand free heap pages back to the OS; what that did to RssAnon."""
    before = _status_kb()["RssAnon"] / 1024
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return "malloc_trim unavailable"
    after = _status_kb()["RssAnon"] / 1024
    return f"malloc_trim(0) right after: RssAnon {before:.0f} -> {after:.0f} MB"


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    """What one measured run saw."""

    label: str
    t0: int  # wall ms, start of the measured window
    t1: int
    received: int
    cpu: float  # % of one core, client process
    emu_cpu: float  # % of one core, emulator process
    others_cpu: float = 0.0  # % of one core, every other process on the machine
    rss: list[float] = field(default_factory=list)  # MB, every 5 s
    anon: list[float] = field(default_factory=list)
    file: list[float] = field(default_factory=list)
    probes: dict[str, list[int]] = field(default_factory=dict)  # named counts, every 5 s
    lag_ms: int | None = None  # newest trade received vs the clock, at the end
    received_by_collector: int = 0
    notes: list[str] = field(default_factory=list)
    loop_lag: list[float] = field(default_factory=list)  # s, how late 10 ms sleeps woke

    @property
    def rate(self) -> float:
        return self.received / ((self.t1 - self.t0) / 1000)


async def _measure(
    label: str,
    seconds: float,
    count: Callable[[], int],
    emu_pid: int,
    *,
    probes: dict[str, Callable[[], int]] | None = None,
    every: float = 5.0,
) -> Run:
    """Count trades received for ``seconds``; CPU of both processes; RSS every ``every`` s."""
    cpu0, emu0, n0 = time.process_time(), _cpu_seconds(emu_pid), count()
    busy0, _ = _machine_busy()
    p0, t0 = time.perf_counter(), time.time()
    run = Run(label, int(t0 * 1000), 0, 0, 0.0, 0.0)

    def sample() -> None:
        kb = _status_kb()
        run.rss.append(kb["VmRSS"] / 1024)
        run.anon.append(kb["RssAnon"] / 1024)
        run.file.append(kb["RssFile"] / 1024)
        for name, probe in (probes or {}).items():
            run.probes.setdefault(name, []).append(probe())

    async def watch_loop() -> None:
        # how long the event loop keeps other tasks (the storage writer) waiting
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            run.loop_lag.append(time.perf_counter() - t - 0.01)

    sample()
    watcher = asyncio.create_task(watch_loop())
    end = p0 + seconds
    while (left := end - time.perf_counter()) > 0:
        await asyncio.sleep(min(every, left))
        sample()
    elapsed = time.perf_counter() - p0
    watcher.cancel()
    run.t1 = run.t0 + int(elapsed * 1000)
    run.received = count() - n0
    run.cpu = 100 * (time.process_time() - cpu0) / elapsed
    run.emu_cpu = 100 * (_cpu_seconds(emu_pid) - emu0) / elapsed
    busy = 100 * (_machine_busy()[0] - busy0) / elapsed
    run.others_cpu = max(0.0, busy - run.cpu - run.emu_cpu)
    return run


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from ``/proc/stat``."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks) - idle) / hz, sum(ticks) / hz


def _report(run: Run, offered: int) -> None:
    secs = (run.t1 - run.t0) / 1000
    lag = "" if run.lag_ms is None else f"  lag at end {run.lag_ms / 1000:5.1f} s"
    print(
        f"  {run.label:26s} {run.rate:8.0f} trades/s of {offered / secs:6.0f} offered"
        f"  CPU client {run.cpu:4.0f}%  emulator {run.emu_cpu:4.0f}%"
        f"  others {run.others_cpu:4.0f}%{lag}"
    )
    slope = 60 * (run.anon[-1] - run.anon[0]) / secs
    # the dedup window, buffers and caches fill in the first seconds: the second
    # half's trend (least squares) says whether memory keeps growing
    half = run.anon[len(run.anon) // 2 :]
    late = (
        60 * float(np.polyfit(np.arange(len(half)) * secs / max(len(run.anon) - 1, 1), half, 1)[0])
        if len(half) >= 3
        else float("nan")
    )
    if run.loop_lag:
        lag_ms = np.asarray(run.loop_lag) * 1000
        print(
            f"      event loop: a 10 ms sleep woke {np.median(lag_ms):.0f} ms late (median),"
            f" p99 {np.percentile(lag_ms, 99):.0f} ms, max {lag_ms.max():.0f} ms"
        )
    else:
        print(f"      event loop: a 10 ms sleep never woke in {secs:.0f} s")
    print(f"      RSS MB     {[round(r) for r in run.rss]}  (peak {max(run.rss):.0f})")
    print(
        f"      RssAnon MB {[round(r) for r in run.anon]}  ({slope:+.1f} MB/min;"
        f" second half {late:+.1f} MB/min)"
    )
    print(f"      RssFile MB {[round(r) for r in run.file]}")
    if run.received_by_collector:
        print(
            f"      trades stored {run.rate:,.0f}/s, received by the collector"
            f" {run.received_by_collector / secs:,.0f}/s"
        )
    for name, values in run.probes.items():
        print(f"      {name} {values}")


def _verdict(run: Run, offered: int) -> str:
    """Who limits the rate: the feed itself, the client or the emulator (busier process)."""
    if run.received >= 0.97 * offered:
        who = "the offered rate (the client keeps up)"
    elif run.cpu >= run.emu_cpu:
        who = f"the client (CPU {run.cpu:.0f}%; emulator {run.emu_cpu:.0f}%)"
    else:
        who = f"the emulator (CPU {run.emu_cpu:.0f}%; client {run.cpu:.0f}%)"
    if run.others_cpu > 25:
        who += f"; other processes took {run.others_cpu:.0f}% of a core meanwhile"
    return who


async def _run_bare(url: str, symbols: list[str], seconds: float, warmup: float, pid: int) -> Run:
    """A ``ccxt.pro`` ``watch_trades`` task per symbol that counts trades and stores nothing."""
    import ccxt.pro

    from mdcollect.exchanges._urls import redirect_urls

    ex = ccxt.pro.binance({"enableRateLimit": False})
    redirect_urls(ex, url)
    await ex.load_markets()
    got = [0]
    newest: dict[str, int] = {}

    async def loop(symbol: str) -> None:
        while True:
            trades = await ex.watch_trades(symbol, None, None, {"newUpdates": True})
            got[0] += len(trades)
            newest[symbol] = trades[-1]["timestamp"]

    tasks = [asyncio.create_task(loop(s)) for s in symbols]
    try:
        await asyncio.sleep(warmup)
        run = await _measure("bare ccxt.pro watch_trades", seconds, lambda: got[0], pid)
        run.lag_ms = int(time.time() * 1000) - min(newest.values())
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await ex.close()
    return run


async def _run_collector(
    url: str,
    symbols: list[str],
    seconds: float,
    warmup: float,
    pid: int,
    *,
    trace: bool,
    options: dict[str, Any],
    watched: bool = False,
) -> Run:
    """``TradesCollector(mode="ws", candles=["1s", "1m"])`` in a ``DataCollector`` writing
    to ArcticDB/LMDB in a temp dir; the rate is trades stored. ``watched``: with two row
    callbacks and its metrics scraped every second."""
    import threading
    import urllib.request

    from mdcollect import DataCollector, open_storage
    from mdcollect.collectors import TradesCollector
    from mdcollect.exchanges import ExchangeClient
    from mdcollect.metrics import start_metrics_server

    notes: list[str] = []
    # a stop that timed out leaves a writer thread busy in the directory
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        store = open_storage(f"arctic+lmdb://{tmp}/arctic")
        writes = _time_writes(store)
        client = ExchangeClient("binance", base_url=url, enableRateLimit=False)
        c = TradesCollector(client, symbols, mode="ws", candles=["1s", "1m"], **options)
        dc = DataCollector([c], store)
        heard = [0, 0]
        scrapes = [0]
        stop_scraping = threading.Event()
        if watched:

            def on_trades(key: Any, rows: pd.DataFrame) -> None:
                heard[0] += len(rows)

            async def on_candles(key: Any, rows: pd.DataFrame) -> None:
                heard[1] += len(rows)

            dc.on_rows("trades", on_trades)
            dc.on_rows("ohlcv", on_candles)
            server, _ = start_metrics_server(0, dc)
            metrics_url = f"http://127.0.0.1:{server.server_port}/metrics"

            def scrape() -> None:  # Prometheus, every second (15 s is usual)
                while not stop_scraping.wait(1.0):
                    with urllib.request.urlopen(metrics_url, timeout=10) as resp:
                        resp.read()
                    scrapes[0] += 1

            threading.Thread(target=scrape, daemon=True).start()
        async with dc:
            await asyncio.sleep(warmup)
            if trace:
                types0 = _type_counts()
                tracemalloc.start(4)
                snap0 = tracemalloc.take_snapshot()
            received0, writes0 = c.stats.rows_received, len(writes.log)
            run = await _measure(
                "... watched" if watched else "TradesCollector -> LMDB",
                seconds,
                lambda: writes.trade_rows,
                pid,
                probes={
                    "rows buffered (received, not stored yet)": lambda: c.buffered_rows,
                    "feed messages queued (not processed yet)": lambda: c.queued_messages,
                    # private, for the RSS investigation: trade ids kept to drop re-sends
                    "dedup entries (TradesCollector._seen)": lambda: sum(
                        len(v) for v in getattr(c, "_seen", {}).values()
                    ),
                    # where anonymous memory goes: Python objects, or C heap (numpy,
                    # pandas, ArcticDB) in use, or C heap freed but kept by malloc
                    "Python object blocks (thousands)": lambda: sys.getallocatedblocks() // 1000,
                    "malloc in use MB": lambda: _malloc_mb()[0],
                    "malloc free-but-kept MB": lambda: _malloc_mb()[1],
                },
            )
            run.received_by_collector = c.stats.rows_received - received0
            window = writes.log[writes0:]
            notes.append(f"      {_malloc_trim()}")
            if trace:
                snap1 = tracemalloc.take_snapshot()
                tracemalloc.stop()
                notes += _growth(snap0, snap1, types0, _type_counts())
            t_stop = time.perf_counter()
        stop_s = time.perf_counter() - t_stop
        if watched:
            stop_scraping.set()
            server.shutdown()
            notes.append(
                f"      callbacks heard {heard[0]:,} trades and {heard[1]:,} candles;"
                f" metrics scraped {scrapes[0]} times"
            )
        await client.close()
        notes.append(f"      {_check_stored(store, symbols, c.stats.feed_overflows)}")
        store.close()
    secs = (run.t1 - run.t0) / 1000
    if window:
        ms = np.asarray([w[0] for w in window]) * 1000
        rows = sum(w[1] for w in window)
        notes.insert(
            0,
            f"      storage.write: {len(window)} calls, {rows / len(window):,.0f} rows each,"
            f" {ms.mean():.1f} ms mean, p50 {np.median(ms):.1f}, p95"
            f" {np.percentile(ms, 95):.1f}; busy {ms.sum() / 1000 / secs:.0%} of the run",
        )
    notes.insert(
        1 if window else 0,
        f"      stop took {stop_s:.1f} s; then buffered {c.buffered_rows:,} (lost),"
        f" dropped {c.stats.rows_dropped:,}, duplicates {c.stats.duplicates:,}",
    )
    run.notes = notes
    return run


def _check_stored(store: Any, symbols: list[str], overflows: int) -> str:
    """Trade ids missing inside the spans the store says it covers (the emulator numbers
    each market's trades consecutively, so any missing id is a lost trade)."""
    from mdcollect import DatasetKey

    spans = missing = 0
    for sym in symbols:
        key = DatasetKey("binance", sym, "trades")
        for iv in store.coverage(key):
            spans += 1
            ids = store.read(key, iv.start, iv.end)["id"].astype("int64").to_numpy()
            if len(ids):
                missing += int(ids.max() - ids.min() + 1 - len(np.unique(ids)))
    return (
        f"stored trades: {spans} covered spans over {len(symbols)} symbols, {missing} ids"
        f" missing inside them; ccxt cache overflows refilled from REST: {overflows}"
    )


async def bench_end_to_end(
    seconds: float,
    tpm: float,
    n_symbols: int,
    *,
    warmup: float = 3.0,
    bare: bool = True,
    trace: bool = False,
    options: dict[str, Any] | None = None,
    watch: bool = True,
) -> None:
    from mdcollect.testing import EmulatorProcess, MarketSpec, SyntheticMarket

    symbols = [f"{b}/USDT" for b in SYMBOLS[:n_symbols]]
    symbols += [f"X{i}/USDT" for i in range(len(symbols), n_symbols)]
    # listed a minute ago: trade ids start near 1 and nothing needs older history
    listed = int(time.time() * 1000) - 60_000
    specs = [
        MarketSpec(s, 10.0 * (i + 1), trades_per_minute=tpm, listed=listed, exchange="binance")
        for i, s in enumerate(symbols)
    ]
    seed = 1
    print(
        f"end to end, Binance websocket trades, {len(symbols)} symbols x {tpm:,.0f}/min ="
        f" {len(symbols) * tpm / 60:,.0f} trades/s offered, emulator in its own process,"
        f" {seconds:.0f} s each ({os.cpu_count()} cores)"
    )
    runs: list[Run] = []
    with EmulatorProcess(seed=seed, markets=specs, rate_limits=False) as proc:
        if bare:
            runs.append(await _run_bare(proc.url, symbols, seconds, warmup, proc.pid))
        runs.append(
            await _run_collector(
                proc.url, symbols, seconds, warmup, proc.pid, trace=trace, options=options or {}
            )
        )
        if watch:
            runs.append(
                await _run_collector(
                    proc.url, symbols, seconds, warmup, proc.pid, trace=False,
                    options=options or {}, watched=True,
                )
            )  # fmt: skip
    # the trades the emulator offered, counted after the runs so that generating
    # them here does not weigh on the RSS figures above
    truth = SyntheticMarket(seed, specs, venues={"binance": []})
    for run in runs:
        offered = sum(len(truth.raw_trades("binance", s, run.t0, run.t1)) for s in symbols)
        _report(run, offered)
        print(f"      limited by {_verdict(run, offered)}")
        for line in run.notes:
            print(line)
    if watch:
        plain, watched = runs[-2], runs[-1]
        # % of a core / trades per s = CPU s per trade; x 1e6 / 100 = CPU ms per 1,000 trades
        per = [r.cpu * 10_000 / max(r.rate, 1e-9) for r in (plain, watched)]
        print(
            f"  watching (callbacks + metrics): {per[0]:.1f} -> {per[1]:.1f} client CPU ms per"
            f" 1,000 trades stored, {100 * (per[1] / per[0] - 1):+.1f}% (target < +5%)"
        )
    if bare:
        b, ours = runs[0], runs[1]
        secs = (ours.t1 - ours.t0) / 1000
        print(
            f"  ratio collector/bare       {ours.rate / b.rate:5.2f}x into the store,"
            f" {ours.received_by_collector / secs / b.rate:5.2f}x received (target >= 0.8)"
        )


@dataclass
class Writes:
    """Every ``store.write``: ``(seconds, rows)``, and the trade rows stored so far."""

    log: list[tuple[float, int]] = field(default_factory=list)
    trade_rows: int = 0


def _time_writes(store: Any) -> Writes:
    """Time every ``store.write`` and count trade rows stored (wrapping the instance's method)."""
    writes = Writes()
    inner = store.write

    def write(key: Any, frame: Any, **kw: Any) -> int:
        t = time.perf_counter()
        n = int(inner(key, frame, **kw))
        writes.log.append((time.perf_counter() - t, len(frame)))
        if key.kind == "trades":
            writes.trade_rows += len(frame)
        return n

    store.write = write
    return writes


def _type_counts() -> Counter[str]:
    """Live objects tracked by the garbage collector, by type name."""
    gc.collect()
    return Counter(type(o).__name__ for o in gc.get_objects())


def _growth(
    before: Any, after: Any, types0: Counter[str], types1: Counter[str], top: int = 12
) -> list[str]:
    """Object types and call sites whose live Python allocations grew most over the run."""
    grown = sorted(types1.keys(), key=lambda k: types0[k] - types1[k])[:top]
    out = ["  live objects by type (gc), growth over the collector run:"]
    out.append("    " + ", ".join(f"{k} {types1[k] - types0[k]:+,}" for k in grown))
    out.append(f"  tracemalloc: top {top} growths over the collector run")
    for st in after.compare_to(before, "traceback")[:top]:
        out.append(f"    {st.size_diff / 1e6:+8.2f} MB {st.count_diff:+8d} blocks")
        out += [f"        {line}" for line in st.traceback.format()]
    return out


def _lines(stream: Any) -> list[str]:
    """The lines of a child's stream, appended as they come (read in a daemon thread)."""
    import threading

    lines: list[str] = []

    def read() -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    return lines


def _until(pred: Callable[[], bool], seconds: float, what: str) -> float:
    deadline = time.monotonic() + seconds
    while not pred():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not seen in {seconds:g}s: {what}")
        time.sleep(0.01)
    return time.monotonic()


def _stored(status: str) -> int:
    import json

    try:
        cols = json.loads(open(status).read())["status"]["collectors"]  # noqa: SIM115
    except (OSError, ValueError, KeyError):
        return 0
    return sum(c["rows_stored"] for c in cols.values())


def _takeover(url: str, storage: str, workdir: str, extra: list[str]) -> tuple[float, float]:
    """Two ``mdcollect collect`` on one config and store; SIGKILL the leader. Seconds
    from the kill to the standby's "leader" line and to its first stored row."""
    import signal
    import subprocess

    config = os.path.join(workdir, "collect.toml")
    with open(config, "w") as f:
        f.write(
            f'storage = "{storage}"\n[[collectors]]\nexchange = "binance"\n'
            'symbols = ["BTC/USDT"]\nkinds = ["trades"]\nmode = "ws"\n'
        )
    procs = []

    def start(name: str) -> tuple[subprocess.Popen[str], list[str], str]:
        status = os.path.join(workdir, f"{name}.json")
        proc = subprocess.Popen(
            [sys.executable, "-m", "mdcollect.cli", "collect", config, "--emulate-url", url,
             "--status-every", "0.05", "--status-file", status, *extra],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        procs.append(proc)
        return proc, _lines(proc.stdout), status

    try:
        a, a_out, a_status = start("a")
        _until(lambda: any("leader:" in x for x in a_out), 60, "a leader")
        _until(lambda: _stored(a_status) > 0, 60, "the leader's rows")
        _, b_out, b_status = start("b")
        _until(lambda: any("standby:" in x for x in b_out), 60, "a standby")
        a.kill()
        killed = time.monotonic()
        leads = _until(lambda: any("leader:" in x for x in b_out), 60, "the takeover")
        row = _until(lambda: _stored(b_status) > 0, 60, "the new leader's rows")
        return leads - killed, row - killed
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            proc.wait(60)


def bench_takeover() -> None:
    """One leader: the takeover time with each lease, from SIGKILL to the standby's
    first stored row (the default ttl of 10 s for Redis)."""
    import shutil
    import socket
    import subprocess

    from mdcollect.collectors import DEFAULT_TTL
    from mdcollect.testing import EmulatorProcess, MarketSpec

    listed = int(time.time() * 1000) - 60_000
    spec = MarketSpec("BTC/USDT", 30_000.0, trades_per_minute=1200, listed=listed,
                      exchange="binance")  # fmt: skip
    print("takeover: two 'mdcollect collect' on one config and store, the leader SIGKILLed")
    with EmulatorProcess(seed=1, markets=[spec], rate_limits=False) as emu:
        with tempfile.TemporaryDirectory() as tmp:
            lead, row = _takeover(emu.url, f"parquet://{tmp}/store", tmp, [])
            print(f"  file lease (flock)        leader after {lead:5.2f} s, first stored row"
                  f" after {row:5.2f} s")  # fmt: skip
        exe = shutil.which("redis-server")
        if exe is None:
            print("  redis lease               unavailable (redis-server not installed)")
            return
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with tempfile.TemporaryDirectory() as tmp:
            server = subprocess.Popen(
                [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", tmp],
                stdout=subprocess.DEVNULL,
            )
            try:
                _until(lambda: _listening(port), 20, "redis-server")
                lead, row = _takeover(emu.url, f"redis://127.0.0.1:{port}/0", tmp, [])
            finally:
                server.terminate()
                server.wait(10)
            print(f"  redis lease (ttl {DEFAULT_TTL:g} s)    leader after {lead:5.2f} s, first"
                  f" stored row after {row:5.2f} s (bound: ttl + ttl/5 = {DEFAULT_TTL * 1.2:g} s)")  # fmt: skip


def _listening(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _bare_child(url: str, symbols: list[str], seconds: float, warmup: float) -> None:
    """One bare ``ccxt.pro`` loop of ``--workers`` (in its own process): print JSON with
    the trades received in the window and this process's CPU%."""
    import json

    async def run() -> dict[str, float]:
        import ccxt.pro

        from mdcollect.exchanges._urls import redirect_urls

        ex = ccxt.pro.binance({"enableRateLimit": False})
        redirect_urls(ex, url)
        await ex.load_markets()
        got = [0]

        async def loop(symbol: str) -> None:
            while True:
                trades = await ex.watch_trades(symbol, None, None, {"newUpdates": True})
                got[0] += len(trades)

        tasks = [asyncio.create_task(loop(s)) for s in symbols]
        try:
            await asyncio.sleep(warmup)
            n0, c0, t0 = got[0], time.process_time(), time.perf_counter()
            await asyncio.sleep(seconds)
            secs = time.perf_counter() - t0
            return {"received": got[0] - n0, "seconds": secs,
                    "cpu": 100 * (time.process_time() - c0) / secs}  # fmt: skip
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await ex.close()

    print(json.dumps(asyncio.run(run())), flush=True)


def bench_workers(
    seconds: float, tpm: float, n_symbols: int, workers: int, warmup: float, rounds: int = 1
) -> None:
    """``mdcollect collect --workers N`` (``TradesCollector`` ws, 1s and 1m candles, into
    ArcticDB/LMDB) beside N bare ``ccxt.pro`` loops, each in its own process with the same
    symbols as the worker of that index (``shard_symbols``), on one emulator process."""

    from mdcollect.collectors import shard_symbols
    from mdcollect.testing import EmulatorProcess, MarketSpec

    symbols = [f"{b}/USDT" for b in SYMBOLS[:n_symbols]]
    symbols += [f"X{i}/USDT" for i in range(len(symbols), n_symbols)]
    listed = int(time.time() * 1000) - 60_000
    specs = [
        MarketSpec(s, 10.0 * (i + 1), trades_per_minute=tpm, listed=listed, exchange="binance")
        for i, s in enumerate(symbols)
    ]
    section = {"exchange": "binance", "symbols": symbols, "kinds": ["trades"], "mode": "ws",
               "candles": ["1s", "1m"]}  # fmt: skip
    shards = [[p.split(":", 1)[1] for p in sh] for sh in shard_symbols({"collectors": [section]},
                                                                        workers)]  # fmt: skip
    offered = len(symbols) * tpm / 60
    print(
        f"{workers} workers, Binance websocket trades, {len(symbols)} symbols x {tpm:,.0f}/min ="
        f" {offered:,.0f} trades/s offered, emulator in its own process, {seconds:.0f} s each"
        f" ({os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f} at the start)"
    )
    ratios = []
    with EmulatorProcess(seed=1, markets=specs, rate_limits=False) as emu:
        for r in range(rounds):  # alternated: the machine's other load weighs on both
            if rounds > 1:
                print(f" round {r + 1} of {rounds}")
            bare_rate, bare_cpu = _bare_round(emu, shards, seconds, warmup)
            rate, cpu = _workers_round(emu, symbols, workers, seconds, warmup)
            ratios.append(rate / bare_rate)
            # on a machine shared with other work, the CPU each side got differs: rows
            # per client CPU-second says what each would do with the same cores
            per = (rate / max(cpu, 1e-9)) / (bare_rate / max(bare_cpu, 1e-9))
            print(f"  ratio collect --workers {workers} / bare x{workers}: {ratios[-1]:5.2f}x"
                  f" stored/received (target >= 0.8); offered {offered:,.0f}/s; per client"
                  f" CPU-second {per:5.2f}x")  # fmt: skip
    if rounds > 1:
        print(f"  median ratio over {rounds} rounds: {float(np.median(ratios)):5.2f}x"
              f" ({', '.join(f'{x:.2f}' for x in ratios)})")  # fmt: skip


def _bare_round(
    emu: Any, shards: list[list[str]], seconds: float, warmup: float
) -> tuple[float, float]:
    """N bare loops, one process each, the workers' split: trades/s received in all, and
    the cores their processes used."""
    import json
    import subprocess

    emu0, busy0, t0 = _cpu_seconds(emu.pid), _machine_busy()[0], time.perf_counter()
    argv = [[sys.executable, __file__, "--bare-child", emu.url, ",".join(sh),
             str(seconds), str(warmup)] for sh in shards]  # fmt: skip
    bare = [subprocess.Popen(a, stdout=subprocess.PIPE, text=True) for a in argv]
    results = [json.loads(p.communicate(timeout=seconds + warmup + 120)[0]) for p in bare]
    elapsed = time.perf_counter() - t0
    bare_rate = float(sum(r["received"] / r["seconds"] for r in results))
    emu_cpu = 100 * (_cpu_seconds(emu.pid) - emu0) / elapsed
    cpus = " + ".join(f"{r['cpu']:.0f}%" for r in results)
    print(
        f"  bare ccxt.pro x{len(shards)} processes {bare_rate:8.0f} trades/s received;"
        f" CPU {cpus}; emulator ~{emu_cpu:.0f}% (over warmup too); machine busy"
        f" {100 * (_machine_busy()[0] - busy0) / elapsed:.0f}% of a core;"
        f" load average {os.getloadavg()[0]:.2f}"
    )
    return bare_rate, sum(r["cpu"] for r in results) / 100


def _workers_round(emu: Any, symbols: list[str], workers: int, seconds: float,
                   warmup: float) -> tuple[float, float]:  # fmt: skip
    """``mdcollect collect --workers N`` as the CLI runs it: rows/s stored, and the cores
    its worker processes used."""
    import json
    import signal
    import subprocess

    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        config = os.path.join(tmp, "collect.toml")
        with open(config, "w") as f:
            f.write(
                f'storage = "arctic+lmdb://{tmp}/arctic"\n[[collectors]]\n'
                f'exchange = "binance"\nsymbols = {json.dumps(symbols)}\n'
                'kinds = ["trades"]\nmode = "ws"\ncandles = ["1s", "1m"]\n'
            )
        status = os.path.join(tmp, "status.json")
        proc = subprocess.Popen(
            [sys.executable, "-m", "mdcollect.cli", "-q", "collect", config, "--emulate-url",
             emu.url, "--workers", str(workers), "--no-lease", "--status-every", "0.2",
             "--status-file", status],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            _until(lambda: len(_worker_pids(status)) == workers and _stored(status) > 0,
                   120, "every worker storing")  # fmt: skip
            time.sleep(warmup)
            pids = _worker_pids(status)
            cpu0 = [_cpu_seconds(p) for p in pids]
            emu0, busy0 = _cpu_seconds(emu.pid), _machine_busy()[0]
            rows0, p0 = _stored(status), time.perf_counter()
            time.sleep(seconds)
            rows1, secs = _stored(status), time.perf_counter() - p0
            cpu = [100 * (_cpu_seconds(p) - c) / secs for p, c in zip(pids, cpu0, strict=True)]
            emu_cpu = 100 * (_cpu_seconds(emu.pid) - emu0) / secs
            busy = 100 * (_machine_busy()[0] - busy0) / secs
            load = os.getloadavg()[0]
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(120)
    rate = (rows1 - rows0) / secs
    cpus = " + ".join(f"{c:.0f}%" for c in cpu)
    print(
        f"  collect --workers {workers}        {rate:8.0f} rows/s stored (trades and their"
        f" 1s/1m candles); CPU {cpus}; emulator {emu_cpu:.0f}%; machine busy {busy:.0f}% of"
        f" a core; load average {load:.2f}; exit {code}"
    )
    return rate, sum(cpu) / 100


def _worker_pids(status: str) -> list[int]:
    import json

    try:
        rows = json.loads(open(status).read())["status"]["workers"]  # noqa: SIM115
    except (OSError, ValueError, KeyError):
        return []
    return [w["pid"] for w in rows if w["running"]]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--trades", type=float, default=10e6)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--trades-per-minute", type=float, default=60_000.0, help="per symbol")
    p.add_argument("--symbols", type=int, default=15)
    p.add_argument("--no-aggregation", action="store_true", help="skip part 1")
    p.add_argument("--no-bare", action="store_true", help="skip the bare ccxt.pro loop")
    p.add_argument("--tracemalloc", action="store_true", help="diff allocations (slow)")
    p.add_argument("--no-watch", action="store_true", help="skip the watched collector run")
    p.add_argument("--batch-rows", type=int, default=None, help="TradesCollector batch_rows")
    p.add_argument("--batch-seconds", type=float, default=None, help="... and batch_seconds")
    p.add_argument("--no-takeover", action="store_true", help="skip the takeover times")
    p.add_argument("--only-takeover", action="store_true", help="only the takeover times")
    p.add_argument("--workers", type=int, default=None,
                   help="only: collect --workers N against N bare loops in N processes")  # fmt: skip
    p.add_argument("--rounds", type=int, default=1, help="--workers: bare/collect pairs to run")
    p.add_argument("--bare-child", nargs=4, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.bare_child:
        url, syms, secs, warm = args.bare_child
        _bare_child(url, syms.split(","), float(secs), float(warm))
        return 0
    if args.workers is not None:
        bench_workers(args.seconds, args.trades_per_minute, args.symbols, args.workers, 3.0,
                      args.rounds)  # fmt: skip
        return 0
    if args.only_takeover:
        bench_takeover()
        return 0
    options = {
        k: v
        for k, v in (("batch_rows", args.batch_rows), ("batch_seconds", args.batch_seconds))
        if v is not None
    }
    if not args.no_aggregation:
        bench_aggregation(int(args.trades))
    asyncio.run(
        bench_end_to_end(
            args.seconds,
            args.trades_per_minute,
            args.symbols,
            bare=not args.no_bare,
            trace=args.tracemalloc,
            options=options,
            watch=not args.no_watch,
        )
    )
    if not args.no_takeover:
        bench_takeover()
    return 0


if __name__ == "__main__":
    sys.exit(main())
