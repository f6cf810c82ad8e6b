"""Backfill benchmark: one command, ratios against baselines measured in the same run.

    .venv/bin/python bench/backfill.py [--symbols 10] [--days 365] [--weights-seconds 70]

1. A year of 1m candles for 10 symbols from the emulator (rate limits off) into the
   default store (ArcticDB/LMDB): candles/s of ``ensure_data`` beside a bare loop
   (plain ccxt ``fetch_ohlcv`` pages + one storage write per symbol). Target >= 0.8x.
   Peak RSS of the ensure run (its own process). Target < 1 GiB.
2. Riding the rate limit (Binance spot: 6,000 weight a minute, a klines page weighs 2):
   a. one symbol-year with limits off, and at real weights (a default client against
      the emulator enforcing them): ratio target <= 1.15x; a bare ccxt loop at real
      weights (ccxt's own throttler) as the floor;
   b. 10 symbol-years at real weights for ``--weights-seconds``: weight sent per second
      over the budget's rate, target >= 0.95, and 429s, target 0;
   c. a budget lower than published (300 weight per 10 s, announced by the emulator
      as Binance would): 429s, target 0.
3. ``ensure_data`` for 50 symbols already covered: median time beside 50 raw
   ``coverage()`` reads. Target <= 2x.
4. Perpetuals' history (issue #15), ``--perp-symbols`` (20) perpetuals on each of
   Binance USD-M, OKX and Bybit: a year of funding (OKX: the 88 days it keeps), a year
   of 1h mark candles, and 1h open interest as deep as each venue keeps it (Binance
   and OKX 30 days, Bybit a year): time, requests to the history endpoint, and the
   fewest requests the page sizes allow (requests / minimum, target 1.00). The
   emulator runs in the measuring process here (its request log counts the pages),
   with its clock at 2025-01-01 01:00 UTC.

The emulator runs in its own process so it does not share a core (or the GIL)
with the code measured. Each target line says OK or MISS.
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
    window = float(sys.argv[4])
    markets = [MarketSpec(f"S{i}/USDT", exchange="binance") for i in range(n)]
    limits = {"binance.spot": Limit(budget, window)} if rate_limits else False
    with ExchangeEmulator(rate_limits=limits, markets=markets) as emu:
        print(emu.url, flush=True)
        while True:
            time.sleep(1)
    """
)


class Server:
    def __init__(self, n: int, rate_limits: bool, budget: int = 6000, window: float = 60.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(n), "1" if rate_limits else "0", str(budget),
             str(window)],
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


def part_year(url: str, store_url: str, paced: int) -> dict[str, float]:
    """One symbol-year through ``ensure_data``: a default client (``paced``) or one
    with pacing off (``enableRateLimit=False``)."""
    from mdcollect import ensure_data, open_storage
    from mdcollect.exchanges import ExchangeClient

    store = open_storage(store_url)
    config = {} if paced else {"enableRateLimit": False}
    client = ExchangeClient("binance", base_url=url, **config)
    t = time.perf_counter()
    r = ensure_data(symbols(1), "1m", START, end_date(365), client, 0, store, progress=False)
    dt = time.perf_counter() - t
    assert r.ok, r.to_dict()
    return {"seconds": dt, "requests": r.requests, "retries": client.retry_count}


def part_bare_year(url: str) -> dict[str, float]:
    """The floor: a bare ccxt loop over one symbol-year, ccxt's own throttler on."""
    import ccxt.async_support as ccxt_async

    from mdcollect.exchanges._urls import redirect_urls

    end = T0 + 365 * DAY

    async def run() -> dict[str, float]:
        ex = ccxt_async.binance({"options": {"fetchMarkets": {"types": ["spot"]}}})
        redirect_urls(ex, url)
        requests = 0
        try:
            await ex.load_markets()
            t = time.perf_counter()
            since = T0
            while since < end:
                page = await ex.fetch_ohlcv("S0/USDT", "1m", since, 1000)
                requests += 1
                if not page:
                    break
                since = int(page[-1][0]) + 60_000
            return {"seconds": time.perf_counter() - t, "requests": requests}
        finally:
            await ex.close()

    return asyncio.run(run())


def part_weights(url: str, store_url: str, n: int, seconds: int, budget: int) -> dict[str, float]:
    """A default client (the user does nothing about the budget) backfilling ``n``
    symbol-years for ``seconds``: requests sent, and 429s answered."""
    from mdcollect import open_storage
    from mdcollect.ensure import ensure_data_async
    from mdcollect.exchanges import ExchangeClient

    store = open_storage(store_url)
    client = ExchangeClient("binance", base_url=url)

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
        limiter = getattr(client, "limiter", None)  # None before the shared limiter
        return {"seconds": time.perf_counter() - t, "requests": client.request_count,
                "retries": client.retry_count,
                "waited": limiter.waited if limiter is not None else -1.0}  # fmt: skip

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


