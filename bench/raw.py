"""Raw capture benchmark: how small the stored frames are, and what capturing costs.

    .venv/bin/python bench/raw.py                      # 3 symbols x 6,000 trades/min, 20 s a run
    .venv/bin/python bench/raw.py --symbols 5 --seconds 30 --rounds 3

1. Size: the real websocket messages recorded from Binance (spot, USD-M: aggTrade and
   kline_1m) and OKX (trades) in ``tests/data/realdata/exchange_ws_samples``, batched
   per second of receipt as a collector flushes them, encoded as the ``raw`` rows are
   (``mdcollect.collectors.encode_raw``: zlib, then base64): the frames' JSON bytes
   over the stored bytes, beside zlib alone (no base64) and zlib level 9.
2. Cost: ``TradesCollector(mode="ws", candles=["1s"])`` in a ``DataCollector`` writing
   to ArcticDB/LMDB in a temp dir, against the emulator in its own process, without
   and with ``raw=True``, alternating for ``--rounds`` rounds of ``--seconds`` each.
   Printed: this process's CPU ms per 1,000 trades stored in each run and the ratio
   raw / plain (the capture's cost), trades stored per second, and the stored raw bytes
   per trade.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

SAMPLES = Path(__file__).resolve().parents[1] / "tests/data/realdata/exchange_ws_samples"


def sizes() -> None:
    from mdcollect.collectors import encode_raw

    print("size of the stored frames (real messages, batched per second of receipt)")
    print(f"{'file':<52} {'frames':>6} {'json B':>8} {'stored B':>9} {'ratio':>6}"
          f" {'zlib only':>9} {'zlib 9':>7}")  # fmt: skip
    for path in sorted(SAMPLES.glob("*.jsonl")):
        batches: dict[int, list[tuple[int, str, str]]] = {}
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            text = json.dumps(rec["msg"], separators=(",", ":"))
            batches.setdefault(rec["recv_ts"] // 1000, []).append((rec["recv_ts"], "/ws", text))
        raw = sum(len(f[2].encode()) for b in batches.values() for f in b)
        stored = zl = zl9 = 0
        for frames in batches.values():
            row = encode_raw("x", "trades", ["A/B"], {}, frames)
            data = row["data"].iloc[0]
            stored += len(data) + len(row["id"].iloc[0]) + 8
            packed = base64.b64decode(data)
            zl += len(packed)
            zl9 += len(zlib.compress(zlib.decompress(packed), 9))
        n = sum(len(b) for b in batches.values())
        print(f"{path.name:<52} {n:>6} {raw:>8} {stored:>9} {raw / stored:>6.2f}"
              f" {raw / zl:>9.2f} {raw / zl9:>7.2f}")  # fmt: skip


async def one_run(url: str, symbols: list[str], seconds: float, raw: bool) -> dict[str, float]:
    from mdcollect import DataCollector, DatasetKey, open_storage
    from mdcollect.collectors import TradesCollector
    from mdcollect.exchanges import ExchangeClient

    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        store = open_storage(f"arctic+lmdb://{tmp}/arctic")
        client = ExchangeClient("binance", base_url=url, enableRateLimit=False)
        c = TradesCollector(client, symbols, mode="ws", candles=["1s"])
        async with DataCollector([c], store, raw=raw):
            await asyncio.sleep(3)  # warm up: connected, first writes done
            n0, cpu0, t0 = c.stats.rows_written, time.process_time(), time.perf_counter()
            await asyncio.sleep(seconds)
            n1, cpu1, t1 = c.stats.rows_written, time.process_time(), time.perf_counter()
        await client.close()
        trades = sum(len(store.read(DatasetKey("binance", s, "trades"))) for s in symbols)
        raw_bytes = 0
        if raw:
            rows = store.read(DatasetKey("binance", "trades", "raw"))
            raw_bytes = int(rows["data"].str.len().sum())
        store.close()
    return {
        "cpu_ms_per_1000": (cpu1 - cpu0) * 1000 / max(1, n1 - n0) * 1000,
        "rows_per_s": (n1 - n0) / (t1 - t0),
        "raw_bytes_per_trade": raw_bytes / max(1, trades),
    }


async def cost(n_symbols: int, tpm: float, seconds: float, rounds: int) -> None:
    from mdcollect.testing import EmulatorProcess, MarketSpec

    symbols = [f"S{i}/USDT" for i in range(n_symbols)]
    listed = int(time.time() * 1000) - 60_000
    specs = [
        MarketSpec(s, 10.0 * (i + 1), trades_per_minute=tpm, listed=listed, exchange="binance")
        for i, s in enumerate(symbols)
    ]
    print(f"\ncost of capturing: TradesCollector, {n_symbols} symbols x {tpm:,.0f} trades/min,"
          f" {seconds:.0f} s a run, {rounds} rounds (emulator in its own process)")  # fmt: skip
    results: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    with EmulatorProcess(seed=1, markets=specs, rate_limits=False) as proc:
        for _ in range(rounds):
            for raw in (False, True):
                results[raw].append(await one_run(proc.url, symbols, seconds, raw))

    def mean(raw: bool, what: str) -> float:
        return sum(r[what] for r in results[raw]) / len(results[raw])

    for raw in (False, True):
        print(f"  raw={raw!s:<5} CPU {mean(raw, 'cpu_ms_per_1000'):7.1f} ms per 1,000 rows stored,"
              f" {mean(raw, 'rows_per_s'):8.0f} rows/s")  # fmt: skip
    print(f"  ratio raw/plain CPU per row: "
          f"{mean(True, 'cpu_ms_per_1000') / mean(False, 'cpu_ms_per_1000'):.2f}; "
          f"stored raw: {mean(True, 'raw_bytes_per_trade'):.0f} B per trade")  # fmt: skip


def main(argv: Any = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--symbols", type=int, default=3)
    p.add_argument("--trades-per-minute", type=float, default=6_000.0, help="per symbol")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--no-cost", action="store_true", help="only the sizes")
    args = p.parse_args(argv)
    sizes()
    if not args.no_cost:
        asyncio.run(cost(args.symbols, args.trades_per_minute, args.seconds, args.rounds))


if __name__ == "__main__":
    main()
