"""Kraken spot (``/0/public``).

- ``rest``: :class:`Kraken`, the dialect: routes, limits, errors, handlers.

Websockets are not emulated yet; they would go in ``ws`` beside ``rest``, as for
Binance and OKX.
"""

from __future__ import annotations

from .rest import INTERVALS, OHLC_WINDOW, SUB_MS_NS, TRADES_PAGE, Kraken

__all__ = ["INTERVALS", "OHLC_WINDOW", "SUB_MS_NS", "TRADES_PAGE", "Kraken"]
