"""Exchange REST dialects served by the emulator: one module per venue.

Adding a dialect: write ``dialects/<venue>.py`` with a :class:`Dialect` subclass
(routes, default markets, limits, error format) and add one line to ``DIALECTS``.
"""

from __future__ import annotations

from mdcollect.testing.dialects._base import Ctx, Dialect, DialectError, Reply, Route
from mdcollect.testing.dialects.binance import Binance
from mdcollect.testing.dialects.bybit import Bybit
from mdcollect.testing.dialects.kraken import Kraken
from mdcollect.testing.dialects.okx import Okx

__all__ = ["DIALECTS", "Ctx", "Dialect", "DialectError", "Reply", "Route"]

#: venue name -> dialect class
DIALECTS: dict[str, type[Dialect]] = {
    "binance": Binance,
    "okx": Okx,
    "bybit": Bybit,
    "kraken": Kraken,
}
