"""``ensure_data(..., executor=client)``: the jobs run on a Dask cluster's worker processes.

One ``LocalCluster`` (2 worker processes, 1 thread each) serves the module; the
emulator runs in this process and the workers reach it by URL. A run on the
cluster gives the report and the data a local run gives; progress of every
window reaches the caller; a worker killed mid-job loses nothing and duplicates
nothing (moto S3 + a Redis lease).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mdcollect import DatasetKey, Interval, IntervalSet, InvalidRequest, ensure_data, open_storage
from mdcollect.exchanges import ExchangeClient
from mdcollect.testing import ExchangeEmulator, Fault

from ..conftest import RedisServer, make_bucket

distributed = pytest.importorskip("distributed")

DAY = 86_400_000
MAR1 = 1_677_628_800_000  # 2023-03-01
SYMBOLS = ["BTC/USDT", "ETH/USDT", "XRP/USDT"]


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    cluster = distributed.LocalCluster(
        # dashboards on free ports: None means dask's default :8787, taken by any other
        # cluster on the machine (a warning, an error here)
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
        worker_dashboard_address=":0",
    )  # fmt: skip
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


@pytest.fixture(scope="module")
def emu() -> Iterator[ExchangeEmulator]:
    with ExchangeEmulator(rate_limits=False) as e:
        yield e


def exchange(emu: ExchangeEmulator) -> ExchangeClient:
    return ExchangeClient("binance", base_url=emu.url, enableRateLimit=False)


def klines(emu: ExchangeEmulator, since: int = 0) -> int:
    return sum(1 for q in emu.requests[since:] if q.route == "klines" and q.status == 200)


def truth(emu: ExchangeEmulator, sym: str, days: int) -> pd.DataFrame:
    # Binance klines carry the quote volume, trade count and taker-buy volumes
    return emu.market.candles("binance", sym, "1m", MAR1, MAR1 + days * DAY).to_frame(
        ("quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume")
    )


def same(report: Any) -> list[tuple[Any, ...]]:
    return [
        (s.key, s.required, s.already_covered, s.missing, s.candles_fetched, s.requests, s.ok)
        for s in report.symbols
    ]


@pytest.mark.slow
def test_a_cluster_run_reports_and_stores_what_a_local_run_does(
    dask_client: Any, emu: ExchangeEmulator, tmp_path: Path
) -> None:
    local_url, cluster_url = f"arctic+lmdb://{tmp_path}/local", f"arctic+lmdb://{tmp_path}/dask"
    local_steps: list[tuple[str, int, int]] = []
    cluster_steps: list[tuple[str, int, int]] = []
    local = ensure_data(SYMBOLS, "1m", "2023-03-01", "2023-03-03", exchange(emu), 0, local_url,
                        progress=False,
                        progress_callback=lambda j, d, t: local_steps.append((j.key.symbol, d, t)))  # fmt: skip
    since = len(emu.requests)
    on_cluster = ensure_data(
        SYMBOLS, "1m", "2023-03-01", "2023-03-03", exchange(emu), 0, cluster_url, progress=False,
        progress_callback=lambda j, d, t: cluster_steps.append((j.key.symbol, d, t)),
        executor=dask_client,
    )  # fmt: skip
    assert on_cluster.ok and same(on_cluster) == same(local)
    assert klines(emu, since) == klines(emu) - klines(emu, since) == 3 * 5  # 4320 candles: 5 pages
    # the workers loaded the markets once each (at most): the rest are the jobs' own
    jobs = sum(s.requests for s in on_cluster.symbols)
    assert on_cluster.requests - jobs in (1, 2)  # one exchangeInfo per worker used
    # progress: every window of every symbol reached the caller, in order, once
    assert sorted(cluster_steps) == sorted(local_steps)
    for sym in SYMBOLS:
        assert [d for s, d, _ in cluster_steps if s == sym] == [1000, 2000, 3000, 4000, 4320]
    with open_storage(local_url) as a, open_storage(cluster_url) as b:
        for sym in SYMBOLS:
            key = DatasetKey("binance", sym, "ohlcv", "1m")
            pd.testing.assert_frame_equal(b.read(key), a.read(key))
            pd.testing.assert_frame_equal(b.read(key), truth(emu, sym, 3), check_freq=False)
            assert b.coverage(key) == a.coverage(key)
    # a second call: everything is covered, the cluster is asked nothing
    since = len(emu.requests)
    with distributed.get_task_stream(client=dask_client) as stream:
        again = ensure_data(SYMBOLS, "1m", "2023-03-01", "2023-03-03", exchange(emu), 0,
                            cluster_url, progress=False, executor=dask_client)  # fmt: skip
    assert again.requests == 0 and len(emu.requests) == since
    assert stream.data == []


@pytest.mark.slow
def test_memory_store_is_refused_before_any_request(
    dask_client: Any, emu: ExchangeEmulator
) -> None:
    since = len(emu.requests)
    with pytest.raises(InvalidRequest, match=r"memory://.*cannot share it.*arctic\+s3"):
        ensure_data(["BTC/USDT"], "1m", "2023-03-01", "2023-03-01", exchange(emu), 0,
                    "memory://", progress=False, executor=dask_client)  # fmt: skip
    assert len(emu.requests) == since


@pytest.fixture
def shared_url(s3_server: dict[str, Any], redis_server: RedisServer) -> str:
    import redis

    redis.Redis(host="127.0.0.1", port=redis_server.port).flushall()
    bucket = make_bucket(s3_server)
    return (
        f"arctic+s3://{s3_server['host']}:{bucket}?port={s3_server['port']}"
        f"&access={s3_server['access']}&secret={s3_server['secret']}"
        f"&lease=redis://127.0.0.1:{redis_server.port}/0&lease_ttl=1.5"
    )


@pytest.mark.slow
def test_a_worker_killed_mid_job_is_retried_and_resumes_from_coverage(
    dask_client: Any, emu: ExchangeEmulator, shared_url: str
) -> None:
    key = DatasetKey("binance", "LTC/USDT", "ohlcv", "1m")
    clean_store = open_storage("memory://")
    since = len(emu.requests)
    ensure_data(["LTC/USDT"], "1m", "2023-03-01", "2023-03-08", exchange(emu), 0, clean_store,
                progress=False)  # fmt: skip
    clean = klines(emu, since)
    assert clean == 12  # 8 days of minute candles: 11,520 in pages of 1000
    pids = dask_client.run(os.getpid)
    steps: list[tuple[int, int]] = []
    emu.faults.add(Fault("slow", route="klines", delay=0.05))  # the job runs a while
    try:
        since = len(emu.requests)
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(
                ensure_data, ["LTC/USDT"], "1m", "2023-03-01", "2023-03-08", exchange(emu), 0,
                shared_url, progress=False, executor=dask_client,
                progress_callback=lambda j, d, t: steps.append((d, t)),
            )  # fmt: skip
            deadline = time.monotonic() + 120
            # progress reaches the caller while the job runs (a window is stored)
            while not steps or steps[-1][0] < 2000:
                assert not running.done(), running.result()
                assert time.monotonic() < deadline, "no progress reached the caller"
                time.sleep(0.01)
            busy = [w for w, keys in dask_client.processing().items() if keys]
            assert len(busy) == 1
            os.kill(pids[busy[0]], signal.SIGKILL)  # its lease is left to expire
            report = running.result(timeout=240)
    finally:
        emu.faults.clear()
    assert report.ok, str(report)
    # the retry resumed from coverage: what the killed worker stored counts as had, and
    # only the rest was fetched, one page a 1000 candles
    ltc = report["LTC/USDT"]
    had = ltc.already_covered.total // 60_000
    assert had >= 2000
    assert ltc.candles_fetched == 11_520 - had
    assert ltc.requests == -(-ltc.candles_fetched // 1000)
    # at the emulator: the pages the killed worker stored were asked for once, not again
    stored_end = MAR1 + had * 60_000
    asked = [int(q.params["startTime"]) for q in emu.requests[since:] if q.route == "klines"]
    assert sorted(t for t in asked if t < stored_end) == [
        MAR1 + i * 60_000_000 for i in range(had // 1000)
    ]
    assert steps[-1][0] == steps[-1][1]  # the retry's progress, to its end
    with open_storage(shared_url) as store:
        pd.testing.assert_frame_equal(store.read(key), clean_store.read(key))
        pd.testing.assert_frame_equal(store.read(key), truth(emu, "LTC/USDT", 8), check_freq=False)
        assert store.coverage(key) == IntervalSet([Interval(MAR1, MAR1 + 8 * DAY)])


@pytest.mark.slow
def test_cli_ensure_on_a_scheduler(
    dask_client: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``mdcollect --emulate ensure ... --scheduler tcp://...``: the workers reach this
    process's emulator by its URL and fill the store the CLI names."""
    from mdcollect.cli import main

    url = f"arctic+lmdb://{tmp_path}/cli"
    address = dask_client.scheduler.address
    args = ["--emulate", "--storage", url, "ensure", "BTC/USDT", "ETH/USDT", "-t", "1h",
            "--start", "2024-01-01", "--end", "2024-01-31", "--padding-days", "0",
            "-x", "binance", "--scheduler", address]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "fetched 744 rows" in out and out.count(": ok") == 3, out
    with open_storage(url) as store:
        for sym in ("BTC/USDT", "ETH/USDT"):
            assert len(store.read(DatasetKey("binance", sym, "ohlcv", "1h"))) == 744


