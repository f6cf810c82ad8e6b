"""Processes on one host share its IP, so one rate budget: after
``share_budgets_on_host(dir)`` their limiters draw on one window kept in ``dir``.

Two real processes start their backfills at the same moment against an emulator
allowing 80 weight per 3 s; together they need about 112. Sharing, the exchange
never answers 429 and never counts more than its budget in any window; each on
its own budget, both burst into the same window and are refused.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from mdcollect.exchanges import share_budgets_on_host
from mdcollect.exchanges._limiter import HostWeightLimiter  # the module under test
from mdcollect.testing import ExchangeEmulator, Limit

LIMIT, WINDOW_S = 80, 3.0

_PROCESS = textwrap.dedent(
    """
    import json, sys
    from mdcollect import ensure_data
    from mdcollect.exchanges import ExchangeClient, RetryPolicy, share_budgets_on_host
    url, budgets, symbols = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
    if budgets != "-":
        share_budgets_on_host(budgets)
    client = ExchangeClient("binance", base_url=url,
                            retry=RetryPolicy(max_attempts=10, base_delay=0.01))
    print("ready", flush=True)
    sys.stdin.readline()  # both start together
    r = ensure_data(symbols, "1m", "2023-01-01", "2023-01-04", client, 0, "memory://",
                    progress=False, concurrency=3)
    print(json.dumps({"ok": r.ok, "rows": r.candles_fetched}), flush=True)
    """
)


def start_two(emu: ExchangeEmulator, budgets: str) -> list[subprocess.Popen[str]]:
    pipe = subprocess.PIPE
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PROCESS, emu.url, budgets, syms],
            stdin=pipe,
            stdout=pipe,
            stderr=pipe,
            text=True,
        )
        for syms in ("BTC/USDT,ETH/USDT,XRP/USDT", "SOL/USDT,BNB/USDT,ADA/USDT")
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    return procs


def run_two(emu: ExchangeEmulator, budgets: str) -> list[dict[str, Any]]:
    procs = start_two(emu, budgets)
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def most_in_a_window(emu: ExchangeEmulator) -> int:
    """The most weight the emulator received in any WINDOW_S seconds."""
    times = sorted((q.time, q.weight) for q in emu.requests)
    most, lo, total = 0, 0, 0
    for t, w in times:
        total += w
        while times[lo][0] <= t - WINDOW_S * 1000:
            total -= times[lo][1]
            lo += 1
        most = max(most, total)
    return most


def emulator() -> ExchangeEmulator:
    return ExchangeEmulator(rate_limits={"binance.spot": Limit(LIMIT, WINDOW_S)})


@pytest.mark.slow
def test_two_processes_sharing_the_host_budget_stay_within_it(tmp_path: Path) -> None:
    with emulator() as emu:
        answers = run_two(emu, str(tmp_path))
        statuses = collections.Counter(q.status for q in emu.requests)
        assert statuses == {200: len(emu.requests)}, statuses
        assert sum(q.weight for q in emu.requests) > LIMIT  # more than one window's worth
        assert most_in_a_window(emu) <= LIMIT
        assert [a["ok"] for a in answers] == [True, True]
        assert [a["rows"] for a in answers] == [3 * 4 * 1440] * 2


@pytest.mark.slow
def test_two_processes_each_on_its_own_budget_exceed_it() -> None:
    """What sharing prevents: each process spends the whole budget in the same window."""
    with emulator() as emu:
        procs = start_two(emu, "-")
        try:
            deadline = time.monotonic() + 60
            while not any(q.status == 429 for q in emu.requests):
                assert time.monotonic() < deadline, [q.status for q in emu.requests]
                assert all(p.poll() is None for p in procs), "finished without a 429"
                time.sleep(0.05)
        finally:
            for p in procs:  # refused and then banned, they would wait out the ban
                p.kill()
                p.communicate(timeout=30)


def test_the_window_is_shared_through_the_file(tmp_path: Path) -> None:
    from mdcollect.exchanges._limiter import Budget

    now = [1000.0]
    budget = Budget("binance.spot", 10, 60.0)
    path = tmp_path / "window.json"
    a = HostWeightLimiter(budget, path, clock=lambda: now[0])
    b = HostWeightLimiter(budget, path, clock=lambda: now[0])
    assert a._try(6) == 0.0
    assert b.used() == 6
    assert b._try(6) == pytest.approx(60.0)  # a's weight leaves the window at 1060
    now[0] = 1030.0
    assert b._try(4) == 0.0
    now[0] = 1060.5
    assert a.used() == 4 and a._try(6) == 0.0


def test_share_budgets_on_host_makes_host_limiters(tmp_path: Path) -> None:
    from mdcollect.exchanges import ExchangeClient

    before = ExchangeClient("binance", base_url="http://127.0.0.1:9")
    assert not isinstance(before.limiter, HostWeightLimiter)
    env_dir = tmp_path / "budgets"
    try:
        assert share_budgets_on_host(env_dir) == env_dir
        after = ExchangeClient("binance", base_url="http://127.0.0.1:9")
        assert isinstance(after.limiter, HostWeightLimiter)
        assert after.limiter.path.parent == env_dir
        assert os.path.isdir(env_dir)
    finally:
        from mdcollect.exchanges import _limiter

        with _limiter._limiters_lock:  # leave this test process as it was
            _limiter._host_dir = None
            _limiter._limiters.clear()
