"""``mdcollect.audit``: every check finds a defect planted in a real store, with its exact
timestamps, on the memory, parquet and Arctic LMDB backends.

How defects are planted: ``storage.write`` refuses the obvious ones (NaN, negative
values, high below low, candles off the grid) and sorts and deduplicates every frame,
so these tests write through the backend's own ``_write`` (the private method each
backend implements under ``write``) on a dataset that does not exist yet: it stores
the frame as given, in the given order, duplicates and all, with the coverage given.
That is the one bypass used here (:func:`plant`); it reaches the real backend's files,
so what the audit reads back is what the backend really holds. ArcticDB itself
refuses unsorted rows (``validate_index``), which the unsorted test shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest

import mdcollect
from mdcollect import DataCollectionStorage, DatasetKey, Interval, IntervalSet, InvalidRequest
from mdcollect.aggregate import trades_to_ohlcv
from mdcollect.audit import (
    JUMP_MADS,
    MAX_FINDINGS,
    WARNING_WEIGHT,
    ZERO_VOLUME_RUN,
    AuditReport,
    DatasetAudit,
    Finding,
    audit,
    audit_async,
)
from mdcollect.storage import Stamp

from .conftest import MINUTE, T0, candles

HOUR = 60 * MINUTE
N = 1440  # a day of 1m candles
KEY = DatasetKey("binance", "BTC/USDT", "ohlcv", "1m")
THREE = ["memory", "parquet", "arctic_lmdb"]

pytestmark = pytest.mark.parametrize("backend", THREE)

#: The lineage of rows planted as is (the backend's own write: no checks, no sorting).
PLANTED = Stamp("planted", 0)


def plant(
    store: DataCollectionStorage,
    key: DatasetKey,
    frame: pd.DataFrame,
    covered: Sequence[Interval] | None = None,
) -> None:
    """Write ``frame`` as is (order, duplicates, bad values) under a new ``key``."""
    assert key not in list(store.keys())
    frame = frame.copy()
    frame.index = pd.DatetimeIndex(frame.index, name="timestamp")
    store._write(key, frame, IntervalSet(covered) if covered else None, PLANTED)


def day(n: int = N) -> pd.DataFrame:
    return candles(T0, n)


def one(report: AuditReport, check: str) -> Finding:
    found = [f for f in report.findings if f.check == check]
    assert len(found) == 1, report
    return found[0]


def at(ms: list[int]) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(np.array(ms, dtype=np.int64), unit="ms", utc=True))


def test_a_clean_dataset_scores_one(store: DataCollectionStorage) -> None:
    store.write(KEY, day(), covered=Interval(T0, T0 + N * MINUTE))
    report = audit(store)
    assert report.ok and report.findings == ()
    assert report.datasets == (DatasetAudit(KEY, N, (), 1.0),)


def test_hole_inside_coverage(store: DataCollectionStorage) -> None:
    frame = day().drop(day().index[100:110])
    plant(store, KEY, frame, [Interval(T0, T0 + N * MINUTE)])
    report = audit(store)
    f = one(report, "hole")
    assert (f.start, f.end, f.count, f.severity) == (
        T0 + 100 * MINUTE,
        T0 + 110 * MINUTE,
        10,
        "error",
    )
    assert "2024-01-01 01:40:00" in f.detail
    assert report.datasets[0].score == pytest.approx(1 - 10 / N)
    assert not report.ok


def test_rows_outside_coverage(store: DataCollectionStorage) -> None:
    plant(store, KEY, day(), [Interval(T0, T0 + 1000 * MINUTE)])
    report = audit(store)
    f = one(report, "outside_coverage")
    assert (f.start, f.end, f.count) == (T0 + 1000 * MINUTE, T0 + N * MINUTE, N - 1000)
    # coverage may lag data by design: a warning
    assert f.severity == "warning" and report.ok
    assert report.datasets[0].score == pytest.approx(1 - WARNING_WEIGHT * (N - 1000) / N)


def test_off_grid_row(store: DataCollectionStorage) -> None:
    frame = day(60)
    bad = T0 + 5 * MINUTE + 30_000
    extra = frame.iloc[[5]].set_axis(at([bad]))
    frame = pd.concat([frame.iloc[:6], extra, frame.iloc[6:]])
    plant(store, KEY, frame, [Interval(T0, T0 + 60 * MINUTE)])
    report = audit(store)
    f = one(report, "off_grid")
    assert (f.start, f.end, f.count) == (bad, bad + MINUTE, 1)
    assert [x.check for x in report.findings] == ["off_grid"]


def test_duplicate_timestamps(store: DataCollectionStorage) -> None:
    frame = day(60)
    frame = pd.concat([frame.iloc[:21], frame.iloc[[20]], frame.iloc[21:]])
    plant(store, KEY, frame, [Interval(T0, T0 + 60 * MINUTE)])
    f = one(audit(store), "duplicate")
    assert (f.start, f.end, f.count) == (T0 + 20 * MINUTE, T0 + 21 * MINUTE, 2)


def test_unsorted_rows(store: DataCollectionStorage, backend: str) -> None:
    frame = day(60)
    order = [*range(30), 31, 30, *range(32, 60)]
    if backend == "arctic_lmdb":  # ArcticDB cannot hold unsorted rows: it refuses them
        with pytest.raises(mdcollect.StorageError, match="sorted"):
            plant(store, KEY, frame.iloc[order])
        return
    plant(store, KEY, frame.iloc[order], [Interval(T0, T0 + 60 * MINUTE)])
    report = audit(store)
    f = one(report, "unsorted")
    assert (f.start, f.end, f.count) == (T0 + 30 * MINUTE, T0 + 31 * MINUTE, 1)
    assert [x.check for x in report.findings] == ["unsorted"]  # sorted, nothing else is wrong


def test_ohlc_invariants_nan_and_negatives(store: DataCollectionStorage) -> None:
    frame = day(60)
    frame.iloc[10, frame.columns.get_loc("high")] = frame["low"].iloc[10] - 1  # high < low
    frame.iloc[20, frame.columns.get_loc("close")] = np.nan
    frame.iloc[21, frame.columns.get_loc("close")] = np.nan
    frame.iloc[30, frame.columns.get_loc("volume")] = -1.0
    plant(store, KEY, frame, [Interval(T0, T0 + 60 * MINUTE)])
    report = audit(store)
    bad = one(report, "invalid_ohlc")
    assert (bad.start, bad.count) == (T0 + 10 * MINUTE, 1)
    nan = one(report, "nan")
    assert (nan.start, nan.end, nan.count) == (T0 + 20 * MINUTE, T0 + 22 * MINUTE, 2)
    neg = one(report, "negative")
    assert (neg.start, neg.count) == (T0 + 30 * MINUTE, 1)
    assert report.datasets[0].score == pytest.approx(1 - 4 / 60)


def test_zero_volume_run_is_a_warning_over_the_threshold(store: DataCollectionStorage) -> None:
    frame = day(300)
    frame.iloc[100 : 100 + ZERO_VOLUME_RUN + 1, frame.columns.get_loc("volume")] = 0.0
    frame.iloc[200 : 200 + ZERO_VOLUME_RUN, frame.columns.get_loc("volume")] = 0.0  # not over
    plant(store, KEY, frame, [Interval(T0, T0 + 300 * MINUTE)])
    report = audit(store)
    f = one(report, "zero_volume_run")
    assert (f.start, f.end, f.count) == (
        T0 + 100 * MINUTE, T0 + (101 + ZERO_VOLUME_RUN) * MINUTE, ZERO_VOLUME_RUN + 1
    )  # fmt: skip
    assert f.severity == "warning" and report.ok
    assert report.datasets[0].score == pytest.approx(1 - WARNING_WEIGHT * 61 / 300)
    assert audit(store, zero_volume_run=0).findings == ()  # 0 turns it off


def test_price_jump_is_a_warning(store: DataCollectionStorage) -> None:
    frame = day(300)
    cols = ["open", "high", "low", "close"]
    frame.iloc[150:, [frame.columns.get_loc(c) for c in cols]] *= 1.5  # a level shift
    frame.iloc[150, frame.columns.get_loc("open")] = frame["close"].iloc[149]
    frame.iloc[150, frame.columns.get_loc("low")] = frame["close"].iloc[149] - 1
    plant(store, KEY, frame, [Interval(T0, T0 + 300 * MINUTE)])
    report = audit(store)
    f = one(report, "price_jump")
    assert (f.start, f.end, f.count, f.severity) == (
        T0 + 150 * MINUTE,
        T0 + 151 * MINUTE,
        1,
        "warning",
    )
    assert report.ok
    assert audit(store, jump_mads=1e9).findings == ()
    assert JUMP_MADS == 25.0


def _trades(n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = np.sort(T0 + rng.integers(0, 60 * MINUTE, n))
    return pd.DataFrame(
        {
            "id": [str(i) for i in range(n)],
            "price": 100 + rng.random(n),
            "amount": rng.random(n),
            "side": np.where(rng.random(n) < 0.5, "buy", "sell"),
        },
        index=at(ts.tolist()).rename("timestamp"),
    )


def test_candles_against_stored_trades(store: DataCollectionStorage) -> None:
    trades = _trades(3000)
    span = Interval(T0, T0 + 60 * MINUTE)
    store.write(DatasetKey("binance", "BTC/USDT", "trades"), trades, covered=span)
    bars = trades_to_ohlcv(trades, "1m")[["open", "high", "low", "close", "volume"]]
    assert len(bars) == 60
    # still a valid candle, but not the one the trades make
    bars.iloc[7, bars.columns.get_loc("close")] = (bars["high"].iloc[7] + bars["low"].iloc[7]) / 2
    truth = trades_to_ohlcv(trades, "1m")
    assert bars["close"].iloc[7] != truth["close"].iloc[7]
    plant(store, KEY, bars, [span])
    report = audit(store)
    f = one(report, "trades_vs_candles")
    assert (f.start, f.end, f.count) == (T0 + 7 * MINUTE, T0 + 8 * MINUTE, 1)
    # the trades themselves are clean
    assert all(x.key == KEY for x in report.findings)


def test_duplicate_trade_ids(store: DataCollectionStorage) -> None:
    trades = _trades(100)
    ids = trades["id"].to_numpy(dtype=object)
    ids[40] = ids[39]
    trades["id"] = ids
    key = DatasetKey("binance", "BTC/USDT", "trades")
    plant(store, key, trades, [Interval(T0, T0 + 60 * MINUTE)])
    f = one(audit(store), "duplicate")
    ts = trades.index.asi8 // 1_000_000
    assert (f.start, f.end, f.count) == (int(ts[39]), int(ts[40]) + 1, 2)


def test_mark_against_last_is_a_warning(store: DataCollectionStorage) -> None:
    last = day(60)
    mark = last * 1.001
    mark.iloc[33] *= 1.1
    span = [Interval(T0, T0 + 60 * MINUTE)]
    mark_key = DatasetKey("binance_futures", "BTC/USDT:USDT", "mark", "1m")
    plant(store, DatasetKey("binance_futures", "BTC/USDT:USDT", "ohlcv", "1m"), last, span)
    plant(store, mark_key, mark, span)
    report = audit(store)
    f = one(report, "mark_vs_last")
    assert (f.key, f.start, f.count, f.severity) == (mark_key, T0 + 33 * MINUTE, 1, "warning")
    assert report.ok
    assert audit(store, mark_band=0.2).findings == ()


def _funding(times: list[int]) -> pd.DataFrame:
    return pd.DataFrame(
        {"rate": np.full(len(times), 1e-4), "mark_price": np.full(len(times), 100.0)},
        index=at(times).rename("timestamp"),
    )


def test_funding_on_settlement_times_and_holes(store: DataCollectionStorage) -> None:
    key = DatasetKey("binance_futures", "BTC/USDT:USDT", "funding")
    # 8-hourly for two days, then 4-hourly (an interval change stays clean), one off
    # the hour, and one 8-hourly settlement missing
    eight = [T0 + i * 8 * HOUR for i in range(6)]
    four = [T0 + 48 * HOUR + i * 4 * HOUR for i in range(12)]
    off = T0 + 100 * HOUR + 30 * MINUTE
    times = sorted([*eight[:3], *eight[4:], *four, off])
    plant(store, key, _funding(times), [Interval(T0, T0 + 96 * HOUR)])
    report = audit(store)
    hole = one(report, "hole")
    assert (hole.start, hole.end, hole.count) == (T0 + 16 * HOUR, T0 + 32 * HOUR, 2)
    ft = one(report, "funding_time")
    assert (ft.start, ft.end, ft.count) == (off, off + 1, 1)
    # the off row is also outside coverage; nothing else
    assert sorted(f.check for f in report.findings) == ["funding_time", "hole", "outside_coverage"]


def test_range_and_keys_limit_the_audit(store: DataCollectionStorage) -> None:
    frame = day().drop(day().index[100:110])
    plant(store, KEY, frame, [Interval(T0, T0 + N * MINUTE)])
    other = DatasetKey("binance", "ETH/USDT", "ohlcv", "1m")
    store.write(other, day(), covered=Interval(T0, T0 + N * MINUTE))
    assert audit(store, [other]).ok
    assert audit(store, None, T0 + 200 * MINUTE, T0 + 300 * MINUTE).ok
    assert audit(store, [str(KEY)], "2024-01-01", "2024-01-01").findings[0].count == 10
    assert [d.key for d in audit(store).datasets] == sorted([KEY, other])


def test_report_frame_html_and_dict(store: DataCollectionStorage) -> None:
    frame = day(60).drop(day(60).index[5:7])
    frame.iloc[40, frame.columns.get_loc("volume")] = -2.0
    plant(store, KEY, frame, [Interval(T0, T0 + 60 * MINUTE)])
    report = audit(store)
    table = report.to_frame()
    assert list(table.columns) == ["key", "check", "severity", "start", "end", "count", "detail"]
    assert list(table["check"]) == ["hole", "negative"]
    assert table["start"].iloc[0] == pd.Timestamp(T0 + 5 * MINUTE, unit="ms", tz="UTC")
    assert "<table>" in report._repr_html_() and "hole" in report._repr_html_()
    d = report.to_dict()
    assert set(d) == {"ok", "datasets", "repaired"} and d["ok"] is False
    assert set(d["datasets"][0]) == {"key", "rows", "score", "ok", "findings"}
    assert "binance:ohlcv:1m:BTC/USDT" in str(report) and "PROBLEMS" in str(report)


@pytest.mark.parametrize(
    ("args", "kw", "says"),
    [
        ((["binance:ohlcv:1m"],), {}, "dataset key 'binance:ohlcv:1m'"),
        (([],), {"start": "2024-13-01"}, "2024-13-01"),
        ((None,), {"zero_volume_run": -1}, "zero_volume_run"),
        ((None,), {"jump_mads": 0}, "jump_mads"),
        ((None,), {"exchange": "nosuchexchange"}, "nosuchexchange"),
        ((None,), {"repair": "yes"}, "repair"),
        ((["binance:ticker::BTC/USDT"],), {"repair": True}, "cannot repair"),
    ],
)
def test_bad_input_is_refused_before_reading(
    store: DataCollectionStorage, args: tuple[Any, ...], kw: dict[str, Any], says: str
) -> None:
    with pytest.raises(InvalidRequest, match=says):
        audit(store, *args, **kw)


async def test_async_twin_and_top_level_name(store: DataCollectionStorage) -> None:
    store.write(KEY, day(60), covered=Interval(T0, T0 + 60 * MINUTE))
    report = await audit_async(store)
    assert report.ok and report.datasets[0].rows == 60
    assert mdcollect.audit(store).datasets == report.datasets
    assert mdcollect.audit_async is audit_async


def test_findings_are_bounded_per_check(store: DataCollectionStorage) -> None:
    frame = day(3 * 1200)
    frame.iloc[::3, frame.columns.get_loc("close")] = np.nan  # 1,200 separate runs
    plant(store, KEY, frame, [Interval(T0, T0 + 3 * 1200 * MINUTE)])
    nan = [f for f in audit(store).findings if f.check == "nan"]
    assert len(nan) == MAX_FINDINGS
    assert sum(f.count for f in nan) == 1200
    assert (nan[-1].start, nan[-1].end) == (T0 + 3 * 999 * MINUTE, T0 + (3 * 1199 + 1) * MINUTE)


def test_snapshots_have_no_coverage_to_be_outside_of(store: DataCollectionStorage) -> None:
    key = DatasetKey("binance", "BTC/USDT", "ticker")
    times = [T0 + i * 1_500 for i in range(50)]
    frame = pd.DataFrame(
        {"bid": 100.0, "ask": 100.5, "last": 100.2, "bid_size": 1.0, "ask_size": 2.0},
        index=at(times).rename("timestamp"),
    )
    frame.iloc[7, frame.columns.get_loc("ask")] = -1.0
    plant(store, key, frame)
    report = audit(store)
    assert [(f.check, f.start, f.count) for f in report.findings] == [("negative", times[7], 1)]
