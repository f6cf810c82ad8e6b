"""Backfill benchmark: one command, ratios against baselines measured in the same run.

    .venv/bin/python bench/backfill.py [--symbols 10] [--days 365] [--weights-seconds 70]

1. A year of 1m candles for 10 symbols from the emulator (rate limits off) into the
   default store (ArcticDB/LMDB): candles/s of ``ensure_data`` beside a bare loop
   (plain ccxt ``fetch_ohlcv`` pages + one storage write per symbol). Target >= 0.8x.
   Peak RSS of the ensure run (its own process). Target < 1 GiB.
2. With Binance's real weights on: requests/s achieved over requests/s the weight
   limit allows, and the number of 429s. Target >= 0.9 with zero 429s.
3. ``ensure_data`` for 50 symbols already covered: median time beside 50 raw
   ``coverage()`` reads. Target <= 2x.

The emulator runs in its own process so it does not share a core (or the GIL)
with the code measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pandas as pd

START = "2023-01-01"
T0 = 1_672_531_200_000  # 2023-01-01
DAY = 86_400_000

SERVER = textwrap.dedent(
    """
    import sys, time
    from mdcollect.testing import ExchangeEmulator, Limit, MarketSpec
    n, rate_limits, budget = int(sys.argv[1]), sys.argv[2] == "1", int(sys.argv[3])
    markets = [MarketSpec(f"S{i}/USDT", exchange="binance") for i in range(n)]
    limits = {"binance.spot": Limit(budget, 60.0)} if rate_limits else False
    with ExchangeEmulator(rate_limits=limits, markets=markets) as emu:
        print(emu.url, flush=True)
        while True:
            time.sleep(1)
    """
)


class Server:
    def __init__(self, n: int, rate_limits: bool, budget: int = 6000) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(n), "1" if rate_limits else "0", str(budget)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def symbols(n: int) -> list[str]:
    return [f"S{i}/USDT" for i in range(n)]


def end_date(days: int) -> str:
    return pd.Timestamp(T0 + (days - 1) * DAY, unit="ms").strftime("%Y-%m-%d")


# -- parts run in their own process (python bench/backfill.py --part NAME ...) -----------


def part_ours(url: str, store_url: str, n: int, days: int) -> dict[str, float]:
    from mdcollect import ensure_data, open_storage
    from mdcollect.exchanges import ExchangeClient

    store = open_storage(store_url)
    client = ExchangeClient("binance", base_url=url, enableRateLimit=False)
    t = time.perf_counter()
    r = ensure_data(
        symbols(n), "1m", START, end_date(days), client, 0, store, progress=False, concurrency=4
    )
    dt = time.perf_counter() - t
    assert r.ok, r.to_dict()
    return {"seconds": dt, "candles": r.candles_fetched, "requests": r.requests,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip


def part_bare(url: str, store_url: str, n: int, days: int) -> dict[str, float]:
    import ccxt.async_support as ccxt_async

    from mdcollect import DatasetKey, Interval, open_storage
    from mdcollect.exchanges._urls import redirect_urls

    store = open_storage(store_url)
    end = T0 + days * DAY

    async def run() -> int:
        ex = ccxt_async.binance(
            {"enableRateLimit": False, "options": {"fetchMarkets": {"types": ["spot"]}}}
        )
        redirect_urls(ex, url)
        total = 0
        try:
            await ex.load_markets()
            for sym in symbols(n):
                rows: list[list[float]] = []
                since = T0
                while since < end:
                    page = await ex.fetch_ohlcv(sym, "1m", since, 1000)
                    if not page:
                        break
                    rows += [r for r in page if r[0] < end]
                    since = int(page[-1][0]) + 60_000
                frame = pd.DataFrame(
                    rows, columns=["timestamp", "open", "high", "low", "close", "volume"]
                )
                store.write(
                    DatasetKey("binance", sym, "ohlcv", "1m"), frame, covered=Interval(T0, end)
                )
                total += len(frame)
        finally:
            await ex.close()
        return total

    t = time.perf_counter()
    candles = asyncio.run(run())
    return {"seconds": time.perf_counter() - t, "candles": candles,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip


def part_weights(url: str, store_url: str, n: int, seconds: int, budget: int) -> dict[str, float]:
    from mdcollect import open_storage
    from mdcollect.ensure import ensure_data_async
    from mdcollect.exchanges import ExchangeClient

    store = open_storage(store_url)
    config = {}
    if budget != 6000:
        # a smaller weight budget (another account tier): tell ccxt's limiter, as a
        # user would; klines cost 0.4 units in ccxt, so a unit is 300000/budget ms
        from mdcollect.exchanges._client import RATE_LIMIT_SHARE

        config["rateLimit"] = 300_000 / budget / RATE_LIMIT_SHARE
    client = ExchangeClient("binance", base_url=url, **config)

    async def run() -> dict[str, float]:
        task = asyncio.create_task(
            ensure_data_async(symbols(n), "1m", "2021-01-01", "2023-12-31", client, 0, store,
                              progress=False, concurrency=n)
        )  # fmt: skip
        t = time.perf_counter()
        await asyncio.sleep(seconds)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # with no faults injected, every retry is a 429/418 answer
        return {"seconds": time.perf_counter() - t, "requests": client.request_count,
                "retries": client.retry_count}  # fmt: skip

    return asyncio.run(run())


def part_covered(store_url: str, n: int, days: int, repeats: int) -> dict[str, float]:
    from mdcollect import DatasetKey, ensure_data, open_storage

    store = open_storage(store_url)
    syms = symbols(n)
    keys = [DatasetKey("binance", s, "ohlcv", "1m") for s in syms]
    raw, ours = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        for k in keys:
            store.coverage(k)
        raw.append(time.perf_counter() - t)
        t = time.perf_counter()
        r = ensure_data(syms, "1m", START, end_date(days), "binance", 0, store, progress=False)
        ours.append(time.perf_counter() - t)
        assert r.requests == 0 and r.ok
    return {"raw": statistics.median(raw), "ours": statistics.median(ours)}


def sub(part: str, *args: object) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--part", part, *map(str, args)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"part {part} failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def emulator_ceiling(n: int = 150) -> float:
    """Requests/s the emulator serves for 1000-candle klines (4 concurrent, no limits)."""
    import aiohttp

    server = Server(4, rate_limits=False)

    async def run() -> float:
        async with aiohttp.ClientSession() as session:
            sem = asyncio.Semaphore(4)

            async def one(i: int) -> None:
                async with sem:
                    params = {"symbol": f"S{i % 4}USDT", "interval": "1m", "limit": 1000,
                              "startTime": T0 + i * 60_000_000}  # fmt: skip
                    async with session.get(f"{server.url}/api/v3/klines", params=params) as r:
                        await r.read()

            t = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(n)))
            return n / (time.perf_counter() - t)

    try:
        return asyncio.run(run())
    finally:
        server.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--symbols", type=int, default=10)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--weights-seconds", type=int, default=70)
    ap.add_argument("--only-weights", action="store_true")
    ap.add_argument("--covered-symbols", type=int, default=50)
    ap.add_argument("--part")
    ap.add_argument("rest", nargs="*")
    a = ap.parse_args()
    if a.part:
        r = a.rest
        result = {
            "ours": lambda: part_ours(r[0], r[1], int(r[2]), int(r[3])),
            "bare": lambda: part_bare(r[0], r[1], int(r[2]), int(r[3])),
            "weights": lambda: part_weights(r[0], r[1], int(r[2]), int(r[3]), int(r[4])),
            "covered": lambda: part_covered(r[0], int(r[1]), int(r[2]), int(r[3])),
        }[a.part]()
        print(json.dumps(result))
        return

    tmp = Path(tempfile.mkdtemp(prefix="mdcollect-bench-"))
    print(f"backfill benchmark: {a.symbols} symbols x {a.days} days of 1m candles, store in {tmp}")
    if not a.only_weights:
        server = Server(max(a.symbols, a.covered_symbols), rate_limits=False)
        try:
            bare = sub("bare", server.url, f"arctic+lmdb://{tmp / 'bare'}", a.symbols, a.days)
            ours = sub("ours", server.url, f"arctic+lmdb://{tmp / 'ours'}", a.symbols, a.days)
            # 3. covered: first fill 50 symbols with a few days, then time ensure_data on them
            sub("ours", server.url, f"arctic+lmdb://{tmp / 'cov'}", a.covered_symbols, 3)
            cov = sub("covered", f"arctic+lmdb://{tmp / 'cov'}", a.covered_symbols, 3, 15)
        finally:
            server.close()
        report_main(a, bare, ours, cov)
    weights(a, tmp)
    print(f"\n(store left in {tmp}; remove it when done)")


def report_main(
    a: argparse.Namespace, bare: dict[str, float], ours: dict[str, float], cov: dict[str, float]
) -> None:
    bare_rate = bare["candles"] / bare["seconds"]
    ours_rate = ours["candles"] / ours["seconds"]
    print("\n1. end to end, rate limits off")
    print(
        f"   bare ccxt loop + one write/symbol : {bare_rate:12,.0f} candles/s ({bare['candles']:,.0f} in {bare['seconds']:.1f}s)"
    )
    print(
        f"   ensure_data (concurrency 4)       : {ours_rate:12,.0f} candles/s ({ours['candles']:,.0f} in {ours['seconds']:.1f}s, {ours['requests']:.0f} requests)"
    )
    print(
        f"   ratio ours/bare                   : {ours_rate / bare_rate:12.2f}x   (target >= 0.8)"
    )
    print(
        f"   peak RSS of the ensure process    : {ours['rss_mb']:12.0f} MiB  (target < 1024; bare loop: {bare['rss_mb']:.0f} MiB)"
    )
    print(f"\n3. ensure_data for {a.covered_symbols} covered symbols (median of 15)")
    print(f"   {a.covered_symbols} raw coverage() reads           : {cov['raw'] * 1000:9.2f} ms")
    print(f"   ensure_data                       : {cov['ours'] * 1000:9.2f} ms")
    print(
        f"   ratio                             : {cov['ours'] / cov['raw']:12.2f}x   (target <= 2)"
    )


def weights(a: argparse.Namespace, tmp: Path) -> None:
    if a.weights_seconds > 0:
        ceiling = emulator_ceiling()
        print(f"\n2. Binance real weights on (klines weigh 2), {a.weights_seconds}s each")
        print(f"   the emulator's own ceiling for 1000-candle pages: {ceiling:.1f} requests/s")
        for budget in (6000, 1200):
            server = Server(a.symbols, rate_limits=True, budget=budget)
            try:
                w = sub("weights", server.url, f"arctic+lmdb://{tmp / f'w{budget}'}", a.symbols,
                        a.weights_seconds, budget)  # fmt: skip
            finally:
                server.close()
            allowed = budget / 2 / 60
            achieved = w["requests"] / w["seconds"]
            print(f"   budget {budget}/min: achieved/allowed {achieved:.1f}/{allowed:.1f} req/s = "
                  f"{achieved / allowed:.2f} (target >= 0.9); 429s: {w['retries']:.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
