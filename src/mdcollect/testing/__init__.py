"""Test helpers: real exchange REST dialects served on 127.0.0.1 from a synthetic market.

:class:`ExchangeEmulator` serves Binance (spot ``/api/v3``, USD-M ``/fapi/v1``),
OKX (``/api/v5``), Bybit (``/v5``) and Kraken (``/0/public``) on one loopback port.
Unmodified ccxt talks to it over HTTP once its API URLs point there; the data
comes from a deterministic :class:`SyntheticMarket` that doubles as ground truth,
and :class:`Fault` switches on failures (5xx, 429/418, timeouts, dropped
connections, broken JSON, duplicated rows). Use it like moto for AWS::

    import ccxt
    from mdcollect.testing import ExchangeEmulator, Fault

    NOW = 1_700_000_000_000
    with ExchangeEmulator(seed=1, clock=lambda: NOW) as emu:
        ex = emu.ccxt("binance", async_=False)      # or redirect_urls(ex, emu.url)
        since = NOW - 86_400_000
        rows = ex.fetch_ohlcv("BTC/USDT", "1m", since=since, limit=1000)
        truth = emu.market.candles("binance", "BTC/USDT", "1m", since, since + 1000 * 60_000)
        assert rows == truth.to_list()

        emu.faults.add(Fault("503", route="klines", count=1))
        try:
            ex.fetch_ohlcv("BTC/USDT", "1m", since=since)
        except ccxt.ExchangeNotAvailable:
            pass
        assert emu.requests[-1].status == 503

``python -m mdcollect.testing --port 8080 --seed 1`` serves until killed (first
stdout line: its URL); :class:`EmulatorProcess` wraps that for tests.
"""

from __future__ import annotations

from mdcollect.testing._emulator import ExchangeEmulator, RequestRecord
from mdcollect.testing._faults import Fault, FaultKind, Faults, Limit
from mdcollect.testing._market import DEFAULT_LISTING, Candles, MarketSpec, SyntheticMarket, Trades
from mdcollect.testing._process import EmulatorProcess

__all__ = [
    "DEFAULT_LISTING",
    "Candles",
    "EmulatorProcess",
    "ExchangeEmulator",
    "Fault",
    "FaultKind",
    "Faults",
    "Limit",
    "MarketSpec",
    "RequestRecord",
    "SyntheticMarket",
    "Trades",
]
