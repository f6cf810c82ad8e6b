"""The storage contract: every backend passes this suite unchanged.

Parametrised over memory, parquet, arctic+lmdb, arctic+s3 (local moto server) and
redis (a real redis-server); see ``tests/conftest.py``.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mdcollect import (
    DataCollectionStorage,
    DatasetKey,
    Interval,
    IntervalSet,
    InvalidRequest,
    open_storage,
)
from mdcollect._time import now_ms
from tests.conftest import DAY, MINUTE, T0, candles, run_python

KEY = DatasetKey("binance", "BTC/USDT", "ohlcv", "1m")
PERSISTENT = ["parquet", "arctic_lmdb", "arctic_s3", "redis"]


def ms_index(frame: pd.DataFrame) -> list[int]:
    return [int(v) for v in frame.index.as_unit("ns").asi8 // 1_000_000]


# -- write / read -----------------------------------------------------------------------


def test_round_trip_values_index_and_dtypes(store: DataCollectionStorage) -> None:
    frame = candles(T0, 120)
    assert store.write(KEY, frame, covered=Interval(T0, T0 + 120 * MINUTE)) == 120
    out = store.read(KEY)
    assert out.index.name == "timestamp"
    assert str(out.index.tz) == "UTC"
    assert out.index.is_monotonic_increasing and out.index.is_unique
    assert list(out.columns) == ["open", "high", "low", "close", "volume"]
    assert all(str(t) == "float64" for t in out.dtypes)
    pd.testing.assert_frame_equal(out, frame, check_freq=False)


def test_timestamp_column_of_ms_ints_is_accepted(store: DataCollectionStorage) -> None:
    frame = candles(T0, 10)
    flat = frame.reset_index(drop=True)
    flat.insert(0, "timestamp", ms_index(frame))
    store.write(KEY, flat)
    pd.testing.assert_frame_equal(store.read(KEY), frame, check_freq=False)


def test_upsert_overlapping_out_of_order_and_duplicated(store: DataCollectionStorage) -> None:
    first = candles(T0, 100, seed=1)
    store.write(KEY, first)
    second = candles(T0 + 50 * MINUTE, 100, seed=2)  # overlaps rows 50..99
    shuffled = second.sample(frac=1.0, random_state=3)
    # a valid candle (high >= close) that the later duplicate replaces: last wins
    duplicated = pd.concat([shuffled.iloc[:10].assign(close=1e9, high=1e9), shuffled])
    assert store.write(KEY, duplicated) == 100
    out = store.read(KEY)
    assert len(out) == 150
    assert out.index.is_unique and out.index.is_monotonic_increasing
    expected = pd.concat([first.iloc[:50], second])
    pd.testing.assert_frame_equal(out, expected, check_freq=False)
    assert (out["close"] != 1e9).all()


def test_rewriting_same_rows_is_idempotent(store: DataCollectionStorage) -> None:
    frame = candles(T0, 60)
    for _ in range(3):
        store.write(KEY, frame, covered=Interval(T0, T0 + 60 * MINUTE))
    pd.testing.assert_frame_equal(store.read(KEY), frame, check_freq=False)
    assert store.coverage(KEY) == IntervalSet([Interval(T0, T0 + 60 * MINUTE)])


def test_read_is_half_open_and_selects_columns(store: DataCollectionStorage) -> None:
    store.write(KEY, candles(T0, 100))
    part = store.read(KEY, T0 + 10 * MINUTE, T0 + 20 * MINUTE)
    assert ms_index(part) == [T0 + i * MINUTE for i in range(10, 20)]
    cols = store.read(KEY, T0, T0 + 5 * MINUTE, columns=["close", "open"])
    assert list(cols.columns) == ["close", "open"]
    assert len(cols) == 5
    assert len(store.read(KEY, start=T0 + 95 * MINUTE)) == 5
    assert len(store.read(KEY, end=T0 + 5 * MINUTE)) == 5
    assert len(store.read(KEY, T0 + 200 * MINUTE, T0 + 300 * MINUTE)) == 0


def test_reads_are_half_open_at_the_last_storable_ms(store: DataCollectionStorage) -> None:
    # the last ms a ns index holds (2262-04-11 23:47:16.854): bounds there are exact too
    last = pd.Timestamp.max.value // 1_000_000
    key = DatasetKey("binance", "BTC/USDT", "ticker")
    values = {c: [1.0, 2.0] for c in ("bid", "ask", "last", "bid_size", "ask_size")}
    store.write(key, pd.DataFrame({"timestamp": [last - 1, last], **values}))
    assert ms_index(store.read(key, start=last)) == [last]
    assert ms_index(store.read(key, end=last)) == [last - 1]
    assert ms_index(store.read(key, start=last - 1, end=last)) == [last - 1]
    assert ms_index(store.read(key)) == [last - 1, last]


def test_missing_dataset_reads_empty_with_schema(store: DataCollectionStorage) -> None:
    out = store.read(DatasetKey("okx", "ETH/USDT", "ohlcv", "1h"))
    assert len(out) == 0
    assert list(out.columns) == ["open", "high", "low", "close", "volume"]
    assert str(out.index.tz) == "UTC"
    assert store.coverage(DatasetKey("okx", "ETH/USDT", "ohlcv", "1h")) == IntervalSet()


def test_many_small_writes_equal_one_big(store: DataCollectionStorage) -> None:
    frame = candles(T0, 30 * 60)
    for day in range(30):
        part = frame.iloc[day * 60 : (day + 1) * 60]
        lo = T0 + day * 60 * MINUTE
        store.write(KEY, part, covered=Interval(lo, lo + 60 * MINUTE))
    pd.testing.assert_frame_equal(store.read(KEY), frame, check_freq=False)
    assert store.coverage(KEY) == IntervalSet([Interval(T0, T0 + 30 * 60 * MINUTE)])


def test_optional_trades_column_is_int64(store: DataCollectionStorage) -> None:
    frame = candles(T0, 10).assign(trades=np.arange(10, dtype=np.int64) * 3)
    store.write(KEY, frame)
    out = store.read(KEY)
    assert str(out["trades"].dtype) == "int64"
    assert out["trades"].tolist() == [i * 3 for i in range(10)]


# -- other kinds --------------------------------------------------------------------------


def test_trades_identity_is_timestamp_and_id(store: DataCollectionStorage) -> None:
    key = DatasetKey("binance", "BTC/USDT", "trades")
    ts = [T0, T0, T0, T0 + 5, T0 + 5]
    trades = pd.DataFrame(
        {
            "timestamp": ts,
            "id": ["10", "9", "11", "12", "13"],
            "price": [1.0, 2.0, 3.0, 4.0, 5.0],
            "amount": [0.1, 0.2, 0.3, 0.4, 0.5],
            "side": ["buy", "sell", "buy", "sell", "buy"],
        }
    )
    store.write(key, trades)
    again = pd.DataFrame(
        {"timestamp": [T0 + 5, T0 + 7], "id": ["12", "14"], "price": [40.0, 6.0],
         "amount": [0.4, 0.6], "side": ["sell", "buy"]}
    )  # fmt: skip
    store.write(key, again)
    out = store.read(key)
    assert out["id"].tolist() == ["9", "10", "11", "12", "13", "14"]
    assert out["price"].tolist() == [2.0, 1.0, 3.0, 40.0, 5.0, 6.0]
    assert out["side"].tolist() == ["sell", "buy", "buy", "sell", "buy", "buy"]
    assert ms_index(out) == [T0, T0, T0, T0 + 5, T0 + 5, T0 + 7]
    assert out["id"].map(type).eq(str).all()


@pytest.mark.parametrize(
    ("kind", "columns"),
    [
        ("ticker", {"bid": 1.0, "ask": 1.1, "last": 1.05, "bid_size": 2.0, "ask_size": 3.0}),
        ("funding", {"rate": 0.0001, "mark_price": 100.0, "index_price": 99.9}),
        ("orderbook", {f"{s}_{w}_{i}": float(i + 1) for s in ("bid", "ask") for w in ("px", "sz") for i in range(3)}),
    ],
)  # fmt: skip
def test_other_kinds_round_trip(
    store: DataCollectionStorage, kind: str, columns: dict[str, float]
) -> None:
    key = DatasetKey("okx", "BTC/USDT:USDT", kind)  # type: ignore[arg-type]
    idx = pd.date_range("2024-01-01", periods=20, freq="1s", tz="UTC", name="timestamp")
    frame = pd.DataFrame({c: np.full(20, v) + np.arange(20) for c, v in columns.items()}, index=idx)
    store.write(key, frame, covered=Interval(T0, T0 + 20_000))
    out = store.read(key)
    assert set(out.columns) == set(columns)
    pd.testing.assert_frame_equal(out[list(frame.columns)], frame, check_freq=False)
    assert store.coverage(key) == IntervalSet([Interval(T0, T0 + 20_000)])


# -- coverage -------------------------------------------------------------------------------


def test_coverage_grows_only_with_covered(store: DataCollectionStorage) -> None:
    assert store.coverage(KEY) == IntervalSet()
    store.write(KEY, candles(T0, 10))
    assert store.coverage(KEY) == IntervalSet()
    store.write(KEY, candles(T0, 10), covered=Interval(T0, T0 + 10 * MINUTE))
    store.write(
        KEY, candles(T0 + 20 * MINUTE, 10), covered=Interval(T0 + 20 * MINUTE, T0 + 30 * MINUTE)
    )
    assert store.coverage(KEY) == IntervalSet(
        [Interval(T0, T0 + 10 * MINUTE), Interval(T0 + 20 * MINUTE, T0 + 30 * MINUTE)]
    )
    store.write(
        KEY, candles(T0 + 10 * MINUTE, 10), covered=Interval(T0 + 10 * MINUTE, T0 + 20 * MINUTE)
    )
    assert list(store.coverage(KEY)) == [Interval(T0, T0 + 30 * MINUTE)]


def test_one_write_can_cover_several_ranges(store: DataCollectionStorage) -> None:
    """A live feed's batch may complete separate ranges (a resync between them):
    one write stores all its rows and marks each range, and nothing in between."""
    rows = pd.concat([candles(T0, 3), candles(T0 + 5 * MINUTE, 3), candles(T0 + 9 * MINUTE, 1)])
    spans = IntervalSet([Interval(T0, T0 + 3 * MINUTE), Interval(T0 + 5 * MINUTE, T0 + 8 * MINUTE)])
    assert store.write(KEY, rows, covered=spans) == 7
    assert store.coverage(KEY) == spans  # the row at T0+9m is stored, not covered
    assert len(store.read(KEY)) == 7
    store.write(KEY, candles(T0 + 3 * MINUTE, 2), covered=IntervalSet())  # covers nothing
    assert store.coverage(KEY) == spans
    store.write(
        KEY,
        candles(T0 + 3 * MINUTE, 2),
        covered=IntervalSet([Interval(T0 + 3 * MINUTE, T0 + 5 * MINUTE)]),
    )
    assert list(store.coverage(KEY)) == [Interval(T0, T0 + 8 * MINUTE)]


def test_empty_frame_can_cover_a_range_without_data(store: DataCollectionStorage) -> None:
    """Before a listing or in an outage the source has nothing: still covered, still no rows."""
    empty = candles(T0, 0)
    store.write(KEY, empty, covered=Interval(T0 - DAY, T0))
    assert store.coverage(KEY) == IntervalSet([Interval(T0 - DAY, T0)])
    assert len(store.read(KEY)) == 0
    assert store.keys() == [KEY]


def test_coverage_and_rows_persist_across_instances(
    open_store: Callable[[], DataCollectionStorage],
) -> None:
    a = open_store()
    a.write(KEY, candles(T0, 50), covered=Interval(T0, T0 + 50 * MINUTE))
    a.store("note", {"x": 1}, T0)
    b = open_store()
    assert b.coverage(KEY) == IntervalSet([Interval(T0, T0 + 50 * MINUTE)])
    assert len(b.read(KEY)) == 50
    assert b.fetch("note", T0, T0 + 1) == [(T0, {"x": 1})]


def test_delete_range_removes_rows_and_coverage(store: DataCollectionStorage) -> None:
    store.write(KEY, candles(T0, 100), covered=Interval(T0, T0 + 100 * MINUTE))
    store.delete(KEY, T0 + 40 * MINUTE, T0 + 60 * MINUTE)
    out = store.read(KEY)
    assert len(out) == 80
    assert not any(T0 + 40 * MINUTE <= t < T0 + 60 * MINUTE for t in ms_index(out))
    assert store.coverage(KEY) == IntervalSet(
        [Interval(T0, T0 + 40 * MINUTE), Interval(T0 + 60 * MINUTE, T0 + 100 * MINUTE)]
    )
    # writing the hole back restores it
    store.write(
        KEY, candles(T0, 100).iloc[40:60], covered=Interval(T0 + 40 * MINUTE, T0 + 60 * MINUTE)
    )
    pd.testing.assert_frame_equal(store.read(KEY), candles(T0, 100), check_freq=False)


def test_delete_whole_dataset(store: DataCollectionStorage) -> None:
    other = DatasetKey("binance", "ETH/USDT", "ohlcv", "1m")
    store.write(KEY, candles(T0, 10), covered=Interval(T0, T0 + 10 * MINUTE))
    store.write(other, candles(T0, 10))
    store.delete(KEY)
    assert store.keys() == [other]
    assert len(store.read(KEY)) == 0
    assert store.coverage(KEY) == IntervalSet()
    assert len(store.read(other)) == 10


def test_keys_filters(store: DataCollectionStorage) -> None:
    keys = [
        DatasetKey("binance", "BTC/USDT", "ohlcv", "1m"),
        DatasetKey("binance", "BTC/USDT", "ohlcv", "1h"),
        DatasetKey("okx", "BTC/USDT:USDT", "ohlcv", "1m"),
    ]
    for k in keys:
        assert k.tf is not None
        store.write(k, candles(T0, 3, step=k.tf.ms))
    tkey = DatasetKey("binance", "BTC/USDT", "trades")
    store.write(
        tkey,
        pd.DataFrame(
            {"timestamp": [T0], "id": ["1"], "price": [1.0], "amount": [1.0], "side": ["buy"]}
        ),
    )
    assert store.keys() == sorted([*keys, tkey])
    assert store.keys(exchange="okx") == [keys[2]]
    assert store.keys(kind="trades") == [tkey]
    assert store.keys(exchange="binance", kind="ohlcv") == sorted(keys[:2])


# -- single points ----------------------------------------------------------------------------


def test_store_and_fetch_points(store: DataCollectionStorage) -> None:
    store.store("ticker:BTC/USDT", {"bid": 1.5, "ask": 1.6}, T0 + 2000)
    store.store("ticker:BTC/USDT", [1, 2, "x"], T0)
    store.store("ticker:BTC/USDT", "replaced", T0 + 1000)
    store.store("ticker:BTC/USDT", "final", T0 + 1000)
    store.store("other", 7, T0)
    assert store.fetch("ticker:BTC/USDT", T0, T0 + 2000) == [
        (T0, [1, 2, "x"]),
        (T0 + 1000, "final"),
    ]
    assert store.fetch("ticker:BTC/USDT", T0, T0 + 2001)[-1] == (
        T0 + 2000,
        {"ask": 1.6, "bid": 1.5},
    )
    assert store.fetch("missing", T0, T0 + 10) == []
    with pytest.raises(InvalidRequest, match="JSON"):
        store.store("bad", object(), T0)
    with pytest.raises(InvalidRequest, match="timestamp"):
        store.store("bad", 1, "2024-01-01")  # type: ignore[arg-type]


# -- hostile names -----------------------------------------------------------------------------

HOSTILE = [
    "../../etc",
    "BTC/USDT:USDT",
    "with space/USD",
    "ünï/cødé€",
    "%2F%00/x",
    "..",
    ".",
    "a\\b/c",
    "*?<>|\"'/`$(x)",
    "C:/Windows",
]


def test_hostile_symbols_round_trip_and_stay_inside_root(
    store: DataCollectionStorage, backend: str, tmp_path: Path
) -> None:
    before = {p for p in tmp_path.parent.rglob("*")} - {p for p in tmp_path.rglob("*")}
    keys = [DatasetKey("binance", s, "ohlcv", "1m") for s in HOSTILE]
    for i, k in enumerate(keys):
        store.write(k, candles(T0, 3, seed=i), covered=Interval(T0, T0 + 3 * MINUTE))
        store.store(k.symbol, {"i": i}, T0)
    assert store.keys() == sorted(keys)
    for i, k in enumerate(keys):
        pd.testing.assert_frame_equal(store.read(k), candles(T0, 3, seed=i), check_freq=False)
        assert store.fetch(k.symbol, T0, T0 + 1) == [(T0, {"i": i})]
    after = {p for p in tmp_path.parent.rglob("*")} - {p for p in tmp_path.rglob("*")}
    assert after == before, "files were created outside the test's directory"
    if backend in ("parquet", "arctic_lmdb"):
        root = tmp_path / ("pq" if backend == "parquet" else "lmdb")
        for p in tmp_path.rglob("*"):
            assert p == root or root in p.parents, p
        assert not any(p.name in ("etc", "Windows") for p in tmp_path.rglob("*"))


# -- bad input -------------------------------------------------------------------------------


def _bad_frames() -> dict[str, tuple[pd.DataFrame, str]]:
    good = candles(T0, 5)
    naive = good.copy()
    naive.index = naive.index.tz_localize(None)
    other_tz = good.copy()
    other_tz.index = other_tz.index.tz_convert("Europe/Berlin")
    nan_ts = good.reset_index(drop=True)
    nan_ts.insert(0, "timestamp", [T0, np.nan, T0 + 2 * MINUTE, T0 + 3 * MINUTE, T0 + 4 * MINUTE])
    return {
        "missing column": (good.drop(columns=["close"]), "close"),
        "unknown column": (good.assign(foo=1.0), "foo"),
        "naive index": (naive, "naive"),
        "non-UTC index": (other_tz, "UTC"),
        "NaN timestamps": (nan_ts, "NaN"),
        "no time index": (good.reset_index(drop=True), "DatetimeIndex"),
        "text in price": (good.assign(close="x"), "close"),
    }


@pytest.mark.parametrize("case", list(_bad_frames()))
def test_bad_frames_are_refused_and_nothing_written(
    store: DataCollectionStorage, case: str
) -> None:
    frame, needle = _bad_frames()[case]
    with pytest.raises(InvalidRequest, match=needle):
        store.write(KEY, frame, covered=Interval(T0, T0 + 5 * MINUTE))
    assert store.keys() == []
    assert store.coverage(KEY) == IntervalSet()


TRADES = DatasetKey("binance", "BTC/USDT", "trades")


def _trades(n: int = 4) -> pd.DataFrame:
    return pd.DataFrame(
        {"timestamp": [T0 + i for i in range(n)], "id": [str(i) for i in range(n)],
         "price": [100.0] * n, "amount": [0.5] * n, "side": ["buy"] * n}
    )  # fmt: skip


def _with(frame: pd.DataFrame, row: int, **values: object) -> pd.DataFrame:
    out = frame.copy()
    for column, value in values.items():
        if not isinstance(value, float | int) or column not in out:
            out[column] = out[column].astype(object) if column in out else None
        out.iloc[row, out.columns.get_loc(column)] = value
    return out


def _shifted(frame: pd.DataFrame, row: int, by: pd.Timedelta) -> pd.DataFrame:
    out = frame.copy()
    idx = out.index.to_series()
    idx.iloc[row] += by
    out.index = pd.DatetimeIndex(idx, name="timestamp")
    return out


def _indexed(frame: pd.DataFrame) -> pd.DataFrame:
    times = pd.to_datetime(frame.pop("timestamp"), unit="ms", utc=True)
    return frame.set_index(pd.DatetimeIndex(times, name="timestamp"))


def _flat(frame: pd.DataFrame, timestamps: list[object]) -> pd.DataFrame:
    out = frame.reset_index(drop=True)
    out.insert(0, "timestamp", timestamps)
    return out


def _bad_values() -> dict[str, tuple[DatasetKey, pd.DataFrame, str]]:
    good = candles(T0, 5)
    far = pd.DatetimeIndex(
        np.array(["2024-01-01", "2024-01-01T00:01", "3000-01-01"], dtype="datetime64[s]"),
        name="timestamp",
    ).tz_localize("UTC")
    return {
        "NaN close": (KEY, _with(good, 2, close=np.nan), r"row 2 .*'close' is NaN"),
        "inf volume": (KEY, _with(good, 1, volume=np.inf), r"row 1 .*'volume' is inf"),
        "-inf low": (KEY, _with(good, 3, low=-np.inf), r"row 3 .*'low' is -inf"),
        "negative price": (KEY, _with(good, 3, open=-5.0), r"row 3 .*'open' is negative"),
        "negative volume": (KEY, _with(good, 0, volume=-1.0), r"row 0 .*'volume' is negative"),
        "high below low": (KEY, _with(good, 4, high=1.0, low=2.0), r"row 4 .*'high' 1.0 is below 'low' 2.0"),
        "off-grid candle": (KEY, _shifted(good, 2, pd.Timedelta(seconds=30)), r"row 2 .*not the start of a 1m candle"),
        "sub-ms candle": (KEY, _shifted(good, 1, pd.Timedelta(microseconds=500)), r"row 1 .*not a whole millisecond"),
        "sub-ms trade": (TRADES, _shifted(_indexed(_trades()), 3, pd.Timedelta(microseconds=1)), r"row 3 .*not a whole millisecond"),
        "complex price": (KEY, good.assign(close=good["close"].to_numpy() + 1j), r"complex number .* row 0"),
        "complex object": (KEY, _with(good, 2, close=complex(1, 2)), r"complex number .* row 2"),
        "ms out of range": (KEY, _flat(good, [T0, T0 + MINUTE, 10**17, T0 + 3 * MINUTE, T0 + 4 * MINUTE]), r"timestamp 100000000000000000 in row 2 is out of range"),
        "datetime out of range": (KEY, pd.DataFrame({c: [1.0] * 3 for c in good.columns}, index=far), r"timestamp 3000-01-01 .* in row 2 is out of range"),
        "seconds column": (KEY, _flat(good, [v // 1000 for v in ms_index(good)]), r"row 0 .*1704067200 looks like seconds.*1704067200000"),
        "uint64 trade count": (KEY, good.assign(trades=np.array([1, 2, 2**63 + 5, 4, 5], dtype=np.uint64)), r"'trades' has 9223372036854775813 in row 2"),
        "negative trade count": (KEY, good.assign(trades=np.array([1, -2, 3, 4, 5])), r"row 1 .*'trades' is negative"),
        "negative quote volume": (KEY, good.assign(quote_volume=[1.0, 2.0, -3.0, 4.0, 5.0]), r"row 2 .*'quote_volume' is negative"),
        "negative vwap": (KEY, good.assign(vwap=[1.0, -2.0, 3.0, 4.0, 5.0]), r"row 1 .*'vwap' is negative"),
        "inf taker volume": (KEY, good.assign(taker_buy_volume=[1.0, 2.0, 3.0, np.inf, 5.0]), r"row 3 .*'taker_buy_volume' is inf"),
        "negative amount": (TRADES, _with(_trades(), 2, amount=-0.5), r"trades row 2 .*'amount' is negative"),
        "NaN trade price": (TRADES, _with(_trades(), 1, price=np.nan), r"trades row 1 .*'price' is NaN"),
        "high below close": (KEY, _with(good, 3, open=10.0, high=11.0, low=9.0, close=12.0), r"row 3 \(2024-01-01 00:03:00\) .*'high' 11.0 is below 'close' 12.0"),
        "low above open": (KEY, _with(good, 1, open=10.0, high=12.0, low=10.5, close=11.0), r"row 1 \(2024-01-01 00:01:00\) .*'low' 10.5 is above 'open' 10.0"),
    }  # fmt: skip


@pytest.mark.parametrize("case", list(_bad_values()))
def test_bad_values_are_refused_naming_the_row_and_nothing_written(
    store: DataCollectionStorage, case: str
) -> None:
    key, frame, needle = _bad_values()[case]
    with pytest.raises(InvalidRequest, match=needle):
        store.write(key, frame, covered=Interval(T0, T0 + 5 * MINUTE))
    assert store.keys() == []
    assert store.coverage(key) == IntervalSet()
    assert len(store.read(key)) == 0


def test_coarser_candles_covered_as_finer_ones_are_refused(store: DataCollectionStorage) -> None:
    """A 1h frame under a 1m key whose coverage claims the minutes between its rows is
    refused; the same rows covered each alone (or not at all) are sparse data, kept."""
    hourly = candles(T0, 5, step=60 * MINUTE)
    with pytest.raises(
        InvalidRequest, match=r"row 1 \(2024-01-01 01:00:00\) .*1h candles under a 1m key"
    ):
        store.write(KEY, hourly, covered=Interval(T0, T0 + 5 * 60 * MINUTE))
    assert store.keys() == [] and store.coverage(KEY) == IntervalSet()
    own = IntervalSet(
        [Interval(T0 + h * 60 * MINUTE, T0 + h * 60 * MINUTE + MINUTE) for h in range(5)]
    )
    assert store.write(KEY, hourly, covered=own) == 5
    assert store.coverage(KEY) == own
    other = DatasetKey("binance", "ETH/USDT", "ohlcv", "1m")
    assert store.write(other, hourly) == 5  # no coverage claimed


def test_values_markets_do_produce_are_accepted(store: DataCollectionStorage) -> None:
    flat = candles(T0, 3).assign(high=5.0, low=5.0, open=5.0, close=5.0, volume=0.0)
    assert store.write(KEY, flat) == 3  # a candle without trades
    ticker = DatasetKey("okx", "BTC/USDT", "ticker")
    idx = pd.DatetimeIndex([T0, T0 + 1], dtype="datetime64[ms, UTC]", name="timestamp")
    quotes = pd.DataFrame(
        {"bid": [np.nan, 1.0], "ask": [1.1, 1.1], "last": [1.0, 1.0], "bid_size": [np.nan, 2.0],
         "ask_size": [3.0, 3.0]}, index=idx,
    )  # fmt: skip
    assert store.write(ticker, quotes) == 2  # an empty bid side
    funding = DatasetKey("okx", "BTC/USDT:USDT", "funding")
    assert store.write(funding, pd.DataFrame({"timestamp": [T0], "rate": [-0.0003]})) == 1
    assert store.read(funding)["rate"].tolist() == [-0.0003]
    hourly = DatasetKey("binance", "BTC/USDT", "ohlcv", "1w")
    monday = T0 + 7 * DAY  # 2024-01-08, a Monday: weekly candles start there
    assert store.write(hourly, candles(monday, 2, step=7 * DAY)) == 2


def test_bad_ranges_and_arguments(store: DataCollectionStorage) -> None:
    with pytest.raises(InvalidRequest, match="after start"):
        Interval(T0, T0)
    with pytest.raises(InvalidRequest, match="after start"):
        Interval(T0, T0 - 1)
    with pytest.raises(InvalidRequest, match="covered"):
        store.write(KEY, candles(T0, 1), covered=(T0, T0 + MINUTE))  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="after start"):
        store.read(KEY, T0 + 10, T0)
    with pytest.raises(InvalidRequest, match="after start"):
        store.delete(KEY, T0 + 10, T0)
    with pytest.raises(InvalidRequest, match="start"):
        store.read(KEY, "2024-01-01", None)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="trades"):
        store.write(
            DatasetKey("binance", "BTC/USDT", "trades"),
            pd.DataFrame(
                {"timestamp": [T0], "id": ["1"], "price": [1.0], "amount": [1.0], "side": ["long"]}
            ),
        )
    with pytest.raises(InvalidRequest, match="kind"):
        store.keys(kind="candles")  # type: ignore[arg-type]
    assert store.keys() == []


def test_unknown_url_scheme() -> None:
    with pytest.raises(InvalidRequest, match="ftp"):
        open_storage("ftp://example/x")
    with pytest.raises(InvalidRequest, match="not valid"):
        open_storage("just/a/path")


# -- across processes --------------------------------------------------------------------------


@pytest.mark.parametrize("backend", PERSISTENT, indirect=True)
def test_two_processes_writing_one_key_lose_nothing(storage_url: str, backend: str) -> None:
    """Interleaved writers of one dataset (real processes) keep every row and all coverage."""
    n = 25
    code = textwrap.dedent(
        f"""
        import sys, pandas as pd
        from mdcollect import open_storage, DatasetKey, Interval
        parity = int(sys.argv[1])
        st = open_storage({storage_url!r})
        key = DatasetKey("binance", "BTC/USDT", "ohlcv", "1m")
        for i in range({n}):
            m = 2 * i + parity
            ts = {T0} + m * {MINUTE}
            f = pd.DataFrame({{"timestamp": [ts], "open": [m], "high": [m], "low": [m], "close": [m], "volume": [1.0]}})
            st.write(key, f, covered=Interval(ts, ts + {MINUTE}))
        st.close()
        """
    )
    import subprocess
    import sys

    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(p)], stderr=subprocess.PIPE, text=True)
        for p in (0, 1)
    ]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
    with open_storage(storage_url) as st:
        out = st.read(KEY)
        assert out["close"].tolist() == [float(m) for m in range(2 * n)]
        assert st.coverage(KEY) == IntervalSet([Interval(T0, T0 + 2 * n * MINUTE)])


@pytest.mark.parametrize("backend", PERSISTENT, indirect=True)
def test_coverage_is_visible_to_another_process(storage_url: str) -> None:
    with open_storage(storage_url) as st:
        st.write(KEY, candles(T0, 10), covered=Interval(T0, T0 + 10 * MINUTE))
    res = run_python(
        "import json; from mdcollect import open_storage, DatasetKey\n"
        f"st = open_storage({storage_url!r})\n"
        "k = DatasetKey('binance', 'BTC/USDT', 'ohlcv', '1m')\n"
        "print(json.dumps([st.coverage(k).to_list(), len(st.read(k))]))\n"
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1]) == [[[T0, T0 + 10 * MINUTE]], 10]


def test_mark_index_and_premium_candles_are_datasets_of_their_own(
    store: DataCollectionStorage,
) -> None:
    # the same timestamps as the last-price candles, kept apart by kind; a premium
    # can be negative and mark/index candles may have no volume (NaN)
    last = candles(T0, 30)
    mark = last * 1.0002
    mark["volume"] = np.nan
    premium = last[["open", "high", "low", "close"]] * 0.0 - 0.00012345
    premium["volume"] = 0.0
    frames = {"ohlcv": last, "mark": mark, "premium": premium}
    covered = Interval(T0, T0 + 30 * MINUTE)
    for kind, frame in frames.items():
        key = DatasetKey("bybit_futures", "BTC/USDT:USDT", kind, "1m")  # type: ignore[arg-type]
        store.write(key, frame, covered=covered)
    for kind, frame in frames.items():
        key = DatasetKey("bybit_futures", "BTC/USDT:USDT", kind, "1m")  # type: ignore[arg-type]
        got = store.read(key)
        cols = ["open", "high", "low", "close", "volume"]
        pd.testing.assert_frame_equal(got[cols], frame[cols], check_freq=False)
        assert store.coverage(key) == IntervalSet([covered])
    assert [k.kind for k in store.keys(kind="premium")] == ["premium"]
    with pytest.raises(InvalidRequest, match="'open' is negative"):
        store.write(DatasetKey("bybit_futures", "BTC/USDT:USDT", "index", "1m"), premium)


# -- metadata: what the catalog shows without reading rows --------------------------------


def _no_reads(store: DataCollectionStorage) -> None:
    """Make reading rows fail: what follows must come from metadata only."""

    def refuse(*args: object) -> pd.DataFrame:
        raise AssertionError("the catalog read rows")

    store._read = refuse  # type: ignore[method-assign]


def test_info_follows_writes_upserts_and_deletes(store: DataCollectionStorage) -> None:
    before = now_ms()
    store.write(KEY, candles(T0 + 50 * MINUTE, 50), covered=Interval(T0 + 50 * MINUTE, T0 + 100 * MINUTE), source="backfill:binance klines")  # fmt: skip
    store.write(KEY, candles(T0 + 80 * MINUTE, 40), source="live:ws")  # overlaps 20 rows
    store.write(KEY, candles(T0, 10), source="backfill:binance klines")  # before the first
    after = now_ms()
    info = store.info(KEY)
    assert (info.rows, info.first, info.last) == (80, T0, T0 + 119 * MINUTE)
    assert before <= (info.last_write or 0) <= after
    assert info.sources == ("live:ws", "backfill:binance klines")
    assert info.source == "backfill:binance klines"
    assert info.coverage == IntervalSet([Interval(T0 + 50 * MINUTE, T0 + 100 * MINUTE)])
    assert info.bytes is None or info.bytes > 0
    store.delete(KEY, T0, T0 + 5 * MINUTE)  # takes the first row
    store.delete(KEY, T0 + 115 * MINUTE, None)  # and the last
    _no_reads(store)
    info = store.info(KEY)
    assert (info.rows, info.first, info.last) == (70, T0 + 5 * MINUTE, T0 + 114 * MINUTE)
    assert info.sources == ("live:ws", "backfill:binance klines")


def test_info_of_trades_counts_rows_by_timestamp_and_id(store: DataCollectionStorage) -> None:
    store.write(TRADES, _trades(4), source="live:ws")
    store.write(TRADES, _trades(6), source="live:poll")  # 4 rows again, 2 new
    _no_reads(store)
    info = store.info(TRADES)
    assert (info.rows, info.first, info.last) == (6, T0, T0 + 5)
    assert info.sources == ("live:ws", "live:poll")


def test_info_of_a_missing_dataset_and_of_coverage_only(store: DataCollectionStorage) -> None:
    assert store.info(KEY).rows == 0 and store.info(KEY).first is None
    store.write(KEY, candles(T0, 0), covered=Interval(T0, T0 + MINUTE), source="import")
    info = store.info(KEY)
    assert (info.rows, info.first, info.last, info.source) == (0, None, None, "import")
    assert info.coverage == IntervalSet([Interval(T0, T0 + MINUTE)])
    store.delete(KEY)
    assert store.info(KEY).rows == 0 and store.info(KEY).sources == ()


def test_info_persists_across_instances(
    open_store: Callable[[], DataCollectionStorage],
) -> None:
    a = open_store()
    a.write(KEY, candles(T0, 30), covered=Interval(T0, T0 + 30 * MINUTE), source="import")
    b = open_store()
    _no_reads(b)
    info = b.info(KEY)
    assert (info.rows, info.first, info.last, info.sources) == (
        30,
        T0,
        T0 + 29 * MINUTE,
        ("import",),
    )


def test_a_bad_source_is_refused_and_nothing_written(store: DataCollectionStorage) -> None:
    for bad in ("", "Backfill", "x" * 200, 5, "live:\n"):
        with pytest.raises(InvalidRequest, match=r"source .* is not valid"):
            store.write(KEY, candles(T0, 3), source=bad)  # type: ignore[arg-type]
    assert store.keys() == []


def test_catalog_of_every_backend_from_metadata(store: DataCollectionStorage) -> None:
    from mdcollect import catalog

    other = DatasetKey("okx", "ETH/USDT", "ohlcv", "1h")
    store.write(KEY, candles(T0, 60), covered=Interval(T0, T0 + 20 * MINUTE), source="import")
    store.write(KEY, candles(T0, 0), covered=Interval(T0 + 30 * MINUTE, T0 + 60 * MINUTE))
    store.write(other, candles(T0, 2, step=60 * MINUTE), source="backfill:okx candles")
    _no_reads(store)
    cat = catalog(store)
    assert list(cat.columns[:14]) == [
        "exchange", "symbol", "kind", "timeframe", "rows", "first", "last", "covered_from",
        "covered_to", "covered_fraction", "holes", "bytes", "last_write", "lineage",
    ]  # fmt: skip
    row = cat.set_index("exchange").loc["binance"]
    assert (row["rows"], row["holes"], row["lineage"]) == (60, 1, "import")
    assert row["first"] == pd.Timestamp(T0, unit="ms", tz="UTC")
    assert row["last"] == pd.Timestamp(T0 + 59 * MINUTE, unit="ms", tz="UTC")
    assert row["covered_to"] == pd.Timestamp(T0 + 60 * MINUTE, unit="ms", tz="UTC")
    assert row["covered_fraction"] == pytest.approx(50 / 60)
    assert str(cat["last_write"].dtype) == "datetime64[ns, UTC]"
    only = catalog(store, exchange="okx", kind="ohlcv")
    assert only["symbol"].tolist() == ["ETH/USDT"] and only["holes"].tolist() == [1]
    assert len(catalog(store, symbol="BTC/USDT:USDT")) == 0


def test_unchecked_write_plants_what_write_refuses(store: DataCollectionStorage) -> None:
    bad = _with(candles(T0, 3), 1, high=1.0, low=2.0)
    with pytest.raises(InvalidRequest):
        store.write(KEY, bad)
    assert store._write_unchecked(KEY, bad, covered=Interval(T0, T0 + 3 * MINUTE)) == 3
    assert store.read(KEY)["high"].tolist()[1] == 1.0
    assert store.info(KEY).source == "unchecked"


# -- the optional candle columns ------------------------------------------------------------

RICH = ["quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume", "vwap"]


def rich_candles(start_ms: int, n: int, seed: int = 0) -> pd.DataFrame:
    """Candles with the five optional columns, as Binance klines and trades give them."""
    frame = candles(start_ms, n, seed=seed)
    rng = np.random.default_rng(seed + 1)
    vwap = frame["low"] + (frame["high"] - frame["low"]) * rng.random(n)
    share = rng.random(n)
    return frame.assign(
        quote_volume=frame["volume"] * vwap,
        trades=rng.integers(1, 500, n),
        taker_buy_volume=frame["volume"] * share,
        taker_buy_quote_volume=frame["volume"] * vwap * share,
        vwap=vwap,
    )


def test_optional_candle_columns_round_trip_and_survive_appends(
    store: DataCollectionStorage,
) -> None:
    first, later = rich_candles(T0, 60), rich_candles(T0 + 60 * MINUTE, 30, seed=1)
    store.write(KEY, first, covered=Interval(T0, T0 + 60 * MINUTE))
    store.write(KEY, later, covered=Interval(T0 + 60 * MINUTE, T0 + 90 * MINUTE))
    out = store.read(KEY)
    assert list(out.columns) == ["open", "high", "low", "close", "volume", *RICH]
    assert out["trades"].dtype == np.int64
    pd.testing.assert_frame_equal(out, pd.concat([first, later]), check_freq=False)
    picked = store.read(KEY, T0, T0 + 5 * MINUTE, ["close", "vwap", "trades"])
    assert list(picked.columns) == ["close", "vwap", "trades"] and len(picked) == 5


def test_a_dataset_without_optional_columns_reads_without_them(
    store: DataCollectionStorage,
) -> None:
    """Written before the optional columns existed (or from a source without them): the
    columns are absent, not zeros and not NaN-filled."""
    store.write(KEY, candles(T0, 30), covered=Interval(T0, T0 + 30 * MINUTE))
    store.write(KEY, candles(T0 + 30 * MINUTE, 30, seed=2))
    out = store.read(KEY)
    assert list(out.columns) == ["open", "high", "low", "close", "volume"]
    with pytest.raises(InvalidRequest, match=r"'vwap'.*not stored"):
        store.read(KEY, columns=["close", "vwap"])


def test_rows_without_optional_columns_hold_nan_there_and_drop_the_count(
    store: DataCollectionStorage,
) -> None:
    """A source without them (ccxt's six values, another venue's candles) appending to a
    dataset with them, before and after its rows: the float columns stay, NaN in those
    rows; the trade count, an int64 without NaN, is dropped from the dataset."""
    rich = rich_candles(T0 + 30 * MINUTE, 30)
    store.write(KEY, rich, covered=Interval(T0 + 30 * MINUTE, T0 + 60 * MINUTE))
    store.write(KEY, candles(T0 + 60 * MINUTE, 20, seed=3))  # appended after
    store.write(KEY, candles(T0, 30, seed=4))  # and before
    out = store.read(KEY)
    assert len(out) == 80
    floats = [c for c in RICH if c != "trades"]
    assert list(out.columns) == ["open", "high", "low", "close", "volume", *floats]
    mine = out.index.isin(rich.index)
    pd.testing.assert_frame_equal(out[mine], rich.drop(columns="trades"), check_freq=False)
    assert out.loc[~mine, floats].isna().all().all()
    assert out.loc[mine, floats].notna().all().all()