PERP_NOW = 1_735_693_200_000  # 2025-01-01 01:00 UTC
PERP_END = "2024-12-31"
# (exchange key, emulator venue, kind, timeframe, first day, history endpoint path)
PERP_CASES = [
    ("binance_futures", "binance", "funding", "1h", "2024-01-01", "/fapi/v1/fundingRate"),
    ("okx_futures", "okx", "funding", "1h", "2024-10-05", "/api/v5/public/funding-rate-history"),
    ("bybit_futures", "bybit", "funding", "1h", "2024-01-01", "/v5/market/funding/history"),
    ("binance_futures", "binance", "mark", "1h", "2024-01-01", "/fapi/v1/markPriceKlines"),
    ("okx_futures", "okx", "mark", "1h", "2024-01-01",
     "/api/v5/market/history-mark-price-candles"),
    ("bybit_futures", "bybit", "mark", "1h", "2024-01-01", "/v5/market/mark-price-kline"),
    ("binance_futures", "binance", "open_interest", "1h", "2024-12-03",
     "/futures/data/openInterestHist"),
    ("okx_futures", "okx", "open_interest", "1h", "2024-12-03",
     "/api/v5/rubik/stat/contracts/open-interest-history"),
    ("bybit_futures", "bybit", "open_interest", "1h", "2024-01-01", "/v5/market/open-interest"),
]  # fmt: skip


