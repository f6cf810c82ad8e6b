"""Catalog benchmark: ``mdcollect.catalog`` over 1,000 datasets, per backend.

    .venv/bin/python bench/catalog.py [--datasets 1000] [--rows 60]
                                      [--backends arctic+lmdb,parquet,memory,redis]

Each backend gets ``--datasets`` datasets (1m candles of as many symbols, over a few
exchanges, half of them with a hole in their coverage). Then, timed in pairs so both
see the same machine load (the median of ``--repeat`` pairs is reported):

* *baseline*: ``storage.keys()``, the listing every catalog needs anyway;
* *catalog*: ``mdcollect.catalog(storage)``, from each dataset's metadata.

For comparison, once: what ``mdcollect ls`` did before the catalog, reading every
dataset's index (``storage.read(key, columns=[])``) and its coverage.

The target (issue 16): 1,000 datasets in under 1 s on the default store (arctic+lmdb).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mdcollect import DataCollectionStorage, DatasetKey, Interval, catalog, open_storage

T0 = 1_704_067_200_000  # 2024-01-01
MINUTE = 60_000
EXCHANGES = ("binance", "okx", "bybit", "kraken")


def candles(start: int, n: int) -> pd.DataFrame:
    close = 100 + np.cumsum(np.random.default_rng(start % 997).normal(0, 0.1, n))
    index = pd.DatetimeIndex(
        pd.to_datetime(start + np.arange(n) * MINUTE, unit="ms", utc=True), name="timestamp"
    )
    return pd.DataFrame(
        {"open": close, "high": close + 1, "low": close - 1, "close": close, "volume": 1.0},
        index=index,
    )


def fill(storage: Any, datasets: int, rows: int) -> None:
    for i in range(datasets):
        key = DatasetKey(EXCHANGES[i % len(EXCHANGES)], f"S{i:04d}/USDT", "ohlcv", "1m")
        frame = candles(T0, rows)
        half = T0 + (rows // 2) * MINUTE
        storage.write(key, frame.iloc[: rows // 2], covered=Interval(T0, half), source="import")
        # every other dataset: the rest written without coverage (a hole in the catalog)
        covered = Interval(half, T0 + rows * MINUTE) if i % 2 else None
        storage.write(key, frame.iloc[rows // 2 :], covered=covered, source="live:ws")


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def old_ls(storage: DataCollectionStorage) -> None:
    for key in storage.keys(exchange=None):
        storage.read(key, columns=[])
        storage.coverage(key)


def backend_url(name: str, root: Path) -> tuple[str, subprocess.Popen[bytes] | None]:
    if name == "arctic+lmdb":
        return f"arctic+lmdb://{root / 'lmdb'}", None
    if name == "parquet":
        return f"parquet://{root / 'pq'}", None
    if name == "memory":
        return "memory://", None
    if name == "redis":
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not on PATH")
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        import redis

        for _ in range(100):
            try:
                redis.Redis(port=port).ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        return f"redis://127.0.0.1:{port}/0", proc
    raise ValueError(name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=int, default=1000)
    ap.add_argument("--rows", type=int, default=60, help="rows per dataset")
    ap.add_argument("--repeat", type=int, default=5, help="timed pairs")
    ap.add_argument("--backends", default="arctic+lmdb,parquet,memory,redis")
    args = ap.parse_args()
    print(f"{args.datasets} datasets of {args.rows} 1m candles; median of {args.repeat} pairs")
    print(f"{'backend':<12} {'fill s':>8} {'keys() s':>9} {'catalog s':>10} {'ratio':>7}"
          f" {'old ls s':>9}")  # fmt: skip
    worst = 0.0
    for name in args.backends.split(","):
        root = Path(tempfile.mkdtemp(prefix="mdcollect-bench-catalog-"))
        proc = None
        try:
            url, proc = backend_url(name, root)
            storage = open_storage(url)
            fill_s = timed(lambda: fill(storage, args.datasets, args.rows))  # noqa: B023
            pairs = []
            for _ in range(args.repeat):
                base = timed(storage.keys)
                cat_s = timed(lambda: catalog(storage))  # noqa: B023
                pairs.append((base, cat_s))
            frame = catalog(storage)
            assert len(frame) == args.datasets and (frame["rows"] == args.rows).all()
            assert frame["holes"].sum() == args.datasets // 2
            base = statistics.median(b for b, _ in pairs)
            cat_s = statistics.median(c for _, c in pairs)
            ratio = statistics.median(c / b for b, c in pairs)
            old = timed(lambda: old_ls(storage))  # noqa: B023
            if name == "arctic+lmdb":
                worst = cat_s
            print(f"{name:<12} {fill_s:8.2f} {base:9.4f} {cat_s:10.4f} {ratio:7.1f}x {old:9.3f}")
            storage.close()
        except Exception as exc:  # a backend that cannot run is reported
            print(f"{name:<12} unavailable: {exc}")
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=10)
            shutil.rmtree(root, ignore_errors=True)
    if "arctic+lmdb" in args.backends.split(","):
        verdict = "ok" if worst < 1.0 else "TOO SLOW"
        print(f"target: catalog of {args.datasets} datasets on arctic+lmdb < 1 s: {worst:.3f} s "
              f"{verdict}")  # fmt: skip
        return 0 if worst < 1.0 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
