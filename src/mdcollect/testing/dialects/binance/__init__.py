"""Binance spot (``/api/v3``) and USD-M futures (``/fapi/v1``), plus empty COIN-M (``/dapi/v1``).

Serves ccxt ids ``binance`` and ``binanceusdm`` (project alias ``binance_futures``),
REST and websocket market streams:

- ``rest``: :class:`Binance`, the dialect: routes, request weights, errors, handlers.
- ``ws``: the websocket market streams (``SUBSCRIBE`` protocol and each stream).
- ``_common``: what both halves write alike (market ids, numbers, the 24 h ticker).
"""

from __future__ import annotations

from ._common import FUTURES_INTERVALS, SPOT_INTERVALS
from .rest import Binance

__all__ = ["FUTURES_INTERVALS", "SPOT_INTERVALS", "Binance"]
