"""Bybit v5 (``/v5``): spot and linear (USDT) perpetuals.

- ``rest``: :class:`Bybit`, the dialect: routes, limits, errors, handlers.

Websockets are not emulated yet; they would go in ``ws`` beside ``rest``, as for
Binance and OKX.
"""

from __future__ import annotations

from .rest import INTERVALS, Bybit

__all__ = ["INTERVALS", "Bybit"]
