"""``mdcollect collect CONFIG --workers N``: a config's symbols over worker processes.

The split (``shard_symbols``/``shard_config``) is checked as a function; the daemon with
real processes against one emulator process (``--emulate-url``: one market, one clock),
so what each store holds is compared with the emulator's trades (``SyntheticMarket``)
and with what one process stores of the same config.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mdcollect import DatasetKey, InvalidRequest, open_storage
from mdcollect.cli import main
from mdcollect.collectors import load_config, shard_config, shard_symbols
from mdcollect.testing import EmulatorProcess, MarketSpec, SyntheticMarket

from .conftest import Lines

SEED = 5
SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
CONFIG = """
storage = "{storage}"
first_data_grace = 30
[[collectors]]
exchange = "binance"
symbols = {symbols}
kinds = ["trades"]
mode = "ws"
batch_seconds = 3
"""


def _section(symbols: list[str], **more: Any) -> dict[str, Any]:
    return {"exchange": "binance", "symbols": symbols, "kinds": ["trades"], **more}


def test_shards_balance_symbols_split_a_collector_and_are_stable() -> None:
    big = [f"X{i}/USDT" for i in range(20)]
    config = {"collectors": [_section(big), {**_section(["BTC/USDT"]), "exchange": "okx"}]}
    shards = shard_symbols(config, 3)
    sizes = [len(s) for s in shards]
    assert sorted(sizes) == [7, 7, 7]  # 21 symbols: balanced, not 20 + 1
    assert sorted(p for s in shards for p in s) == sorted(
        [f"binance:{s}" for s in big] + ["okx:BTC/USDT"]
    )
    # the 20-symbol collector is split over every worker
    assert all(any(p.startswith("binance:X") for p in s) for s in shards)
    # the same split on every start, whatever the order the config lists them in
    shuffled = {"collectors": [config["collectors"][1], _section(big[::-1])]}
    assert shard_symbols(shuffled, 3) == shards == shard_symbols(config, 3)


def test_a_symbol_keeps_all_its_kinds_on_one_worker_and_the_options_stay() -> None:
    config = {
        "max_restarts": 4,
        "collectors": [
            _section(["BTC/USDT", "ETH/USDT"], kinds=["trades", "ticker"]),
            _section(["ETH/USDT"], kinds=["ohlcv"]),
        ],
    }
    workers = [load_config(shard_config(config, 2, i)) for i in range(2)]
    assert [w.options for w in workers] == [{"max_restarts": 4}] * 2
    held = [{(c.kind, s) for c in w.collectors for s in c.symbols} for w in workers]
    assert held[0] == {("trades", "BTC/USDT"), ("ticker", "BTC/USDT")}
    assert held[1] == {("trades", "ETH/USDT"), ("ticker", "ETH/USDT"), ("ohlcv", "ETH/USDT")}
    # a split collector's names are distinct: they name their symbols
    assert [c.name for c in workers[0].collectors] == [
        "binance:trades:BTC/USDT", "binance:ticker:BTC/USDT"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("workers", "message"),
    [("0", "--workers must be a positive integer, got 0"),
     ("4", "workers is 4 but the config has 3 symbol(s)")],
)  # fmt: skip
def test_bad_worker_counts_are_refused_before_anything_starts(
    workers: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    config = tmp_path / "c.toml"
    config.write_text(CONFIG.format(storage=f"parquet://{store}", symbols=json.dumps(SYMBOLS)))
    status = tmp_path / "s.json"
    code = main(["collect", str(config), "--workers", workers, "--status-file", str(status),
                 "--duration", "20"])  # fmt: skip
    assert code == 2
    assert message in capsys.readouterr().err
    assert not status.exists() and not store.exists()  # nothing started, nothing written
    with pytest.raises(InvalidRequest, match="run at most 3"):
        shard_symbols(str(config), 4)


def test_a_store_private_to_each_process_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(CONFIG.format(storage="memory://", symbols=json.dumps(SYMBOLS)))
    status = tmp_path / "s.json"
    code = main(["collect", str(config), "--workers", "2", "--status-file", str(status),
                 "--duration", "20"])  # fmt: skip
    assert code == 2  # not run for 20 s
    assert "memory:// is private to each process" in capsys.readouterr().err
    assert not status.exists()


# --- real processes ---------------------------------------------------------------


@pytest.fixture(scope="module")
def market() -> Iterator[tuple[str, list[MarketSpec]]]:
    listed = int(time.time() * 1000) - 60_000  # trade ids start near 1, no older history
    specs = [MarketSpec(s, 100.0 * (i + 1), trades_per_minute=900, listed=listed,
                        exchange="binance") for i, s in enumerate(SYMBOLS)]  # fmt: skip
    with EmulatorProcess(seed=SEED, markets=specs, rate_limits=False) as proc:
        yield proc.url, specs


def _doc(path: Path) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return doc


def _status(path: Path) -> dict[str, Any]:
    st: dict[str, Any] = _doc(path).get("status") or {}
    return st


def _buffered(path: Path) -> int:
    cols = _status(path).get("collectors") or {}
    return min((c["rows_buffered"] for c in cols.values()), default=0)


def _received(path: Path) -> dict[str, int]:
    """Per collector: rows stored plus rows buffered (received, to be written)."""
    cols = _status(path).get("collectors") or {}
    return {n: c["rows_stored"] + c["rows_buffered"] for n, c in cols.items()}


def _wait(what: str, pred: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen in {seconds}s: {what}")
        time.sleep(0.05)


class _Collect:
    def __init__(self, config: Path, status: Path, url: str, extra: list[str]) -> None:
        self.status = status
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mdcollect.cli", "collect", str(config), "--emulate-url", url,
             "--status-every", "0.2", "--status-file", str(status), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.out, self.err = Lines(self.proc.stdout), Lines(self.proc.stderr)

    def stored_all(self) -> bool:
        cols = _status(self.status).get("collectors") or {}
        return sum(c["rows_stored"] > 0 for c in cols.values()) == len(cols) > 0

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)
            raise


def _stored(storage: str, symbol: str) -> tuple[pd.DataFrame, list[Any]]:
    key = DatasetKey("binance", symbol, "trades")
    with open_storage(storage) as st:
        cov = st.coverage(key)
        frames = [st.read(key, iv.start, iv.end) for iv in cov]
    return pd.concat(frames), cov


def _check_truth(storage: str, specs: list[MarketSpec], stopped_ms: int) -> dict[str, Any]:
    """Each symbol: one covered span up to the stop, holding the emulator's trades once."""
    truth = SyntheticMarket(SEED, specs, venues={"binance": []})
    out = {}
    for sym in SYMBOLS:
        rows, cov = _stored(storage, sym)
        assert len(cov) == 1, (sym, cov)  # no hole
        span = cov[0]
        # what was received before SIGTERM was flushed, not dropped (slack: delivery lag)
        assert span.end >= stopped_ms - 3000, (sym, span.end, stopped_ms)
        ids = rows["id"].astype("int64").to_numpy()
        assert len(np.unique(ids)) == len(ids) > 10  # nothing twice
        expected = truth.trades("binance", sym, span.start, span.end).to_frame()
        np.testing.assert_array_equal(ids, expected["id"].astype("int64").to_numpy())
        np.testing.assert_allclose(rows["price"].to_numpy(), expected["price"].to_numpy())
        out[sym] = (span, rows)
    return out


