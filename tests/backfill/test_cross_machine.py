"""Two machines, one S3 store: with a lease in the URL (``?lease=redis://...``) they lose
nothing, write nothing twice and fetch nothing twice, also when one is killed (SIGKILL).

Each "machine" is a real process with a temp dir of its own, so the local file locks
that serialise writers on one machine do not exist between them: only the lease does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mdcollect import DatasetKey, Interval, IntervalSet, ensure_data, open_storage
from mdcollect.exchanges import ExchangeClient
from mdcollect.testing import ExchangeEmulator, Fault

from ..conftest import RedisServer, make_bucket

DAY = 86_400_000
MAR1 = 1_677_628_800_000  # 2023-03-01
END = "2023-03-08"  # 8 days of minute candles: 8 pages of 1000 per symbol (and a part)

_MACHINE = textwrap.dedent(
    """
    import json, sys
    from mdcollect import ensure_data, open_storage
    from mdcollect.exchanges import ExchangeClient
    url, storage_url, symbols = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
    client = ExchangeClient("binance", base_url=url, enableRateLimit=False)
    r = ensure_data(symbols, "1m", "2023-03-01", "END", client, 0, open_storage(storage_url),
                    progress=False, concurrency=2)
    print(json.dumps({"ok": r.ok, "requests": {s.symbol: s.requests for s in r.symbols}}))
    """
).replace("END", END)


def machine(tmp: Path, name: str, emu_url: str, url: str, symbols: list[str]) -> Any:
    """A process with its own temp dir: another machine, as far as locks go."""
    own = tmp / name
    own.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(own)}
    return subprocess.Popen(
        [sys.executable, "-c", _MACHINE, emu_url, url, ",".join(symbols)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def klines(emu: ExchangeEmulator, symbol: str, since: int = 0) -> int:
    wanted = symbol.replace("/", "")
    return sum(
        1 for q in emu.requests[since:]
        if q.route == "klines" and q.params.get("symbol") == wanted and q.status == 200
    )  # fmt: skip


@pytest.fixture
def shared_url(s3_server: dict[str, Any], redis_server: RedisServer) -> str:
    import redis

    redis.Redis(host="127.0.0.1", port=redis_server.port).flushall()
    bucket = make_bucket(s3_server)
    return (
        f"arctic+s3://{s3_server['host']}:{bucket}?port={s3_server['port']}"
        f"&access={s3_server['access']}&secret={s3_server['secret']}"
        f"&lease=redis://127.0.0.1:{redis_server.port}/0&lease_ttl=1.5"
    )


def truth(emu: ExchangeEmulator, sym: str) -> pd.DataFrame:
    hi = MAR1 + 8 * DAY
    # Binance klines carry the quote volume, trade count and taker-buy volumes
    return emu.market.candles("binance", sym, "1m", MAR1, hi).to_frame(
        ("quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume")
    )


def clean_pages(emu: ExchangeEmulator, symbol: str) -> int:
    since = len(emu.requests)
    ensure_data([symbol], "1m", "2023-03-01", END,
                ExchangeClient("binance", base_url=emu.url, enableRateLimit=False), 0,
                "memory://", progress=False)  # fmt: skip
    return klines(emu, symbol, since)


@pytest.mark.slow
def test_two_machines_with_overlapping_datasets_fetch_and_write_each_once(
    shared_url: str, tmp_path: Path
) -> None:
    with ExchangeEmulator(rate_limits=False) as emu:
        clean = clean_pages(emu, "ETH/USDT")
        emu.faults.add(Fault("slow", route="klines", delay=0.05))  # both run for a while
        since = len(emu.requests)
        a = machine(tmp_path, "a", emu.url, shared_url, ["ETH/USDT", "BTC/USDT"])
        b = machine(tmp_path, "b", emu.url, shared_url, ["ETH/USDT", "XRP/USDT"])
        answers = []
        for p in (a, b):
            out, err = p.communicate(timeout=240)
            assert p.returncode == 0, err
            answers.append(json.loads(out.strip().splitlines()[-1]))
        assert all(r["ok"] for r in answers), answers
        # ETH was fetched once in all: one machine filled it while the other waited for
        # its lease, then found it covered
        assert klines(emu, "ETH/USDT", since) == clean
        assert sorted(r["requests"]["ETH/USDT"] for r in answers)[0] == 0
        with open_storage(shared_url) as store:
            for sym in ("ETH/USDT", "BTC/USDT", "XRP/USDT"):
                key = DatasetKey("binance", sym, "ohlcv", "1m")
                pd.testing.assert_frame_equal(store.read(key), truth(emu, sym), check_freq=False)
                assert store.coverage(key) == IntervalSet([Interval(MAR1, MAR1 + 8 * DAY)])


@pytest.mark.slow
def test_a_machine_killed_mid_job_the_other_resumes_from_coverage(
    shared_url: str, tmp_path: Path
) -> None:
    with ExchangeEmulator(rate_limits=False) as emu:
        clean = clean_pages(emu, "BTC/USDT")
        emu.faults.add(Fault("slow", route="klines", delay=0.05))
        since = len(emu.requests)
        a = machine(tmp_path, "a", emu.url, shared_url, ["BTC/USDT"])
        deadline = time.monotonic() + 120
        key = DatasetKey("binance", "BTC/USDT", "ohlcv", "1m")
        with open_storage(shared_url) as store:
            while not store.coverage(key):  # until a has stored a part of it
                assert a.poll() is None, a.communicate()
                assert time.monotonic() < deadline, "machine a made no progress"
                time.sleep(0.02)
        os.kill(a.pid, signal.SIGKILL)  # half way: its leases are left to expire
        a.wait(timeout=30)
        by_a = klines(emu, "BTC/USDT", since)
        with open_storage(shared_url) as store:
            stored = store.coverage(key)
        assert 0 < stored.total < 8 * DAY  # a stored a part of it before it died
        since_b = len(emu.requests)
        b = machine(tmp_path, "b", emu.url, shared_url, ["BTC/USDT"])
        out, err = b.communicate(timeout=240)
        assert b.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1])["ok"]
        by_b = klines(emu, "BTC/USDT", since_b)
        assert by_b < clean  # resumed: what a stored was not fetched again
        assert by_a + by_b <= clean + 4  # at most the pages a had in flight, again
        with open_storage(shared_url) as store:
            key = DatasetKey("binance", "BTC/USDT", "ohlcv", "1m")
            pd.testing.assert_frame_equal(store.read(key), truth(emu, "BTC/USDT"), check_freq=False)
            assert store.coverage(key) == IntervalSet([Interval(MAR1, MAR1 + 8 * DAY)])


_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np, pandas as pd
    from mdcollect import DatasetKey, Interval, open_storage
    url, first, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    key = DatasetKey("x", "A/B", "ohlcv", "1m")
    with open_storage(url) as store:
        for i in range(n):
            t = 1_704_067_200_000 + (first + 2 * i) * 60_000
            idx = pd.DatetimeIndex([pd.Timestamp(t * 1_000_000, tz="UTC")], name="timestamp")
            row = pd.DataFrame({c: [1.0 + i] for c in ("open", "high", "low", "close", "volume")},
                               index=idx)
            store.write(key, row, covered=Interval(t, t + 60_000))
    print("done")
    """
)


@pytest.mark.slow
def test_interleaved_writers_on_two_machines_lose_no_row(shared_url: str, tmp_path: Path) -> None:
    """The measured loss without a lease: two writers of one S3 symbol on two machines
    (244 of 600 rows lost). With the lease every row and every minute of coverage stays."""
    procs = []
    for name, first in (("a", 0), ("b", 1)):
        own = tmp_path / name
        own.mkdir()
        procs.append(subprocess.Popen(
            [sys.executable, "-c", _WRITER, shared_url, str(first), "60"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "TMPDIR": str(own)},
        ))  # fmt: skip
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0 and "done" in out, err
    with open_storage(shared_url) as store:
        key = DatasetKey("x", "A/B", "ohlcv", "1m")
        assert len(store.read(key)) == 120
        t0 = 1_704_067_200_000
        assert store.coverage(key) == IntervalSet([Interval(t0, t0 + 120 * 60_000)])
