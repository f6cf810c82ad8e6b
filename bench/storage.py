"""Storage benchmark: one year of 1-minute candles for one symbol, per backend.

    .venv/bin/python bench/storage.py [--rows 525600] [--backends arctic+lmdb,parquet,...]

Writes the frame as daily writes with ``covered=`` (365 for a year), then reads it
whole and one day, for every backend ``open_storage`` knows (``redis`` when a
``redis-server`` is on PATH, ``arctic+s3`` with ``--s3`` on a local moto server),
beside raw baselines measured in the same run: ArcticDB ``lib.read(sym).data``
of a symbol written once, and ``pyarrow.parquet.read_table(f).to_pandas()`` of
one file. A backend that cannot be opened (not written yet) is reported as
unavailable.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mdcollect import DatasetKey, Interval, open_storage

warnings.simplefilter("ignore", DeprecationWarning)

MINUTE = 60_000
DAY_ROWS = 1440
T0 = 1_704_067_200_000  # 2024-01-01T00:00Z
KEY = DatasetKey("binance", "BTC/USDT", "ohlcv", "1m")


def candles(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    # a geometric walk: prices stay positive (storage.write refuses negative ones)
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
            "volume": rng.random(n) * 10,
        },
        index=idx,
    )


def du(path: Path) -> int:
    """Bytes allocated on disk under ``path``."""
    if path.is_file():
        return path.stat().st_blocks * 512
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def timed(fn: Callable[[], Any], repeat: int) -> float:
    """Median seconds of ``repeat`` runs (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port}")


@contextlib.contextmanager
def server(args: list[str], port: int) -> Iterator[None]:
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# -- measurements ------------------------------------------------------------------------


