"""Bybit v5 (``/v5``): spot and linear (USDT) perpetuals.

- ``rest``: :class:`Bybit`, the dialect: routes, limits, errors, handlers.
- ``ws``: the public websocket protocol (``op`` subscribe/ping) and the
  ``allLiquidation`` topic of linear perpetuals.
- ``_common``: what both halves write alike (market ids).
"""

from __future__ import annotations

from .rest import INTERVALS, Bybit

__all__ = ["INTERVALS", "Bybit"]
