"""Coinbase Advanced Trade (``/api/v3/brokerage/market``, plus the v2 reference data ccxt
loads): spot products, candles at Coinbase's fixed granularities, trades.

- ``rest``: :class:`Coinbase`, the dialect: routes, limits, errors, handlers.
- ``_common``: granularities, product ids, the product id inside a templated path.

Websockets are not emulated; they would go in ``ws`` beside ``rest``.
"""

from __future__ import annotations

from ._common import GRANULARITIES
from .rest import CANDLE_PAGE, TRADES_PAGE, Coinbase

__all__ = ["CANDLE_PAGE", "GRANULARITIES", "TRADES_PAGE", "Coinbase"]
