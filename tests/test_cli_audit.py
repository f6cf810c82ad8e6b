"""``mdcollect audit``: exit 0 clean, 1 problems found or left, 2 bad input; a table by
default, ``--json`` with stable keys; ``--repair`` refetches from the emulator.

Defects are planted through the backend's own ``_write`` (see ``tests/test_audit.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mdcollect import DatasetKey, Interval, IntervalSet, open_storage
from mdcollect.cli import main
from mdcollect.storage import Stamp

from .conftest import MINUTE, T0, candles

KEY = DatasetKey("binance", "BTC/USDT", "ohlcv", "1m")

#: The lineage of rows planted as is (the backend's own write: no checks, no sorting).
PLANTED = Stamp("planted", 0)


def _store(tmp_path: Path, hole: bool) -> str:
    url = f"parquet://{tmp_path / 'store'}"
    frame = candles(T0, 120)
    if hole:
        frame = frame.drop(frame.index[30:33])
    with open_storage(url) as st:
        st._write(KEY, frame, IntervalSet([Interval(T0, T0 + 120 * MINUTE)]), PLANTED)
    return url


def test_clean_store_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = _store(tmp_path, hole=False)
    assert main(["--storage", url, "audit"]) == 0
    out = capsys.readouterr().out
    assert "binance:ohlcv:1m:BTC/USDT  rows=120  score=1.0000  ok" in out


def test_problems_exit_1_with_table_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _store(tmp_path, hole=True)
    assert main(["--storage", url, "audit", str(KEY)]) == 1
    out = capsys.readouterr().out
    assert "hole" in out and "[2024-01-01 00:30:00, 2024-01-01 00:33:00) UTC" in out
    assert main(["--storage", url, "audit", "--json", "--start", "2024-01-01"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {"ok", "datasets", "repaired"} and doc["ok"] is False
    (finding,) = doc["datasets"][0]["findings"]
    assert finding == {
        "key": str(KEY), "check": "hole", "severity": "error", "start": T0 + 30 * MINUTE,
        "end": T0 + 33 * MINUTE, "count": 3, "detail": finding["detail"],
    }  # fmt: skip
    # a range without the hole is clean
    assert main(["--storage", url, "audit", "--start", "2024-01-01T01:00"]) == 0


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["audit", "binance:ohlcv:1m"], "not of the form"),
        (["audit", "binance:ohlcv:1m:ETH/USDT"], "no dataset 'binance:ohlcv:1m:ETH/USDT'"),
        (["audit", "--start", "2024-02-30"], "2024-02-30"),
        (["audit", "--start", "2024-01-02", "--end", "2024-01-01"], "must be after"),
        (["audit", "--repair", "-x", "nosuch"], "nosuch"),
    ],
)
def test_bad_input_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    url = _store(tmp_path, hole=True)
    assert main(["--storage", url, *argv]) == 2
    assert says in capsys.readouterr().err


def test_repair_from_the_emulator_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"parquet://{tmp_path / 'store'}"
    assert main(["--storage", url, "--emulate", "-q", "--no-progress", "ensure", "BTC/USDT",
                 "-t", "1h", "--start", "2024-01-01", "--end", "2024-01-02", "-x", "binance",
                 "--padding-days", "0"]) == 0  # fmt: skip
    key = DatasetKey("binance", "BTC/USDT", "ohlcv", "1h")
    with open_storage(url) as st:
        good, cov = st.read(key), st.coverage(key)
        st.delete(key)
        st._write(key, good.drop(good.index[5:8]), cov, PLANTED)
    assert main(["--storage", url, "audit"]) == 1
    capsys.readouterr()
    assert main(["--storage", url, "--emulate", "audit", "--repair", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True and [f["check"] for f in doc["repaired"]] == ["hole"]
    with open_storage(url) as st:
        pd.testing.assert_frame_equal(st.read(key), good)
