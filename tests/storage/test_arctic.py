"""ArcticDB backend specifics: versions, fragmentation, atomic coverage, crashes, S3.

The conformance suite is also re-run here against ``arctic+s3`` on a moto server
in a *separate process*: ArcticDB holds the GIL during some S3 calls
(``list_libraries``, ``read_metadata``, ``list_symbols``, ``delete``...), which
deadlocks with the in-process ``ThreadedMotoServer`` of ``tests/conftest.py``.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mdcollect import DatasetKey, Interval, IntervalSet, StorageError, open_storage
from mdcollect.storage import arctic as arctic_mod
from mdcollect.storage.arctic import ArcticStorage
from tests.conftest import DAY, MINUTE, T0, candles

KEY = DatasetKey("binance", "BTC/USDT", "ohlcv", "1m")
SYMBOL = "binance.ohlcv.1m.BTC%2FUSDT"


def _du(path: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


@pytest.fixture
def lmdb(tmp_path: Path) -> Iterator[ArcticStorage]:
    st = open_storage(f"arctic+lmdb://{tmp_path / 'lmdb'}")
    assert isinstance(st, ArcticStorage)
    yield st
    st.close()


def _lib(st: ArcticStorage) -> Any:
    return st._lib


def _segments(st: ArcticStorage, symbol: str = SYMBOL) -> int:
    return int(_lib(st).compact_data_explain_plan(symbol).num_row_slices_before)


def _rows_written(st: ArcticStorage, symbol: str = SYMBOL) -> int:
    """Rows in the segments the newest version wrote (segments kept from before carry older ids)."""
    index = _lib(st)._dev_tools.library_tool().read_index(symbol)
    newest = index["version_id"] == index["version_id"].max()
    return int((index["end_row"] - index["start_row"])[newest].sum())


def _daily(st: ArcticStorage, frame: pd.DataFrame, days: int, per_day: int = 1440) -> None:
    for day in range(days):
        part = frame.iloc[day * per_day : (day + 1) * per_day]
        lo = T0 + day * per_day * MINUTE
        st.write(KEY, part, covered=Interval(lo, lo + per_day * MINUTE))


# -- versions, disk, fragmentation ----------------------------------------------------


def test_versions_are_pruned_and_disk_does_not_grow_with_writes(
    lmdb: ArcticStorage, tmp_path: Path
) -> None:
    frame = candles(T0, 120 * 1440)
    _daily(lmdb, frame, 120)
    assert len(_lib(lmdb).list_versions(SYMBOL)) == 1
    after_daily = _du(tmp_path / "lmdb")
    for _ in range(60):  # overlapping rewrites take the update path
        lmdb.write(KEY, frame.iloc[-2880:], covered=Interval(T0, T0 + 120 * DAY))
    assert len(_lib(lmdb).list_versions(SYMBOL)) == 1
    pd.testing.assert_frame_equal(lmdb.read(KEY), frame, check_freq=False)
    # unpruned, 60 versions of a 2-day rewrite would add 60 x 2 days of segments
    assert _du(tmp_path / "lmdb") <= 1.25 * after_daily


def test_365_daily_writes_stay_compact_and_coverage_is_fast(
    lmdb: ArcticStorage, tmp_path: Path
) -> None:
    frame = candles(T0, 365 * 1440)
    _daily(lmdb, frame, 365)
    with ArcticStorage(f"arctic+lmdb://{tmp_path / 'one'}") as one:
        one.write(KEY, frame)
    assert _du(tmp_path / "lmdb") <= 2 * _du(tmp_path / "one")
    # 1440-row appends: without tail merges this would be 365 segments. Five full ones,
    # then tail segments each larger than all after it: at most 1 + log2(100,000 / 1440)
    assert _segments(lmdb) <= 5 + 1 + math.log2(arctic_mod._ROWS_PER_SEGMENT / 1440)
    pd.testing.assert_frame_equal(lmdb.read(KEY), frame, check_freq=False)
    assert lmdb.coverage(KEY) == IntervalSet([Interval(T0, T0 + 365 * DAY)])
    times = []
    for _ in range(200):
        t = time.perf_counter()
        lmdb.coverage(KEY)
        times.append(time.perf_counter() - t)
    assert float(np.median(times)) < 1e-3


def test_small_appends_rewrite_each_row_a_logarithmic_number_of_times(
    lmdb: ArcticStorage,
) -> None:
    # a live collector flushing 20 rows at a time: 250 writes (rewriting each row per
    # write would be ~125 rewrites a row, against the bound's 9)
    batch, writes = 20, 250
    frame = candles(T0, batch * writes)
    written, most = 0, 0
    for i in range(writes):
        lo = T0 + i * batch * MINUTE
        lmdb.write(
            KEY, frame.iloc[i * batch : (i + 1) * batch], covered=Interval(lo, lo + batch * MINUTE)
        )
        rows = _rows_written(lmdb)
        written += rows
        most = max(most, rows)
    pd.testing.assert_frame_equal(lmdb.read(KEY), frame, check_freq=False)
    assert lmdb.coverage(KEY) == IntervalSet([Interval(T0, T0 + batch * writes * MINUTE)])
    # a row is rewritten only when its segment at least doubles: log2(5,000 / 20) ~ 8 times
    bound = 1 + math.log2(batch * writes / batch)
    assert written / len(frame) <= bound
    assert most <= arctic_mod._ROWS_PER_SEGMENT + batch
    assert _segments(lmdb) <= bound


def test_one_write_rewrites_at_most_one_segment_plus_its_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # small segments (the library is created with them) to cross many segment boundaries
    monkeypatch.setattr(arctic_mod, "_ROWS_PER_SEGMENT", 1000)
    with ArcticStorage(f"arctic+lmdb://{tmp_path / 'small'}") as st:
        sizes = np.random.default_rng(3).integers(1, 400, 150)
        frame = candles(T0, int(sizes.sum()))
        pos, written = 0, 0
        for n in sizes:
            st.write(KEY, frame.iloc[pos : pos + n])
            rows = _rows_written(st)
            assert rows <= 1000 + n
            written += rows
            pos += n
        pd.testing.assert_frame_equal(st.read(KEY), frame, check_freq=False)
        full = len(frame) // 1000
        assert _segments(st) <= full + 1 + math.log2(1000)
        assert written / len(frame) <= 2 + math.log2(1000 / sizes.min())


def test_dataset_of_metadata_format_1_rewrites_its_tail_once(lmdb: ArcticStorage) -> None:
    frame = candles(T0, 315)
    for i in range(3):  # three appended segments, as format 1 left them
        lmdb.write(KEY, frame.iloc[i * 100 : (i + 1) * 100])
    lib = _lib(lmdb)
    old = dict(lib.read_metadata(SYMBOL).metadata)
    old.update(format=1, tail_segments=3)
    del old["runs"]
    lib.write_metadata(SYMBOL, old, prune_previous_versions=True)
    lmdb.write(KEY, frame.iloc[200:300])  # overlapping rows: the tail's runs become unknown
    lmdb.write(KEY, frame.iloc[300:310])
    assert _rows_written(lmdb) == 310  # the whole tail, once
    assert _segments(lmdb) == 1
    assert lib.read_metadata(SYMBOL).metadata["runs"] == [[T0 * 10**6, 310]]
    lmdb.write(KEY, frame.iloc[310:])
    assert _rows_written(lmdb) == 5  # then plain appends again
    pd.testing.assert_frame_equal(lmdb.read(KEY), frame, check_freq=False)


def test_out_of_order_writes_trigger_compaction(
    lmdb: ArcticStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(arctic_mod, "_BODY_FRAGMENTS", 10)
    frame = candles(T0, 40 * 100)
    for day in reversed(range(40)):  # backfilling backwards: every write prepends
        lmdb.write(KEY, frame.iloc[day * 100 : (day + 1) * 100])
    pd.testing.assert_frame_equal(lmdb.read(KEY), frame, check_freq=False)
    assert _segments(lmdb) < 10


def test_one_year_of_minutes_in_one_write(lmdb: ArcticStorage) -> None:
    frame = candles(T0, 525_600)
    cover = Interval(T0, T0 + 525_600 * MINUTE)
    assert lmdb.write(KEY, frame, covered=cover) == 525_600
    out = lmdb.read(KEY, T0 + 100 * DAY, T0 + 101 * DAY)
    pd.testing.assert_frame_equal(out, frame.iloc[100 * 1440 : 101 * 1440], check_freq=False)


# -- coverage and rows are one version ---------------------------------------------------


def test_coverage_is_stored_in_the_version_holding_the_rows(lmdb: ArcticStorage) -> None:
    lmdb.write(KEY, candles(T0, 10), covered=Interval(T0, T0 + 10 * MINUTE))
    lmdb.write(KEY, candles(T0 + 10 * MINUTE, 10), covered=Interval(T0, T0 + 20 * MINUTE))
    item = _lib(lmdb).read(SYMBOL)
    assert len(item.data) == 20
    assert item.metadata["coverage"] == [[T0, T0 + 20 * MINUTE]]


@pytest.mark.parametrize("method", ["write", "append", "update"])
def test_failed_row_write_leaves_coverage_unchanged(
    lmdb: ArcticStorage, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    if method != "write":
        lmdb.write(KEY, candles(T0, 10), covered=Interval(T0, T0 + 10 * MINUTE))
    before = lmdb.coverage(KEY)
    lib = _lib(lmdb)
    from arcticdb.exceptions import StorageException

    def boom(*args: object, **kwargs: object) -> None:
        raise StorageException("disk on fire")

    monkeypatch.setattr(lib, method, boom)
    start = T0 + (5 if method == "update" else 10) * MINUTE
    # an append of fewer rows than the last segment's is a plain append (no tail merge)
    n = 5 if method == "append" else 10
    with pytest.raises(StorageError, match="disk on fire") as info:
        lmdb.write(KEY, candles(start, n), covered=Interval(start, start + n * MINUTE))
    assert isinstance(info.value.__cause__, StorageException)
    monkeypatch.undo()
    assert lmdb.coverage(KEY) == before


def test_rows_without_coverage_are_fine(lmdb: ArcticStorage) -> None:
    # what a crash between "rows" and "coverage" would leave in a two-step design
    _lib(lmdb).write(SYMBOL, candles(T0, 10))
    assert lmdb.coverage(KEY) == IntervalSet()
    assert len(lmdb.read(KEY)) == 10
    lmdb.write(KEY, candles(T0, 20), covered=Interval(T0, T0 + 20 * MINUTE))
    pd.testing.assert_frame_equal(lmdb.read(KEY), candles(T0, 20), check_freq=False)
    assert lmdb.coverage(KEY) == IntervalSet([Interval(T0, T0 + 20 * MINUTE)])


def test_coverage_only_dataset_then_rows_then_deletes(lmdb: ArcticStorage) -> None:
    lmdb.write(KEY, candles(T0, 0), covered=Interval(T0 - DAY, T0))
    assert len(lmdb.read(KEY, T0 - DAY, T0)) == 0
    lmdb.delete(KEY, T0 - DAY, T0 - DAY + MINUTE)
    assert lmdb.coverage(KEY) == IntervalSet([Interval(T0 - DAY + MINUTE, T0)])
    lmdb.write(KEY, candles(T0, 30), covered=Interval(T0, T0 + 30 * MINUTE))
    lmdb.delete(KEY, T0 + 20 * MINUTE, None)  # open end
    assert len(lmdb.read(KEY)) == 20
    assert lmdb.coverage(KEY) == IntervalSet([Interval(T0 - DAY + MINUTE, T0 + 20 * MINUTE)])
    lmdb.write(KEY, candles(T0, 30).iloc[25:])  # after a deleted tail: still an upsert
    assert len(lmdb.read(KEY)) == 25


def test_trades_overlap_merges_by_timestamp_and_id(lmdb: ArcticStorage) -> None:
    key = DatasetKey("binance", "BTC/USDT", "trades")

    def trades(ts: list[int], ids: list[str], price: float) -> pd.DataFrame:
        n = len(ts)
        return pd.DataFrame({"timestamp": ts, "id": ids, "price": [price] * n,
                             "amount": [1.0] * n, "side": ["buy"] * n})  # fmt: skip

    lmdb.write(key, trades([T0, T0, T0 + 1], ["1", "2", "3"], 1.0))
    lmdb.write(key, trades([T0 + 1, T0 + 2], ["4", "5"], 2.0))  # equal last ts: not an append
    lmdb.write(key, trades([T0, T0 + 1], ["2", "3"], 3.0))
    out = lmdb.read(key)
    assert out["id"].tolist() == ["1", "2", "3", "4", "5"]
    assert out["price"].tolist() == [1.0, 3.0, 3.0, 2.0, 2.0]


def test_changing_columns_rewrites(lmdb: ArcticStorage) -> None:
    lmdb.write(KEY, candles(T0, 5).assign(trades=np.arange(5)))
    lmdb.write(KEY, candles(T0 + 5 * MINUTE, 5))  # without the optional int column
    out = lmdb.read(KEY)
    assert len(out) == 10
    assert "trades" not in out.columns  # as merge_frames: kept only when every row has it


def test_points_upsert_and_open_ranges(lmdb: ArcticStorage) -> None:
    for i in [5, 1, 3, 1, 9]:
        lmdb.store("p", {"i": i}, T0 + i)
    lmdb.store("p", "again", T0 + 9)
    assert lmdb.fetch("p", T0, T0 + 10) == [
        (T0 + 1, {"i": 1}), (T0 + 3, {"i": 3}), (T0 + 5, {"i": 5}), (T0 + 9, "again"),
    ]  # fmt: skip
    assert lmdb.fetch("p", T0 + 3, T0 + 3) == []
    assert lmdb.fetch("p", -(2**62), 2**62)[0] == (T0 + 1, {"i": 1})
    assert len(lmdb.read(KEY, -(2**62), 2**62)) == 0
    assert lmdb.keys() == []  # points are not datasets


def test_url_options_locks_and_repr(tmp_path: Path) -> None:
    from mdcollect import InvalidRequest

    with pytest.raises(InvalidRequest, match="unknown option"):
        open_storage(f"arctic+lmdb://{tmp_path}?bogus=1")
    with pytest.raises(InvalidRequest, match="HOST:BUCKET"):
        open_storage("arctic+s3://nobucket?secret=x")
    with open_storage(f"arctic+lmdb://{tmp_path / 'm'}?map_size=2GB") as st:
        st.write(KEY, candles(T0, 3))
        assert (tmp_path / "m" / ".locks" / f"{SYMBOL}.lock").exists()
    _, _, lock_dir, _, _ = arctic_mod._parse_url("arctic+s3://h:b?port=1&access=a&secret=TOPSECRET")
    assert "TOPSECRET" not in str(lock_dir)


def test_closed_storage_refuses(tmp_path: Path) -> None:
    st = open_storage(f"arctic+lmdb://{tmp_path / 'c'}")
    other = open_storage(f"arctic+lmdb://{tmp_path / 'c'}")  # shares the one LMDB handle
    st.close()
    with pytest.raises(StorageError, match="closed"):
        st.read(KEY)
    other.write(KEY, candles(T0, 3))
    assert len(other.read(KEY)) == 3
    other.close()


# -- crashes --------------------------------------------------------------------------


@pytest.mark.slow  # four processes killed at random points of a series
def test_sigkill_mid_series_leaves_data_readable_and_coverage_not_ahead(tmp_path: Path) -> None:
    url = f"arctic+lmdb://{tmp_path / 'lmdb'}"
    per = 720
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parents[2])!r})
        from mdcollect import open_storage, DatasetKey, Interval
        from tests.conftest import candles
        st = open_storage({url!r})
        key = DatasetKey("binance", "BTC/USDT", "ohlcv", "1m")
        start = int(sys.argv[1])
        print("ready", flush=True)
        for i in range(start, start + 100000):
            lo = {T0} + i * {per} * {MINUTE}
            st.write(key, candles(lo, {per}, seed=i), covered=Interval(lo, lo + {per} * {MINUTE}))
            if i % 7 == 3:  # an overlapping rewrite now and then (update path)
                back = lo - {per // 2} * {MINUTE}
                st.write(key, candles(back, {per}, seed=i), covered=Interval(back, back + {per} * {MINUTE}))
        """
    )
    rng = np.random.default_rng(0)
    start = 0
    for _round in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(start)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.5, 2.0)))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        with open_storage(url) as st:
            data = st.read(KEY)
            assert data.index.is_unique and data.index.is_monotonic_increasing
            ms = data.index.asi8 // 1_000_000
            for iv in st.coverage(KEY):
                expected = np.arange(iv.start, iv.end, MINUTE)
                lo, hi = np.searchsorted(ms, [iv.start, iv.end])
                assert np.array_equal(ms[lo:hi], expected), f"covered {iv} but rows missing"
            covered_end = st.coverage(KEY).end or T0
            start = (covered_end - T0) // (per * MINUTE)


