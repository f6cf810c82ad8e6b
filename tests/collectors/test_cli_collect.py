"""``mdcollect collect CONFIG.toml --emulate``: runs, prints status, stops on SIGINT."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from .conftest import Lines

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
    out, err = Lines(proc.stdout), Lines(proc.stderr)
    try:
        out.wait(lambda lines: len(lines) >= 2, 60)  # it runs and reports
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    lines = out.until_closed(30)
    assert proc.returncode == 0, err.until_closed(30)
    assert len(lines) >= 3 and "binance:trades:BTC/USDT running" in lines[0]
    assert lines[-1].endswith("(stopped)")


def test_collect_bad_config(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[[collectors]]\nexchange = "binance"\nsymbols = ["BTC/USDT"]\nmode = "fast"\n')
    res = subprocess.run(
        [sys.executable, "-m", "mdcollect.cli", "collect", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert res.returncode == 2 and "fast" in res.stderr


def _status(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mdcollect.cli", "status", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_status_reads_back_what_collect_persists(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(CONFIG)
    status = tmp_path / "run" / "status.json"
    assert _status(str(status)).returncode == 2  # nothing running yet: says so
    proc = subprocess.Popen(
        [sys.executable, "-m", "mdcollect.cli", "-q", "collect", str(path), "--emulate",
         "--status-every", "0.5", "--status-file", str(status)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            # the emulator's default market trades 4 times a minute: wait for uptime, not rows
            if status.exists() and json.loads(status.read_text())["status"]["uptime"] > 1.5:
                break
            time.sleep(0.2)
        running = _status(str(status))
        raw = _status(str(status), "--json")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert running.returncode == 0, running.stdout + running.stderr
    assert ": healthy" in running.stdout and f"(pid {proc.pid})" in running.stdout
    assert "binance:trades:BTC/USDT: running" in running.stdout
    doc = json.loads(raw.stdout)
    col = doc["status"]["collectors"]["binance:trades:BTC/USDT"]
    assert doc["pid"] == proc.pid and col["state"] == "running" and col["errors"] == 0
    assert doc["status"]["uptime"] > 1.5 and doc["storage"] == "memory://"
    stopped = _status(str(status))
    assert stopped.returncode == 1 and ": stopped" in stopped.stdout
    status.write_text("{not json")
    bad = _status(str(status))
    assert bad.returncode == 2 and "not a status file" in bad.stderr


#: ``mdcollect`` whose ``--emulate`` emulator answers every Binance markets request
#: (``exchangeInfo``) with a 503: the collector never loads its markets.
FAILING_MARKETS = """
import sys
import mdcollect.testing
from mdcollect.cli import main
from mdcollect.testing import Fault

class FailingMarkets(mdcollect.testing.ExchangeEmulator):
    def __enter__(self):
        emu = super().__enter__()
        emu.faults.add(Fault("503", route="exchangeInfo"))
        return emu

mdcollect.testing.ExchangeEmulator = FailingMarkets
sys.exit(main(sys.argv[1:]))
"""


def test_status_is_unhealthy_while_markets_keep_failing(tmp_path: Path) -> None:
    """A collector that never stores a row (its markets never load) is unhealthy past
    ``first_data_grace``: ``mdcollect status`` exits 1 and says why, and every periodic
    status line printed after the grace says UNHEALTHY too (the same verdict)."""
    path = tmp_path / "c.toml"
    path.write_text("first_data_grace = 1\n" + CONFIG)
    status = tmp_path / "status.json"
    proc = subprocess.Popen(
        [sys.executable, "-c", FAILING_MARKETS, "collect", str(path), "--emulate",
         "--status-every", "0.5", "--status-file", str(status)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    out, err = Lines(proc.stdout), Lines(proc.stderr)
    try:
        # status lines come every 0.5 s of uptime: the fifth and later come after 2 s
        out.wait(lambda lines: len(lines) >= 8, 60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if status.exists() and json.loads(status.read_text())["status"]["uptime"] > 2:
                break
            time.sleep(0.05)
        running = _status(str(status))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    lines = out.until_closed(30)
    assert running.returncode == 1, running.stdout + running.stderr
    assert ": UNHEALTHY" in running.stdout, running.stdout
    assert "0 rows stored" in running.stdout and "no data stored" in running.stdout
    late = lines[4:8]
    assert all(line.startswith("[UNHEALTHY]") for line in late), lines
    assert all("no data stored" in line for line in late), lines
    assert proc.returncode == 0, err.until_closed(30)  # nothing dropped


def test_a_stopped_collect_claims_no_role_and_releases_its_lease(tmp_path: Path) -> None:
    from mdcollect.collectors import FileLease, default_lease, lease_name, load_config

    store = tmp_path / "md"
    path = tmp_path / "c.toml"
    path.write_text(CONFIG.replace("memory://", f"parquet://{store}"))
    status = tmp_path / "status.json"
    done = subprocess.run(
        [sys.executable, "-m", "mdcollect.cli", "collect", str(path), "--emulate",
         "--duration", "1", "--status-every", "0.2", "--status-file", str(status)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "leader: collecting (lease " in done.stdout  # it did hold the lease
    doc = json.loads(status.read_text())
    assert doc["stopped"] is True
    lease = doc["lease"]
    assert lease["role"] is None and lease["holder"] is None and lease["released"] is True
    shown = _status(str(status))
    assert shown.returncode == 1 and ": stopped" in shown.stdout
    assert "standby" not in shown.stdout and "held by" not in shown.stdout
    assert f"lease {lease['where']}: released" in shown.stdout
    # released indeed: no record left, and another process takes it at once
    url = f"parquet://{store}"
    lock = default_lease(url, lease_name(url, load_config(path).collectors))
    assert isinstance(lock, FileLease) and lock.where == lease["where"]
    assert lock.holder() is None and lock.acquire()
    lock.release()
