"""Shared helpers for the live collection tests: a busy emulated market, truth frames."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import IO

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


class Lines:
    """The lines a subprocess writes to ``stream``, read in a thread, so a test waits
    for what it needs (with a deadline) instead of sleeping a fixed time."""

    def __init__(self, stream: IO[str] | None) -> None:
        assert stream is not None
        self.lines: list[str] = []
        self.closed = False
        self._cond = threading.Condition()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def wait(self, pred: Callable[[list[str]], bool], seconds: float) -> list[str]:
        """The lines so far, once ``pred(lines)`` holds; AssertionError after ``seconds``."""
        with self._cond:
            self._cond.wait_for(lambda: pred(self.lines) or self.closed, seconds)
            if not pred(self.lines):
                raise AssertionError(f"not seen in {seconds}s: {self.lines[-20:]}")
            return list(self.lines)

    def until_closed(self, seconds: float) -> list[str]:
        """Every line, once the stream is closed."""
        return self.wait(lambda _: self.closed, seconds)
