"""Constants and helpers shared by the emulator tests."""

from __future__ import annotations

from typing import Any

from mdcollect.testing import ExchangeEmulator, SyntheticMarket
from mdcollect.testing.dialects import DIALECTS

#: 2023-11-14T22:13:20Z, the emulator's frozen "now".
NOW = 1_700_000_000_000
MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000


def sync_exchange(emu: ExchangeEmulator, exchange_id: str, **config: Any) -> Any:
    """A sync ccxt exchange on the emulator, markets loaded, ccxt throttling off."""
    ex = emu.ccxt(exchange_id, async_=False, enableRateLimit=False, timeout=5_000, **config)
    ex.load_markets()
    return ex


def make_market(seed: int = 3, clock_ms: int = NOW, **spec: Any) -> SyntheticMarket:
    """A market with every dialect's default markets (binance BTC/USDT configured by ``spec``)."""
    venues = {name: cls().default_markets() for name, cls in DIALECTS.items()}
    market = SyntheticMarket(
        seed, clock=lambda: clock_ms, venues=venues, aliases={"binanceusdm": "binance"}
    )
    if spec:
        market.configure("binance", "BTC/USDT", **spec)
    return market
