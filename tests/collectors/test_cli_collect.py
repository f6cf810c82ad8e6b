"""``mdcollect collect CONFIG.toml --emulate``: runs, prints status, stops on SIGINT."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

CONFIG = """
storage = "memory://"
[[collectors]]
exchange = "binance"
symbols = ["BTC/USDT"]
kinds = ["trades"]
candles = ["1s"]
mode = "ws"
"""


def test_collect_runs_until_sigint(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(CONFIG)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mdcollect.cli", "collect", str(path), "--emulate",
         "--status-every", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(4)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    lines = out.strip().splitlines()
    assert len(lines) >= 2 and "binance:trades:BTC/USDT running" in lines[0]
    assert lines[-1].endswith("(stopped)")


def test_collect_bad_config(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[[collectors]]\nexchange = "binance"\nsymbols = ["BTC/USDT"]\nmode = "fast"\n')
    res = subprocess.run(
        [sys.executable, "-m", "mdcollect.cli", "collect", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert res.returncode == 2 and "fast" in res.stderr
