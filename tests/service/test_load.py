"""The service under load: a cap on running sync jobs, identical syncs coalesced onto one
job, overlapping syncs never fetching a dataset twice at once, bounded job memory, and a
clean shutdown with jobs running. Slowness comes from the emulator's ``slow`` fault."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from mdcollect import DataCollectionStorage, open_storage
from mdcollect._api import sync_request
from mdcollect.service._jobs import Jobs
from mdcollect.testing import ExchangeEmulator, Fault
from tests.conftest import _wait_port, free_port

from .conftest import LiveServer

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"


def body(symbols: list[str], start: str = "2024-02-01", end: str = "2024-02-28", tf: str = "1h") -> dict[str, Any]:  # fmt: skip
    return {"symbols": symbols, "timeframe": tf, "start_date": start, "end_date": end,
            "padding_days": 0}  # fmt: skip


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what} after {timeout}s")
        time.sleep(0.02)


def status(live: LiveServer) -> dict[str, Any]:
    return httpx.get(f"{live.url}/api/v1/status", timeout=10).json()  # type: ignore[no-any-return]


def job(live: LiveServer, job_id: str) -> dict[str, Any]:
    return httpx.get(f"{live.url}/api/v1/sync/{job_id}", timeout=10).json()  # type: ignore[no-any-return]


def klines(emu: ExchangeEmulator, since: int) -> list[tuple[str, str]]:
    """(symbol, startTime) of every candle page the exchange was asked for."""
    return [(r.params["symbol"], r.params.get("startTime", ""))
            for r in emu.requests[since:] if r.route == "klines"]  # fmt: skip


@pytest.fixture
def slow(emu: ExchangeEmulator) -> Iterator[Callable[..., Fault]]:
    """``slow(delay, count=None)``: candle pages answer after ``delay`` s (removed after)."""
    added: list[Fault] = []

    def add(delay: float, count: int | None = None) -> Fault:
        added.append(emu.faults.add(Fault("slow", route="klines", delay=delay, count=count)))
        return added[-1]

    yield add
    for fault in added:
        emu.faults.remove(fault)


# -- the cap ---------------------------------------------------------------------------


def test_a_full_service_answers_503_with_retry_after_and_starts_nothing(
    serve: Callable[..., LiveServer], emu: ExchangeEmulator, slow: Callable[..., Fault]
) -> None:
    live = serve(max_jobs=2, sync_timeout=0.05)
    slow(2.0)  # each job asks for 2 pages: they run for 4 s
    running = [httpx.post(f"{live.url}/api/v1/sync", json=body([s]), timeout=10) for s in (BTC, ETH)]  # fmt: skip
    assert [r.status_code for r in running] == [202, 202], [r.text for r in running]
    assert status(live)["jobs"]["running"] == 2

    refused = httpx.post(f"{live.url}/api/v1/sync", json=body([BTC], "2024-03-01", "2024-03-02"), timeout=10)  # fmt: skip
    assert refused.status_code == 503, refused.text
    assert refused.headers["content-type"] == "application/json"
    assert int(refused.headers["retry-after"]) >= 1
    assert "2 sync jobs are running" in refused.json()["error"]
    assert "max_jobs" in refused.json()["error"]

    # full, yet a request identical to a running one joins it: it adds no work
    joined = httpx.post(f"{live.url}/api/v1/sync", json=body([ETH]), timeout=10)
    assert joined.status_code == 202 and joined.json()["job_id"] == running[1].json()["job_id"]

    for r in running:
        wait_until(lambda r=r: job(live, r.json()["job_id"])["status"] != "running", "the jobs")  # type: ignore[misc]
        assert job(live, r.json()["job_id"])["status"] == "completed"
    # the refused sync asked the exchange nothing (its range starts 2024-03-01)
    march = 1_709_251_200_000
    assert not [k for k in klines(emu, 0) if k[1] and int(k[1]) >= march]
    # room again: the same request is taken now
    again = httpx.post(f"{live.url}/api/v1/sync", json=body([BTC], "2024-03-01", "2024-03-02"), timeout=10)  # fmt: skip
    assert again.status_code in (200, 202), again.text
    doc = httpx.get(f"{live.url}/openapi.json", timeout=10).json()
    full = doc["paths"]["/api/v1/sync"]["post"]["responses"]["503"]
    assert "Retry-After" in full["headers"] and "max_jobs" in full["description"]


def test_max_jobs_is_checked() -> None:
    from mdcollect import InvalidRequest
    from mdcollect.service import DEFAULT_MAX_JOBS, create_app

    assert DEFAULT_MAX_JOBS == 4
    for bad in (0, -1):
        with pytest.raises(InvalidRequest, match=f"max_jobs.*{bad}"):
            create_app("memory://", max_jobs=bad)


# -- coalescing ----------------------------------------------------------------------


def test_identical_concurrent_syncs_are_one_job_asking_the_exchange_once(
    serve: Callable[..., LiveServer], emu: ExchangeEmulator, slow: Callable[..., Fault],
    storage: DataCollectionStorage,
) -> None:  # fmt: skip
    live = serve(sync_timeout=60)
    slow(2.0, count=1)  # the first page takes 2 s: every request arrives meanwhile
    n = len(emu.requests)
    # the same sync, symbols in either order (a set): 3 pages of 15m candles each
    bodies = [body([BTC, ETH] if i % 2 else [ETH, BTC], tf="15m") for i in range(6)]
    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(lambda b: httpx.post(f"{live.url}/api/v1/sync", json=b, timeout=60), bodies))  # fmt: skip
    assert [a.status_code for a in answers] == [200] * len(bodies), [a.text for a in answers]
    first = answers[0].json()
    assert {a.json()["job_id"] for a in answers} == {first["job_id"]}
    assert all(a.json()["report"] == first["report"] for a in answers)
    assert first["report"]["ok"] and first["report"]["candles_fetched"] == 2 * 28 * 96
    assert job(live, first["job_id"])["joined"] == len(bodies) - 1
    # the exchange was asked once per page, once for its markets: what one sync asks
    pages = klines(emu, n)
    # per symbol 3 pages (the first, starting where asked, shows the listing is earlier)
    assert len(pages) == 2 * 3
    assert Counter(pages).most_common(1)[0][1] == 1
    assert len(emu.requests) - n == first["report"]["requests"]
    assert status(live)["jobs"] == {"running": 0, "completed": 1, "failed": 0, "cancelled": 0}


def test_overlapping_syncs_fetch_a_shared_dataset_once(
    serve: Callable[..., LiveServer], emu: ExchangeEmulator, slow: Callable[..., Fault],
    storage: DataCollectionStorage,
) -> None:  # fmt: skip
    live = serve(sync_timeout=0.05)
    slow(1.0, count=1)
    n = len(emu.requests)
    a = httpx.post(f"{live.url}/api/v1/sync", json=body([BTC], tf="15m"), timeout=10).json()
    b = httpx.post(f"{live.url}/api/v1/sync", json=body([BTC, ETH], tf="15m"), timeout=10).json()
    assert a["job_id"] != b["job_id"]
    for j in (a, b):
        wait_until(lambda j=j: job(live, j["job_id"])["status"] != "running", "the jobs")  # type: ignore[misc]
    ra, rb = job(live, a["job_id"])["report"], job(live, b["job_id"])["report"]
    assert ra["ok"] and rb["ok"]
    pages = klines(emu, n)
    assert Counter(pages).most_common(1)[0][1] == 1, "a page was fetched twice"
    assert len(pages) == 2 * 3  # BTC's 3 pages once (by a), ETH's (by b)
    fetched = {s["symbol"]: s["candles_fetched"] for s in rb["symbols"]}
    assert fetched == {BTC: 0, ETH: 28 * 96}


async def test_a_job_claims_all_its_datasets_or_none_and_cancelling_frees_them() -> None:
    jobs, release = Jobs(), asyncio.Event()
    started: list[str] = []

    def work(name: str, wait: bool = False) -> Callable[[], Any]:
        async def run() -> dict[str, Any]:
            started.append(name)
            if wait:
                await release.wait()
            return {"job": name}

        return run

    def req(*symbols: str) -> Any:
        return sync_request(list(symbols), "1h", "2024-02-01", "2024-02-02", padding_days=0)

    a, _ = jobs.submit(req(BTC), work("a", wait=True))
    b, _ = jobs.submit(req(BTC, ETH), work("b"))  # waits for a (BTC) ...
    c, _ = jobs.submit(req(ETH), work("c"))  # ... holding nothing: c runs at once
    await c.task
    assert started == ["a", "c"] and b.status == "running"
    b.task.cancel()
    await asyncio.wait([b.task])
    assert b.status == "failed" and b.http_status == 503 and "stopping" in (b.error or "")
    d, _ = jobs.submit(req(ETH), work("d"))
    await d.task  # b left no claim behind
    release.set()
    await a.task
    e, _ = jobs.submit(req(BTC, ETH), work("e"))
    assert (await e.task) == {"job": "e"} and started == ["a", "c", "d", "e"]


# -- bounded memory of finished jobs ---------------------------------------------------------


async def test_finished_jobs_are_kept_for_a_bounded_time_and_count() -> None:
    now = [1_000.0]
    jobs = Jobs(max_running=2, keep=2, keep_seconds=60.0, clock=lambda: now[0])

    async def work() -> dict[str, Any]:
        return {"ok": True}

    done = []
    for day in ("2024-02-01", "2024-02-02", "2024-02-03"):
        job, _ = jobs.submit(sync_request([BTC], "1h", day, day, padding_days=0), work)
        await job.task
        done.append(job)
    assert done[0].finished == 1_000.0 and done[0].status == "completed"
    # the oldest finished job beyond `keep` is forgotten
    assert jobs.get(done[0].id) is None and jobs.get(done[2].id) is done[2]
    now[0] += 59.0
    assert jobs.get(done[1].id) is done[1]
    now[0] += 2.0  # over keep_seconds after they finished
    assert jobs.get(done[1].id) is None and jobs.get(done[2].id) is None
    assert jobs.counts() == {"running": 0, "completed": 0, "failed": 0, "cancelled": 0}


# -- shutdown --------------------------------------------------------------------------


#: every optional candle column of the emulator's truth (the stored ones are compared)
ALL = ("quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume", "vwap")


def covered_rows_are_stored(storage: DataCollectionStorage, emu: ExchangeEmulator) -> int:
    """Asserts every covered candle is stored and right; returns the covered candles."""
    total = 0
    for key in storage.keys(kind="ohlcv"):
        rows = storage.read(key)
        for iv in storage.coverage(key):
            truth = emu.market.candles(key.exchange, key.symbol, str(key.timeframe), iv.start, iv.end).to_frame(ALL)  # fmt: skip
            got = rows[(rows.index >= pd.Timestamp(iv.start, unit="ms", tz="UTC"))
                       & (rows.index < pd.Timestamp(iv.end, unit="ms", tz="UTC"))]  # fmt: skip
            pd.testing.assert_frame_equal(got, truth[list(got.columns)], check_freq=False)
            total += len(got)
    return total


def test_stopping_the_app_cancels_running_jobs_within_a_bound(
    serve: Callable[..., LiveServer], emu: ExchangeEmulator, slow: Callable[..., Fault],
    storage: DataCollectionStorage, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.WARNING)
    live = serve(sync_timeout=0.05)
    slow(0.3)
    for s in (BTC, ETH):  # 1m over 10 days: 15 pages each
        r = httpx.post(f"{live.url}/api/v1/sync", json=body([s], "2024-02-01", "2024-02-10", "1m"), timeout=10)  # fmt: skip
        assert r.status_code == 202
    wait_until(
        lambda: any(storage.coverage(k) for k in storage.keys(kind="ohlcv")), "some rows stored"
    )
    t0 = time.monotonic()
    live.__exit__()
    assert not live.thread.is_alive() and time.monotonic() - t0 < 10
    assert not [r for r in caplog.records if r.name == "asyncio" or r.levelno >= logging.ERROR], (
        caplog.text
    )
    # both were cancelled mid-way; what they wrote is covered truly
    assert live.recorder.app.state.service.jobs.counts() == {"running": 0, "completed": 0, "failed": 2, "cancelled": 0}  # type: ignore[attr-defined]  # fmt: skip
    assert 0 < covered_rows_are_stored(storage, emu) < 2 * 10 * 1440


CHILD = """
import sys
import mdcollect.testing
from mdcollect.testing import ExchangeEmulator, Fault