@pytest.mark.slow
def test_two_workers_store_what_one_process_stores_and_sigterm_loses_nothing(
    market: tuple[str, list[MarketSpec]], tmp_path: Path
) -> None:
    url, specs = market
    stores = {n: f"parquet://{tmp_path / f'store{n}'}" for n in (1, 2)}
    runs = {}
    for n, storage in stores.items():
        config = tmp_path / f"c{n}.toml"
        config.write_text(CONFIG.format(storage=storage, symbols=json.dumps(SYMBOLS)))
        extra = ["--no-lease", *(["--workers", "2"] if n == 2 else [])]
        runs[n] = _Collect(config, tmp_path / f"s{n}.json", url, extra)
    try:
        for run in runs.values():
            _wait("every collector stores rows", run.stored_all)
            # and holds rows received since its last write (batch_seconds): SIGTERM must
            # have them written, not dropped
            _wait("rows buffered", lambda r=run: _buffered(r.status) >= 15)  # type: ignore[misc]
        before = {n: _received(run.status) for n, run in runs.items()}
        st = _status(runs[2].status)
        assert [len(w["symbols"]) for w in st["workers"]] == [2, 1]
        assert all(w["running"] and w["pid"] != runs[2].proc.pid for w in st["workers"])
        # one status: the collectors of both workers
        assert set(st["collectors"]) == {
            "binance:trades:BTC/USDT,SOL/USDT", "binance:trades:ETH/USDT"
        }  # fmt: skip
        stopped_ms = int(time.time() * 1000)
        codes = {n: run.stop() for n, run in runs.items()}
    finally:
        for run in runs.values():
            run.stop()
    assert codes == {1: 0, 2: 0}, runs[2].err.until_closed(30)[-20:]
    final = _doc(runs[2].status)
    assert final["stopped"] and not any(w["running"] for w in final["status"]["workers"])
    for n, storage in stores.items():  # what was received before the stop is stored
        for name, received in before[n].items():
            symbols = name.split(":")[-1].split(",")
            with open_storage(storage) as st:  # every row, the first before coverage too
                n = sum(len(st.read(DatasetKey("binance", s, "trades"))) for s in symbols)
            assert n >= received, name
    one = _check_truth(stores[1], specs, stopped_ms)
    two = _check_truth(stores[2], specs, stopped_ms)
    for sym in SYMBOLS:  # over the span both cover, the same rows
        lo = max(one[sym][0].start, two[sym][0].start)
        hi = min(one[sym][0].end, two[sym][0].end)
        a, b = (x[1][(x[1].index >= pd.Timestamp(lo, unit="ms", tz="UTC"))
                     & (x[1].index < pd.Timestamp(hi, unit="ms", tz="UTC"))]
                for x in (one[sym], two[sym]))  # fmt: skip
        assert len(a) > 10
        pd.testing.assert_frame_equal(
            a.drop(columns=["received"], errors="ignore"),
            b.drop(columns=["received"], errors="ignore"),
        )


