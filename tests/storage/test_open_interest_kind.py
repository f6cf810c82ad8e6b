"""The ``open_interest`` kind in every backend: its schema, its timeframe (the
exchange's period) and its rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mdcollect import DatasetKey, Interval, IntervalSet, InvalidRequest, open_storage
from mdcollect.storage.redis import default_span

from ..conftest import RedisServer

HOUR = 3_600_000
DAY = 24 * HOUR
T0 = 1_735_689_600_000  # 2025-01-01
KEY = DatasetKey("bybit_futures", "BTC/USDT:USDT", "open_interest", "1h")


def rows(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "timestamp": [T0 + i * HOUR for i in range(n)],
            "open_interest": [50_000.0 + i for i in range(n)],
            "open_interest_value": [np.nan] * n,  # Bybit gives none
        }
    )


@pytest.fixture(params=["memory", "parquet", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return "memory://"
    if request.param == "parquet":
        return f"parquet://{tmp_path / 'pq'}"
    server: RedisServer = request.getfixturevalue("redis_server")
    return str(server.url)


def test_open_interest_round_trips_with_its_period(url: str) -> None:
    with open_storage(url) as st:
        st.delete(KEY)
        assert st.write(KEY, rows(48), covered=Interval(T0, T0 + 2 * DAY)) == 48
        frame = st.read(KEY)
        assert list(frame.columns) == ["open_interest", "open_interest_value"]
        assert frame.dtypes.tolist() == [np.float64, np.float64]
        assert frame["open_interest"].iloc[-1] == 50_047.0
        assert frame["open_interest_value"].isna().all()
        assert st.coverage(KEY) == IntervalSet([Interval(T0, T0 + 2 * DAY)])
        assert KEY in st.keys(kind="open_interest")
        # a row off the period's grid, and a missing amount, are refused
        off = rows(1)
        off["timestamp"] += 60_000
        with pytest.raises(InvalidRequest, match="not the start of a 1h candle"):
            st.write(KEY, off)
        with pytest.raises(InvalidRequest, match="'open_interest' is NaN"):
            st.write(KEY, rows(1).assign(open_interest=np.nan))


def test_redis_keeps_a_month_of_open_interest_a_bucket() -> None:
    assert default_span(KEY) == 30 * DAY
