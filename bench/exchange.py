"""Benchmark: candles/s through ExchangeClient.fetch_ohlcv vs a bare ccxt loop.

Run: ``.venv/bin/python bench/exchange.py [--pages N] [--rounds R]``

Both loops read the same pages (same URLs, same params) of Binance 1m candles
from one ``ExchangeEmulator`` with rate limits off, alternating rounds so drift
affects both alike; the best round of each is reported, with the ratio (target:
the wrapper costs at most 10% over bare ccxt). The emulator's own ceiling is
measured with raw aiohttp GETs of the same pages (no ccxt parsing).

Last, the emulator's own cost: CPU ms per full candle page in a child emulator
process (``ExchangeEmulator.spawn``), first read (cold: trades generated, rows
rendered) and second read (warm), for every dialect. CPU time, unlike requests/s,
barely depends on how busy the machine is.

And the cost of keeping the optional candle columns (quote volume, trade count,
taker-buy volumes): CPU ms per 1000-candle Binance page of ccxt's ``parse_ohlcv`` and
``ohlcv_frame``, with the raw rows kept and read beside ccxt's six values only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

import aiohttp
import ccxt.async_support as ccxt_async

from mdcollect.exchanges import ExchangeClient, RetryPolicy
from mdcollect.exchanges._urls import redirect_urls
from mdcollect.testing import ExchangeEmulator

KEY = "binance"
SYMBOL = "BTC/USDT"
TIMEFRAME = "1m"
MINUTE = 60_000
START = 1_672_531_200_000  # 2023-01-01


#: dialect -> (path, params of page i): full pages of 1m candles, one symbol per dialect
DIALECT_PAGES: dict[str, tuple[str, Any]] = {
    "binance spot": (
        "/api/v3/klines",
        lambda i: {"symbol": "BTCUSDT", "interval": "1m", "limit": "1000",
                   "startTime": str(START + i * 1000 * MINUTE)},
    ),
    "binance usdm": (
        "/fapi/v1/klines",
        lambda i: {"symbol": "BTCUSDT", "interval": "1m", "limit": "1500",
                   "startTime": str(START + i * 1500 * MINUTE)},
    ),
    "okx": (
        "/api/v5/market/history-candles",
        lambda i: {"instId": "BTC-USDT", "bar": "1m", "limit": "300",
                   "after": str(START + (i + 1) * 300 * MINUTE)},
    ),
    "bybit": (
        "/v5/market/kline",
        lambda i: {"category": "spot", "symbol": "BTCUSDT", "interval": "1", "limit": "1000",
                   "start": str(START + i * 1000 * MINUTE)},
    ),
    "kraken": (
        "/0/public/OHLC",
        lambda i: {"pair": "XBTUSDT", "interval": "1",
                   "since": str((START + i * 60 * MINUTE) // 1000)},
    ),
}  # fmt: skip


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def emulator_cpu(n_pages: int) -> None:
    """CPU ms per page of a child emulator process, cold then warm, for every dialect."""
    # Kraken answers the last 720 candles before now: freeze now a year after START
    now = START + 365 * 1440 * MINUTE
    with ExchangeEmulator.spawn(rate_limits=False, now=now) as emu:
        async with aiohttp.ClientSession() as session:
            sem = asyncio.Semaphore(4)

            async def one(path: str, params: dict[str, str]) -> int:
                async with sem, session.get(emu.url + path, params=params) as resp:
                    body = await resp.read()
                    resp.raise_for_status()
                    return len(body)

            print(f"emulator CPU per full 1m page, own process, {n_pages} pages (cold / warm):")
            for name, (path, params) in DIALECT_PAGES.items():
                costs = []
                for _ in ("cold", "warm"):
                    cpu = _cpu_seconds(emu.pid)
                    sizes = await asyncio.gather(*(one(path, params(i)) for i in range(n_pages)))
                    costs.append((_cpu_seconds(emu.pid) - cpu) * 1000 / n_pages)
                print(
                    f"  {name:13s} {costs[0]:6.2f} / {costs[1]:5.2f} ms per page "
                    f"({sizes[0]:,} bytes): ceiling {1000 / costs[0]:5.0f} / "
                    f"{1000 / max(costs[1], 1e-3):5.0f} pages per CPU-second"
                )


def _pages(n: int, page: int) -> list[tuple[int, int]]:
    return [(START + i * page * MINUTE, START + (i + 1) * page * MINUTE) for i in range(n)]


async def wrapper_round(url: str, pages: list[tuple[int, int]]) -> tuple[float, int]:
    async with ExchangeClient(
        KEY, url, retry=RetryPolicy(max_attempts=1), enableRateLimit=False
    ) as client:
        await client.load_markets()
        t0 = time.perf_counter()
        rows = 0
        for since, until in pages:
            frame = await client.fetch_ohlcv(SYMBOL, TIMEFRAME, since, until)
            rows += len(frame)
        return time.perf_counter() - t0, rows


async def bare_round(
    url: str, pages: list[tuple[int, int]], options: dict[str, Any]
) -> tuple[float, int]:
    exchange = ccxt_async.binance({"enableRateLimit": False, "options": options})
    redirect_urls(exchange, url)
    try:
        await exchange.load_markets()
        t0 = time.perf_counter()
        rows = 0
        page = len(range(pages[0][0], pages[0][1], MINUTE))
        for since, until in pages:
            candles = await exchange.fetch_ohlcv(
                SYMBOL, TIMEFRAME, since, page, {"until": until - 1}
            )
            rows += len(candles)
        return time.perf_counter() - t0, rows
    finally:
        await exchange.close()


async def raw_round(url: str, pages: list[tuple[int, int]]) -> tuple[float, int]:
    base = url.rstrip("/") + "/api/v3/klines"
    async with aiohttp.ClientSession() as session:
        t0 = time.perf_counter()
        for since, until in pages:
            params = {
                "symbol": "BTCUSDT",
                "interval": TIMEFRAME,
                "startTime": str(since),
                "endTime": str(until - 1),
                "limit": str((until - since) // MINUTE),
            }
            async with session.get(base, params=params) as resp:
                await resp.read()
                resp.raise_for_status()
        return time.perf_counter() - t0, len(pages)


async def main(n_pages: int, rounds: int) -> None:
    with ExchangeEmulator(rate_limits=False) as emu:
        url = emu.url
        async with ExchangeClient(KEY, url) as probe:
            page = probe.info.page_limit
            options = dict(probe.exchange.options["fetchMarkets"])
        pages = _pages(n_pages, page)
        # warm up: the emulator's candle cache and ccxt's imports
        await wrapper_round(url, pages[:3])
        await bare_round(url, pages[:3], {"fetchMarkets": options})
        await raw_round(url, pages)  # every page once, so each loop reads warm data
        best_wrap = best_bare = best_raw = float("inf")
        rows_wrap = rows_bare = 0
        for _ in range(rounds):
            t, rows_wrap = await wrapper_round(url, pages)
            best_wrap = min(best_wrap, t)
            t, rows_bare = await bare_round(url, pages, {"fetchMarkets": options})
            best_bare = min(best_bare, t)
            t, _ = await raw_round(url, pages)
            best_raw = min(best_raw, t)
    print(
        f"pages: {n_pages} x {page} {TIMEFRAME} candles of {KEY} {SYMBOL}, best of {rounds} rounds"
    )
    print(
        f"ExchangeClient.fetch_ohlcv: {rows_wrap / best_wrap:12,.0f} candles/s ({best_wrap:.3f} s)"
    )
    print(
        f"bare ccxt fetch_ohlcv:     {rows_bare / best_bare:12,.0f} candles/s ({best_bare:.3f} s)"
    )
    print(
        f"wrapper overhead:          {100 * (best_wrap / best_bare - 1):+11.1f} %  (target <= +10%)"
    )
    print(
        f"emulator ceiling (aiohttp): {n_pages / best_raw:11,.0f} requests/s "
        f"= {n_pages * page / best_raw:,.0f} candles/s served"
    )
    if rows_wrap != rows_bare:
        print(f"note: row counts differ: wrapper {rows_wrap}, bare {rows_bare}")
    await emulator_cpu(n_pages * 2)
    candle_columns_cpu()


def candle_columns_cpu(rounds: int = 5, pages: int = 30) -> None:
    """CPU per page of parsing candles with and without the optional columns."""
    import ccxt as ccxt_sync

    from mdcollect._time import Timeframe
    from mdcollect.exchanges import exchange_info, ohlcv_frame
    from mdcollect.exchanges._client import _keep_raw_candles

    ex = ccxt_sync.binance()
    market = {"id": "BTCUSDT", "symbol": "BTC/USDT", "inverse": False}
    kline = ["43519.34000000", "43936.00000000", "43171.00000000", "43488.71000000",
             "20.55495000", 0, "891428.42858070", 3743, "10.91428000", "473782.95739920", "0"]  # fmt: skip
    raw = [[1_706_630_400_000 + i * 60_000, *kline] for i in range(1000)]
    tf = Timeframe.parse("1m")

    def best(parse: Any, fields: Any) -> float:
        out = float("inf")
        for _ in range(rounds):
            t = time.process_time()
            for _ in range(pages):
                ohlcv_frame([parse(r, market) for r in raw], tf, 0, 2**62, 2**62, "ohlcv", fields)
            out = min(out, (time.process_time() - t) / pages)
        return out

    plain = best(ex.parse_ohlcv, None)
    rich = best(_keep_raw_candles(ex.parse_ohlcv), exchange_info("binance").candle_fields)
    print("optional candle columns, CPU per 1000-candle page (parse_ohlcv + ohlcv_frame):")
    print(f"  ccxt's six values  {plain * 1e3:5.2f} ms")
    print(f"  + the raw fields   {rich * 1e3:5.2f} ms   ratio {rich / plain:4.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.pages, args.rounds))
