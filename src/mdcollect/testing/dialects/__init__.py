"""Exchange dialects served by the emulator: one package per venue.

Every venue has one shape: ``dialects/<venue>/rest.py`` holds its :class:`Dialect`
subclass (routes, default markets, limits, error format), ``ws.py`` its websocket
:class:`WsSession` where websockets are emulated, and ``_common.py`` what both halves
render alike. What every venue shares is in ``_base.py``.

Adding a dialect: write ``dialects/<venue>/`` the same way and add one line to
``DIALECTS``.
"""

from __future__ import annotations

from mdcollect.testing.dialects._base import Ctx, Dialect, DialectError, Reply, Route, WsSession
from mdcollect.testing.dialects._render import encode_body
from mdcollect.testing.dialects.binance import Binance
from mdcollect.testing.dialects.bybit import Bybit
from mdcollect.testing.dialects.coinbase import Coinbase
from mdcollect.testing.dialects.kraken import Kraken
from mdcollect.testing.dialects.okx import Okx

__all__ = [
    "DIALECTS",
    "Ctx",
    "Dialect",
    "DialectError",
    "Reply",
    "Route",
    "WsSession",
    "encode_body",
]

#: venue name -> dialect class
DIALECTS: dict[str, type[Dialect]] = {
    "binance": Binance,
    "okx": Okx,
    "bybit": Bybit,
    "kraken": Kraken,
    "coinbase": Coinbase,
}
