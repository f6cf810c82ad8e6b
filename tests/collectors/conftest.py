"""Shared helpers for the live collection tests: a busy emulated market, truth frames."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pandas as pd
import pytest

from mdcollect.exchanges import ExchangeClient, RetryPolicy
from mdcollect.testing import ExchangeEmulator, MarketSpec

SYMBOLS = ["BTC/USDT", "ETH/USDT"]
OHLCV = ["open", "high", "low", "close", "volume"]


@pytest.fixture(scope="module")
def emu() -> Iterator[ExchangeEmulator]:
    markets = [
        MarketSpec("BTC/USDT", 30_000.0, trades_per_minute=600),
        MarketSpec("ETH/USDT", 2_000.0, trades_per_minute=300),
    ]
    with ExchangeEmulator(seed=3, markets=markets, rate_limits=False) as e:
        # generating a busy day of trades takes a while: do it before the clock matters
        now = e.market.now()
        for s in SYMBOLS:
            e.market.trades("binance", s, now - 1000, now)
        yield e


def client(emu: ExchangeEmulator, key: str = "binance") -> ExchangeClient:
    return ExchangeClient(
        key, base_url=emu.url, enableRateLimit=False, timeout=10_000,
        retry=RetryPolicy(max_attempts=20, base_delay=0.02, max_delay=0.3),
    )  # fmt: skip


def truth_trades(emu: ExchangeEmulator, sym: str, lo: int, hi: int) -> pd.DataFrame:
    return emu.market.trades("binance", sym, lo, hi).to_frame()


def truth_candles(emu: ExchangeEmulator, sym: str, tf: str, lo: int, hi: int) -> pd.DataFrame:
    return emu.market.candles("binance", sym, tf, lo, hi).to_frame()


async def wait_until(pred: object, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        if pred():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")
