"""What Bybit's REST and websocket halves write alike."""

from __future__ import annotations

from mdcollect.testing._market import MarketSpec

__all__ = ["_market_id"]


def _market_id(spec: MarketSpec) -> str:
    """Bybit's instrument name: ``BTCUSDT`` for both spot and the linear perpetual."""
    return f"{spec.base}{spec.quote}"
