"""Storage faults on real files: stray and deleted partitions, bad URL options.

Each test damages a real store the way a person or a disk does (a file copied in,
a partition removed by hand) and checks what reads, ``coverage`` and ``ensure``
make of it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from mdcollect import (
    DatasetKey,
    Interval,
    IntervalSet,
    InvalidRequest,
    StorageError,
    ensure_data,
    open_storage,
)
from mdcollect.cli import main
from mdcollect.exchanges import ExchangeClient
from mdcollect.storage import _locks as locks
from mdcollect.storage._naming import key_name, key_parts
from mdcollect.storage.arctic import check_lmdb_file
from mdcollect.storage.parquet import ParquetStorage
from mdcollect.testing import ExchangeEmulator
from tests.conftest import DAY, MINUTE, T0, RedisServer, candles, run_python

REPO = str(Path(__file__).parents[2])

KEY = DatasetKey("binance", "BTC/USDT", "ohlcv", "1m")
HOUR = 60 * MINUTE
FEB = 1_706_745_600_000  # 2024-02-01T00:00Z
MAR = 1_709_251_200_000  # 2024-03-01T00:00Z


def dataset_dir(root: Path, key: DatasetKey = KEY) -> Path:
    return root.joinpath(*key_parts(key))


# -- parquet: files that are not ours, files that are gone -----------------------------


@pytest.mark.parametrize("name", ["2024-13.parquet", "2024-02-30.parquet", "0000-00.parquet"])
def test_stray_file_named_like_a_partition_is_ignored(tmp_path: Path, name: str) -> None:
    st = ParquetStorage(tmp_path / "pq")
    frame = candles(T0, 60)
    st.write(KEY, frame, covered=Interval(T0, T0 + HOUR))
    (dataset_dir(tmp_path / "pq") / name).write_bytes(b"not a partition")
    out = st.read(KEY)
    assert len(out) == 60 and out.index[0].value // 1_000_000 == T0
    assert len(st.read(KEY, T0, T0 + 10 * MINUTE)) == 10
    assert st.coverage(KEY) == IntervalSet([Interval(T0, T0 + HOUR)])
    st.write(KEY, candles(T0 + HOUR, 60), covered=Interval(T0 + HOUR, T0 + 2 * HOUR))
    st.delete(KEY, T0, T0 + 30 * MINUTE)
    assert len(st.read(KEY)) == 90
    assert st.keys() == [KEY]
    # a folder holding nothing but such a file is no dataset
    lone = dataset_dir(tmp_path / "pq", DatasetKey("binance", "ETH/USDT", "ohlcv", "1m"))
    lone.mkdir(parents=True)
    (lone / name).write_bytes(b"not a partition")
    assert st.keys() == [KEY]


def test_partition_deleted_by_hand_takes_its_coverage_with_it(tmp_path: Path) -> None:
    st = ParquetStorage(tmp_path / "pq")
    frame = candles(T0, (MAR - T0) // MINUTE)  # January and February: two partitions
    st.write(KEY, frame, covered=Interval(T0, MAR))
    assert st.coverage(KEY) == IntervalSet([Interval(T0, MAR)])
    (dataset_dir(tmp_path / "pq") / "2024-01.parquet").unlink()
    assert st.coverage(KEY) == IntervalSet([Interval(FEB, MAR)])
    assert len(st.read(KEY)) == (MAR - FEB) // MINUTE
    # a fresh instance (another process) sees the same; writing keeps the loss
    again = ParquetStorage(tmp_path / "pq")
    assert again.coverage(KEY) == IntervalSet([Interval(FEB, MAR)])
    again.write(KEY, frame.iloc[-10:], covered=Interval(MAR - 10 * MINUTE, MAR))
    assert again.coverage(KEY) == IntervalSet([Interval(FEB, MAR)])


def test_covered_span_without_rows_is_not_mistaken_for_a_lost_partition(
    tmp_path: Path,
) -> None:
    st = ParquetStorage(tmp_path / "pq")
    # January has no data at all (before a listing); February has rows
    st.write(KEY, candles(T0, 0), covered=Interval(T0, FEB))
    st.write(KEY, candles(FEB, 60), covered=Interval(FEB, FEB + HOUR))
    assert st.coverage(KEY) == IntervalSet([Interval(T0, FEB + HOUR)])
    st.delete(KEY, FEB, FEB + HOUR)  # the whole February partition goes, and its coverage
    assert st.coverage(KEY) == IntervalSet([Interval(T0, FEB)])
    assert not (dataset_dir(tmp_path / "pq") / "2024-02.parquet").exists()


def test_coverage_files_of_older_versions_still_read(tmp_path: Path) -> None:
    st = ParquetStorage(tmp_path / "pq")
    st.write(KEY, candles(T0, 60), covered=Interval(T0, T0 + HOUR))
    path = dataset_dir(tmp_path / "pq") / "_coverage.json"
    path.write_text(json.dumps({"version": 1, "coverage": [[T0, T0 + HOUR]]}))
    assert st.coverage(KEY) == IntervalSet([Interval(T0, T0 + HOUR)])
    st.write(KEY, candles(T0 + HOUR, 60), covered=Interval(T0 + HOUR, T0 + 2 * HOUR))
    assert json.loads(path.read_text())["parts"] == ["2024-01"]


def test_ensure_refetches_a_partition_deleted_by_hand(tmp_path: Path) -> None:
    url = f"parquet://{tmp_path / 'pq'}"
    with ExchangeEmulator(rate_limits=False) as emu:
        client = ExchangeClient("binance", base_url=emu.url, enableRateLimit=False)
        args = (["BTC/USDT"], "1h", "2024-01-30", "2024-02-02", client, 0)
        ensure_data(*args, storage=url, progress=False)
        key = DatasetKey("binance", "BTC/USDT", "ohlcv", "1h")
        st = open_storage(url)
        whole = st.read(key)
        assert len(whole) == 4 * 24
        (dataset_dir(tmp_path / "pq", key) / "2024.parquet").unlink()
        before = len(emu.requests)
        report = ensure_data(*args, storage=url, progress=False)
        assert len(emu.requests) > before, "the lost rows must be fetched again"
        assert report.ok
        assert st.read(key).equals(whole)
        assert st.coverage(key) == IntervalSet([Interval(T0 + 29 * DAY, T0 + 33 * DAY)])


# -- redis: a bucket lost (evicted, deleted by hand) ------------------------------------------------


def test_redis_bucket_lost_takes_its_coverage_with_it(redis_server: RedisServer) -> None:
    raw = redis.Redis(port=redis_server.port)
    raw.flushall()
    st = open_storage(redis_server.url)
    st.write(KEY, candles(T0, 3 * 1440), covered=Interval(T0, T0 + 3 * DAY))  # 3 daily buckets
    assert st.coverage(KEY) == IntervalSet([Interval(T0, T0 + 3 * DAY)])
    buckets = sorted(k.decode() for k in raw.scan_iter(match="*:b:*"))
    assert len(buckets) == 3 and buckets[1].endswith(f":b:{T0 + DAY}")
    raw.delete(buckets[1])  # as maxmemory eviction or a hand would
    expected = IntervalSet([Interval(T0, T0 + DAY), Interval(T0 + 2 * DAY, T0 + 3 * DAY)])
    assert st.coverage(KEY) == expected
    assert len(st.read(KEY)) == 2 * 1440
    # repaired in Redis too: another client agrees, and rows written back to that day
    # without coverage (a partial refetch) do not make the old claim true again
    other = open_storage(redis_server.url)
    st.write(KEY, candles(T0 + DAY, 10))
    assert other.coverage(KEY) == expected
    st.write(KEY, candles(T0 + DAY, 1440), covered=Interval(T0 + DAY, T0 + 2 * DAY))
    assert other.coverage(KEY) == IntervalSet([Interval(T0, T0 + 3 * DAY)])
    assert len(other.read(KEY)) == 3 * 1440
    st.close()
    other.close()
    raw.close()


# -- ArcticDB on LMDB: damaged files ------------------------------------------------------------

OPEN_AND_READ = """
import sys
sys.path.insert(0, {repo!r})
from mdcollect import DatasetKey, StorageError, open_storage
key = DatasetKey("binance", "BTC/USDT", "ohlcv", "1m")
try:
    st = open_storage({url!r})
    print("rows", len(st.read(key)), "coverage", st.coverage(key))