def _metrics(text_url: str) -> str:
    with urllib.request.urlopen(text_url, timeout=10) as answer:
        return str(answer.read().decode())


@pytest.mark.slow
def test_a_killed_worker_is_restarted_and_resumes_and_metrics_aggregate(
    market: tuple[str, list[MarketSpec]], tmp_path: Path
) -> None:
    url, specs = market
    storage = f"parquet://{tmp_path / 'store'}"
    config = tmp_path / "c.toml"
    config.write_text(CONFIG.format(storage=storage, symbols=json.dumps(SYMBOLS)))
    run = _Collect(config, tmp_path / "s.json", url, ["--workers", "2", "--metrics-port", "0"])
    try:
        line = run.out.wait(lambda ls: any("metrics on" in x for x in ls), 60)
        metrics_url = next(x for x in line if "metrics on" in x).split()[-1]
        _wait("every collector stores rows", run.stored_all)
        text = _metrics(metrics_url)
        for worker, name in ((0, "BTC/USDT,SOL/USDT"), (1, "ETH/USDT")):
            assert (
                f'mdcollect_collector_rows_stored_total{{collector="binance:trades:{name}",'
                f'exchange="binance",kind="trades",worker="{worker}"}}'
            ) in text
            assert f'mdcollect_worker_up{{worker="{worker}"}} 1.0' in text
        assert 'process_cpu_seconds_total{worker="supervisor"}' in text
        # the parent holds the lease (the lock file beside the store) for the daemon
        lease = _doc(run.status)["lease"]
        assert lease["role"] == "leader" and f"pid {run.proc.pid}" in lease["holder"], lease

        victim = _status(run.status)["workers"][1]
        subprocess.run(["kill", "-9", str(victim["pid"])], check=True, timeout=10)

        def back() -> bool:
            w = _status(run.status)["workers"][1]
            col = _status(run.status)["collectors"].get("binance:trades:ETH/USDT") or {}
            return (
                w["restarts"] == 1 and w["running"] and w["pid"] != victim["pid"]
                and col.get("gaps_found", 0) >= 1 and col["gaps_filled"] == col["gaps_found"]
            )  # fmt: skip

        _wait("the worker restarted and its gap refilled", back)
        w = _status(run.status)["workers"][1]
        assert w["last_exit"] == -9 and w["rows_stored"] >= victim["rows_stored"]
        assert 'mdcollect_worker_restarts_total{worker="1"} 1.0' in _metrics(metrics_url)
        shown = subprocess.run(
            [sys.executable, "-m", "mdcollect.cli", "status", str(run.status)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert "worker 1: running" in shown.stdout and "1 restarts, last exit -9" in shown.stdout
        assert _doc(run.status)["lease"] == lease  # the kill did not touch it
        stopped_ms = int(time.time() * 1000)
        assert run.stop() == 0, run.err.until_closed(30)[-20:]
    finally:
        run.stop()
    _check_truth(storage, specs, stopped_ms)  # the hole the kill left is refilled
