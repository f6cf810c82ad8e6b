"""The figures of ``DataCollector.status()``: rows per second, lag behind the exchange's
timestamps, reconnects, connection uptime, and the process's memory and CPU; all on an
injected clock."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from mdcollect import DataCollector, ExchangeError, open_storage
from mdcollect.cli import main
from mdcollect.collectors import Backoff, ManualClock, TradesCollector
from mdcollect.collectors._base import Message
from mdcollect.metrics import metrics_text
from mdcollect.testing import ExchangeEmulator

from .conftest import client, wait_until

QUICK = Backoff(0.001, 0.001, jitter=0)
LABELS = 'collector="s",exchange="binance",kind="trades"'
SYM = "BTC/USDT"


class Scripted(TradesCollector):
    """A trades collector whose feed is what the test hands it: trade timestamps (ms)
    to put on the queue, or an exception to end the run with. Stands in for the
    exchange only; the supervisor and the write path are the real ones."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.script: asyncio.Queue[list[int] | Exception] = asyncio.Queue()
        self.runs = 0
        self._next_id = 0

    async def _feed(self, client: Any, queue: asyncio.Queue[Message]) -> None:
        self.runs += 1
        while True:
            item = await self.script.get()
            if isinstance(item, Exception):
                raise item
            rows = []
            for ts in item:
                self._next_id += 1
                rows.append((ts, str(self._next_id), 100.0, 1.0, "buy", self.clock.time_ms()))
            await self._put(queue, Message(SYM, rows, max(item)))


#: a status the first test saw, for the ``mdcollect status`` test
SEEN: dict[str, Any] = {}


def _st(dc: DataCollector) -> dict[str, Any]:
    st: dict[str, Any] = dc.status()["collectors"]["s"]
    return st


async def test_rate_lag_reconnects_and_uptime_follow_the_clock(emu: ExchangeEmulator) -> None:
    clock = ManualClock()
    cl = client(emu)
    col = Scripted(cl, [SYM], mode="ws", batch_rows=1, batch_seconds=0.05, name="s")
    dc = DataCollector([col], open_storage("memory://"), clock=clock, restart_backoff=QUICK)
    try:
        async with dc:
            await wait_until(lambda: col.runs == 1, 20)
            st = _st(dc)
            assert st["rows_per_second"] == 0.0 and st["lag_seconds"] is None
            assert st["reconnects"] == 0
            clock.advance(10)
            now = clock.time_ms()
            # 30 trades, the newest 2.5 s old on the exchange's clock
            await col.script.put([now - 2_500 - i for i in range(30)])
            await wait_until(lambda: _st(dc)["rows_stored"] == 30, 20)
            st = _st(dc)
            # measured over the 10 s the collector has lived (younger than the window)
            assert st["rows_per_second"] == 3.0
            assert st["lag_seconds"] == 2.5
            SEEN["status"] = dc.status()
            # the Prometheus gauge is the same figure (not the receipt time's age)
            assert f"mdcollect_collector_lag_seconds{{{LABELS}}} 2.5" in metrics_text(dc)
            assert st["last_exchange_time"] == now - 2_500
            assert st["connection_uptime"] == 10.0
            clock.advance(50)
            st = _st(dc)
            assert st["rows_per_second"] == 0.5  # 30 rows over the 60 s window
            assert st["lag_seconds"] == 52.5
            # a dropped connection: a reconnect, and the time connected goes on counting
            await col.script.put(ExchangeError("connection reset", transient=True))
            await wait_until(lambda: col.runs == 2 and _st(dc)["state"] == "running", 20)
            clock.advance(5)
            st = _st(dc)
            assert st["reconnects"] == 1 and st["restarts"] == 1
            assert f"mdcollect_collector_reconnects_total{{{LABELS}}} 1.0" in metrics_text(dc)
            assert st["connection_uptime"] == 65.0
            assert st["uptime"] == 5.0  # the current run only
            clock.advance(10)  # the 30 rows are more than 60 s old now
            assert _st(dc)["rows_per_second"] == 0.0
            # a permanent error restarts too, but is no reconnect
            await col.script.put(ExchangeError("bad symbol", transient=False))
            await wait_until(lambda: col.runs == 3 and _st(dc)["state"] == "running", 20)
            assert _st(dc)["reconnects"] == 1 and _st(dc)["restarts"] == 2
    finally:
        await cl.close()


async def test_a_silent_feed_counts_as_a_reconnect(emu: ExchangeEmulator) -> None:
    clock = ManualClock()
    cl = client(emu)
    col = Scripted(cl, [SYM], mode="poll", batch_rows=1, name="s")
    dc = DataCollector(
        [col], open_storage("memory://"), clock=clock, restart_backoff=QUICK,
        max_silence=30, check_interval=0.01,
    )  # fmt: skip
    try:
        async with dc:
            await wait_until(lambda: col.runs == 1, 20)
            clock.advance(31)  # nothing from the feed for longer than max_silence
            await wait_until(lambda: col.runs == 2, 20)
            st = _st(dc)
    finally:
        await cl.close()
    assert st["silent_restarts"] == 1 and st["reconnects"] == 1


def test_the_process_figures_are_this_process() -> None:
    dc = DataCollector([], open_storage("memory://"), clock=ManualClock())
    proc = dc.status()["process"]
    with open(f"/proc/{os.getpid()}/status") as f:
        rss_kib = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    # the same figure the kernel reports, give or take what was allocated in between
    assert abs(proc["rss_bytes"] - rss_kib * 1024) < 16 * 1024 * 1024
    times = os.times()
    assert 0 < proc["cpu_seconds"] <= times.user + times.system


def test_mdcollect_status_shows_the_figures(
    emu: ExchangeEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if "status" not in SEEN:  # run alone: take the status the first test takes
        asyncio.run(test_rate_lag_reconnects_and_uptime_follow_the_clock(emu))
    st = SEEN["status"]
    path = tmp_path / "status.json"
    doc = {"written": time.time(), "interval": 10, "config": "c.toml", "pid": 1, "status": st}
    path.write_text(json.dumps(doc))
    code = main(["status", str(path)])
    out = capsys.readouterr().out
    assert code == 0, out  # healthy: the figures do not change the verdict
    assert "    3.0 rows/s, lag 2.5s, 0 reconnects, connected 10s" in out
    rss = st["process"]["rss_bytes"] / 2**20
    assert f"  process: {rss:.1f} MiB resident, {st['process']['cpu_seconds']:.1f} s CPU" in out