class SlowEmulator(ExchangeEmulator):
    # the emulator `mdcollect serve --emulate` starts, with slow candle pages
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.faults.add(Fault("slow", route="klines", delay=0.3))

mdcollect.testing.ExchangeEmulator = SlowEmulator
from mdcollect.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_mdcollect_serve_exits_cleanly_on_sigterm_with_jobs_running(tmp_path: Path) -> None:
    port, url, store = free_port(), "", f"parquet://{tmp_path / 'pq'}"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, "serve", "--storage", store, "--port", str(port),
         "--emulate", "--max-jobs", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONWARNINGS": "default"},
    )  # fmt: skip
    try:
        _wait_port(port, timeout=60)
        url = f"http://127.0.0.1:{port}/api/v1"
        # two syncs of 45 slow pages each (over 13 s), their requests waiting for them
        waiting: list[httpx.Response] = []
        posts = [threading.Thread(target=lambda s=s: waiting.append(
            httpx.post(f"{url}/sync", json=body([s], "2024-02-01", "2024-03-01", "1m"), timeout=60)))
            for s in (BTC, ETH)]  # fmt: skip
        for t in posts:
            t.start()
        wait_until(lambda: httpx.get(f"{url}/status").json()["jobs"]["running"] == 2, "2 jobs")
        wait_until(lambda: httpx.get(f"{url}/symbols").json()["datasets"] != [], "some rows")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    for t in posts:
        t.join(timeout=30)
    stderr = err.decode()
    # uvicorn re-raises the signal once it has shut down gracefully
    assert proc.returncode in (0, -signal.SIGTERM), stderr
    assert "Application shutdown complete" in stderr, stderr
    assert took < 10, f"shutdown took {took:.1f}s"
    for bad in ("Task was destroyed", "never retrieved", "Unclosed", "Traceback"):
        assert bad not in stderr, stderr
    # the requests that were waiting got an answer, not a dropped connection
    assert sorted(r.status_code for r in waiting) == [503, 503], [r.text for r in waiting]
    assert all("stopping" in r.json()["error"] for r in waiting)
    with ExchangeEmulator() as truth, open_storage(store) as storage:
        assert covered_rows_are_stored(storage, truth) > 0