def bench_backend(url: str, frame: pd.DataFrame, disk: Path | None, repeat: int) -> dict[str, Any]:
    days = len(frame) // DAY_ROWS
    st = open_storage(url)
    try:
        t = time.perf_counter()
        for d in range(days):
            lo = T0 + d * DAY_ROWS * MINUTE
            st.write(
                KEY,
                frame.iloc[d * DAY_ROWS : (d + 1) * DAY_ROWS],
                covered=Interval(lo, lo + DAY_ROWS * MINUTE),
            )
        write_s = time.perf_counter() - t
        got = st.read(KEY)
        pd.testing.assert_frame_equal(got, frame, check_freq=False)
        read_all = timed(lambda: st.read(KEY), repeat)
        mid = T0 + (days // 2) * DAY_ROWS * MINUTE
        read_day = timed(lambda: st.read(KEY, mid, mid + DAY_ROWS * MINUTE), repeat * 4)
        cov = timed(lambda: st.coverage(KEY), 200)
    finally:
        st.close()
    return {
        "writes": days,
        "write_s": write_s,
        "read_all_s": read_all,
        "read_day_s": read_day,
        "coverage_s": cov,
        "disk": du(disk) if disk is not None else None,
    }


def raw_arctic(frame: pd.DataFrame, root: Path, repeat: int) -> dict[str, Any]:
    from arcticdb import Arctic

    lib = Arctic(f"lmdb://{root}").get_library("raw", create_if_missing=True)
    lib.write("sym", frame)
    return {"read_all_s": timed(lambda: lib.read("sym").data, repeat), "disk": du(root)}


def raw_parquet(frame: pd.DataFrame, root: Path, repeat: int) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    root.mkdir(parents=True)
    path = root / "year.parquet"
    pq.write_table(pa.Table.from_pandas(frame), path)
    return {"read_all_s": timed(lambda: pq.read_table(path).to_pandas(), repeat), "disk": du(path)}


def one_write_disk(url: str, frame: pd.DataFrame, disk: Path) -> int:
    with open_storage(url) as st:
        st.write(KEY, frame, covered=Interval(T0, T0 + len(frame) * MINUTE))
    return du(disk)


# -- main -----------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=525_600, help="rows (multiple of 1440)")
    ap.add_argument("--repeat", type=int, default=5, help="timed repetitions of a read")
    ap.add_argument("--s3", action="store_true", help="also arctic+s3 on a local moto server")
    ap.add_argument("--backends", default="arctic+lmdb,parquet,memory,redis")
    args = ap.parse_args()
    rows = args.rows - args.rows % DAY_ROWS
    frame = candles(rows)
    work = Path(tempfile.mkdtemp(prefix="mdcollect-bench-"))
    results: dict[str, dict[str, Any] | str] = {}
    stack = contextlib.ExitStack()
    try:
        wanted = args.backends.split(",") + (["arctic+s3"] if args.s3 else [])
        for name in wanted:
            disk: Path | None = None
            if name == "arctic+lmdb":
                disk = work / "lmdb"
                url = f"arctic+lmdb://{disk}"
            elif name == "parquet":
                disk = work / "pq"
                url = f"parquet://{disk}"
            elif name == "memory":
                url = "memory://"
            elif name == "redis":
                exe = shutil.which("redis-server")
                if exe is None:
                    results[name] = "unavailable: no redis-server on PATH"
                    continue
                port = free_port()
                stack.enter_context(
                    server([exe, "--port", str(port), "--save", "", "--appendonly", "no"], port)
                )
                url = f"redis://127.0.0.1:{port}/0"
            elif name == "arctic+s3":
                port = free_port()
                stack.enter_context(
                    server([sys.executable, "-m", "moto.server", "-p", str(port)], port)
                )
                import boto3

                boto3.client(
                    "s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id="t",
                    aws_secret_access_key="t", region_name="us-east-1",
                ).create_bucket(Bucket="bench")  # fmt: skip
                url = f"arctic+s3://127.0.0.1:bench?port={port}&access=t&secret=t"
            else:
                results[name] = "unknown backend"
                continue
            try:
                print(f"... {name}", file=sys.stderr, flush=True)
                res = bench_backend(url, frame, disk, args.repeat)
                if disk is not None:
                    one = work / f"one-{disk.name}"
                    res["disk_one"] = one_write_disk(url.replace(str(disk), str(one)), frame, one)
                results[name] = res
            except ImportError as exc:
                results[name] = f"unavailable: {exc}"
            except Exception as exc:
                results[name] = f"unavailable: {type(exc).__name__}: {exc}"
        print("... raw baselines", file=sys.stderr, flush=True)
        raw_a = raw_arctic(frame, work / "raw-lmdb", args.repeat)
        raw_p = raw_parquet(frame, work / "raw-pq", args.repeat)
    finally:
        stack.close()
        shutil.rmtree(work, ignore_errors=True)
    report(rows, results, raw_a, raw_p)
    return 0


def report(
    rows: int,
    results: dict[str, dict[str, Any] | str],
    raw_a: dict[str, Any],
    raw_p: dict[str, Any],
) -> None:
    ms = 1e3
    print(f"\n{rows:,} rows of 1m candles, {rows // DAY_ROWS} daily writes with covered=\n")
    head = f"{'backend':<14}{'write all':>11}{'read year':>11}{'read day':>10}{'coverage':>11}{'disk MB':>9}{'1-write MB':>11}"
    print(head)
    print("-" * len(head))
    for name, res in results.items():
        if isinstance(res, str):
            print(f"{name:<14}{res}")
            continue
        disk = f"{res['disk'] / 1e6:9.1f}" if res.get("disk") is not None else f"{'-':>9}"
        one = f"{res['disk_one'] / 1e6:11.1f}" if res.get("disk_one") is not None else f"{'-':>11}"
        print(
            f"{name:<14}{res['write_s']:10.2f}s{res['read_all_s'] * ms:9.1f}ms"
            f"{res['read_day_s'] * ms:8.2f}ms{res['coverage_s'] * 1e6:9.0f}us{disk}{one}"
        )
    print(
        f"{'raw arcticdb':<14}{'':>11}{raw_a['read_all_s'] * ms:9.1f}ms{'':>21}{raw_a['disk'] / 1e6:9.1f}"
    )
    print(
        f"{'raw pyarrow':<14}{'':>11}{raw_p['read_all_s'] * ms:9.1f}ms{'':>21}{raw_p['disk'] / 1e6:9.1f}"
    )
    print("\ntargets")

    def check(label: str, value: float | None, limit: float, unit: str) -> None:
        if value is None:
            print(f"  {label:<52} n/a")
            return
        ok = "OK  " if value <= limit else "MISS"
        print(f"  {ok} {label:<47} {value:8.3f}{unit} (target <= {limit}{unit})")

    def get(name: str, field: str) -> float | None:
        res = results.get(name)
        return None if not isinstance(res, dict) or res.get(field) is None else float(res[field])

    lm, pq = get("arctic+lmdb", "read_all_s"), get("parquet", "read_all_s")
    check("arctic+lmdb read year / raw ArcticDB read", lm and lm / raw_a["read_all_s"], 1.3, "x")
    check("parquet read year / raw pyarrow read", pq and pq / raw_p["read_all_s"], 1.3, "x")
    cov = get("arctic+lmdb", "coverage_s")
    check("arctic+lmdb coverage() median", cov and cov * 1e3, 1.0, "ms")
    for name in ("arctic+lmdb", "parquet"):
        d, one = get(name, "disk"), get(name, "disk_one")
        check(f"{name} disk after daily writes / one write", d and one and d / one, 2.0, "x")


if __name__ == "__main__":
    raise SystemExit(main())
