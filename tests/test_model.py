"""Timeframe, dates, DatasetKey, schemas and the public surface."""

from __future__ import annotations

import ast
import datetime as dt
import doctest
import importlib
import io
import pkgutil
import tokenize
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mdcollect
import mdcollect._time
from mdcollect import DatasetKey, InvalidRequest, Timeframe
from mdcollect._time import (
    CCXT_TIMEFRAMES,
    DAY,
    HOUR,
    MAX_INDEX_MS,
    MIN_INDEX_MS,
    MINUTE,
    SECOND,
    WEEK,
    index_ms,
    ms_to_index,
    ms_to_timestamp,
    to_ms,
)

T0 = 1_704_067_200_000  # 2024-01-01T00:00Z (a Monday)


@pytest.mark.parametrize(
    ("text", "ms"),
    [("1s", 1_000), ("1m", 60_000), ("15m", 900_000), ("4h", 14_400_000), ("1d", 86_400_000),
     ("3d", 259_200_000), ("1w", 604_800_000)],
)  # fmt: skip
def test_timeframe_lengths(text: str, ms: int) -> None:
    tf = Timeframe.parse(text)
    assert tf.ms == ms and str(tf) == text
    assert Timeframe.parse(tf) is tf


def test_every_ccxt_timeframe_parses() -> None:
    for text in CCXT_TIMEFRAMES:
        assert str(Timeframe.parse(text)) == text


def test_floor_ceil_alignment() -> None:
    m15 = Timeframe.parse("15m")
    t = T0 + 7 * 60_000 + 123
    assert m15.floor(t) == T0 and m15.ceil(t) == T0 + 900_000
    assert m15.floor(T0) == T0 == m15.ceil(T0)
    week = Timeframe.parse("1w")
    # weeks start on Monday 00:00 UTC, as on the exchanges
    assert week.floor(T0 + 3 * 86_400_000) == T0
    assert dt.datetime.fromtimestamp(week.floor(1_700_000_000_000) / 1000, dt.UTC).weekday() == 0
    assert Timeframe.parse("1h").count(T0, T0 + 86_400_000) == 24
    assert Timeframe.parse("1h").count(T0 + 1, T0 + 3_600_000) == 0


def test_calendar_month_is_exact_or_refused() -> None:
    month = Timeframe.parse("1M")
    feb = to_ms("2024-02-10T12:00:00")
    assert month.floor(feb) == to_ms("2024-02-01")
    assert month.ceil(feb) == to_ms("2024-03-01")
    assert month.add(to_ms("2024-12-01"), 1) == to_ms("2025-01-01")
    assert month.count(to_ms("2024-01-01"), to_ms("2025-01-01")) == 12
    with pytest.raises(InvalidRequest, match="calendar month"):
        _ = month.ms
    with pytest.raises(InvalidRequest, match="1M"):
        Timeframe.parse("2M")


@pytest.mark.parametrize("bad", ["", "1x", "m1", "0m", "-1h", "1.5h", "1 m"])
def test_bad_timeframes(bad: str) -> None:
    with pytest.raises(InvalidRequest, match="timeframe"):
        Timeframe.parse(bad)
    with pytest.raises(InvalidRequest, match="timeframe"):
        Timeframe.parse(5)  # type: ignore[arg-type]


def test_to_ms_forms() -> None:
    assert to_ms("20240101") == T0
    assert to_ms("2024-01-01") == T0
    assert to_ms("2024-01-01T01:00:00Z") == T0 + 3_600_000
    assert to_ms("2024-01-01T02:00:00+01:00") == T0 + 3_600_000
    assert to_ms(dt.date(2024, 1, 1)) == T0
    assert to_ms(dt.datetime(2024, 1, 1)) == T0
    assert to_ms(pd.Timestamp("2024-01-01", tz="UTC")) == T0
    assert to_ms(T0) == T0
    for bad in ["yesterday", "2024-13-01", True, 1.5, None]:
        with pytest.raises(InvalidRequest):
            to_ms(bad)


