"""One leader, with real processes: two ``mdcollect collect`` on the same config and store.

Both fetch from one emulator process (``--emulate-url``: the same market, the same
clock), so their rows are the same exchange's. The leader is SIGKILLed; the standby
takes over within the bound and refills the hole the leader left through the gap
machinery (``resume_window``): the trades stored are exactly the emulator's over one
covered span, each once.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mdcollect import DatasetKey, open_storage
from mdcollect.testing import EmulatorProcess, MarketSpec, SyntheticMarket

from ..conftest import RedisServer
from .conftest import Lines

SEED = 11
SYMBOL = "BTC/USDT"
TRADES = DatasetKey("binance", SYMBOL, "trades")
CANDLES = DatasetKey("binance", SYMBOL, "ohlcv", "1s")
OHLCV = ["open", "high", "low", "close", "volume"]

CONFIG = """
storage = "{storage}"
first_data_grace = 30
[[collectors]]
exchange = "binance"
symbols = ["{symbol}"]
kinds = ["trades"]
candles = ["1s"]
mode = "ws"
"""


@pytest.fixture(scope="module")
def market() -> Iterator[tuple[str, list[MarketSpec]]]:
    # listed a minute ago: trade ids start near 1 and no older history is needed
    listed = int(time.time() * 1000) - 60_000
    specs = [MarketSpec(SYMBOL, 30_000.0, trades_per_minute=1200, listed=listed,
                        exchange="binance")]  # fmt: skip
    with EmulatorProcess(seed=SEED, markets=specs, rate_limits=False) as proc:
        yield proc.url, specs


def _doc(path: Path) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):  # not written yet, or being replaced
        return {}
    return doc


def _wait(what: str, pred: Callable[[], bool], seconds: float) -> float:
    """Wait for ``pred`` (polling); the monotonic time it held."""
    deadline = time.monotonic() + seconds
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen in {seconds}s: {what}")
        time.sleep(0.02)
    return time.monotonic()


def _rows(status: Path) -> int:
    cols = (_doc(status).get("status") or {}).get("collectors") or {}
    return sum(c["rows_stored"] for c in cols.values())


def _gaps_done(status: Path) -> bool:
    cols = (_doc(status).get("status") or {}).get("collectors") or {}
    return bool(cols) and all(
        c["gaps_found"] >= 1 and c["gaps_filled"] == c["gaps_found"] for c in cols.values()
    )


class _Collect:
    """``mdcollect collect CONFIG --emulate-url URL`` in a child process."""

    def __init__(self, config: Path, status: Path, url: str, extra: list[str]) -> None:
        self.status = status
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mdcollect.cli", "collect", str(config), "--emulate-url", url,
             "--status-every", "0.2", "--status-file", str(status), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.out, self.err = Lines(self.proc.stdout), Lines(self.proc.stderr)

    def saw(self, text: str, seconds: float = 60) -> float:
        self.out.wait(lambda lines: any(text in line for line in lines), seconds)
        return time.monotonic()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)


def _status_cli(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mdcollect.cli", "status", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["file", "redis"])
def test_standby_takes_over_a_killed_leader_without_hole_or_duplicate(
    backend: str,
    market: tuple[str, list[MarketSpec]],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    url, specs = market
    if backend == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        storage = f"{server.url}?prefix=leader-{uuid.uuid4().hex[:8]}:"
        ttl = 3.0
        extra = ["--lease-ttl", str(ttl)]  # the lease in the store's Redis (the default)
        bound = ttl + ttl / 5 + 2.0  # expiry, one standby poll, and slack for a busy machine
    else:
        storage = f"parquet://{tmp_path / 'store'}"
        extra = []  # the lock file beside the store (the default)
        bound = 2.0  # the kernel frees the lock at once; one poll (0.25 s) and slack
    config = tmp_path / "collect.toml"
    config.write_text(CONFIG.format(storage=storage, symbol=SYMBOL))
    a = _Collect(config, tmp_path / "a.json", url, extra)
    b = None
    try:
        a.saw("leader: collecting")
        b = _Collect(config, tmp_path / "b.json", url, extra)
        b.saw("standby: leader is ")
        assert any(f"pid {a.proc.pid}" in line for line in b.out.lines), b.out.lines
        _wait("the leader stores rows", lambda: _rows(a.status) > 0, 60)
        # the standby collects nothing, and says so
        _wait("the standby's status", lambda: bool(_doc(b.status)), 30)
        doc = _doc(b.status)
        assert doc["lease"]["role"] == "standby" and f"pid {a.proc.pid}" in doc["lease"]["holder"]
        assert doc["status"]["collectors"] == {}
        shown = _status_cli(b.status)
        assert shown.returncode == 0 and "standby (leader:" in shown.stdout, shown.stdout
        assert _doc(a.status)["lease"]["role"] == "leader"
        leader = _status_cli(a.status)
        assert "leader: lease " in leader.stdout and f"pid {a.proc.pid}" in leader.stdout

        a.proc.kill()  # SIGKILL: no flush, no release
        killed = time.monotonic()
        killed_ms = int(time.time() * 1000)
        a.proc.wait(30)
        leads = b.saw("leader: collecting", 30)
        first_row = _wait("the new leader stores rows", lambda: _rows(b.status) > 0, 60)
        print(
            f"\n{backend} lease: takeover {leads - killed:.2f}s after SIGKILL,"
            f" first stored row {first_row - killed:.2f}s"
        )
        assert leads - killed <= bound, (leads - killed, bound)
        # the hole the dead leader left is refilled through the gap machinery
        _wait("the gap refilled", lambda: _gaps_done(b.status), 60)
        b.stop()
        assert b.proc.returncode == 0, b.err.until_closed(30)[-20:]
    finally:
        a.stop()
        if b is not None:
            b.stop()

    with open_storage(storage) as st:
        cov = st.coverage(TRADES)
        assert len(cov) == 1, cov  # no hole across the takeover
        span = cov[0]
        assert span.start < killed_ms < span.end
        stored = st.read(TRADES, span.start, span.end)
        # the candles built from the trades: closed ones only, no hole either
        ccov = st.coverage(CANDLES)
        assert len(ccov) == 1, ccov
        assert ccov[0].start < killed_ms < ccov[0].end
        candles = st.read(CANDLES, ccov[0].start, ccov[0].end)
    truth = SyntheticMarket(SEED, specs, venues={"binance": []})
    true_candles = truth.candles("binance", SYMBOL, "1s", ccov[0].start, ccov[0].end).to_frame()
    assert len(candles) == len(true_candles) >= 2
    np.testing.assert_allclose(candles[OHLCV].to_numpy(), true_candles[OHLCV].to_numpy())
    expected = truth.trades("binance", SYMBOL, span.start, span.end).to_frame()
    ids = stored["id"].astype("int64").to_numpy()
    assert len(np.unique(ids)) == len(ids)  # no row written twice
    assert len(ids) > 20  # rows of both leaders (20 trades a second)
    np.testing.assert_array_equal(ids, expected["id"].astype("int64").to_numpy())
    np.testing.assert_array_equal(stored["price"].to_numpy(), expected["price"].to_numpy())


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["--lease", "zk://h:2181"],
            "'zk://h:2181' is not a lease; use redis://HOST:PORT/DB or file:PATH",
        ),
        (["--lease-ttl", "0"], "lease ttl must be a number of seconds from 0.1 to 3600, got 0.0"),
        (["--lease", "redis://u:SECRET@h/0", "--lease-ttl", "-1"], "got -1.0"),
    ],
)
def test_collect_refuses_a_bad_lease_before_starting(
    args: list[str], said: str, tmp_path: Path
) -> None:
    config = tmp_path / "collect.toml"
    config.write_text(CONFIG.format(storage=f"parquet://{tmp_path / 'store'}", symbol=SYMBOL))
    res = subprocess.run(
        [sys.executable, "-m", "mdcollect.cli", "collect", str(config), *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert res.returncode == 2 and said in res.stderr, res.stderr
    assert "SECRET" not in res.stderr
    assert not (tmp_path / "store").exists()  # nothing started, nothing written


@pytest.mark.slow
def test_leader_that_cannot_renew_stops_and_leads_again_later(
    market: tuple[str, list[MarketSpec]], tmp_path: Path
) -> None:
    """``--lease redis://...`` beside a Parquet store: Redis goes away, so the leader
    cannot renew; it stops collecting (flushed, exit-free) and stands by; Redis comes
    back and it leads and collects again (the same collectors, started anew)."""
    url, _ = market
    server = RedisServer(tmp_path / "redis")
    (tmp_path / "redis").mkdir()
    server.start()
    storage = f"parquet://{tmp_path / 'store'}"
    config = tmp_path / "collect.toml"
    config.write_text(CONFIG.format(storage=storage, symbol=SYMBOL))
    a = _Collect(config, tmp_path / "a.json", url, ["--lease", server.url, "--lease-ttl", "3"])
    try:
        a.saw("leader: collecting")
        _wait("rows stored", lambda: _rows(a.status) > 0, 60)
        server.stop()
        stopped = time.monotonic()
        lost = a.saw("standby: lost the lease")
        # stopped and flushed before the lease it last renewed (at most a third of the
        # ttl before Redis went away) could expire: never two writers
        assert lost - stopped < 3, lost - stopped
        _wait("standby in the status", lambda: _doc(a.status)["lease"]["role"] == "standby", 30)
        assert _doc(a.status)["status"]["collectors"] == {}
        with open_storage(storage) as st:
            before = len(st.read(TRADES))
        assert before > 0  # what it had buffered was flushed when it stopped
        server.start()
        _wait(
            "leading again",
            lambda: sum("leader: collecting" in line for line in a.out.lines) == 2,
            30,
        )
        # the hole of its time as a standby is refilled like a reconnect's
        _wait("the gap refilled", lambda: _gaps_done(a.status), 60)
        a.stop()
        assert a.proc.returncode == 0, a.err.until_closed(30)[-20:]
    finally:
        a.stop()
        server.stop()
    with open_storage(storage) as st:
        cov = st.coverage(TRADES)
        assert len(cov) == 1, cov
        stored = st.read(TRADES, cov[0].start, cov[0].end)
    ids = stored["id"].astype("int64").to_numpy()
    assert len(ids) > before and len(np.unique(ids)) == len(ids)
    assert ids[-1] - ids[0] + 1 == len(ids)  # consecutive ids: not one trade missing


@pytest.mark.slow
def test_a_paused_leader_steps_down_when_it_resumes(
    market: tuple[str, list[MarketSpec]], tmp_path: Path, redis_server: RedisServer
) -> None:
    """The leader is paused (SIGSTOP) past its ttl: the standby takes over; when the old
    leader resumes it finds its lease gone, stops and stands by, and the store holds
    every trade once."""
    url, specs = market
    storage = f"{redis_server.url}?prefix=pause-{uuid.uuid4().hex[:8]}:"
    config = tmp_path / "collect.toml"
    config.write_text(CONFIG.format(storage=storage, symbol=SYMBOL))
    extra = ["--lease-ttl", "2"]
    a = _Collect(config, tmp_path / "a.json", url, extra)
    b = None
    try:
        a.saw("leader: collecting")
        b = _Collect(config, tmp_path / "b.json", url, extra)
        b.saw("standby: leader is ")
        _wait("the leader stores rows", lambda: _rows(a.status) > 0, 60)
        a.proc.send_signal(signal.SIGSTOP)
        paused = time.monotonic()
        try:
            b.saw("leader: collecting", 30)
        finally:
            a.proc.send_signal(signal.SIGCONT)
        resumed = time.monotonic()
        # past its lease: renewed at most ttl/3 before the pause, it expired within ttl
        assert resumed - paused > 2 * 2 / 3
        stepped_down = a.saw("standby: lost the lease", 30)
        assert stepped_down - resumed < 2, stepped_down - resumed
        assert any(
            "standby: leader is" in x and f"pid {b.proc.pid}" in x
            for x in a.out.wait(lambda lines: any(f"pid {b.proc.pid}" in x for x in lines), 30)
        )
        _wait("the new leader stores rows", lambda: _rows(b.status) > 0, 60)
        _wait("the gap refilled", lambda: _gaps_done(b.status), 60)
        a.stop()  # the standby first: it would take over from a leader stopping gracefully
        b.stop()
        assert a.proc.returncode == 0 and b.proc.returncode == 0
    finally:
        a.proc.send_signal(signal.SIGCONT)
        a.stop()
        if b is not None:
            b.stop()
    with open_storage(storage) as st:
        cov = st.coverage(TRADES)
        assert len(cov) == 1, cov
        stored = st.read(TRADES, cov[0].start, cov[0].end)
    truth = SyntheticMarket(SEED, specs, venues={"binance": []})
    expected = truth.trades("binance", SYMBOL, cov[0].start, cov[0].end).to_frame()
    ids = stored["id"].astype("int64").to_numpy()
    assert len(np.unique(ids)) == len(ids)
    exp = expected["id"].astype("int64").to_numpy()
    np.testing.assert_array_equal(ids, exp)


@pytest.mark.slow
def test_a_leader_stopping_gracefully_hands_over_at_the_next_poll(
    market: tuple[str, list[MarketSpec]], tmp_path: Path, redis_server: RedisServer
) -> None:
    """SIGINT: the leader flushes and releases its Redis lease, so the standby leads at
    its next poll (ttl/5 = 2 s with the default ttl of 10 s), not after the ttl."""
    url, _ = market
    storage = f"{redis_server.url}?prefix=handover-{uuid.uuid4().hex[:8]}:"
    config = tmp_path / "collect.toml"
    config.write_text(CONFIG.format(storage=storage, symbol=SYMBOL))
    a = _Collect(config, tmp_path / "a.json", url, [])
    b = None
    try:
        a.saw("leader: collecting")
        b = _Collect(config, tmp_path / "b.json", url, [])
        b.saw("standby: leader is ")
        a.stop()
        stopped = time.monotonic()
        assert a.proc.returncode == 0
        took = b.saw("leader: collecting", 30) - stopped
        assert took < 2 + 1.5, took  # one poll and slack, well under the ttl
    finally:
        a.stop()
        if b is not None:
            b.stop()
