"""``mdcollect serve``: the service under uvicorn, from the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mdcollect.cli import _parser, main
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


COLLECT = """
[[collectors]]
exchange = "binance"
symbols = ["BTC/USDT"]
kinds = ["ticker"]
mode = "ws"
batch_seconds = 0.2
"""


@pytest.mark.slow  # a process start and a few seconds of collecting
def test_mdcollect_serve_collect_runs_the_collectors_inside(tmp_path: Path) -> None:
    import base64
    import os
    import signal
    import time

    import httpx

    config = tmp_path / "collect.toml"
    config.write_text(COLLECT)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mdcollect.cli", "-q", "serve", "--storage", "memory://",
         "--port", str(port), "--emulate", "--collect", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "MDCOLLECT_API_TOKEN": "tok"},
    )  # fmt: skip
    url, auth = f"http://127.0.0.1:{port}", {"Authorization": "Bearer tok"}
    name = "binance:ticker:BTC/USDT"
    try:
        _wait_port(port, timeout=60)
        deadline = time.monotonic() + 60
        while True:  # a condition polled with a deadline
            st = httpx.get(f"{url}/api/v1/collectors", headers=auth, timeout=10).json()
            if st["collectors"][name]["rows_stored"] > 0:
                break
            assert time.monotonic() < deadline, st
            time.sleep(0.1)
        r = httpx.post(f"{url}/api/v1/collectors/{name}/restart", headers=auth, timeout=30)
        assert r.status_code == 200 and r.json()["collector"]["restarts"] == 1
        login = {"Authorization": "Basic " + base64.b64encode(b"ops:tok").decode()}
        page = httpx.get(f"{url}/", headers=login, timeout=10).text
        assert f'data-collector="{name}"' in page and "restarted by hand" in page
        stored = httpx.get(f"{url}/api/v1/datasets", headers=auth, timeout=10).json()
        assert [d["key"] for d in stored["datasets"]] == ["binance:ticker::BTC/USDT"]
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err  # the collectors stopped with the service, cleanly
    assert "Traceback" not in err and "Unclosed" not in err, err


def test_serve_collect_refuses_a_bad_config_before_starting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "collect.toml"
    config.write_text(
        '[[collectors]]\nexchange = "binance"\nsymbols = ["BTC/USDT"]\nmode = "fast"\n'
    )
    store = tmp_path / "pq"
    code = main(
        ["serve", "--storage", f"parquet://{store}", "--port", "9", "--collect", str(config)]
    )
    assert code == 2 and "'fast'" in capsys.readouterr().err
    assert not store.exists()  # refused before the store is opened