def part_perps(n: int) -> dict[str, float]:
    import math

    from mdcollect import ensure_data, open_storage
    from mdcollect.exchanges import ExchangeClient, exchange_info
    from mdcollect.testing import ExchangeEmulator, MarketSpec

    syms = [f"P{i}/USDT:USDT" for i in range(n)]
    markets = [
        MarketSpec(s, 100.0 + 10 * i, exchange=venue, trades_per_minute=1.0)
        for venue in ("binance", "okx", "bybit")
        for i, s in enumerate(syms)
    ]
    out: dict[str, float] = {}
    with ExchangeEmulator(rate_limits=False, markets=markets, clock=lambda: PERP_NOW) as emu:
        for key, _venue, kind, tf, first, route in PERP_CASES:
            info = exchange_info(key)
            lo = int(pd.Timestamp(first, tz="UTC").value // 1_000_000)
            hi = int(pd.Timestamp(PERP_END, tz="UTC").value // 1_000_000) + DAY
            if kind == "funding":
                assert info.funding is not None
                rows, page = (hi - lo) // (8 * 3_600_000), info.funding.page_limit
            elif kind == "mark":
                rows, page = (hi - lo) // 3_600_000, info.page_limit
            else:
                rows, page = (hi - lo) // 3_600_000, info.open_interest_history(tf).page_limit
            client = ExchangeClient(key, base_url=emu.url, enableRateLimit=False,
                                    clock=lambda: PERP_NOW)  # fmt: skip
            emu.clear_requests()
            t = time.perf_counter()
            r = ensure_data(
                syms, tf, first, PERP_END, client, 0, open_storage("memory://"), progress=False,
                concurrency=4, clock=lambda: PERP_NOW, kinds=(kind,),
            )  # fmt: skip
            seconds = time.perf_counter() - t
            assert r.ok, r.to_dict()
            name = f"{key}:{kind}"
            out[f"{name}:seconds"] = seconds
            out[f"{name}:rows"] = r.candles_fetched
            out[f"{name}:pages"] = sum(1 for q in emu.requests if q.path == route)
            out[f"{name}:requests"] = r.requests
            out[f"{name}:minimum"] = n * math.ceil(rows / page)
            out[f"{name}:days"] = (hi - lo) // DAY
    return out


def report_perps(n: int, res: dict[str, float]) -> None:
    print(f"\n4. perpetuals' history for {n} symbols a venue (emulator in this process)")
    print(
        "   venue:kind                       days     rows   pages minimum  ratio  all req  seconds"
    )
    for key, _venue, kind, _tf, _first, _route in PERP_CASES:
        name = f"{key}:{kind}"
        pages, minimum = res[f"{name}:pages"], res[f"{name}:minimum"]
        print(f"   {name:30} {res[f'{name}:days']:5.0f} {res[f'{name}:rows']:9,.0f} "
              f"{pages:7.0f} {minimum:7.0f} {pages / minimum:6.2f} {res[f'{name}:requests']:8.0f} "
              f"{res[f'{name}:seconds']:8.2f}  {verdict(pages <= minimum)}")  # fmt: skip


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
    ap.add_argument("--perp-symbols", type=int, default=20)
    ap.add_argument("--only-perps", action="store_true")
    ap.add_argument("--part")
    ap.add_argument("rest", nargs="*")
    a = ap.parse_args()
    if a.part:
        r = a.rest
        result = {
            "ours": lambda: part_ours(r[0], r[1], int(r[2]), int(r[3])),
            "bare": lambda: part_bare(r[0], r[1], int(r[2]), int(r[3])),
            "weights": lambda: part_weights(r[0], r[1], int(r[2]), int(r[3]), int(r[4])),
            "year": lambda: part_year(r[0], r[1], int(r[2])),
            "bare_year": lambda: part_bare_year(r[0]),
            "covered": lambda: part_covered(r[0], int(r[1]), int(r[2]), int(r[3])),
            "perps": lambda: part_perps(int(r[0])),
        }[a.part]()
        print(json.dumps(result))
        return

    if a.only_perps:
        report_perps(a.perp_symbols, sub("perps", a.perp_symbols))
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
    if a.perp_symbols > 0:
        report_perps(a.perp_symbols, sub("perps", a.perp_symbols))
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
        f"   ratio ours/bare                   : {ours_rate / bare_rate:12.2f}x   (target >= 0.8) {verdict(ours_rate / bare_rate >= 0.8)}"
    )
    print(
        f"   peak RSS of the ensure process    : {ours['rss_mb']:12.0f} MiB  (target < 1024; bare loop: {bare['rss_mb']:.0f} MiB) {verdict(ours['rss_mb'] < 1024)}"
    )
    print(f"\n3. ensure_data for {a.covered_symbols} covered symbols (median of 15)")
    print(f"   {a.covered_symbols} raw coverage() reads           : {cov['raw'] * 1000:9.2f} ms")
    print(f"   ensure_data                       : {cov['ours'] * 1000:9.2f} ms")
    print(
        f"   ratio                             : {cov['ours'] / cov['raw']:12.2f}x   (target <= 2) {verdict(cov['ours'] / cov['raw'] <= 2)}"
    )


def verdict(ok: bool) -> str:
    return "OK" if ok else "MISS"


def weights(a: argparse.Namespace, tmp: Path) -> None:
    """Part 2: riding the rate limit (Binance spot, klines weigh 2)."""
    ceiling = emulator_ceiling()
    print("\n2. riding the rate limit (Binance spot: 6,000 weight/min, a klines page weighs 2)")
    print(f"   the emulator's own ceiling for 1000-candle pages: {ceiling:.1f} requests/s "
          f"({ceiling * 2 / 100:.2f}x the budget's 50 pages/s)")  # fmt: skip
    off_server = Server(1, rate_limits=False)
    try:
        off = sub("year", off_server.url, f"arctic+lmdb://{tmp / 'y-off'}", 0)
    finally:
        off_server.close()
    on_server = Server(1, rate_limits=True)
    try:
        on = sub("year", on_server.url, f"arctic+lmdb://{tmp / 'y-on'}", 1)
    finally:
        on_server.close()
    bare_server = Server(1, rate_limits=True)
    try:
        bare = sub("bare_year", bare_server.url)
    finally:
        bare_server.close()
    ratio = on["seconds"] / off["seconds"]
    print(f"   a. one symbol-year, limits off     : {off['seconds']:7.2f} s ({off['requests']:.0f} requests)")  # fmt: skip
    print(f"      one symbol-year, real weights   : {on['seconds']:7.2f} s ({on['requests']:.0f} requests, {on['retries']:.0f} 429s)")  # fmt: skip
    print(f"      ratio real weights / limits off : {ratio:7.2f}x   (target <= 1.15) {verdict(ratio <= 1.15)}")  # fmt: skip
    print(f"      bare ccxt loop, real weights    : {bare['seconds']:7.2f} s ({bare['requests']:.0f} pages; the floor)")  # fmt: skip
    if a.weights_seconds > 0:
        server = Server(a.symbols, rate_limits=True)
        try:
            w = sub("weights", server.url, f"arctic+lmdb://{tmp / 'w6000'}", a.symbols,
                    a.weights_seconds, 6000)  # fmt: skip
        finally:
            server.close()
        # exchangeInfo weighs 20, each klines page 2
        rate = (20 + 2 * (w["requests"] - 1)) / w["seconds"] / 100.0
        print(f"   b. {a.symbols} symbol-years at real weights, {w['seconds']:.0f} s: weight rate / budget "
              f"{rate:.2f} (target >= 0.95) {verdict(rate >= 0.95)}; 429s {w['retries']:.0f} "
              f"(target 0) {verdict(w['retries'] == 0)}")  # fmt: skip
        print(f"      requests/s {w['requests'] / w['seconds']:.1f} (the budget allows 50); "
              f"seconds spent waiting for the budget (summed over requests): {w['waited']:.1f}")  # fmt: skip
        low = max(10, a.weights_seconds // 2)
        server = Server(a.symbols, rate_limits=True, budget=300, window=10.0)
        try:
            w = sub("weights", server.url, f"arctic+lmdb://{tmp / 'w300'}", a.symbols, low, 300)
        finally:
            server.close()
        rate = (20 + 2 * (w["requests"] - 1)) / w["seconds"] / 30.0
        print(f"   c. budget 300 weight/10 s (lower than published), {w['seconds']:.0f} s: weight "
              f"rate / budget {rate:.2f}; 429s {w['retries']:.0f} (target 0) "
              f"{verdict(w['retries'] == 0)}")  # fmt: skip


if __name__ == "__main__":
    main()
