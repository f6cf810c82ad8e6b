"""``mdcollect backfill --kind`` and ``mdcollect ensure --kinds`` against the built-in emulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from mdcollect import DatasetKey, open_storage
from mdcollect.cli import main

BASE = ["--no-progress", "--emulate"]
X = ["-x", "binance_futures"]


def test_backfill_kind_funding_stores_every_settlement(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"parquet://{tmp_path / 'store'}"
    argv = ["--storage", url, *BASE, "backfill", "BTC/USDT:USDT", "--kind", "funding",
            "--start", "2024-03-01", "--end", "2024-03-10", *X]  # fmt: skip
    assert main(argv) == 0
    assert "binance_futures:funding::BTC/USDT:USDT" in capsys.readouterr().out
    with open_storage(url) as st:
        assert len(st.read(DatasetKey("binance_futures", "BTC/USDT:USDT", "funding"))) == 10 * 3


@pytest.mark.parametrize("kinds", [["ohlcv,funding"], ["ohlcv", "funding"]])
def test_ensure_kinds_ensures_each_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kinds: list[str]
) -> None:
    url = f"parquet://{tmp_path / 'store'}"
    argv = ["--storage", url, *BASE, "ensure", "ETH/USDT:USDT", "-t", "4h", "--start",
            "2024-03-01", "--end", "2024-03-02", "--padding-days", "1", *X, "--kinds", *kinds]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "binance_futures:ohlcv:4h:ETH/USDT:USDT" in out
    assert "binance_futures:funding::ETH/USDT:USDT" in out
    with open_storage(url) as st:
        assert len(st.read(DatasetKey("binance_futures", "ETH/USDT:USDT", "ohlcv", "4h"))) == 18
        assert len(st.read(DatasetKey("binance_futures", "ETH/USDT:USDT", "funding"))) == 9


@pytest.mark.parametrize(
    "argv",
    [
        ["backfill", "BTC/USDT:USDT", "--kind", "fundng", "--start", "2024-03-01", "--end",
         "2024-03-02"],
        ["ensure", "BTC/USDT:USDT", "--kinds", "ohlcv,ticker", "--start", "2024-03-01", "--end",
         "2024-03-02"],
        ["backfill", "BTC/USDT:USDT", "--kind", "mrk", "--start", "2024-03-01", "--end",
         "2024-03-02"],
    ],
)  # fmt: skip
def test_bad_kinds_exit_2_naming_the_allowed_ones(
    tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--storage", f"parquet://{tmp_path / 's'}", *BASE, *argv, *X]) == 2
    assert (
        "allowed: 'ohlcv', 'trades', 'funding', 'mark', 'index', 'premium', 'open_interest'"
        in capsys.readouterr().err
    )


def test_backfill_kind_mark_stores_mark_candles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"parquet://{tmp_path / 'store'}"
    common = ["BTC/USDT:USDT", "-t", "1h", "--start", "2024-03-01", "--end", "2024-03-01", *X]
    assert main(["--storage", url, *BASE, "backfill", *common, "--kind", "mark"]) == 0
    assert "binance_futures:mark:1h:BTC/USDT:USDT" in capsys.readouterr().out
    assert main(["--storage", url, *BASE, "backfill", *common]) == 0  # the last price's
    with open_storage(url) as st:
        assert sorted(str(k) for k in st.keys(exchange="binance_futures")) == [
            "binance_futures:mark:1h:BTC/USDT:USDT",
            "binance_futures:ohlcv:1h:BTC/USDT:USDT",
        ]
        mark = st.read(DatasetKey("binance_futures", "BTC/USDT:USDT", "mark", "1h"))
        last = st.read(DatasetKey("binance_futures", "BTC/USDT:USDT", "ohlcv", "1h"))
    assert len(mark) == len(last) == 24
    assert mark.index.equals(last.index)
    # mark candles, not the last price's again: close to it (within 0.1 %), not equal
    rel = (mark["close"] / last["close"] - 1).abs()
    assert (rel < 1e-3).all() and (rel > 0).any()


def test_ensure_kinds_with_mark(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"parquet://{tmp_path / 'store'}"
    argv = ["--storage", url, *BASE, "ensure", "BTC/USDT:USDT", "-t", "4h", "--start",
            "2024-03-01", "--end", "2024-03-02", "--padding-days", "0", *X, "--kinds",
            "ohlcv,funding,mark"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    for kind in ("ohlcv:4h", "funding:", "mark:4h"):
        assert f"binance_futures:{kind}:BTC/USDT:USDT" in out
    with open_storage(url) as st:
        assert len(st.read(DatasetKey("binance_futures", "BTC/USDT:USDT", "ohlcv", "4h"))) == 12
        assert len(st.read(DatasetKey("binance_futures", "BTC/USDT:USDT", "mark", "4h"))) == 12
        assert len(st.read(DatasetKey("binance_futures", "BTC/USDT:USDT", "funding"))) == 6


def test_backfill_and_ensure_kind_open_interest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import datetime as dt

    # the built-in emulator runs on the wall clock; Binance keeps 30 days of open interest
    day = (dt.datetime.now(dt.UTC) - dt.timedelta(days=3)).strftime("%Y-%m-%d")
    url = f"parquet://{tmp_path / 'store'}"
    common = ["BTC/USDT:USDT", "-t", "1h", "--start", day, "--end", day, *X]
    assert main(["--storage", url, *BASE, "backfill", *common, "--kind", "open_interest"]) == 0
    assert "binance_futures:open_interest:1h:BTC/USDT:USDT" in capsys.readouterr().out
    argv = ["--storage", url, *BASE, "ensure", *common, "--padding-days", "60",
            "--kinds", "open_interest"]  # fmt: skip
    assert main(argv) == 0  # padding reaches back only as far as Binance keeps it
    with open_storage(url) as st:
        oi = st.read(DatasetKey("binance_futures", "BTC/USDT:USDT", "open_interest", "1h"))
    assert len(oi) > 24 * 25 and list(oi.columns) == ["open_interest", "open_interest_value"]
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(days=40)).strftime("%Y-%m-%d")
    bad = ["BTC/USDT:USDT", "-t", "1h", "--start", old, "--end", day, *X]
    assert main(["--storage", url, *BASE, "backfill", *bad, "--kind", "open_interest"]) == 2
    assert "keeps open-interest history for 30 days" in capsys.readouterr().err
