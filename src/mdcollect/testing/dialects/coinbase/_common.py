"""What Coinbase's REST endpoints share: granularities, product ids, and the product
id inside a templated path (``/market/products/{product_id}/candles``)."""

from __future__ import annotations

from mdcollect.testing._market import MarketSpec

#: Advanced Trade ``granularity`` -> ccxt timeframe (the only candle lengths served).
GRANULARITIES: dict[str, str] = {
    "ONE_MINUTE": "1m",
    "FIVE_MINUTE": "5m",
    "FIFTEEN_MINUTE": "15m",
    "THIRTY_MINUTE": "30m",
    "ONE_HOUR": "1h",
    "TWO_HOUR": "2h",
    "SIX_HOUR": "6h",
    "ONE_DAY": "1d",
}

#: Fiat currencies (``/v2/currencies``); every other code is crypto (``/v2/currencies/crypto``).
FIAT: dict[str, str] = {"USD": "US Dollar", "EUR": "Euro", "GBP": "British Pound"}


def product_id(spec: MarketSpec) -> str:
    """``BTC/USD`` -> ``BTC-USD``."""
    return f"{spec.base}-{spec.quote}"


def path_product(path: str) -> str:
    """The ``{product_id}`` segment of ``/api/v3/brokerage/market/products/{product_id}[/...]``.

    >>> path_product("/api/v3/brokerage/market/products/BTC-USD/candles")
    'BTC-USD'
    """
    parts = path.split("/")
    return parts[6] if len(parts) > 6 else ""
