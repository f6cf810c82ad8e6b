"""Live collection benchmark: trades-to-candles aggregation, and websocket trades end to end.

    .venv/bin/python bench/live.py                 # 10M trades, 60 s end to end
    .venv/bin/python bench/live.py --trades 2e6 --seconds 15

1. Aggregation: N synthetic trades into 11 timeframes (1s 5s 10s 15s 30s 1m 5m 15m
   1h 4h 1d) with ``mdcollect.aggregate`` beside pandas ``resample().ohlc()`` and
   polars ``group_by_dynamic`` (when polars is installed) in the same run.
2. End to end: trade messages/s from the emulator's websocket into the default
   store (ArcticDB/LMDB in a temp dir) through ``TradesCollector`` beside a bare
   ``ccxt.pro`` ``watch_trades`` loop storing nothing, run one after the other on
   the same market; CPU% and RSS sampled every 5 s (RSS should stay flat).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from typing import Any

import numpy as np
import pandas as pd

TFS = ["1s", "5s", "10s", "15s", "30s", "1m", "5m", "15m", "1h", "4h", "1d"]
PD_RULE = {"s": "s", "m": "min", "h": "h", "d": "D"}


def synthetic(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    t0 = 1_700_000_000_000
    ts = t0 + np.cumsum(rng.integers(0, 60, n, dtype=np.int64))  # ~30 ms apart: ~3.5 days
    price = 100 * np.exp(np.cumsum(rng.normal(0, 1e-4, n)))
    amount = rng.random(n)
    return ts, price, amount


def bench_aggregation(n: int) -> None:
    from mdcollect._time import Timeframe
    from mdcollect.aggregate import aggregate_bins

    ts, price, amount = synthetic(n)
    tfs = [Timeframe.parse(t) for t in TFS]
    t = time.perf_counter()
    bins = aggregate_bins(ts, price, amount, tfs)
    frames = {str(tf): b.to_frame() for tf, b in bins.items()}
    ours = time.perf_counter() - t
    print(f"aggregation of {n:,} trades into {len(TFS)} timeframes")
    print(f"  mdcollect.aggregate     {ours:7.2f} s")

    idx = pd.DatetimeIndex(pd.to_datetime(ts, unit="ms", utc=True))
    df = pd.DataFrame({"price": price, "amount": amount}, index=idx)
    t = time.perf_counter()
    check = None
    for tf in TFS:
        rule = tf[:-1] + PD_RULE[tf[-1]]
        r = df["price"].resample(rule).ohlc()
        r["volume"] = df["amount"].resample(rule).sum()
        r = r.dropna()
        if tf == "1m":
            check = r
    pandas_s = time.perf_counter() - t
    print(f"  pandas resample().ohlc() {pandas_s:6.2f} s   ratio {pandas_s / ours:5.1f}x")
    assert check is not None
    np.testing.assert_allclose(check["close"].to_numpy(), frames["1m"]["close"].to_numpy())

    try:
        import polars as pl
    except ImportError:
        print("  polars group_by_dynamic  unavailable (polars not installed)")
        return
    pdf = pl.DataFrame({"ts": ts, "price": price, "amount": amount}).with_columns(
        pl.col("ts").cast(pl.Datetime("ms"))
    )
    t = time.perf_counter()
    for tf in TFS:
        every = tf.replace("m", "m").replace("1d", "1d")
        pdf.group_by_dynamic("ts", every=every).agg(
            pl.col("price").first().alias("open"),
            pl.col("price").max().alias("high"),
            pl.col("price").min().alias("low"),
            pl.col("price").last().alias("close"),
            pl.col("amount").sum().alias("volume"),
        )
    polars_s = time.perf_counter() - t
    print(f"  polars group_by_dynamic {polars_s:7.2f} s   ratio {polars_s / ours:5.1f}x")


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _sample(label: str, seconds: float, count: Any) -> tuple[float, float, list[float]]:
    cpu0, t0, n0 = time.process_time(), time.perf_counter(), count()
    rss = []
    end = t0 + seconds
    while time.perf_counter() < end:
        await asyncio.sleep(min(5.0, end - time.perf_counter()))
        rss.append(_rss_mb())
    dt = time.perf_counter() - t0
    rate = (count() - n0) / dt
    cpu = 100 * (time.process_time() - cpu0) / dt
    print(f"  {label:28s} {rate:9.0f} trades/s  CPU {cpu:5.1f}%  RSS MB {[round(r) for r in rss]}")
    return rate, cpu, rss


async def bench_end_to_end(seconds: float, tpm: float) -> None:
    from mdcollect import open_storage
    from mdcollect.collector import DataCollector
    from mdcollect.collectors import TradesCollector
    from mdcollect.exchanges import ExchangeClient
    from mdcollect.testing import ExchangeEmulator, MarketSpec

    spec = MarketSpec("BTC/USDT", 30_000.0, trades_per_minute=tpm)
    with ExchangeEmulator(seed=1, markets=[spec], rate_limits=False) as emu:
        now = emu.market.now()
        emu.market.trades("binance", "BTC/USDT", now - 1000, now)  # generate the day first
        print(
            f"end to end, emulator websocket, {tpm / 60:.0f} trades/s offered, {seconds:.0f} s each"
        )
        bare = emu.ccxt("binance", pro=True)
        got = [0]

        async def loop() -> None:
            while True:
                got[0] += len(await bare.watch_trades("BTC/USDT", None, None, {"newUpdates": True}))

        task = asyncio.create_task(loop())
        await asyncio.sleep(1)
        bare_rate, _, _ = await _sample("bare ccxt.pro watch_trades", seconds, lambda: got[0])
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await bare.close()

        with tempfile.TemporaryDirectory() as tmp:
            store = open_storage(f"arctic+lmdb://{tmp}/arctic")
            client = ExchangeClient("binance", base_url=emu.url, enableRateLimit=False)
            c = TradesCollector(client, ["BTC/USDT"], mode="ws", candles=["1s", "1m"])
            async with DataCollector([c], store):
                await asyncio.sleep(1)
                ours, _, _ = await _sample(
                    "TradesCollector -> store", seconds, lambda: c.stats.rows_received
                )
            await client.close()
            store.close()
        print(f"  ratio collector/bare       {ours / bare_rate:5.2f}x (target >= 0.8)")
        print(f"  rows dropped {c.stats.rows_dropped}, buffered at stop {c.buffered_rows}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--trades", type=float, default=10e6)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--trades-per-minute", type=float, default=6_000.0)
    args = p.parse_args()
    bench_aggregation(int(args.trades))
    asyncio.run(bench_end_to_end(args.seconds, args.trades_per_minute))
    return 0


if __name__ == "__main__":
    sys.exit(main())