def test_dataset_key_string_form_round_trips() -> None:
    keys = [
        DatasetKey("binance", "BTC/USDT", "ohlcv", "1m"),
        DatasetKey("binance_futures", "BTC/USDT:USDT", "trades"),
        DatasetKey("okx", "weird : sym/bol", "funding"),
    ]
    for k in keys:
        assert DatasetKey.parse(str(k)) == k
    assert str(keys[0]) == "binance:ohlcv:1m:BTC/USDT"
    assert str(keys[1]) == "binance_futures:trades::BTC/USDT:USDT"
    assert DatasetKey("binance", "X/Y", "ohlcv", Timeframe.parse("1h")).timeframe == "1h"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("binance", "BTC/USDT", "ohlcv"), "needs a timeframe"),
        (("binance", "BTC/USDT", "trades", "1m"), "takes no timeframe"),
        (("binance", "BTC/USDT", "candles", "1m"), "kind 'candles'"),
        (("Binance!", "BTC/USDT", "ohlcv", "1m"), "exchange 'Binance!'"),
        (("binance", "", "ohlcv", "1m"), "symbol"),
        (("binance", "A\x00B", "ohlcv", "1m"), "NUL"),
        (("binance", "BTC/USDT", "ohlcv", "7x"), "timeframe '7x'"),
    ],
)
def test_dataset_key_validation(args: tuple[str, ...], needle: str) -> None:
    with pytest.raises(InvalidRequest, match=needle):
        DatasetKey(*args)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="form"):
        DatasetKey.parse("binance:ohlcv")


def test_errors_tree() -> None:
    assert issubclass(mdcollect.InvalidRequest, mdcollect.MdcollectError)
    assert issubclass(mdcollect.InvalidRequest, ValueError)
    assert issubclass(mdcollect.StorageError, mdcollect.MdcollectError)
    assert issubclass(mdcollect.ExchangeError, mdcollect.MdcollectError)
    e = mdcollect.ExchangeError("boom", transient=True, retry_after=2.0)
    assert e.transient and e.retry_after == 2.0


def _public_submodules() -> set[str]:
    """The public modules and subpackages of mdcollect, as they are on disk."""
    return {m.name for m in pkgutil.iter_modules(mdcollect.__path__) if not m.name.startswith("_")}


def test_public_submodules_import() -> None:
    modules = _public_submodules()
    assert {"storage", "exchanges", "testing", "aggregate"} <= modules
    for name in modules:
        importlib.import_module(f"mdcollect.{name}")


def test_all_matches_exports() -> None:
    exported = {n for n in dir(mdcollect) if not n.startswith("_")} - {"TYPE_CHECKING", "Any"}
    # a public name may also be a module's (``mdcollect.audit``: the function and its module)
    modules = _public_submodules() - set(mdcollect.__all__)
    assert set(mdcollect.__all__) - {"__version__"} == exported - modules
    assert mdcollect.__all__ == sorted(mdcollect.__all__)
    for name in mdcollect.__all__:
        obj = getattr(mdcollect, name)
        if callable(obj):
            assert obj.__doc__, f"{name} has no docstring"


