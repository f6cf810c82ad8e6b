"""A bot that embeds a DataCollector and trades on closed candles.

The collector stores BTC/USDT's closed 1-second candles as the exchange closes them;
``on_rows`` hands each batch to the bot once it is stored, and the bot prints a
moving-average crossover signal per closed candle:

    python examples/bot.py --storage parquet://bot-store        # Binance, until Ctrl-C
    python examples/bot.py --emulate --max-candles 10            # offline: the built-in emulator

``MDCOLLECT_EMULATE=1`` is the same as ``--emulate``; offline the bot stops after 5
candles unless ``--max-candles`` says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from collections import deque

import pandas as pd

import mdcollect
from mdcollect.collectors import OHLCVCollector
from mdcollect.storage import default_storage_url, emulated_storage_url
from mdcollect.testing import ExchangeEmulator, MarketSpec


class CrossoverBot:
    """A fast and a slow moving average of the closes; long while fast > slow."""

    def __init__(self, fast: int, slow: int, max_candles: int | None) -> None:
        self.fast, self.slow, self.max_candles = fast, slow, max_candles
        self.closes: deque[float] = deque(maxlen=slow)
        self.last: pd.Timestamp | None = None
        self.seen = 0
        self.done = asyncio.Event()

    async def on_candles(self, key: mdcollect.DatasetKey, rows: pd.DataFrame) -> None:
        """Called by the DataCollector with each batch of closed candles it stored."""
        for ts, close in rows["close"].items():
            if self.done.is_set() or (self.last is not None and ts <= self.last):
                continue  # a refilled gap may bring older candles: the bot has acted on them
            self.last = ts
            self.closes.append(float(close))
            self.seen += 1
            print(f"{ts:%Y-%m-%dT%H:%M:%S} {key.symbol} close={close} {self.signal()}", flush=True)
            if self.max_candles is not None and self.seen >= self.max_candles:
                self.done.set()

    def signal(self) -> str:
        closes = list(self.closes)
        if len(closes) < self.slow:
            return f"warming up ({len(closes)}/{self.slow})"
        fast = sum(closes[-self.fast :]) / self.fast
        slow = sum(closes) / self.slow
        side = "long" if fast > slow else "short" if fast < slow else "flat"
        return f"fast={fast:.6f} slow={slow:.6f} {side}"


async def main(args: argparse.Namespace) -> None:
    async with contextlib.AsyncExitStack() as stack:
        if args.emulate:
            # a busy emulated market: ten trades a second, so 1-second candles move
            busy = MarketSpec(args.symbol, 30_000.0, trades_per_minute=600)
            emu = stack.enter_context(ExchangeEmulator(markets=[busy]))
            exchange = await stack.enter_async_context(emu.client(args.exchange))
        else:
            exchange = await stack.enter_async_context(mdcollect.ExchangeClient(args.exchange))
        storage = stack.enter_context(mdcollect.open_storage(args.storage))
        bot = CrossoverBot(args.fast, args.slow, args.max_candles)
        candles = OHLCVCollector(exchange, [args.symbol], timeframes=[args.timeframe])
        collector = mdcollect.DataCollector([candles], storage)
        collector.on_rows("ohlcv", bot.on_candles)  # before it starts: the bot hears every candle
        async with collector:
            await bot.done.wait()  # or Ctrl-C
    print(f"stopped after {bot.seen} candles; stored in {storage.url}")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--exchange", default="binance")
    p.add_argument("--symbol", default="BTC/USDT")
    p.add_argument("--timeframe", default="1s")
    p.add_argument("--fast", type=int, default=3)
    p.add_argument("--slow", type=int, default=5)
    p.add_argument("--max-candles", type=int, default=None, help="stop after N closed candles")
    p.add_argument("--storage", default=None, help="storage URL (default: the default store)")
    p.add_argument("--emulate", action="store_true", default=None, help="use the emulator")
    args = p.parse_args()
    if args.emulate is None:
        args.emulate = os.environ.get("MDCOLLECT_EMULATE", "").lower() in ("1", "true", "yes", "on")
    if args.emulate and args.max_candles is None:
        args.max_candles = 5
    if args.storage is None:  # emulated candles never go to the real default store
        args.storage = emulated_storage_url() if args.emulate else default_storage_url()
    return args


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(parse_args()))
