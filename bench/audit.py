"""Audit benchmark: a year of 1-minute candles (525,600 rows) audited, reading included.

    .venv/bin/python bench/audit.py [--rows 525600] [--storage arctic+lmdb] [--repeat 5]

The year is written once (daily writes, each with ``covered=``) to a fresh store of the
default kind (ArcticDB on LMDB; ``--storage parquet`` or ``memory`` for the others),
then ``mdcollect.audit(storage, [key])`` is timed against a raw read of the same rows
(``storage.read(key)``, what any audit must do first), in pairs so both see the same
machine load and allocator state (see ``bench/storage.py``). Printed: the audit's
median time, the read's, their ratio, and whether the target (under 1 s) is met.
The store holds a planted hole so the checks find something (one finding).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from mdcollect import DatasetKey, Interval, audit, open_storage

warnings.simplefilter("ignore", DeprecationWarning)

MINUTE = 60_000
DAY_ROWS = 1440
T0 = 1_704_067_200_000  # 2024-01-01T00:00Z
KEY = DatasetKey("binance", "BTC/USDT", "ohlcv", "1m")
TARGET_S = 1.0


def candles(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    open_ = np.r_[100.0, close[:-1]]
    idx = pd.DatetimeIndex(
        pd.to_datetime(T0 + np.arange(n, dtype=np.int64) * MINUTE, unit="ms", utc=True),
        name="timestamp",
    )
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * (1 + rng.random(n) * 1e-3),
            "low": np.minimum(open_, close) * (1 - rng.random(n) * 1e-3),
            "close": close,
            "volume": rng.random(n) * 10 + 0.1,
        },
        index=idx,
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--rows", type=int, default=525_600)
    p.add_argument("--storage", default="arctic+lmdb", choices=["arctic+lmdb", "parquet", "memory"])
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = "memory://" if args.storage == "memory" else f"{args.storage}://{Path(tmp) / 's'}"
        store = open_storage(url)
        frame = candles(args.rows)
        hole = (args.rows // 2, args.rows // 2 + 10)
        t0 = time.perf_counter()
        for lo in range(0, args.rows, DAY_ROWS):
            hi = min(lo + DAY_ROWS, args.rows)
            part = frame.iloc[lo:hi]
            if lo <= hole[0] < hi:
                part = part.drop(frame.index[hole[0] : hole[1]])
            store.write(KEY, part, covered=Interval(T0 + lo * MINUTE, T0 + hi * MINUTE))
        print(f"wrote {args.rows:,} rows to {args.storage} in {time.perf_counter() - t0:.1f} s")
        reads, audits = [], []
        report = None
        for _ in range(args.repeat):
            t = time.perf_counter()
            rows = store.read(KEY)
            reads.append(time.perf_counter() - t)
            del rows
            t = time.perf_counter()
            report = audit(store, [KEY])
            audits.append(time.perf_counter() - t)
        assert report is not None
        store.close()
    (d,) = report.datasets
    found = [(f.check, f.count) for f in d.findings]
    read_s, audit_s = statistics.median(reads), statistics.median(audits)
    ratios = statistics.median(a / r for a, r in zip(audits, reads, strict=True))
    print(f"audit of {d.rows:,} rows: findings {found}, score {d.score:.6f}")
    print(f"raw read   {read_s * 1000:8.1f} ms (median of {args.repeat})")
    print(f"audit      {audit_s * 1000:8.1f} ms, reading included")
    print(f"ratio      {ratios:8.2f} x the raw read (median of pairs)")
    ok = audit_s < TARGET_S
    print(f"target: under {TARGET_S:.0f} s: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