@pytest.mark.slow
def test_the_workers_of_one_host_share_its_rate_budget(dask_client: Any, tmp_path: Path) -> None:
    """Both worker processes fill datasets at once against an emulator allowing 80 weight
    per 3 s (the host's budget): together they never go over it, and no request is
    refused."""
    from mdcollect.testing import Limit

    with ExchangeEmulator(rate_limits={"binance.spot": Limit(80, 3.0)}) as limited:
        client = ExchangeClient("binance", base_url=limited.url)
        report = ensure_data(["SOL/USDT", "BNB/USDT", "ADA/USDT", "DOGE/USDT"], "1m",
                             "2023-03-01", "2023-03-05", client, 0,
                             f"arctic+lmdb://{tmp_path}/limited", progress=False,
                             executor=dask_client)  # fmt: skip
        assert report.ok and report.candles_fetched == 4 * 5 * 1440
        statuses = [q.status for q in limited.requests]
        assert set(statuses) == {200}, statuses
        weights = sorted((q.time, q.weight) for q in limited.requests)
        assert sum(w for _, w in weights) > 80  # more than one window's worth
        for t, _ in weights:  # the weight the exchange counted in each 3 s window
            assert sum(w for u, w in weights if t - 3000 < u <= t) <= 80


@pytest.mark.slow
def test_an_error_on_the_workers_reaches_the_caller_as_raised(
    dask_client: Any, tmp_path: Path
) -> None:
    """An exchange the workers cannot reach: the task fails on each try, and the
    caller gets the library's ExchangeError, not a Dask error."""
    from mdcollect import ExchangeError
    from mdcollect.exchanges import RetryPolicy

    unreachable = ExchangeClient("binance", base_url="http://127.0.0.1:9",
                                 retry=RetryPolicy(max_attempts=1))  # fmt: skip
    with pytest.raises(ExchangeError, match="binance"):
        ensure_data(["BTC/USDT"], "1h", "2024-01-01", "2024-01-02", unreachable, 0,
                    f"arctic+lmdb://{tmp_path}/s", progress=False, executor=dask_client)  # fmt: skip
