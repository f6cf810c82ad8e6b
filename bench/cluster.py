"""Distributed backfill benchmark: one command, ratios against a local run in the same run.

    .venv/bin/python bench/cluster.py [--symbols 8] [--days 30] [--workers 2]

The emulator runs in this process (rate limits off: this measures what the
cluster costs, not the exchange's budget, which a host's workers share anyway).

1. ``ensure_data`` of ``--symbols`` x ``--days`` of 1m candles into ArcticDB/LMDB,
   locally (one process, ``concurrency=4``) and on a ``LocalCluster`` of ``--workers``
   worker processes (``executor=``; the cluster's start-up not counted): seconds and
   the cluster's time over the local one.
2. The same call again, everything covered: the local time and the cluster's (the
   cluster is asked nothing; the ratio shows the call's own cost).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from mdcollect import ensure_data
from mdcollect.exchanges import ExchangeClient
from mdcollect.testing import ExchangeEmulator, MarketSpec


def run(url: str, symbols: list[str], days: int, store: str, executor: object = None) -> float:
    client = ExchangeClient("binance", base_url=url, enableRateLimit=False)
    end = f"2023-01-{days:02d}" if days <= 31 else "2023-12-31"
    t0 = time.perf_counter()
    report = ensure_data(symbols, "1m", "2023-01-01", end, client, 0, store, progress=False,
                         executor=executor)  # fmt: skip
    seconds = time.perf_counter() - t0
    assert report.ok, str(report)
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--symbols", type=int, default=8)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    from distributed import Client, LocalCluster

    symbols = [f"S{i}/USDT" for i in range(a.symbols)]
    markets = [MarketSpec(s, exchange="binance") for s in symbols]
    tmp = Path(tempfile.mkdtemp(prefix="mdcollect-bench-dask-"))
    print(f"dask benchmark: {a.symbols} symbols x {a.days} days of 1m, {a.workers} workers")
    with ExchangeEmulator(rate_limits=False, markets=markets) as emu:
        local = run(emu.url, symbols, a.days, f"arctic+lmdb://{tmp}/local")
        local_again = run(emu.url, symbols, a.days, f"arctic+lmdb://{tmp}/local")
        with (
            LocalCluster(n_workers=a.workers, threads_per_worker=1, processes=True,
                         dashboard_address=":0") as cluster,
            Client(cluster) as client,
        ):  # fmt: skip
            dask = run(emu.url, symbols, a.days, f"arctic+lmdb://{tmp}/dask", client)
            dask_again = run(emu.url, symbols, a.days, f"arctic+lmdb://{tmp}/dask", client)
    candles = a.symbols * a.days * 1440
    print("\n1. filling (emulator, rate limits off)")
    print(f"   local, one process        : {local:7.2f} s  {candles / local:10,.0f} candles/s")
    print(f"   LocalCluster, {a.workers} workers   : {dask:7.2f} s  {candles / dask:10,.0f} "
          f"candles/s  ({dask / local:.2f}x the local time)")  # fmt: skip
    print("\n2. everything covered (the cluster is asked nothing)")
    print(f"   local                     : {local_again * 1000:7.1f} ms")
    print(f"   with executor=            : {dask_again * 1000:7.1f} ms  "
          f"({dask_again / local_again:.2f}x)")  # fmt: skip
    print(f"\n(stores left in {tmp}; remove it when done)")


if __name__ == "__main__":
    main()
