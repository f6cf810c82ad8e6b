"""The mdcollect command, end to end against the built-in emulator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mdcollect import DatasetKey, Interval, IntervalSet, open_storage
from mdcollect.cli import main

T2024 = 1_704_067_200_000
DAY = 86_400_000


def test_ensure_emulated_then_ls_and_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"parquet://{tmp_path / 'store'}"
    args = ["--storage", url, "--emulate", "--no-progress", "ensure", "BTC/USDT", "ETH/USDT",
            "-t", "1h", "--start", "2024-01-01", "--end", "2024-01-31", "-x", "binance"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "binance:ohlcv:1h:BTC/USDT" in out and "ok" in out
    with open_storage(url) as st:
        key = DatasetKey("binance", "BTC/USDT", "ohlcv", "1h")
        assert len(st.read(key)) == 31 * 24
        assert st.coverage(key) == IntervalSet([Interval(T2024, T2024 + 31 * DAY)])
    assert main(["--storage", url, "ls"]) == 0
    listing = capsys.readouterr().out
    assert "binance:ohlcv:1h:ETH/USDT" in listing and "rows=744" in listing and "holes=0" in listing
    csv = tmp_path / "btc.csv"
    assert main(["--storage", url, "export", "binance:ohlcv:1h:BTC/USDT", "-o", str(csv)]) == 0
    exported = pd.read_csv(csv, index_col="timestamp")
    assert len(exported) == 744 and list(exported.columns) == [
        "open",
        "high",
        "low",
        "close",
        "volume",
    ]
    pq = tmp_path / "btc.parquet"
    assert main(["--storage", url, "export", "binance:ohlcv:1h:BTC/USDT", "-o", str(pq),
                 "--start", "2024-01-02", "--end", "2024-01-03"]) == 0  # fmt: skip
    assert len(pd.read_parquet(pq)) == 24


def test_dry_run_lists_windows_and_fetches_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"parquet://{tmp_path / 'store'}"
    code = main(["--storage", url, "--emulate", "--dry-run", "ensure", "BTC/USDT", "-t", "1m",
                 "--start", "2024-01-01", "--end", "2024-01-02", "-x", "binance"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "3 window(s)" in out  # 2 days of 1m = 2880 candles = 3 pages of 1000
    # Binance spot klines cost 0.4 x 50 ms in ccxt, at 95% of the limit: 3 x 21 ms
    assert "about 0.1 s at binance's rate limit" in out
    with open_storage(url) as st:
        assert st.keys() == []


@pytest.mark.parametrize(
    "argv",
    [
        ["ensure", "BTCUSDT", "-t", "1h", "--start", "2024-01-01", "--end", "2024-01-02"],
        ["ensure", "BTC/USDT", "-t", "1x", "--start", "2024-01-01", "--end", "2024-01-02"],
        ["ensure", "BTC/USDT", "-t", "1h", "--start", "2024-02-01", "--end", "2024-01-02"],
        ["ensure", "BTC/USDT", "-t", "1h", "--start", "01/02/2024", "--end", "2024-01-02"],
        ["ensure", "BTC/USDT", "-x", "nope", "--start", "2024-01-01", "--end", "2024-01-02"],
        ["export", "not-a-key", "-o", "x.csv"],
    ],
)
def test_bad_input_exits_2(
    tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--storage", f"parquet://{tmp_path / 's'}", "--emulate", *argv]) == 2
    assert "error" in capsys.readouterr().err


def test_console_script_runs(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("mdcollect")
    res = subprocess.run(
        [str(exe), "--storage", f"parquet://{tmp_path / 's'}", "--emulate", "-q", "ensure", "BTC/USDT:USDT",
         "-t", "4h", "--start", "2024-01-01", "--end", "2024-01-10"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