except StorageError as exc:
    print("StorageError:", exc)
"""


def _lmdb_store(root: Path) -> None:
    with open_storage(f"arctic+lmdb://{root}") as st:
        st.write(KEY, candles(T0, 20_000), covered=Interval(T0, T0 + 20_000 * MINUTE))


@pytest.mark.parametrize(
    ("env", "size", "needle"),
    [
        ("mdcollect", lambda n: n // 2, "is truncated"),
        ("mdcollect", lambda n: 5000, "is truncated"),
        ("mdcollect", lambda n: 0, "is empty"),
        ("_arctic_cfg", lambda n: n - 4096, "is truncated"),
    ],
)
def test_truncated_lmdb_file_is_a_storage_error_naming_it(
    tmp_path: Path, env: str, size: Callable[[int], int], needle: str
) -> None:
    root = tmp_path / "lmdb"
    run = run_python(
        f"import sys; sys.path.insert(0, {REPO!r})\n"
        "from tests.storage.test_faults import _lmdb_store\n"
        f"_lmdb_store(__import__('pathlib').Path({str(root)!r}))"
    )
    assert run.returncode == 0, run.stderr
    data = root / env / "data.mdb"
    os.truncate(data, size(data.stat().st_size))
    # in a child: before the check, reading a truncated file killed the process (SIGBUS)
    # and an empty one read as an empty, uncovered store
    out = run_python(OPEN_AND_READ.format(repo=REPO, url=f"arctic+lmdb://{root}"), timeout=60)
    assert out.returncode == 0, (out.returncode, out.stderr[-2000:])
    assert out.stdout.startswith("StorageError:"), out.stdout
    assert needle in out.stdout and str(data) in out.stdout


def test_whole_lmdb_files_pass_the_check(tmp_path: Path) -> None:
    _lmdb_store(tmp_path / "lmdb")
    for data in (tmp_path / "lmdb").glob("*/data.mdb"):
        check_lmdb_file(data)
    out = run_python(
        OPEN_AND_READ.format(repo=REPO, url=f"arctic+lmdb://{tmp_path / 'lmdb'}"), timeout=60
    )
    assert out.stdout.startswith("rows 20000"), out.stdout + out.stderr


def test_a_file_that_is_not_lmdb_is_refused(tmp_path: Path) -> None:
    _lmdb_store(tmp_path / "lmdb")
    data = tmp_path / "lmdb" / "mdcollect" / "data.mdb"
    data.write_bytes(b"\0" * 65536)
    with pytest.raises(StorageError, match="not an LMDB database"):
        check_lmdb_file(data)


# -- a full disk ---------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 12 MB file system (tmpfs) that fills up."""
    disk = tmp_path / "disk"
    disk.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(disk)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {made.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def _assert_coverage_has_its_rows(url: str, key: DatasetKey) -> IntervalSet:
    with open_storage(url) as st:
        ms = st.read(key).index.asi8 // 1_000_000
        coverage = st.coverage(key)
        for iv in coverage:
            lo, hi = (int(i) for i in ms.searchsorted([iv.start, iv.end]))
            assert list(ms[lo:hi]) == list(range(iv.start, iv.end, MINUTE)), f"{iv} lacks rows"
    return coverage


def test_ensure_on_a_full_disk_exits_1_cleanly_and_keeps_data_consistent(
    small_disk: Path,
) -> None:
    url = f"arctic+lmdb://{small_disk / 'store'}"
    argv = ["--storage", url, "--emulate", "--no-progress", "ensure", "BTC/USDT", "--timeframe",
            "1m", "--start", "2024-01-01", "--end", "2024-04-30", "--exchange", "binance",
            "--padding-days", "0"]  # fmt: skip
    run = run_python(
        f"import sys; sys.path.insert(0, {REPO!r})\n"
        f"from mdcollect.cli import main\nsys.exit(main({argv!r}))",
        timeout=300,
    )
    # before: the StorageError was printed, then the process died with SIGABRT (134)
    assert run.returncode == 1, (run.returncode, run.stderr[-2000:])
    assert "double free" not in run.stderr
    assert "disk" in run.stderr and "full" in run.stderr
    coverage = _assert_coverage_has_its_rows(url, DatasetKey("binance", "BTC/USDT", "ohlcv", "1m"))
    assert coverage.total > 0, "what fitted on the disk is kept and covered"


FILL_PAST_THE_CHECK = """
import sys
sys.path.insert(0, {repo!r})
import mdcollect.storage.arctic as arctic
arctic._SPACE_MARGIN = -(10**12)  # blind the free-space check: LMDB itself runs out
from mdcollect import DatasetKey, Interval, StorageError, open_storage
from tests.conftest import T0, candles
st = open_storage({url!r})
key = DatasetKey("binance", "BTC/USDT", "ohlcv", "1m")
try:
    for i in range(1000):
        lo = T0 + i * 20_000 * 60_000
        st.write(key, candles(lo, 20_000, seed=i), covered=Interval(lo, lo + 20_000 * 60_000))
except StorageError as exc:
    print("first:", exc, flush=True)
try:
    st.read(key)
except StorageError as exc:
    print("then:", exc, flush=True)
st.close()
sys.exit(1)
"""


def test_a_failed_lmdb_commit_does_not_abort_the_process(small_disk: Path) -> None:
    url = f"arctic+lmdb://{small_disk / 'store'}"
    run = run_python(FILL_PAST_THE_CHECK.format(repo=REPO, url=url), timeout=300)
    # before: "double free or corruption" and SIGABRT (134) when the handle was freed
    assert run.returncode == 1, (run.returncode, run.stderr[-2000:])
    assert "double free" not in run.stderr
    first, then = run.stdout.splitlines()
    assert "mdb_txn_commit" in first
    assert "new process" in then
    coverage = _assert_coverage_has_its_rows(url, DatasetKey("binance", "BTC/USDT", "ohlcv", "1m"))
    assert coverage.total > 0


# -- a store on a read-only file system ---------------------------------------------------------


@pytest.fixture
def read_only_view(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """``(writable dir, the same dir bind-mounted read-only)``: a real read-only file
    system (root ignores mode bits, so ``chmod a-w`` would prove nothing)."""
    src, view = tmp_path / "rw", tmp_path / "ro"
    src.mkdir()
    view.mkdir()
    bind = subprocess.run(["mount", "--bind", str(src), str(view)], capture_output=True)
    if bind.returncode != 0:
        pytest.skip(f"cannot bind-mount (needs root): {bind.stderr.decode().strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(view)], check=True)
        yield src, view
    finally:
        subprocess.run(["umount", str(view)], check=True)


def test_arctic_lmdb_store_on_a_read_only_file_system_is_read(
    read_only_view: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, view = read_only_view
    key = DatasetKey("binance", "BTC/USDT", "ohlcv", "1h")
    with ExchangeEmulator(rate_limits=False) as emu:
        client = ExchangeClient("binance", base_url=emu.url, enableRateLimit=False)
        args = (["BTC/USDT"], "1h", "2024-01-01", "2024-01-02", client, 0)
        with open_storage(f"arctic+lmdb://{src / 'store'}") as rw:
            ensure_data(*args, storage=rw, progress=False)
            rows, coverage = rw.read(key), rw.coverage(key)
        assert len(rows) == 48
        with pytest.raises(OSError):
            (view / "store" / "probe").write_text("x")  # the view really is read-only

        url = f"arctic+lmdb://{view / 'store'}"
        st = open_storage(url)
        assert st.keys() == [key]
        assert st.read(key).equals(rows)
        assert st.coverage(key) == coverage
        n = len(emu.requests)
        report = ensure_data(*args, storage=st, progress=False)  # fully covered: reads only
        assert report.ok and len(emu.requests) == n
        with pytest.raises(StorageError, match="read-only"):
            st.write(key, rows.iloc[:1])
        with pytest.raises(StorageError, match="read-only"):
            st.delete(key)
        st.close()

    assert main(["--storage", url, "ls"]) == 0
    assert "binance:ohlcv:1h:BTC/USDT" in capsys.readouterr().out
    out = tmp_path / "btc.csv"
    assert main(["--storage", url, "export", "binance:ohlcv:1h:BTC/USDT", "-o", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 49


# -- locks: a stuck writer ------------------------------------------------------------------------

HOLD_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()  # until the test closes our stdin
"""


@pytest.mark.parametrize("backend", ["parquet", "arctic+lmdb"])
def test_a_writer_stuck_holding_the_lock_makes_writes_fail_not_hang(
    tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "store"
    st = open_storage(f"{backend}://{root}")
    st.write(KEY, candles(T0, 10), covered=Interval(T0, T0 + 10 * MINUTE))
    lock = root / ".locks" / f"{key_name(KEY)}.lock"
    assert lock.exists()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(lock)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(locks, "LOCK_TIMEOUT", 0.5)
        t0 = time.monotonic()
        with pytest.raises(StorageError, match=re.escape(str(lock))):
            st.write(KEY, candles(T0 + 10 * MINUTE, 10))
        assert time.monotonic() - t0 < 30
        assert len(st.read(KEY)) == 10  # readers take no lock
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    assert st.write(KEY, candles(T0 + 10 * MINUTE, 10)) == 10
    assert len(st.read(KEY)) == 20
    st.close()


# -- URL options -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", ["abc", "0GB", "10gb", "5", "", "1.5GB", "-1GB", "GB"])
def test_bad_map_size_is_an_invalid_request_naming_it(tmp_path: Path, size: str) -> None:
    with pytest.raises(InvalidRequest, match=rf"map_size '{size}'.*KB, MB, GB or TB"):
        open_storage(f"arctic+lmdb://{tmp_path / 'x'}?map_size={size}")
    assert not (tmp_path / "x").exists()
