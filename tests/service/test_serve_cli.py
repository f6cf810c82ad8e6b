"""``mdcollect serve``: the service under uvicorn, from the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mdcollect.cli import _parser
from mdcollect.remote import DataCollectionClient
from tests.conftest import _wait_port, free_port


def test_serve_options_after_or_before_the_subcommand() -> None:
    args = _parser().parse_args(["serve", "--storage", "memory://", "--emulate", "--port", "9"])
    assert (args.storage, args.emulate, args.host, args.port) == ("memory://", True, "127.0.0.1", 9)
    args = _parser().parse_args(["--storage", "parquet:///x", "--emulate", "serve"])
    assert (args.storage, args.emulate, args.port) == ("parquet:///x", True, 8002)
    args = _parser().parse_args(["serve"])
    assert (args.storage, args.emulate) == (None, False)


def test_mdcollect_serve_emulate_end_to_end(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mdcollect.cli", "-q", "serve", "--storage", f"parquet://{tmp_path / 'pq'}",
         "--host", "127.0.0.1", "--port", str(port), "--emulate"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        _wait_port(port, timeout=30)
        with DataCollectionClient(f"http://127.0.0.1:{port}", max_retries=0) as client:
            assert client.health()["status"] == "healthy"
            answer = client.ensure_data(["BTC/USDT:USDT"], "1h", "2024-02-01", "2024-02-01", padding_days=0)  # fmt: skip
            assert answer["status"] == "completed" and answer["report"]["ok"]
            assert len(client.fetch_ohlcv("BTC/USDT:USDT", "1h", start="2024-02-01", end="2024-02-01")) == 24  # fmt: skip
            assert client.status()["storage"] == f"parquet://{tmp_path / 'pq'}"
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=15)
    assert proc.returncode in (0, -15), err.decode()


def test_serve_max_jobs(tmp_path: Path) -> None:
    assert _parser().parse_args(["serve", "--max-jobs", "2"]).max_jobs == 2
    assert _parser().parse_args(["serve"]).max_jobs is None  # the service's default (4)
    store = tmp_path / "pq"
    res = subprocess.run(
        [sys.executable, "-m", "mdcollect.cli", "serve", "--storage", f"parquet://{store}",
         "--max-jobs", "0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert res.returncode == 2 and "--max-jobs must be >= 1, got 0" in res.stderr, res.stderr
    assert not store.exists()  # refused before the store is opened