def test_info_of_a_symbol_written_before_rows_were_kept_comes_from_arcticdb(
    lmdb: ArcticStorage,
) -> None:
    st = lmdb
    st.write(KEY, candles(T0, 10), covered=Interval(T0, T0 + 10 * MINUTE), source="import")
    lib = st._lib
    meta = dict(lib.read_metadata(st._symbol(KEY)).metadata)
    for field in ("rows", "span", "last_write", "sources"):
        del meta[field]
    lib.write_metadata(st._symbol(KEY), meta, prune_previous_versions=True)
    info = st.info(KEY)
    assert (info.rows, info.first, info.last) == (10, T0, T0 + 9 * MINUTE)
    assert info.sources == () and info.last_write is None
    st.write(KEY, candles(T0 + 10 * MINUTE, 5), source="live:ws")  # an append keeps it known
    info = st.info(KEY)
    assert (info.rows, info.last, info.source) == (15, T0 + 14 * MINUTE, "live:ws")


def test_info_bytes_are_the_symbols_compressed_size_one_by_one_or_listed(
    lmdb: ArcticStorage,
) -> None:
    keys = [DatasetKey("binance", f"S{i}/USDT", "ohlcv", "1m") for i in range(20)]
    for i, key in enumerate(keys):
        lmdb.write(key, candles(T0, 100 * (i + 1)))
    one = lmdb.info(keys[0]).bytes
    listed = lmdb.infos()  # more than a few: one listing of the library
    assert one is not None and one > 0 and listed[keys[0]].bytes == one
    sizes = [listed[k].bytes or 0 for k in keys]
    assert sizes[-1] > sizes[0] > 0  # 2,000 rows take more than 100
    assert lmdb.info(DatasetKey("okx", "NONE/USDT", "ohlcv", "1m")).bytes is None
