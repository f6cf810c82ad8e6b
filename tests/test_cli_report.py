"""What ``mdcollect ensure`` prints: the report's summary, with the padded range ensured."""

from __future__ import annotations

import re

import pytest

from mdcollect.cli import main


def test_ensure_prints_the_padded_range_and_each_dataset(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["--storage", "memory://", "--emulate", "--no-progress", "ensure", "BTC/USDT",
            "-t", "1h", "--start", "2024-01-01", "--end", "2024-01-31", "-x", "binance",
            "--padding-days", "30"]  # fmt: skip
    assert main(args) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == "binance 1h: ensured [2023-12-02, 2024-02-01) UTC (61 days)"
    assert re.fullmatch(
        r"  binance:ohlcv:1h:BTC/USDT: had nothing, fetched 1464 rows in \d+ requests "
        r"\([^)]+\): ok",
        lines[1],
    ), lines[1]
    assert re.fullmatch(r"1464 rows, \d+ requests in [^:]+: ok", lines[2]), lines[2]
    assert len(lines) == 3
    assert err == ""  # --no-progress


def test_dry_run_lists_at_most_20_windows_per_dataset(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["--storage", "memory://", "--emulate", "--dry-run", "-q", "ensure", "BTC/USDT",
                 "ETH/USDT", "-t", "1m", "--start", "2024-01-01", "--end", "2024-01-31",
                 "-x", "binance", "--padding-days", "0"])  # fmt: skip
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "binance 1m: would ensure [2024-01-01, 2024-02-01) UTC (31 days)"
    assert lines[1] == (
        "  binance:ohlcv:1m:BTC/USDT: had nothing, missing 31 days in [2024-01-01, 2024-02-01): "
        "45 window(s)"
    )
    assert lines[22] == "      ... 25 more"
    assert lines[23].startswith("  binance:ohlcv:1m:ETH/USDT: ")
    assert lines[44] == "      ... 25 more"
    assert lines[45].startswith("90 window(s), at least 90 page request(s)")
    assert len(lines) == 46
