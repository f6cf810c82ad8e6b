"""Dates and times that used to be silently misread: epoch seconds taken as ms, and an
end with a time of day that gained a whole day. One rule (``_time``) for every entry point."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from mdcollect import (
    DatasetKey,
    Interval,
    IntervalSet,
    InvalidRequest,
    ensure_data,
    load_ohlcv,
    open_storage,
)
from mdcollect._time import end_ms, time_range, to_ms
from mdcollect.exchanges import ExchangeClient
from mdcollect.testing import ExchangeEmulator

HOUR = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01T00:00Z
T0_S = T0 // 1000


@pytest.fixture(scope="module")
def emu() -> Iterator[ExchangeEmulator]:
    with ExchangeEmulator(rate_limits=False) as e:
        yield e


def client(emu: ExchangeEmulator) -> ExchangeClient:
    return ExchangeClient("binance", base_url=emu.url, enableRateLimit=False)


@pytest.mark.parametrize("seconds", [T0_S, np.int64(T0_S), 1, -T0_S, 99_999_999_999])
def test_plausible_seconds_are_refused_naming_the_value(seconds: Any) -> None:
    with pytest.raises(InvalidRequest, match=rf"start {int(seconds)} .*milliseconds"):
        to_ms(seconds, name="start")
    with pytest.raises(InvalidRequest, match=str(int(seconds))):
        end_ms(seconds)


def test_milliseconds_and_zero_are_taken_as_they_are() -> None:
    assert to_ms(T0) == T0
    assert to_ms(np.int64(T0)) == T0
    assert to_ms(0) == 0  # the epoch is the same instant in seconds and in ms
    assert to_ms(100_000_000_000) == 100_000_000_000  # 1973-03-03, the first plausible ms
    assert time_range(T0, T0 + HOUR) == (T0, T0 + HOUR)


def test_time_range_refuses_seconds_with_the_ms_to_pass_instead() -> None:
    with pytest.raises(InvalidRequest) as info:
        time_range(T0_S, T0_S + 86_400)
    msg = str(info.value)
    assert str(T0_S) in msg and str(T0) in msg and "2024-01-01" in msg


def test_load_ohlcv_with_seconds_asks_the_exchange_nothing(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    before = len(emu.requests)
    with pytest.raises(InvalidRequest, match=str(T0_S)):
        load_ohlcv("BTC/USDT", "1h", T0_S, T0_S + 86_400, exchange=client(emu), storage=store,
                   progress=False)  # fmt: skip
    assert len(emu.requests) == before
    assert store.keys() == []


def test_ensure_end_with_a_time_of_day_is_exclusive(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    start = dt.datetime(2024, 1, 1, 0, 0, tzinfo=dt.UTC)
    end = dt.datetime(2024, 1, 1, 6, 0, tzinfo=dt.UTC)
    report = ensure_data(["BTC/USDT"], "1h", start, end, client(emu), padding_days=0,
                         storage=store, progress=False)  # fmt: skip
    assert report.required == Interval(T0, T0 + 6 * HOUR)
    key = DatasetKey("binance", "BTC/USDT", "ohlcv", "1h")
    assert store.coverage(key) == IntervalSet([Interval(T0, T0 + 6 * HOUR)])
    assert len(store.read(key)) == 6


def test_ensure_bare_date_end_still_means_the_end_of_that_day(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    for end in ("2024-01-01", dt.date(2024, 1, 1)):
        report = ensure_data(["BTC/USDT"], "1h", "2024-01-01", end, client(emu), padding_days=0,
                             storage=store, progress=False, dry_run=True)  # fmt: skip
        assert report.required == Interval(T0, T0 + 24 * HOUR)


def test_ensure_end_at_or_before_start_is_refused(emu: ExchangeEmulator) -> None:
    start = dt.datetime(2024, 1, 1, 6, 0, tzinfo=dt.UTC)
    with pytest.raises(InvalidRequest, match="end_date"):
        ensure_data(["BTC/USDT"], "1h", start, start, client(emu), padding_days=0,
                    storage=open_storage("memory://"), progress=False)  # fmt: skip
