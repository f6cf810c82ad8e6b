"""The examples run as a user runs them, offline, and do what they say.

Each script runs as a real process in a fresh folder with its own ``MDCOLLECT_HOME``
and ``MDCOLLECT_EMULATE=1`` (the built-in exchange emulator, as the docs run); the
notebook runs in a real ipykernel under nbclient. The tests check what they printed
and stored against the emulator's own market (its ground truth) and against the
stores they wrote, not just that they ran.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbclient
import nbformat
import numpy as np
import pandas as pd
import pytest

import mdcollect
from mdcollect import DatasetKey, Interval
from mdcollect.testing import ExchangeEmulator
from tests.test_notebook import _kernel_manager

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DEADLINE = 120.0  # seconds for one example
JAN = Interval(1_704_067_200_000, 1_706_745_600_000)  # [2024-01-01, 2024-02-01) UTC
HOUR = 3_600_000


def run(example: str, cwd: Path, *args: str) -> list[str]:
    """Run ``examples/<example>`` as a user would, offline; its stdout lines."""
    env = {**os.environ, "MDCOLLECT_HOME": str(cwd / "home"), "MDCOLLECT_EMULATE": "1"}
    # its own process group: on a timeout the service it started goes with it
    proc = subprocess.Popen([sys.executable, str(EXAMPLES / example), *args], cwd=cwd, env=env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)  # fmt: skip
    try:
        out, err = proc.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{example} still running after {DEADLINE:g} s:\n{out}\n{err}")
    assert proc.returncode == 0, f"{example} exited {proc.returncode}:\n{err}"
    return out.splitlines()


def truth(exchange: str, symbol: str, timeframe: str, span: Interval) -> pd.DataFrame:
    """The emulator's candles (the shared emulator's market: the default seed)."""
    market = ExchangeEmulator().market
    candles = market.candles(exchange, symbol, timeframe, span.start, span.end)
    # Binance klines carry the quote volume, trade count and taker-buy volumes
    frame: pd.DataFrame = candles.to_frame(
        ("quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume")
    )
    return frame


def test_every_example_is_in_the_readme_with_how_to_run_it() -> None:
    readme = (EXAMPLES / "README.md").read_text()
    files = sorted(p.name for p in EXAMPLES.iterdir() if p.suffix in (".py", ".ipynb"))
    assert files == sorted(set(re.findall(r"`([\w]+\.(?:py|ipynb))`", readme)))
    for name in files:
        (line,) = [ln for ln in readme.splitlines() if f"`{name}`" in ln]
        assert "python examples/" in line or "jupyter" in line, line


def test_first_run_writes_a_day_and_reads_it_back(tmp_path: Path) -> None:
    out = run("first_run.py", tmp_path)
    url = out[0]
    assert url.startswith("arctic+lmdb://") and str(tmp_path / "home") in url
    assert out[-1] == "covered: IntervalSet([[2024-01-01, 2024-01-02)])"
    with mdcollect.open_storage(url) as store:
        frame = store.read(DatasetKey("example", "BTC/USDT", "ohlcv", "1m"))
    assert len(frame) == 1440 and frame.index[0] == pd.Timestamp("2024-01-01", tz="UTC")


def test_coverage_picture_draws_the_hole_it_left(tmp_path: Path) -> None:
    out = run("coverage_picture.py", tmp_path)
    assert (tmp_path / "coverage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    holes = {line.split(": ", 1)[0].strip(): line.split(": ", 1)[1] for line in out[1:3]}
    # BTC/USDT was fetched for Jan 1-2 and Jan 5-7 only (days counted whole)
    assert holes["binance:ohlcv:1h:BTC/USDT"] == "IntervalSet([[2024-01-03, 2024-01-05)])"
    assert holes["binance:ohlcv:1h:ETH/USDT"] == "IntervalSet([])"
    assert out[-4] == "correlation of hourly returns:"


LINE = re.compile(
    r"^(\S+) BTC/USDT close=(\S+) (?:warming up \((\d)/5\)|"
    r"fast=(\S+) slow=(\S+) (long|short|flat))$"
)


@pytest.mark.slow  # about 10 s: seven 1-second candles close in real time
def test_bot_prints_a_signal_per_closed_candle_as_stored(tmp_path: Path) -> None:
    out = run("bot.py", tmp_path, "--max-candles", "7", "--storage", "parquet://bot-store")
    assert out[-1] == f"stopped after 7 candles; stored in parquet://{tmp_path}/bot-store"
    lines = [LINE.match(line) for line in out[:-1]]
    assert len(lines) == 7 and all(lines), out
    times = pd.DatetimeIndex([pd.Timestamp(m[1], tz="UTC") for m in lines if m])
    assert (np.diff(times.asi8) == 1_000_000_000).all()  # every closed 1s candle, once
    with mdcollect.open_storage(f"parquet://{tmp_path}/bot-store") as store:
        stored = store.read(DatasetKey("binance", "BTC/USDT", "ohlcv", "1s"))
    # what the bot acted on is what was stored, and its averages are the stored closes'
    assert times[0] == stored.index[0]  # the bot heard the first candle stored
    closes = stored["close"]
    assert [float(m[2]) for m in lines if m] == closes.loc[times].tolist()
    fast, slow = closes.rolling(3).mean(), closes.rolling(5).mean()
    for i, m in enumerate(lines):
        assert m is not None
        if i < 4:
            assert m[3] == str(i + 1) and m[4] is None
            continue
        t = times[i]
        assert float(m[4]) == pytest.approx(fast.loc[t], abs=1e-6)
        assert float(m[5]) == pytest.approx(slow.loc[t], abs=1e-6)
        side = int(np.sign(fast.loc[t] - slow.loc[t]))
        assert m[6] == {1: "long", -1: "short", 0: "flat"}[side]


def sma_cross_trades(candles: pd.DataFrame) -> tuple[int, float]:
    """The example's strategy, from the emulator's candles: a long of one BTC from the
    open after the 10-hour average crosses above the 30-hour one to the open after it
    crosses back (or the last open); its number of trades and its profit."""
    fast = candles["close"].rolling(10).mean().to_numpy()
    slow = candles["close"].rolling(30).mean().to_numpy()
    opens = candles["open"].to_numpy()
    n, entry, trades, profit = len(candles), None, 0, 0.0
    for i in range(30, n):
        if entry is None and fast[i - 1] < slow[i - 1] and fast[i] > slow[i] and i + 1 < n:
            entry = opens[i + 1]
        elif entry is not None and (
            (fast[i - 1] > slow[i - 1] and fast[i] < slow[i]) or i == n - 1
        ):
            trades, profit = trades + 1, profit + opens[min(i + 1, n - 1)] - entry
            entry = None
    return trades, profit


def test_backtest_prehook_runs_on_exactly_the_ensured_candles(tmp_path: Path) -> None:
    out = run("backtest_prehook.py", tmp_path)
    assert out[0] == "binance 1h: ensured [2023-12-02, 2024-02-01) UTC (61 days)"
    assert out[1].startswith("  binance:ohlcv:1h:BTC/USDT: had nothing, fetched 1464 rows")
    assert out[3] == (
        "744 candles of BTC/USDT 1h, 2024-01-01 00:00:00+00:00 .. 2024-01-31 23:00:00+00:00"
    )
    candles = truth("binance", "BTC/USDT", "1h", JAN)
    assert len(candles) == 744
    trades, profit = sma_cross_trades(candles)
    equity = 1_000_000 + profit
    assert out[4] == f"{trades} trades, equity {equity:.2f} (pandas: {equity:.2f})"
    assert out[5].startswith(f"return {profit / 1_000_000 * 100:.4f} %")


@pytest.mark.slow  # about 10 s: two interpreters start
def test_team_service_ensures_through_the_step_functions_proxy(tmp_path: Path) -> None:
    out = run("team_service.py", tmp_path)
    assert out[0].startswith("health: {'status': 'healthy'")
    assert out[1] == "ensure-data: ok=True, 168 candles fetched in 2 requests"
    assert (
        out[2] == "fetch_ohlcv: 168 candles ['timestamp', 'open', 'high', 'low', 'close', "
        "'volume', 'quote_volume', 'trades', 'taker_buy_volume', 'taker_buy_quote_volume']"
    )
    # the data arrived in the service's store, as the exchange has it
    week = Interval(JAN.start, JAN.start + 7 * 24 * HOUR)
    key = DatasetKey("binance_futures", "BTC/USDT:USDT", "ohlcv", "1h")
    with mdcollect.open_storage(f"parquet://{tmp_path}/team-store") as store:
        stored = store.read(key)
        assert store.coverage(key).contains(week)
    expected = truth("binance", "BTC/USDT:USDT", "1h", week)
    pd.testing.assert_frame_equal(stored, expected, check_freq=False)
    # each column's own type, as the JSON rows carry it (the trade count an int)
    rows = [
        [v.item() if hasattr(v, "item") else v for v in row]
        for row in expected.itertuples(index=False)
    ]
    assert out[3] == f"  first {[week.start, *rows[0]]}"
    assert out[4] == f"  last  {[week.end - HOUR, *rows[-1]]}"


def _outputs(cell: Any, kind: str) -> list[Any]:
    return [o for o in cell.outputs if o.output_type == kind]


def test_notebook_ensures_loads_plots_and_shows_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nb = nbformat.read(EXAMPLES / "notebook.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)  # committed clean
    monkeypatch.setenv("MDCOLLECT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MDCOLLECT_EMULATE", "1")  # the kernel inherits it
    nbclient.NotebookClient(
        nb, km=_kernel_manager(tmp_path), timeout=120, startup_timeout=120,
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()  # fmt: skip
    ensure, again, load, candles, picture, catalog = code
    assert not [o for c in code for o in _outputs(c, "error")]

    (report,) = _outputs(ensure, "execute_result")
    html = report.data["text/html"]
    assert html.count("<td>1,464</td>") == 2  # each symbol: 61 days of hours
    assert html.count("<td>[2023-12-02, 2024-02-01) (61 days)</td>") == 2
    printed = "".join(o.text for o in _outputs(again, "stream"))
    assert re.search(r"\n0 rows, 0 requests in [^:\n]+: ok\n$", printed), printed
    assert "binance:ohlcv:1h:BTC/USDT: had 61 days in [2023-12-02, 2024-02-01)" in printed
    loaded = "".join(o.text for o in _outputs(load, "stream"))
    assert loaded == "744 candles, 2024-01-01 00:00:00+00:00 .. 2024-01-31 23:00:00+00:00\n"
    for cell in (candles, picture):  # the candles and the coverage picture, as images
        images = [o for o in cell.outputs if "image/png" in o.get("data", {})]
        assert len(images) == 1, cell.outputs
    (table,) = _outputs(catalog, "execute_result")
    rows = re.findall(r"<tr>\s*<th>\d</th>(.*?)</tr>", table.data["text/html"], re.S)
    cells = [re.findall(r"<td>(.*?)</td>", row) for row in rows]
    assert [c[:3] + c[-2:] for c in cells] == [
        [symbol, "1h", "1464", "1.0", "0"] for symbol in ("BTC/USDT", "ETH/USDT")
    ]

    with mdcollect.open_storage(f"parquet://{tmp_path}/market-data") as store:
        for symbol in ("BTC/USDT", "ETH/USDT"):
            stored = store.read(DatasetKey("binance", symbol, "ohlcv", "1h"), JAN.start, JAN.end)
            pd.testing.assert_frame_equal(
                stored, truth("binance", symbol, "1h", JAN), check_freq=False
            )


def test_notebook_committed_file_is_valid_json_with_a_python_kernel() -> None:
    doc = json.loads((EXAMPLES / "notebook.ipynb").read_text())
    assert doc["metadata"]["kernelspec"]["language"] == "python"
    nbformat.validate(nbformat.reads(json.dumps(doc), as_version=4))