def test_time_doctests() -> None:
    # _time's examples are its documentation: they must be right
    result = doctest.testmod(mdcollect._time, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 10
    assert result.failed == 0


def test_time_constants() -> None:
    assert (SECOND, MINUTE, HOUR, DAY, WEEK) == (1_000, 60_000, 3_600_000, 86_400_000, 604_800_000)
    assert [Timeframe.parse(t).ms for t in ("1s", "1m", "1h", "1d", "1w")] == [
        SECOND,
        MINUTE,
        HOUR,
        DAY,
        WEEK,
    ]


def test_ms_index_conversions_round_trip() -> None:
    ms = np.array([MIN_INDEX_MS, -1, 0, T0, T0 + 1, MAX_INDEX_MS], dtype=np.int64)
    index = ms_to_index(ms)
    assert str(index.dtype) == "datetime64[ns, UTC]" and index.name == "timestamp"
    assert index[3] == pd.Timestamp("2024-01-01", tz="UTC")
    assert index[4] == pd.Timestamp("2024-01-01 00:00:00.001", tz="UTC")
    assert index_ms(index).tolist() == ms.tolist()
    assert index_ms(pd.DataFrame({"x": range(len(ms))}, index=index)).tolist() == ms.tolist()
    assert len(ms_to_index([])) == 0 and str(ms_to_index([]).dtype) == "datetime64[ns, UTC]"
    assert ms_to_timestamp(T0) == pd.Timestamp("2024-01-01", tz="UTC")
    assert to_ms(ms_to_timestamp(T0 + 1)) == T0 + 1
    for bad in (MIN_INDEX_MS - 1, MAX_INDEX_MS + 1):
        with pytest.raises(InvalidRequest, match=f"timestamp {bad} is out of range"):
            ms_to_index([T0, bad])


@pytest.mark.parametrize("text", CCXT_TIMEFRAMES)
def test_floor_array_is_floor(text: str) -> None:
    tf = Timeframe.parse(text)
    rng = np.random.default_rng(7)
    ts = np.concatenate(
        [
            rng.integers(-5 * 365 * DAY, 60 * 365 * DAY, 500, dtype=np.int64),
            np.array([0, -1, T0, T0 - 1, 4 * DAY, 4 * DAY - 1]),
        ]
    )
    assert tf.floor_array(ts).tolist() == [tf.floor(int(t)) for t in ts]
    if tf.unit == "w":
        # Monday 00:00 UTC, as on the exchanges
        assert {pd.Timestamp(t, unit="ms").day_name() for t in tf.floor_array(ts)} == {"Monday"}


# Time written out by hand outside _time.py: ms lengths, ns-per-ms arithmetic and
# unit="ms" conversions. testing/ is an independent oracle and keeps its own.
_TIME_LITERALS = {60_000, 3_600_000, 86_400_000, 604_800_000}
_NOT_YET: dict[str, int] = {}


def _hand_written_time(path: Path) -> list[str]:
    source = path.read_text()
    found = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        digits = tok.string.replace("_", "")
        if tok.type == tokenize.NUMBER and digits.isdigit() and int(digits) in _TIME_LITERALS:
            found.append(f"{tok.start[0]}: {tok.string}")
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.keyword)
            and node.arg == "unit"
            and isinstance(node.value, ast.Constant)
            and node.value.value == "ms"
        ):
            found.append(f"{node.value.lineno}: unit='ms'")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.FloorDiv | ast.Mult):
            for side in (node.left, node.right):
                if isinstance(side, ast.Constant) and side.value == 1_000_000:
                    found.append(f"{side.lineno}: ns/ms by 1_000_000")
    return found


def test_time_constants_and_conversions_live_in_time_module() -> None:
    root = Path(mdcollect.__file__).parent
    over = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel == "_time.py" or rel.startswith("testing/"):
            continue
        found = _hand_written_time(path)
        if len(found) > _NOT_YET.get(rel, 0):
            over[rel] = found
    assert not over, f"use mdcollect._time's constants and conversions instead: {over}"


def test_mark_index_premium_keys_are_candles_with_a_timeframe() -> None:
    for kind in ("mark", "index", "premium"):
        key = DatasetKey("bybit_futures", "BTC/USDT:USDT", kind, "1h")  # type: ignore[arg-type]
        assert str(key) == f"bybit_futures:{kind}:1h:BTC/USDT:USDT"
        assert DatasetKey.parse(str(key)) == key and key.tf == Timeframe.parse("1h")
        with pytest.raises(InvalidRequest, match=f"a {kind} DatasetKey needs a timeframe"):
            DatasetKey("bybit_futures", "BTC/USDT:USDT", kind)  # type: ignore[arg-type]
    with pytest.raises(
        InvalidRequest, match="only the candle kinds have one: ohlcv, mark, index, premium"
    ):
        DatasetKey("binance", "BTC/USDT", "funding", "8h")
