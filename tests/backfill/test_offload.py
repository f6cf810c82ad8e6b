"""Storage calls inside ``async def`` run in a worker thread: a slow backend never
stalls the event loop (other tasks, a collector beside a backfill, keep running)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mdcollect import DatasetKey, IntervalSet, ensure_data_async, load_ohlcv_async
from mdcollect.backfill import OHLCVBackfill, plan_jobs, run_jobs
from mdcollect.exchanges import ExchangeClient, RetryPolicy, exchange_info
from mdcollect.storage.memory import MemoryStorage
from mdcollect.testing import ExchangeEmulator

DAY = 86_400_000
MAR1 = 1_709_251_200_000  # 2024-03-01
#: How long a blocked storage call waits for the loop to show it is alive: far longer
#: than a free loop needs to run a ticker step, and no test waits it unless it fails.
PATIENCE = 5.0


class SlowStorage(MemoryStorage):
    """A real memory backend whose reads block their thread until the event loop has
    run another task (a fault injection: a slow disk or a remote backend).

    On the loop's own thread that never happens, so each call records whether the
    loop ran meanwhile: ``True`` off the loop, ``False`` (after ``PATIENCE``) on it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.alive = threading.Event()
        self.calls: list[tuple[str, bool]] = []

    def _block(self, name: str) -> None:
        self.alive.clear()
        self.calls.append((name, self.alive.wait(PATIENCE)))

    def read(self, key: Any, start: Any = None, end: Any = None, columns: Any = None) -> Any:
        self._block("read")
        return super().read(key, start, end, columns)

    def coverage(self, key: DatasetKey | str) -> IntervalSet:
        self._block("coverage")
        return super().coverage(key)


@contextlib.asynccontextmanager
async def ticking(storage: SlowStorage) -> AsyncIterator[list[int]]:
    """A task beside the call that ticks (and tells the storage so) while the loop is free."""
    ticks = [0]

    async def tick() -> None:
        while True:
            ticks[0] += 1
            storage.alive.set()
            await asyncio.sleep(0.001)

    task = asyncio.create_task(tick())
    try:
        yield ticks
    finally:
        task.cancel()


def client(emu: ExchangeEmulator) -> ExchangeClient:
    retry = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.01)
    return ExchangeClient("binance", base_url=emu.url, enableRateLimit=False, retry=retry)


def off_the_loop(calls: Sequence[tuple[str, bool]], *names: str) -> None:
    assert {name for name, _ in calls} >= set(names), calls
    assert all(alive for _, alive in calls), f"a storage call blocked the event loop: {calls}"


@pytest.fixture
def emu() -> Any:
    with ExchangeEmulator(rate_limits=False) as e:
        yield e


async def test_run_jobs_reads_coverage_in_a_worker_thread(emu: ExchangeEmulator) -> None:
    store = SlowStorage()
    job = OHLCVBackfill("binance", "BTC/USDT", "1h", MAR1, MAR1 + DAY)
    async with client(emu) as c, ticking(store) as ticks:
        (report,) = await run_jobs([job], store, c, now=MAR1 + 10 * DAY, progress=False)
    assert report.ok and report.rows == 24
    assert ticks[0] > 0
    off_the_loop(store.calls, "coverage")
    assert len(MemoryStorage.read(store, job.key)) == 24  # the rows are stored


async def test_plan_jobs_reads_coverage_in_a_worker_thread() -> None:
    store = SlowStorage()
    job = OHLCVBackfill("binance", "BTC/USDT", "1h", MAR1, MAR1 + DAY)
    async with ticking(store):
        (plan,) = await plan_jobs([job], store, exchange_info("binance"), now=MAR1 + 10 * DAY)
    assert plan.requests == 1
    off_the_loop(store.calls, "coverage")


async def test_load_ohlcv_async_reads_in_a_worker_thread(emu: ExchangeEmulator) -> None:
    store = SlowStorage()
    async with client(emu) as c, ticking(store):
        frame = await load_ohlcv_async(
            "BTC/USDT", "1h", "2024-03-01", "2024-03-01", exchange=c, storage=store,
            progress=False, clock=lambda: MAR1 + 10 * DAY,
        )  # fmt: skip
        again = await load_ohlcv_async(
            ["BTC/USDT"], "1h", "2024-03-01", "2024-03-01", exchange=c, storage=store,
            ensure=False,
        )  # fmt: skip
    assert len(frame) == 24 and isinstance(frame, pd.DataFrame)
    pd.testing.assert_frame_equal(again["BTC/USDT"], frame)
    off_the_loop(store.calls, "coverage", "read")


async def test_ensure_data_async_reads_in_a_worker_thread(emu: ExchangeEmulator) -> None:
    store = SlowStorage()
    async with client(emu) as c, ticking(store):
        report = await ensure_data_async(
            ["BTC/USDT"], "1h", "2024-03-01", "2024-03-01", exchange=c, padding_days=0,
            storage=store, progress=False, clock=lambda: MAR1 + 10 * DAY,
        )  # fmt: skip
        dry = await ensure_data_async(
            ["BTC/USDT"], "1h", "2024-03-01", "2024-03-02", exchange=c, padding_days=0,
            storage=store, progress=False, clock=lambda: MAR1 + 10 * DAY, dry_run=True,
        )  # fmt: skip
    assert report.ok and report.candles_fetched == 24
    assert [len(p.windows) for p in dry.plans] == [1]
    off_the_loop(store.calls, "coverage", "read")


@pytest.mark.parametrize("call", ["load_ohlcv_async", "ensure_data_async"])
async def test_opening_a_store_runs_in_a_worker_thread(tmp_path: Path, call: str) -> None:
    """Opening an ArcticDB store waits for its library lock while another process
    creates the library; that wait must not stall the loop."""
    root = tmp_path / "store"
    lock = root / ".locks" / "_library.lock"
    lock.parent.mkdir(parents=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)  # the other process, creating the library
    alive, ticked_while_locked = threading.Event(), []

    def release_once_the_loop_ticks() -> None:
        alive.clear()
        ticked_while_locked.append(alive.wait(PATIENCE))
        os.close(fd)

    async def tick() -> None:
        while True:
            alive.set()
            await asyncio.sleep(0.001)

    ticker = asyncio.create_task(tick())
    releaser = threading.Thread(target=release_once_the_loop_ticks)
    releaser.start()
    url = f"arctic+lmdb://{root}"
    try:
        if call == "load_ohlcv_async":
            frame = await load_ohlcv_async(
                "BTC/USDT", "1h", "2024-03-01", "2024-03-02", exchange="binance", storage=url,
                ensure=False,
            )  # fmt: skip
            assert len(frame) == 0
        else:
            report = await ensure_data_async(
                ["BTC/USDT"], "1h", "2024-03-01", "2024-03-01", exchange="binance",
                storage=url, dry_run=True, clock=lambda: MAR1 + 10 * DAY,
            )  # fmt: skip
            assert [p.requests for p in report.plans] == [1]
    finally:
        ticker.cancel()
        await asyncio.to_thread(releaser.join)
    assert ticked_while_locked == [True], "opening the store blocked the event loop"
