"""Storage benchmark: one year of 1-minute candles for one symbol, per backend.

    .venv/bin/python bench/storage.py [--rows 525600] [--backends arctic+lmdb,parquet,...]
                                      [--live arctic+lmdb]

Two write patterns, each with ``covered=`` on every write:

* *daily*: the frame as daily writes (365 for a year), for every backend
  ``open_storage`` knows (``redis`` when a ``redis-server`` is on PATH, ``arctic+s3``
  with ``--s3`` on a local moto server);
* *live*: a live collector's many small appends (batches of 100..1,500 rows, a
  fixed random sequence), for the backends of ``--live``.

Then the year is read whole and one day. Whole-year reads are timed in pairs
with a raw baseline read (ArcticDB ``lib.read(sym).data`` of a symbol written once,
``pyarrow.parquet.read_table(f).to_pandas()`` of one file), so both see the same
machine load and the same state of the process's allocator: a year is ~25 MB of
fresh memory per read, and whether malloc serves it from recycled heap or from new
pages (faulted in) changes a read by 2-6x within one process. Measured one after
the other, that order alone decided the ratio. The ratio reported is the median
of the ratios within pairs. A backend that cannot be opened is
reported as unavailable.

The write cost is the total and the worst single write, and for ArcticDB the most
rows one write (re)wrote, read from the symbol's index (the segments carrying the
newest version): the target is at most one segment (100,000 rows) besides the
write's own rows, whatever the symbol's size, so no write stalls a collector.
"""

from __future__ import annotations

import argparse
import contextlib
import os
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

#: ArcticDB rows per segment (mdcollect's library).
SEGMENT_ROWS = 100_000
SYMBOL = "binance.ohlcv.1m.BTC%2FUSDT"


