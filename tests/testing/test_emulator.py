"""Emulator lifecycle, request log, URL redirection, subprocess mode and the public API."""

from __future__ import annotations

import urllib.error
import urllib.request

import ccxt
import pytest
from emulator_helpers import DAY, HOUR, NOW, sync_exchange

import mdcollect.testing
from mdcollect.exchanges._urls import redirect_url, redirect_urls
from mdcollect.testing import EmulatorProcess, ExchangeEmulator


def test_all_is_what_is_exported() -> None:
    public = {n for n in dir(mdcollect.testing) if not n.startswith("_")} - {
        "annotations",
        "dialects",
    }
    assert set(mdcollect.testing.__all__) == public


def test_redirect_urls_keeps_paths_and_resolves_templates() -> None:
    assert redirect_url("https://api.binance.com/api/v3", "http://h:1/") == "http://h:1/api/v3"
    assert redirect_url("https://{hostname}", "http://h:1") == "http://h:1"
    assert redirect_url("https://api.{hostname}", "http://h:1") == "http://h:1"
    for exchange_id in ("binance", "binanceusdm", "okx", "bybit", "kraken"):
        ex = getattr(ccxt, exchange_id)()
        redirect_urls(ex, "http://127.0.0.1:9")
        stack = [ex.urls["api"]]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                stack.extend(node.values())
            else:
                assert node.startswith("http://127.0.0.1:9"), (exchange_id, node)
    ex = ccxt.binance()
    redirect_urls(ex, "http://a:1")
    redirect_urls(ex, "http://b:2")  # idempotent, from the original URLs
    assert ex.urls["api"]["fapiPublic"] == "http://b:2/fapi/v1"
    assert ex.urls["www"] == "https://www.binance.com"  # only urls['api'] changes


def test_request_log_and_clear(emu: ExchangeEmulator) -> None:
    ex = sync_exchange(emu, "binance")
    emu.clear_requests()
    ex.fetch_ohlcv("ETH/USDT", "1h", since=NOW - DAY, limit=3)
    (rec,) = emu.requests
    assert (rec.exchange, rec.route, rec.method, rec.path, rec.status) == (
        "binance",
        "klines",
        "GET",
        "/api/v3/klines",
        200,
    )
    assert rec.params == {
        "symbol": "ETHUSDT",
        "interval": "1h",
        "limit": "3",
        "startTime": str(NOW - DAY),
    }
    assert rec.weight == 2 and rec.fault is None and rec.time > 0
    emu.clear_requests()
    assert emu.requests == []


def test_unknown_path_is_404(emu: ExchangeEmulator) -> None:
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(emu.url + "/api/v3/nope")
    assert info.value.code == 404
    assert emu.requests[-1].path == "/api/v3/nope" and emu.requests[-1].status == 404


async def test_async_context_manager_and_ccxt_async() -> None:
    async with ExchangeEmulator(seed=3, clock=lambda: NOW, rate_limits=False) as emu:
        ex = emu.ccxt("bybit_futures")
        try:
            await ex.load_markets()
            assert ex.options["defaultType"] == "swap"
            rows = await ex.fetch_ohlcv("BTC/USDT:USDT", "1h", since=NOW - DAY, limit=24)
            assert (
                rows == emu.market.candles("bybit", "BTC/USDT:USDT", "1h", NOW - DAY, NOW).to_list()
            )
        finally:
            await ex.close()
    with pytest.raises(RuntimeError):
        _ = emu.url


def test_subprocess_mode_serves_until_killed() -> None:
    with EmulatorProcess(seed=5, now=NOW, rate_limits=False) as proc:
        ex = ccxt.binance({"enableRateLimit": False, "timeout": 5000})
        redirect_urls(ex, proc.url)
        rows = ex.fetch_ohlcv("BTC/USDT", "1m", since=NOW - DAY, limit=3)
        with ExchangeEmulator(seed=5, clock=lambda: NOW) as local:  # same seed: same market
            assert (
                rows
                == local.market.candles(
                    "binance", "BTC/USDT", "1m", NOW - DAY, NOW - DAY + 180_000
                ).to_list()
            )
            # every dialect is served by the process, Coinbase's included
            cb = ccxt.coinbase({"enableRateLimit": False, "timeout": 5000})
            redirect_urls(cb, proc.url)
            since = NOW - NOW % HOUR - DAY
            assert (
                cb.fetch_ohlcv("BTC/USD", "1h", since=since, limit=3)
                == local.market.candles(
                    "coinbase", "BTC/USD", "1h", since, since + 3 * HOUR
                ).to_list()
            )
        proc.kill()
        assert proc.poll() is not None
        with pytest.raises(ccxt.NetworkError):
            ex.fetch_ohlcv("BTC/USDT", "1m", since=NOW - DAY, limit=3)


def _gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie nobody reaped counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_an_emulator_process_dies_with_its_parent_even_on_kill_9() -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    # a parent that starts an EmulatorProcess, says the child's pid, then waits to be killed
    script = (
        "import sys, time\n"
        "from mdcollect.testing import EmulatorProcess\n"
        "proc = EmulatorProcess(rate_limits=False).__enter__()\n"
        "print(proc._proc.pid, proc.url, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child_pid = 0
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline().split()[0])
        assert not _gone(child_pid)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 15
        while not _gone(child_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _gone(child_pid), "the emulator outlived the process that started it"
    finally:
        parent.kill()
        parent.wait(timeout=10)
        if child_pid and not _gone(child_pid):
            os.kill(child_pid, signal.SIGKILL)
