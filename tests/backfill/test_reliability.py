"""Faults, kills and concurrent processes must leave stored data exactly as a clean run."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from mdcollect import (
    DataCollectionStorage,
    DatasetKey,
    Interval,
    IntervalSet,
    ensure_data,
    open_storage,
)
from mdcollect.exchanges import ExchangeClient, RetryPolicy
from mdcollect.testing import ExchangeEmulator, Fault

DAY = 86_400_000
MINUTE = 60_000
MAR1 = 1_677_628_800_000  # 2023-03-01
SYMBOLS = ["BTC/USDT", "ETH/USDT"]


def truth(emu: ExchangeEmulator, sym: str, lo: int, hi: int) -> pd.DataFrame:
    # Binance klines carry the quote volume, trade count and taker-buy volumes
    return emu.market.candles("binance", sym, "1m", lo, hi).to_frame(
        ("quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume")
    )


def assert_coverage_backed_by_rows(store: DataCollectionStorage, key: DatasetKey) -> None:
    """Coverage never claims a minute whose candle is not stored (Binance has every minute)."""
    rows = set((store.read(key, columns=[]).index.asi8 // 1_000_000).tolist())
    for iv in store.coverage(key):
        missing = [t for t in range(iv.start, iv.end, MINUTE) if t not in rows]
        assert not missing, f"{key}: covered but not stored: {missing[:3]}"


def test_fault_storm_leaves_data_equal_to_a_clean_run() -> None:
    lo, hi = MAR1, MAR1 + 40 * DAY
    with ExchangeEmulator(rate_limits=False, seed=7) as emu:
        for fault in [
            Fault("500", rate=0.02), Fault("502", rate=0.015), Fault("503", rate=0.015),
            Fault("429", rate=0.02, retry_after=0.2), Fault("timeout", rate=0.01, delay=3.0),
            Fault("drop", rate=0.01), Fault("malformed", rate=0.01),
            Fault("duplicate", rate=0.1, route="klines"), Fault("overlap", rate=0.1, route="klines"),
        ]:  # fmt: skip
            emu.faults.add(fault)
        client = ExchangeClient(
            "binance", base_url=emu.url, enableRateLimit=False, timeout=1000,
            retry=RetryPolicy(max_attempts=10, base_delay=0.01, max_delay=0.2),
        )  # fmt: skip
        faulty = open_storage("memory://")
        r = ensure_data(
            SYMBOLS, "1m", "2023-03-01", "2023-04-09", client, 0, faulty, progress=False
        )
        statuses = collections.Counter(q.status for q in emu.requests)
        emu.faults.clear()
        clean = open_storage("memory://")
        ensure_data(SYMBOLS, "1m", "2023-03-01", "2023-04-09",
                    ExchangeClient("binance", base_url=emu.url, enableRateLimit=False), 0, clean,
                    progress=False)  # fmt: skip
        assert r.ok, [s.errors for s in r.symbols]
        # the faults really happened: 5xx, 429 and broken connections were answered
        assert statuses[500] + statuses[502] + statuses[503] >= 3, statuses
        assert statuses[429] >= 1, statuses
        assert statuses[418] == 0, "Retry-After was not honoured: the emulator banned the client"
        for sym in SYMBOLS:
            key = DatasetKey("binance", sym, "ohlcv", "1m")
            pd.testing.assert_frame_equal(faulty.read(key), clean.read(key))
            pd.testing.assert_frame_equal(
                faulty.read(key), truth(emu, sym, lo, hi), check_freq=False
            )
            assert faulty.coverage(key) == clean.coverage(key) == IntervalSet([Interval(lo, hi)])


_CHILD = textwrap.dedent(
    """
    import sys
    from mdcollect import ensure_data, open_storage
    from mdcollect.exchanges import ExchangeClient
    url, storage_url, symbols = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
    client = ExchangeClient("binance", base_url=url, enableRateLimit=False)
    r = ensure_data(symbols, "1m", "2023-03-01", "2023-03-20", client, 0, open_storage(storage_url),
                    progress=False, concurrency=2)
    print("OK" if r.ok else "PARTIAL", flush=True)
    """
)


def _child(url: str, storage_url: str, symbols: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, url, storage_url, ",".join(symbols)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.fixture(params=["arctic_lmdb", "parquet"])
def disk_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return {
        "arctic_lmdb": f"arctic+lmdb://{tmp_path / 'lmdb'}",
        "parquet": f"parquet://{tmp_path / 'pq'}",
    }[str(request.param)]


def test_sigkill_at_several_points_then_rerun_gives_identical_data(disk_url: str) -> None:
    lo, hi = MAR1, MAR1 + 20 * DAY
    with ExchangeEmulator(rate_limits=False) as emu:
        emu.faults.add(Fault("slow", route="klines", delay=0.03))
        # kill after 3, 10 and 25 candle pages of each run: early, mid-window, late
        for pages in (3, 10, 25):
            seen = len(emu.requests)
            proc = _child(emu.url, disk_url, SYMBOLS)
            deadline = time.monotonic() + 120
            while sum(1 for q in emu.requests[seen:] if q.path.endswith("klines")) < pages:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the child made no progress"
                time.sleep(0.005)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            with open_storage(disk_url) as store:
                for sym in SYMBOLS:
                    key = DatasetKey("binance", sym, "ohlcv", "1m")
                    got = store.read(key)
                    assert got.index.is_unique and got.index.is_monotonic_increasing
                    assert_coverage_backed_by_rows(store, key)
        kills = sum(1 for q in emu.requests if q.path.endswith("klines"))
        emu.faults.clear()
        proc = _child(emu.url, disk_url, SYMBOLS)
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0 and "OK" in out, err
        assert kills > 0
        with open_storage(disk_url) as store:
            for sym in SYMBOLS:
                key = DatasetKey("binance", sym, "ohlcv", "1m")
                pd.testing.assert_frame_equal(
                    store.read(key), truth(emu, sym, lo, hi), check_freq=False
                )
                assert store.coverage(key) == IntervalSet([Interval(lo, hi)])


def test_two_processes_ensuring_the_same_symbols_at_once(disk_url: str) -> None:
    lo, hi = MAR1, MAR1 + 20 * DAY
    with ExchangeEmulator(rate_limits=False) as emu:
        procs = [
            _child(emu.url, disk_url, SYMBOLS),
            _child(emu.url, disk_url, list(reversed(SYMBOLS))),
        ]
        for p in procs:
            out, err = p.communicate(timeout=240)
            assert p.returncode == 0 and "OK" in out, err
        with open_storage(disk_url) as store:
            for sym in SYMBOLS:
                key = DatasetKey("binance", sym, "ohlcv", "1m")
                pd.testing.assert_frame_equal(
                    store.read(key), truth(emu, sym, lo, hi), check_freq=False
                )
                assert store.coverage(key) == IntervalSet([Interval(lo, hi)])


async def test_a_fetch_that_fails_with_a_bug_is_raised_not_waited_for() -> None:
    """A strategy whose fetch raises something other than ExchangeError (a parsing bug)
    ends the run with that error; the engine never waits forever for the window."""
    from collections.abc import AsyncIterator

    from mdcollect.backfill import Chunk, OHLCVBackfill, run_jobs

    class Broken(OHLCVBackfill):
        async def fetch(self, client: ExchangeClient, window: Interval) -> AsyncIterator[Chunk]:
            raise ValueError("a parser bug")
            yield  # an async generator, as the real ones are

    with ExchangeEmulator(rate_limits=False) as emu:
        async with ExchangeClient("binance", base_url=emu.url) as client:
            job = Broken("binance", "BTC/USDT", "1h", MAR1, MAR1 + 3 * DAY)
            store = open_storage("memory://")
            with pytest.raises(ValueError, match="a parser bug"):
                await asyncio.wait_for(run_jobs([job], store, client, now=MAR1 + 10 * DAY), 30)
            assert store.coverage(job.key) == IntervalSet()


def test_a_job_given_epoch_seconds_is_refused_naming_the_value() -> None:
    from mdcollect import InvalidRequest
    from mdcollect.backfill import OHLCVBackfill

    with pytest.raises(InvalidRequest, match=r"backfill start 1677628800 looks like seconds"):
        OHLCVBackfill("binance", "BTC/USDT", "1h", MAR1 // 1000, MAR1 + DAY)