def daily_batches(rows: int) -> list[int]:
    return [DAY_ROWS] * (rows // DAY_ROWS)


def live_batches(rows: int) -> list[int]:
    """A live collector's flushes: 100..1,500 rows each (a fixed random sequence)."""
    rng = np.random.default_rng(1)
    sizes: list[int] = []
    done = 0
    while done < rows:
        n = min(int(rng.integers(100, 1501)), rows - done)
        sizes.append(n)
        done += n
    return sizes


def paired(
    fn: Callable[[], Any], base: Callable[[], Any], repeat: int
) -> tuple[float, float, float]:
    """Median seconds of ``fn`` and of ``base``, timed alternately (after a warm-up each),
    and the median ratio of the two within a pair (both timed under the same load)."""
    fn()
    base()
    a: list[float] = []
    b: list[float] = []
    for i in range(repeat):
        pair = ((fn, a), (base, b)) if i % 2 == 0 else ((base, b), (fn, a))
        for f, out in pair:
            t = time.perf_counter()
            f()
            out.append(time.perf_counter() - t)
    ratio = np.array(a) / np.maximum(np.array(b), 1e-9)
    return float(np.median(a)), float(np.median(b)), float(np.median(ratio))


def arctic_layout(st: Any) -> tuple[int, int] | None:
    """``(segments, rows written by the newest version)`` of an ArcticDB dataset, else None."""
    lib = getattr(st, "_lib", None)
    if lib is None or not hasattr(lib, "_dev_tools"):
        return None
    index = lib._dev_tools.library_tool().read_index(SYMBOL)
    rows = index["end_row"] - index["start_row"]
    newest = index["version_id"] == index["version_id"].max()
    return len(index), int(rows[newest].sum())


def bench_backend(
    url: str,
    frame: pd.DataFrame,
    batches: list[int],
    disk: Path | None,
    base: Callable[[], Any],
    repeat: int,
) -> dict[str, Any]:
    st = open_storage(url)
    try:
        write_s, worst_s, most_rows, segments = 0.0, 0.0, None, None
        pos = 0
        for n in batches:
            lo = T0 + pos * MINUTE
            t = time.perf_counter()
            st.write(KEY, frame.iloc[pos : pos + n], covered=Interval(lo, lo + n * MINUTE))
            dt = time.perf_counter() - t
            write_s += dt
            worst_s = max(worst_s, dt)
            pos += n
            layout = arctic_layout(st)  # outside the timed write
            if layout is not None:
                segments = layout[0]
                most_rows = max(most_rows or 0, layout[1])
        got = st.read(KEY)
        pd.testing.assert_frame_equal(got, frame, check_freq=False)
        read_all, base_all, ratio = paired(lambda: st.read(KEY), base, repeat)
        mid = T0 + (len(frame) // 2) * MINUTE
        read_day, _, _ = paired(
            lambda: st.read(KEY, mid, mid + DAY_ROWS * MINUTE), lambda: None, repeat * 4
        )
        cov, _, _ = paired(lambda: st.coverage(KEY), lambda: None, 200)
    finally:
        st.close()
    return {
        "writes": len(batches),
        "write_s": write_s,
        "worst_s": worst_s,
        "most_rows": most_rows,
        "max_batch": max(batches),
        "segments": segments,
        "read_all_s": read_all,
        "base_s": base_all,
        "ratio": ratio,
        "read_day_s": read_day,
        "coverage_s": cov,
        "disk": du(disk) if disk is not None else None,
    }


def raw_arctic(frame: pd.DataFrame, root: Path) -> tuple[Callable[[], Any], int]:
    """A read of ``frame`` written once with ArcticDB, and the disk it takes."""
    from arcticdb import Arctic

    lib = Arctic(f"lmdb://{root}").get_library("raw", create_if_missing=True)
    lib.write("sym", frame)
    return (lambda: lib.read("sym").data), du(root)


def raw_parquet(frame: pd.DataFrame, root: Path) -> tuple[Callable[[], Any], int]:
    """A read of ``frame`` written once as one Parquet file, and the disk it takes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root.mkdir(parents=True)
    path = root / "year.parquet"
    pq.write_table(pa.Table.from_pandas(frame), path)
    return (lambda: pq.read_table(path).to_pandas()), du(path)


def one_write_disk(url: str, frame: pd.DataFrame, disk: Path) -> int:
    with open_storage(url) as st:
        st.write(KEY, frame, covered=Interval(T0, T0 + len(frame) * MINUTE))
    return du(disk)


# -- main -----------------------------------------------------------------------------------


def backend_url(
    name: str, work: Path, stack: contextlib.ExitStack
) -> tuple[str, Path | None] | str:
    """``(url, disk)`` of a fresh store of backend ``name``, or why it is unavailable."""
    if name == "arctic+lmdb":
        return f"arctic+lmdb://{work}", work
    if name == "parquet":
        return f"parquet://{work}", work
    if name == "memory":
        return "memory://", None
    if name == "redis":
        exe = shutil.which("redis-server")
        if exe is None:
            return "unavailable: no redis-server on PATH"
        port = free_port()
        stack.enter_context(
            server([exe, "--port", str(port), "--save", "", "--appendonly", "no"], port)
        )
        return f"redis://127.0.0.1:{port}/0", None
    if name == "arctic+s3":
        port = free_port()
        stack.enter_context(server([sys.executable, "-m", "moto.server", "-p", str(port)], port))
        import boto3

        boto3.client(
            "s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id="t",
            aws_secret_access_key="t", region_name="us-east-1",
        ).create_bucket(Bucket="bench")  # fmt: skip
        return f"arctic+s3://127.0.0.1:bench?port={port}&access=t&secret=t", None
    return "unknown backend"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=525_600, help="rows (multiple of 1440)")
    ap.add_argument("--repeat", type=int, default=31, help="timed pairs of year reads")
    ap.add_argument("--s3", action="store_true", help="also arctic+s3 on a local moto server")
    ap.add_argument("--backends", default="arctic+lmdb,parquet,memory,redis")
    ap.add_argument("--live", default="arctic+lmdb", help="backends also written live-style")
    args = ap.parse_args()
    rows = args.rows - args.rows % DAY_ROWS
    frame = candles(rows)
    work = Path(tempfile.mkdtemp(prefix="mdcollect-bench-"))
    results: dict[str, dict[str, Any] | str] = {}
    stack = contextlib.ExitStack()
    try:
        print("... raw baselines", file=sys.stderr, flush=True)
        raw_a, raw_a_disk = raw_arctic(frame, work / "raw-lmdb")
        raw_p, raw_p_disk = raw_parquet(frame, work / "raw-pq")
        wanted = args.backends.split(",") + (["arctic+s3"] if args.s3 else [])
        live = [n for n in args.live.split(",") if n]
        runs = [(n, "daily", daily_batches(rows)) for n in wanted]
        runs += [(n, "live", live_batches(rows)) for n in live]
        for i, (name, pattern, batches) in enumerate(runs):
            label = f"{name} {pattern}"
            where = backend_url(name, work / f"{i}-{name.replace('+', '-')}", stack)
            if isinstance(where, str):
                results[label] = where
                continue
            url, disk = where
            base = raw_p if name == "parquet" else raw_a
            try:
                print(f"... {label}", file=sys.stderr, flush=True)
                res = bench_backend(url, frame, batches, disk, base, args.repeat)
                res["base_name"] = "raw pyarrow" if name == "parquet" else "raw arcticdb"
                if disk is not None:
                    one = work / f"{i}-one"
                    res["disk_one"] = one_write_disk(url.replace(str(disk), str(one)), frame, one)
                results[label] = res
            except ImportError as exc:
                results[label] = f"unavailable: {exc}"
            except Exception as exc:
                results[label] = f"unavailable: {type(exc).__name__}: {exc}"
    finally:
        stack.close()
        shutil.rmtree(work, ignore_errors=True)
    report(rows, results, raw_a_disk, raw_p_disk)
    return 0


def cell(value: float | None, width: int, fmt: str, scale: float = 1.0) -> str:
    """``value * scale`` formatted in ``width`` columns, ``-`` when there is none."""
    if value is None:
        return f"{'-':>{width}}"
    return format(value * scale if scale != 1.0 else value, f"{width}{fmt}")


def report(
    rows: int, results: dict[str, dict[str, Any] | str], raw_a_disk: int, raw_p_disk: int
) -> None:
    ms = 1e3
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"\n{rows:,} rows of 1m candles; daily: {rows // DAY_ROWS} writes of {DAY_ROWS} rows; "
        f"live: {len(live_batches(rows))} writes of 100..1,500 rows; load average {load}\n"
    )
    head = (
        f"{'backend':<20}{'writes':>7}{'write all':>11}{'worst':>9}{'max rows':>10}{'segs':>6}"
        f"{'read year':>11}{'baseline':>10}{'read day':>10}{'coverage':>10}{'disk MB':>9}"
        f"{'1-write MB':>11}"
    )
    print(head)
    print("-" * len(head))
    for name, res in results.items():
        if isinstance(res, str):
            print(f"{name:<20}{res}")
            continue
        print(
            f"{name:<20}{res['writes']:7d}{res['write_s']:10.2f}s{res['worst_s'] * ms:7.1f}ms"
            f"{cell(res.get('most_rows'), 10, ',')}{cell(res.get('segments'), 6, 'd')}"
            f"{res['read_all_s'] * ms:9.1f}ms{res['base_s'] * ms:8.1f}ms"
            f"{res['read_day_s'] * ms:8.2f}ms{res['coverage_s'] * 1e6:8.0f}us"
            f"{cell(res.get('disk'), 9, '.1f', 1e-6)}{cell(res.get('disk_one'), 11, '.1f', 1e-6)}"
        )
    print(
        f"\nbaseline: a raw read of the year written once (raw arcticdb {raw_a_disk / 1e6:.1f} MB"
        f" on disk, raw pyarrow {raw_p_disk / 1e6:.1f} MB), timed alternately with the backend's"
    )
    print("\ntargets")

    def check(label: str, value: float | None, limit: float, unit: str, fmt: str = "8.3f") -> None:
        if value is None:
            print(f"  {label:<58} n/a")
            return
        ok = "OK  " if value <= limit else "MISS"
        print(f"  {ok} {label:<53} {value:{fmt}}{unit} (target <= {limit:,}{unit})")

    def get(name: str, field: str) -> float | None:
        res = results.get(name)
        return None if not isinstance(res, dict) or res.get(field) is None else float(res[field])

    for name, res in results.items():
        backend = name.split(" ", 1)[0]
        ratio = get(name, "ratio")
        if backend in ("arctic+lmdb", "parquet") and isinstance(res, dict):
            check(f"{name} read year / {res['base_name']} read", ratio, 1.3, "x")
        if backend == "arctic+lmdb":
            most, batch = get(name, "most_rows"), get(name, "max_batch")
            bound = int(SEGMENT_ROWS + batch) if batch else 0
            check(f"{name} most rows one write wrote", most, bound, "", "8,.0f")
            cov = get(name, "coverage_s")
            check(f"{name} coverage() median", cov and cov * 1e3, 1.0, "ms")
        if backend in ("arctic+lmdb", "parquet"):
            d, one = get(name, "disk"), get(name, "disk_one")
            check(f"{name} disk / one write", d and one and d / one, 2.0, "x")


if __name__ == "__main__":
    raise SystemExit(main())
