"""OKX v5 (``/api/v5``): spot and USDT-margined perpetual swaps.

Serves ccxt id ``okx`` (project alias ``okx_futures``), REST and websockets:

- ``rest``: :class:`Okx`, the dialect: routes, paging rules, errors, handlers.
- ``ws``: the v5 public and business websocket channels.
- ``_common``: what both halves share (bars, contract values, instrument ids, funding).
"""

from __future__ import annotations

from ._common import BARS, CT_VAL_EXP
from .rest import RECENT_CANDLES, Okx

__all__ = ["BARS", "CT_VAL_EXP", "RECENT_CANDLES", "Okx"]
