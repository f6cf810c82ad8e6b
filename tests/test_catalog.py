"""``mdcollect.catalog`` and ``mdcollect ls``: one row per dataset, from metadata, filterable."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mdcollect import DatasetKey, Interval, InvalidRequest, catalog, open_storage
from mdcollect.cli import main
from tests.conftest import MINUTE, T0, candles

BTC = DatasetKey("binance", "BTC/USDT", "ohlcv", "1m")
ETH = DatasetKey("okx", "ETH/USDT", "ohlcv", "1h")
FUND = DatasetKey("okx", "BTC/USDT:USDT", "funding")


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"parquet://{tmp_path / 'pq'}"
    with open_storage(url) as st:
        st.write(BTC, candles(T0, 60), covered=Interval(T0, T0 + 30 * MINUTE), source="import")
        st.write(ETH, candles(T0, 3, step=60 * MINUTE), source="backfill:okx candles")
        st.write(FUND, candles(T0, 0)[[]].assign(rate=[]), covered=Interval(T0, T0 + 8 * 3_600_000))
    return url


def test_ls_filters_by_exchange_symbol_and_kind(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--storage", url, "ls"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == [
        "binance:ohlcv:1m:BTC/USDT", "okx:funding::BTC/USDT:USDT", "okx:ohlcv:1h:ETH/USDT",
    ]  # fmt: skip
    assert "rows=60" in out[0] and "covered=50.0%" in out[0] and "holes=1" in out[0]
    assert "lineage=import" in out[0] and "first=2024-01-01  last=2024-01-01 00:59:00" in out[0]
    assert main(["--storage", url, "ls", "--exchange", "okx", "--kind", "ohlcv"]) == 0
    assert capsys.readouterr().out.split()[0] == "okx:ohlcv:1h:ETH/USDT"
    assert main(["--storage", url, "ls", "--symbol", "BTC/USDT:USDT"]) == 0
    only = capsys.readouterr().out
    assert only.startswith("okx:funding::BTC/USDT:USDT  rows=0  first=-") and only.count("\n") == 1
    assert main(["--storage", url, "ls", "--symbol", "SOL/USDT"]) == 0
    assert "no datasets in parquet://" in capsys.readouterr().out


def test_ls_json_has_stable_keys(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--storage", url, "ls", "--json", "--exchange", "binance"]) == 0
    (item,) = json.loads(capsys.readouterr().out)
    assert list(item) == [
        "key", "exchange", "symbol", "kind", "timeframe", "rows", "first", "last",
        "covered_from", "covered_to", "covered_fraction", "holes", "bytes", "last_write",
        "lineage", "sources",
    ]  # fmt: skip
    assert (item["key"], item["rows"], item["first"], item["last"]) == (
        "binance:ohlcv:1m:BTC/USDT", 60, T0, T0 + 59 * MINUTE,
    )  # fmt: skip
    assert (item["covered_fraction"], item["holes"], item["sources"]) == (0.5, 1, ["import"])
    assert item["bytes"] > 0 and isinstance(item["last_write"], int)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--kind", "candles"], "kind 'candles' is not valid; allowed: 'ohlcv'"),
        (["--exchange", "Binance"], "exchange 'Binance' is not a valid exchange key"),
        (["--symbol", "BTCUSDT"], "symbol 'BTCUSDT' is not valid"),
    ],
)
def test_ls_bad_filter_is_exit_2_naming_it(
    url: str, args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--storage", url, "ls", *args]) == 2
    assert needle in capsys.readouterr().err


def test_catalog_refuses_bad_filters_and_lists_an_empty_store() -> None:
    store = open_storage("memory://")
    empty = catalog(store)
    assert len(empty) == 0 and "lineage" in empty.columns
    with pytest.raises(InvalidRequest, match="kind 'bars' is not valid"):
        catalog(store, kind="bars")
    with pytest.raises(InvalidRequest, match="symbol 5 is not valid"):
        catalog(store, symbol=5)  # type: ignore[arg-type]


def test_catalog_of_a_calendar_timeframe_counts_the_whole_last_month() -> None:
    store = open_storage("memory://")
    key = DatasetKey("binance", "BTC/USDT", "ohlcv", "1M")
    jan, feb, mar = 1_704_067_200_000, 1_706_745_600_000, 1_709_251_200_000
    frame = candles(jan, 2)
    frame.index = pd.DatetimeIndex(
        pd.to_datetime([jan, feb], unit="ms", utc=True), name="timestamp"
    )
    store.write(key, frame, covered=Interval(jan, mar))
    (row,) = catalog(store).itertuples(index=False)
    assert (row.rows, row.covered_fraction, row.holes) == (2, 1.0, 0)
