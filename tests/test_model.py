"""Timeframe, dates, DatasetKey, schemas and the public surface."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

import mdcollect
from mdcollect import DatasetKey, InvalidRequest, Timeframe
from mdcollect._time import CCXT_TIMEFRAMES, to_ms

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


def test_all_matches_exports() -> None:
    exported = {n for n in dir(mdcollect) if not n.startswith("_")} - {"TYPE_CHECKING", "Any"}
    modules = {"storage", "exchanges", "testing", "backfill", "collectors", "aggregate", "ensure",
               "cli", "remote", "service", "audit", "collector"}  # fmt: skip
    assert set(mdcollect.__all__) - {"__version__"} == exported - modules
    assert mdcollect.__all__ == sorted(mdcollect.__all__)
    for name in mdcollect.__all__:
        obj = getattr(mdcollect, name)
        if callable(obj):
            assert obj.__doc__, f"{name} has no docstring"
