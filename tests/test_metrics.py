"""Prometheus metrics: scraped over HTTP and parsed with prometheus-client's own parser,
from a running DataCollector, the `collect --metrics-port` daemon and the service."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import mdcollect
from mdcollect import DataCollector, open_storage
from mdcollect.collectors import TradesCollector
from mdcollect.exchanges import ExchangeClient, RetryPolicy, exchange_totals
from mdcollect.metrics import metrics_text, start_metrics_server
from mdcollect.testing import ExchangeEmulator, Fault, MarketSpec

from .collectors.conftest import Lines


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    return _parse(text)


def _parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def test_a_running_collector_scraped_matches_its_status() -> None:
    store = open_storage("memory://")
    busy = [MarketSpec("BTC/USDT", 30_000.0, trades_per_minute=600)]  # ten trades a second
    with ExchangeEmulator(rate_limits=False, markets=busy) as emu:
        client = ExchangeClient("binance", base_url=emu.url, enableRateLimit=False)
        c = TradesCollector(client, ["BTC/USDT"], mode="poll", poll_interval=0.1, name="btc")
        dc = DataCollector([c], store)
        server, thread = start_metrics_server(0, dc)
        try:
            async with dc:
                deadline = asyncio.get_running_loop().time() + 60
                while c.stats.rows_written == 0 or c.stats.write_latency.count < 2:
                    assert asyncio.get_running_loop().time() < deadline, "no rows stored"
                    await asyncio.sleep(0.05)
                url = f"http://127.0.0.1:{server.server_port}/metrics"
                samples = await asyncio.to_thread(_scrape, url)
                status = dc.status()["collectors"]["btc"]
                latency = c.stats.write_latency
        finally:
            server.shutdown()
            thread.join(10)
            await client.close()
    lab = {"collector": "btc", "exchange": "binance", "kind": "trades"}
    # counters only grow: scraped between two reads, a count lies between them
    stored = _value(samples, "mdcollect_collector_rows_stored_total", **lab)
    assert 0 < stored <= status["rows_stored"]
    assert _value(samples, "mdcollect_collector_restarts_total", **lab) == 0
    assert _value(samples, "mdcollect_collector_healthy", **lab) == 1
    assert _value(samples, "mdcollect_collector_running", **lab) == 1
    writes = _value(samples, "mdcollect_storage_write_seconds_count", **lab)
    assert 2 <= writes <= latency.count
    assert _value(samples, "mdcollect_storage_write_seconds_bucket", **lab, le="+Inf") == writes
    requests = _value(samples, "mdcollect_exchange_requests_total", exchange="binance")
    assert requests >= 2  # markets, then polls
    assert ("process_resident_memory_bytes", ()) in samples


async def test_429s_and_retry_after_waits_are_counted() -> None:
    before = exchange_totals("binance_futures")
    base = (before.requests, before.rate_limited, before.retries, before.retry_after_seconds)
    with ExchangeEmulator(rate_limits=False) as emu:
        emu.faults.add(Fault("429", route="klines", count=2, retry_after=0.2))
        async with ExchangeClient(
            "binance_futures", base_url=emu.url, enableRateLimit=False,
            retry=RetryPolicy(max_attempts=5, base_delay=0.01, max_delay=0.05),
        ) as client:  # fmt: skip
            await client.load_markets()
            now = emu.market.now()
            await client.fetch_ohlcv("BTC/USDT:USDT", "1h", now - 10 * 3_600_000, now)
    after = exchange_totals("binance_futures")
    assert after.rate_limited - base[1] == 2
    assert after.retries - base[2] == 2
    assert after.retry_after_seconds - base[3] >= 0.4  # two waits of at least Retry-After
    assert after.requests - base[0] >= 4  # markets, two refused, one answered
    samples = _parse(metrics_text())
    assert _value(samples, "mdcollect_exchange_rate_limited_total", exchange="binance_futures") == (
        after.rate_limited
    )


def test_collect_serves_metrics_on_the_port_it_prints(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    # tickers: a row every poll, whatever the emulated market's trade rate
    config.write_text(
        '[[collectors]]\nexchange = "binance"\nsymbols = ["BTC/USDT"]\nkinds = ["ticker"]\n'
        'mode = "poll"\npoll_interval = 0.2\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "mdcollect.cli", "collect", str(config), "--emulate",
         "--storage", f"parquet://{tmp_path / 'store'}", "--status-every", "0",
         "--metrics-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    out = Lines(proc.stdout)
    try:
        lines = out.wait(lambda ls: any("/metrics" in line for line in ls), 60)
        url = re.search(r"http://\S+/metrics", "\n".join(lines))
        assert url is not None
        samples: dict[Any, float] = {}
        for _ in range(600):  # until rows were stored (polls every 0.2 s), 60 s at most
            samples = _scrape(url.group(0))
            key = ("mdcollect_collector_rows_stored_total",
                   (("collector", "binance:ticker:BTC/USDT"), ("exchange", "binance"),
                    ("kind", "ticker")))  # fmt: skip
            if samples.get(key, 0) > 0:
                break
            assert proc.poll() is None
            time.sleep(0.1)
        assert samples[key] > 0
    finally:
        proc.send_signal(2)
        proc.wait(30)
    assert proc.returncode == 0


def test_collect_refuses_a_busy_metrics_port(tmp_path: Path) -> None:
    server, thread = start_metrics_server(0)
    try:
        config = tmp_path / "c.toml"
        config.write_text('[[collectors]]\nexchange = "binance"\nsymbols = ["BTC/USDT"]\n')
        res = subprocess.run(
            [sys.executable, "-m", "mdcollect.cli", "collect", str(config), "--emulate",
             "--storage", "memory://", "--metrics-port", str(server.server_port)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    finally:
        server.shutdown()
        thread.join(10)
    assert res.returncode == 2, res.stderr
    assert f"cannot serve metrics on 127.0.0.1:{server.server_port}" in res.stderr
    with pytest.raises(mdcollect.InvalidRequest, match="metrics port must be an integer"):
        start_metrics_server(70000)
