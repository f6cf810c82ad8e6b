"""What only ``parquet://`` promises: layout, partitions, atomic files, crash safety.

The shared contract is in ``test_conformance.py``; these tests look at the files.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import mdcollect.storage.parquet as pqmod
from mdcollect import DatasetKey, Interval, IntervalSet, InvalidRequest, StorageError, open_storage
from mdcollect.storage._naming import key_parts
from mdcollect.storage.parquet import ParquetStorage
from tests.conftest import DAY, MINUTE, T0, candles

KEY = DatasetKey("binance", "BTC/USDT", "ohlcv", "1m")
FEB = 1_706_745_600_000  # 2024-02-01T00:00Z
MAR = 1_709_251_200_000  # 2024-03-01T00:00Z


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "pq"


@pytest.fixture
def st(root: Path) -> ParquetStorage:
    return ParquetStorage(root)


def dataset_dir(root: Path, key: DatasetKey = KEY) -> Path:
    return root.joinpath(*key_parts(key))


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def ms_index(frame: pd.DataFrame) -> np.ndarray:
    index = frame.index
    assert isinstance(index, pd.DatetimeIndex)
    return np.asarray(index.as_unit("ns").asi8 // 1_000_000)


# -- opening ---------------------------------------------------------------------------


def test_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    absolute = open_storage(f"parquet://{tmp_path / 'a'}")
    assert isinstance(absolute, ParquetStorage)
    assert absolute.root == tmp_path / "a" and absolute.root.is_dir()
    assert absolute.url == f"parquet://{tmp_path / 'a'}"
    monkeypatch.chdir(tmp_path)
    relative = open_storage("parquet://rel/data")
    assert isinstance(relative, ParquetStorage)
    assert relative.root == tmp_path / "rel" / "data"
    with pytest.raises(InvalidRequest, match="names no directory"):
        open_storage("parquet://")


def test_root_that_is_a_file_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError) as info:
        ParquetStorage(tmp_path / "file")
    assert "file" in str(info.value)


# -- layout ----------------------------------------------------------------------------


def test_layout_one_file_per_month_plus_coverage(st: ParquetStorage, root: Path) -> None:
    frame = candles(FEB - DAY, 2 * 1440)  # Jan 31 and Feb 1
    st.write(KEY, frame, covered=Interval(FEB - DAY, FEB + DAY))
    d = dataset_dir(root)
    assert d == root / "binance" / "ohlcv" / "1m" / "BTC%2FUSDT"
    assert files(d) == ["2024-01.parquet", "2024-02.parquet", "_coverage.json", "_info.json"]
    jan = pq.read_table(d / "2024-01.parquet")
    assert jan.num_rows == 1440
    assert jan.schema.field("timestamp").type == pa.timestamp("ns", tz="UTC")
    assert (root / ".locks").is_dir()


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (DatasetKey("binance", "BTC/USDT", "ohlcv", "1h"), "2024.parquet"),
        (DatasetKey("binance", "BTC/USDT", "ohlcv", "1d"), "2024.parquet"),
        (DatasetKey("binance", "BTC/USDT", "ohlcv", "5m"), "2024-01.parquet"),
        (DatasetKey("binance", "BTC/USDT", "ohlcv", "1s"), "2024-01-01.parquet"),
        (DatasetKey("binance", "BTC/USDT:USDT", "funding"), "2024.parquet"),
        (DatasetKey("binance", "BTC/USDT", "ticker"), "2024-01-01.parquet"),
        (DatasetKey("binance", "BTC/USDT:USDT", "funding_snapshot"), "2024-01-01.parquet"),
    ],
)
def test_partition_size_follows_density(
    st: ParquetStorage, root: Path, key: DatasetKey, expected: str
) -> None:
    if key.tf is not None:
        frame = candles(T0, 3, step=key.tf.ms)
    elif key.kind in ("funding", "funding_snapshot"):
        frame = pd.DataFrame({"timestamp": [T0], "rate": [0.0001]})
    else:
        frame = pd.DataFrame(
            {"timestamp": [T0], "bid": [1.0], "ask": [1.1], "last": [1.0], "bid_size": [1.0],
             "ask_size": [1.0]}
        )  # fmt: skip
    st.write(key, frame)
    assert files(dataset_dir(root, key)) == [expected, "_info.json"]


def test_trades_are_partitioned_by_day(st: ParquetStorage, root: Path) -> None:
    key = DatasetKey("binance", "BTC/USDT", "trades")
    trades = pd.DataFrame(
        {"timestamp": [T0, T0 + DAY - 1, T0 + DAY], "id": ["1", "2", "3"], "price": [1.0] * 3,
         "amount": [1.0] * 3, "side": ["buy", "sell", "buy"]}
    )  # fmt: skip
    st.write(key, trades)
    assert files(dataset_dir(root, key)) == [
        "2024-01-01.parquet",
        "2024-01-02.parquet",
        "_info.json",
    ]
    assert st.read(key)["id"].tolist() == ["1", "2", "3"]


def test_points_live_apart_one_file_per_day(st: ParquetStorage, root: Path) -> None:
    st.store("../../etc/passwd", {"a": 1}, T0)
    st.store("../../etc/passwd", {"a": 2}, T0 + DAY)
    pdir = root / "_points" / "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd"
    assert files(pdir) == ["2024-01-01.jsonl", "2024-01-02.jsonl"]
    assert st.fetch("../../etc/passwd", T0, T0 + 2 * DAY) == [(T0, {"a": 1}), (T0 + DAY, {"a": 2})]
    assert st.fetch("../../etc/passwd", T0 + 1, T0 + DAY) == []
    assert st.keys() == []  # points are not datasets


# -- partitions: pruning, pushdown, rewrite only what changes -------------------------


def test_only_partitions_overlapping_the_range_are_read(st: ParquetStorage, root: Path) -> None:
    st.write(KEY, candles(T0, 31 * 1440 + 29 * 1440 + 10))  # Jan, Feb, 10 min of Mar
    (dataset_dir(root) / "2024-03.parquet").write_bytes(b"not parquet")
    assert len(st.read(KEY, T0, MAR)) == 60 * 1440
    assert len(st.read(KEY, FEB + 5 * MINUTE, FEB + 10 * MINUTE)) == 5
    with pytest.raises(StorageError) as info:
        st.read(KEY, FEB, MAR + MINUTE)
    assert isinstance(info.value.__cause__, pa.ArrowException)


def test_columns_are_pushed_down_to_pyarrow(
    st: ParquetStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    st.write(KEY, candles(T0, 100))
    seen: list[Any] = []
    real = pq.ParquetFile.read

    def spy(self: pq.ParquetFile, columns: Any = None, **kw: Any) -> pa.Table:
        seen.append(columns)
        return real(self, columns=columns, **kw)

    monkeypatch.setattr(pq.ParquetFile, "read", spy)
    out = st.read(KEY, columns=["close"])
    assert list(out.columns) == ["close"] and len(out) == 100
    assert seen == [["timestamp", "close"]]


def test_a_daily_write_rewrites_only_its_month(st: ParquetStorage, root: Path) -> None:
    st.write(KEY, candles(T0, 45 * 1440))  # Jan and half of Feb
    d = dataset_dir(root)
    jan_before = os.stat(d / "2024-01.parquet")
    feb_before = os.stat(d / "2024-02.parquet")
    st.write(
        KEY, candles(T0 + 45 * DAY, 1440, seed=9), covered=Interval(T0 + 45 * DAY, T0 + 46 * DAY)
    )
    jan_after = os.stat(d / "2024-01.parquet")
    assert (jan_after.st_ino, jan_after.st_mtime_ns) == (jan_before.st_ino, jan_before.st_mtime_ns)
    assert os.stat(d / "2024-02.parquet").st_ino != feb_before.st_ino
    assert len(st.read(KEY)) == 46 * 1440


def test_optional_column_missing_in_one_partition_is_dropped_on_read(st: ParquetStorage) -> None:
    st.write(KEY, candles(T0, 10).assign(trades=np.arange(10, dtype=np.int64)))
    st.write(KEY, candles(FEB, 10))  # no `trades` in February
    assert list(st.read(KEY, T0, FEB).columns)[-1] == "trades"
    whole = st.read(KEY)
    assert "trades" not in whole.columns and len(whole) == 20


def test_orderbook_depth_may_differ_between_partitions(st: ParquetStorage) -> None:
    key = DatasetKey("okx", "BTC/USDT:USDT", "orderbook")

    def book(ts: int, depth: int) -> pd.DataFrame:
        cols = {
            f"{s}_{w}_{i}": [float(i + 1)]
            for s in ("bid", "ask")
            for w in ("px", "sz")
            for i in range(depth)
        }
        return pd.DataFrame({"timestamp": [ts], **cols})  # fmt: skip

    st.write(key, book(T0, 2))
    st.write(key, book(T0 + DAY, 3))
    out = st.read(key)
    assert len(out) == 2 and "bid_px_2" in out.columns
    assert np.isnan(out["bid_px_2"].iloc[0]) and out["bid_px_2"].iloc[1] == 3.0


# -- delete ------------------------------------------------------------------------------


def test_delete_range_rewrites_only_affected_partitions(st: ParquetStorage, root: Path) -> None:
    st.write(KEY, candles(T0, 70 * 1440), covered=Interval(T0, T0 + 70 * DAY))  # Jan, Feb, Mar
    d = dataset_dir(root)
    jan = os.stat(d / "2024-01.parquet")
    st.delete(KEY, FEB, MAR + DAY)  # all of Feb, one day of Mar
    assert files(d) == ["2024-01.parquet", "2024-03.parquet", "_coverage.json", "_info.json"]
    assert os.stat(d / "2024-01.parquet").st_ino == jan.st_ino
    assert st.coverage(KEY) == IntervalSet([Interval(T0, FEB), Interval(MAR + DAY, T0 + 70 * DAY)])
    ms = ms_index(st.read(KEY))
    assert len(ms) == 70 * 1440 - 29 * 1440 - 1440
    assert not ((ms >= FEB) & (ms < MAR + DAY)).any()


def test_delete_whole_dataset_removes_its_directory(st: ParquetStorage, root: Path) -> None:
    st.write(KEY, candles(T0, 10), covered=Interval(T0, T0 + 10 * MINUTE))
    st.delete(KEY)
    assert not dataset_dir(root).exists()
    assert list((root / ".trash").iterdir()) == []
    assert st.keys() == [] and st.coverage(KEY) == IntervalSet()
    st.write(KEY, candles(T0, 5))  # and the key can be written again
    assert len(st.read(KEY)) == 5


def test_failed_delete_leaves_coverage_behind_data_never_ahead(
    st: ParquetStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    st.write(KEY, candles(T0, 100), covered=Interval(T0, T0 + 100 * MINUTE))

    def broken(self: ParquetStorage, path: Path, frame: pd.DataFrame) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ParquetStorage, "_write_parquet", broken)
    with pytest.raises(StorageError, match="No space") as info:
        st.delete(KEY, T0 + 10 * MINUTE, T0 + 20 * MINUTE)
    assert isinstance(info.value.__cause__, OSError)
    # the rows are still there, but coverage already stopped claiming them
    assert len(st.read(KEY)) == 100
    assert st.coverage(KEY) == IntervalSet(
        [Interval(T0, T0 + 10 * MINUTE), Interval(T0 + 20 * MINUTE, T0 + 100 * MINUTE)]
    )


# -- atomicity ---------------------------------------------------------------------------


def test_failed_write_extends_no_coverage_and_leaves_no_temp_file(
    st: ParquetStorage, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    st.write(KEY, candles(T0, 10), covered=Interval(T0, T0 + 10 * MINUTE))
    calls = 0
    real = pq.write_table

    def fail_second(table: pa.Table, where: Any, **kw: Any) -> None:
        nonlocal calls
        calls += 1
        real(table, where, **kw)  # the temp file exists, half the work is done
        if calls == 2:
            raise OSError(5, "I/O error")

    monkeypatch.setattr(pq, "write_table", fail_second)
    frame = candles(FEB - DAY, 2 * 1440, seed=4)  # two partitions
    with pytest.raises(StorageError, match="I/O error"):
        st.write(KEY, frame, covered=Interval(FEB - DAY, FEB + DAY))
    assert st.coverage(KEY) == IntervalSet([Interval(T0, T0 + 10 * MINUTE)])
    assert not [n for n in files(dataset_dir(root)) if n.startswith(".tmp-")]
    assert len(st.read(KEY)) == 10 + 1440  # January was replaced whole, February never appeared


def test_leftover_temp_files_are_ignored_then_cleaned(st: ParquetStorage, root: Path) -> None:
    st.write(KEY, candles(T0, 10), covered=Interval(T0, T0 + 10 * MINUTE))
    d = dataset_dir(root)
    (d / ".tmp-deadbeef-2024-01.parquet").write_bytes(b"half a parquet fi")
    (d / ".tmp-deadbeef-2024-02.parquet").write_bytes(b"")
    (d / ".tmp-deadbeef-_coverage.json").write_text('{"version": 1, "cov')
    assert len(st.read(KEY)) == 10
    assert st.coverage(KEY) == IntervalSet([Interval(T0, T0 + 10 * MINUTE)])
    assert st.keys() == [KEY]
    st.write(KEY, candles(T0 + 10 * MINUTE, 1))
    assert files(d) == ["2024-01.parquet", "_coverage.json", "_info.json"]


def test_corrupt_coverage_file_is_a_storage_error(st: ParquetStorage, root: Path) -> None:
    st.write(KEY, candles(T0, 1), covered=Interval(T0, T0 + MINUTE))
    (dataset_dir(root) / "_coverage.json").write_text("{nope")
    with pytest.raises(StorageError, match="coverage"):
        st.coverage(KEY)


def test_read_lists_again_when_a_partition_vanishes(
    st: ParquetStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    st.write(KEY, candles(T0, 10))
    real = pqmod._load_table
    calls = 0

    def flaky(*args: Any) -> pa.Table:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise FileNotFoundError(2, "gone", "2024-01.parquet")
        return real(*args)

    monkeypatch.setattr(pqmod, "_load_table", flaky)
    assert len(st.read(KEY)) == 10 and calls == 2


def test_torn_point_record_is_ignored_then_cut(st: ParquetStorage, root: Path) -> None:
    st.store("p", 1, T0)
    path = next((root / "_points").rglob("*.jsonl"))
    with path.open("ab") as fh:
        fh.write(b'1704067200005\t{"half')  # a crash in the middle of a record
    assert st.fetch("p", T0, T0 + 10) == [(T0, 1)]
    st.store("p", 2, T0 + 1)
    assert st.fetch("p", T0, T0 + 10) == [(T0, 1), (T0 + 1, 2)]
    assert path.read_bytes().count(b"\n") == 2


# -- crash safety with real processes -------------------------------------------------

WRITER = textwrap.dedent(
    """
    import random, sys
    import numpy as np, pandas as pd
    from mdcollect import open_storage, DatasetKey, Interval
    from tests.conftest import candles, T0, MINUTE, DAY

    st = open_storage("parquet://" + sys.argv[1])
    rng = random.Random(int(sys.argv[2]))
    key = DatasetKey("binance", "BTC/USDT", "ohlcv", "1m")
    tkey = DatasetKey("binance", "BTC/USDT", "trades")
    print("ready", flush=True)
    i = 0
    while True:
        i += 1
        day = rng.randrange(58)  # Jan and Feb: some writes span both partitions
        n = rng.choice([1, 1, 2]) * 1440
        lo = T0 + day * DAY
        if rng.random() < 0.2:
            st.delete(key, lo, lo + n * MINUTE)
        else:
            st.write(key, candles(lo, n, seed=i), covered=Interval(lo, lo + n * MINUTE))
        ts = T0 + rng.randrange(3) * DAY + np.arange(200, dtype=np.int64) * 7
        st.write(tkey, pd.DataFrame({
            "timestamp": ts, "id": [str(t % 1000) for t in ts], "price": float(i),
            "amount": 1.0, "side": "buy"}))
        st.store("progress", {"i": i}, T0 + i)
    """
)


def _check_store(root: Path) -> int:
    """Every dataset reads, nothing is duplicated, every covered minute has its row."""
    st = ParquetStorage(root)
    out = st.read(KEY)
    assert out.index.is_unique and out.index.is_monotonic_increasing
    ms = ms_index(out)
    for iv in st.coverage(KEY):
        minutes = np.arange(iv.start, iv.end, MINUTE)
        missing = minutes[~np.isin(minutes, ms)]
        assert len(missing) == 0, f"coverage {iv} claims {len(missing)} minutes without rows"
    trades = st.read(DatasetKey("binance", "BTC/USDT", "trades"))
    assert not trades.reset_index().duplicated(["timestamp", "id"]).any()
    points = st.fetch("progress", T0, T0 + 10**9)
    assert [ts for ts, _ in points] == sorted({ts for ts, _ in points})
    return sum(1 for p in root.rglob(".tmp-*"))


@pytest.mark.slow
def test_sigkill_mid_write_leaves_a_readable_store(root: Path) -> None:
    rng = random.Random(7)
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    left_temps = 0
    for round_ in range(8):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(root), str(round_)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=repo,
        )  # fmt: skip
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
        time.sleep(rng.uniform(0.05, 0.8))
        assert proc.poll() is None, proc.communicate()[1]  # still writing when killed
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        left_temps += _check_store(root)
    assert ParquetStorage(root).coverage(KEY), "the writers never got a write through"
    print(f"temp files left by the kills, summed over rounds: {left_temps}")
    # the next write of a dataset sweeps whatever temp files the kills left in it
    st = ParquetStorage(root)
    st.write(KEY, candles(T0, 1))
    assert not list(dataset_dir(root).glob(".tmp-*"))
    _check_store(root)


# -- size and speed (numbers in the report; bounds are the spec's) --------------------

YEAR = 525_600


@pytest.mark.slow
def test_365_daily_writes_take_no_more_disk_than_twice_one_write(tmp_path: Path) -> None:
    frame = candles(T0, YEAR)
    one = ParquetStorage(tmp_path / "one")
    one.write(KEY, frame, covered=Interval(T0, T0 + YEAR * MINUTE))
    daily = ParquetStorage(tmp_path / "daily")
    for day in range(365):
        daily.write(
            KEY, frame.iloc[day * 1440 : (day + 1) * 1440],
            covered=Interval(T0 + day * DAY, T0 + (day + 1) * DAY),
        )  # fmt: skip

    def size(p: Path) -> int:
        return sum(f.stat().st_size for f in p.rglob("*.parquet"))

    assert size(tmp_path / "daily") <= 2 * size(tmp_path / "one")
    assert daily.coverage(KEY) == IntervalSet([Interval(T0, T0 + YEAR * MINUTE)])
    pd.testing.assert_frame_equal(daily.read(KEY), frame, check_freq=False)


# -- the catalog's metadata (_info.json) ------------------------------------------------------


def test_info_without_its_sidecar_or_with_a_partition_replaced_by_hand(
    st: ParquetStorage, root: Path, tmp_path: Path
) -> None:
    st.write(KEY, candles(T0, 10), covered=Interval(T0, T0 + 10 * MINUTE), source="import")
    d = dataset_dir(root)
    (d / "_info.json").unlink()  # a store written before it existed: told by the footers
    info = st.info(KEY)
    assert (info.rows, info.first, info.last, info.sources) == (10, T0, T0 + 9 * MINUTE, ())
    assert info.bytes == (d / "2024-01.parquet").stat().st_size
    st.write(KEY, candles(T0 + 20 * MINUTE, 2), source="import")
    other = ParquetStorage(tmp_path / "other")
    other.write(KEY, candles(T0 + MINUTE, 4))
    # a restored file, not what _info.json describes: its own footer tells
    (dataset_dir(tmp_path / "other") / "2024-01.parquet").replace(d / "2024-01.parquet")
    info = st.info(KEY)
    assert (info.rows, info.first, info.last) == (4, T0 + MINUTE, T0 + 4 * MINUTE)
    assert info.sources == ("import",)
