"""Deterministic synthetic market: trades first, candles derived exactly from them.

Every (venue, symbol) has its own seeded stream of trades, generated one UTC day at
a time with numpy. A day depends only on ``(seed, venue, symbol, day)`` and the
market's spec, never on another day, so any day can be produced in any process
in any order. Candles of every timeframe are reduced from those trades (first,
max, min, last, sum), so trades and candles always agree.

Fast markets (more than :data:`FAST_TRADES_PER_MINUTE` trades per minute, whose
days would not fit in memory) are generated one minute ("block") at a time
instead: a block depends only on ``(seed, venue, symbol, minute)``, the per-minute
counts of its day (one cheap seeded draw per day, which also numbers the ids),
and the spec, so reading ``[start, end)`` generates only the minutes it touches.

Prices are integers in units of ``10**-price_decimals`` and amounts integers in
units of ``10**-amount_decimals`` until they are rendered, so sums are exact and
``float(units) / 10**decimals`` is the same double that parsing the decimal string
of a dialect gives.

Where things are (each module imports only the ones above it):

- ``units``: ms time units, numpy array types.
- ``spec``: :class:`MarketSpec` and when a market trades (listing, outages, fast or not).
- ``listings``: the altcoins every venue lists by default, with their listing days.
- ``grid``: :class:`Frame`, the candle grid of a timeframe.
- ``results``: the row types handed out, integer (``Raw*``) and float (ground truth).
- ``cache``: the process-wide caches and their sizes (the memory budget).
- ``model``: the price model and the seeded draws.
- ``reduce``: rows into buckets (trades into candles).
- ``days`` / ``blocks``: a slow market's day, a fast market's minute, as drawn.
- ``ids``: trade ids, and the numbered day or minute every read starts from.
- ``fast``: reads over fast markets.
- ``prices``: mark, index and premium candles derived from the last-price candles.
- ``synthetic``: :class:`SyntheticMarket`, the façade the dialects and tests use.
"""

from __future__ import annotations

from .grid import Frame
from .listings import LISTINGS, Listing, listed_markets
from .prices import PRICE_KINDS, PriceKind, derive
from .results import Candles, RawCandles, RawTrades, Trades
from .spec import (
    DEFAULT_LISTING,
    FAST_TRADES_PER_MINUTE,
    FUNDING_8H_TO_4H,
    MAX_TRADES_PER_MINUTE,
    MarketSpec,
)
from .synthetic import SyntheticMarket
from .units import DAY, HOUR, MINUTE, SECOND, WEEK

__all__ = [
    "DAY",
    "DEFAULT_LISTING",
    "FAST_TRADES_PER_MINUTE",
    "FUNDING_8H_TO_4H",
    "HOUR",
    "LISTINGS",
    "MAX_TRADES_PER_MINUTE",
    "MINUTE",
    "PRICE_KINDS",
    "SECOND",
    "WEEK",
    "Candles",
    "Frame",
    "Listing",
    "MarketSpec",
    "PriceKind",
    "RawCandles",
    "RawTrades",
    "SyntheticMarket",
    "Trades",
    "derive",
    "listed_markets",
]
