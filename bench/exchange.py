"""Benchmark: candles/s through ExchangeClient.fetch_ohlcv vs a bare ccxt loop.

Run: ``.venv/bin/python bench/exchange.py [--pages N] [--rounds R]``

Both loops read the same pages (same URLs, same params) of Binance 1m candles
from one ``ExchangeEmulator`` with rate limits off, alternating rounds so drift
affects both alike; the best round of each is reported, with the ratio (target:
the wrapper costs at most 10% over bare ccxt). The emulator's own ceiling is
measured with raw aiohttp GETs of the same pages (no ccxt parsing).
"""

from __future__ import annotations

import argparse
import asyncio
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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.pages, args.rounds))
