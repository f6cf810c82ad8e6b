"""The altcoins every venue lists by default beside BTC and ETH, with their listing dates.

One row per coin: a plausible price level, the day it was listed (UTC), the typical
trade size and the precision of its spot and its USDT-perpetual market. Each dialect
keeps its own BTC and ETH specs (their precisions differ by venue, as on the real
venues) and adds these with :func:`listed_markets`; a new dialect adds one line.
A coin listed later than 2020-01-01 has no trades, candles or funding before its
listing day on any endpoint (see :func:`.spec.alive_intervals`).
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from .spec import MarketSpec


@attrs.frozen
class Precision:
    """Price decimals, tick (in units of ``10**-price_decimals``), amount decimals."""

    price_decimals: int
    tick: int
    amount_decimals: int


@attrs.frozen
class Listing:
    """One coin: price level, listing day (ms), mean trade size, spot and perp precision.

    ``venues`` limits the coin to some venues (BNB is Binance's own); empty: all.
    """

    base: str
    price: float
    listed: int
    mean_amount: float
    spot: Precision
    perp: Precision
    venues: tuple[str, ...] = ()


LISTINGS: tuple[Listing, ...] = (
    Listing("SOL", 100.0, 1_600_041_600_000, 2.0, Precision(2, 1, 3), Precision(2, 1, 0)),
    Listing("XRP", 0.5, 1_578_268_800_000, 500.0, Precision(4, 1, 0), Precision(4, 1, 1)),
    Listing("DOGE", 0.08, 1_594_339_200_000, 3_000.0, Precision(5, 1, 0), Precision(5, 1, 0)),
    Listing("ADA", 0.4, 1_580_428_800_000, 800.0, Precision(4, 1, 1), Precision(4, 1, 0)),
    Listing(
        "BNB",
        300.0,
        1_581_292_800_000,
        1.0,
        Precision(2, 1, 3),
        Precision(2, 1, 2),
        venues=("binance",),
    ),
    Listing("LTC", 80.0, 1_578_528_000_000, 3.0, Precision(2, 1, 3), Precision(2, 1, 3)),
    Listing("LINK", 15.0, 1_579_219_200_000, 20.0, Precision(2, 1, 2), Precision(3, 1, 2)),
    Listing("AVAX", 30.0, 1_632_268_800_000, 10.0, Precision(2, 1, 2), Precision(3, 1, 0)),
    Listing("WIF", 2.0, 1_709_596_800_000, 300.0, Precision(3, 1, 2), Precision(4, 1, 1)),
)


def listed_markets(venue: str, *, spot: bool = True, perp: bool = True) -> list[MarketSpec]:
    """The :data:`LISTINGS` a venue lists: ``X/USDT`` spot and ``X/USDT:USDT`` perpetuals."""
    out: list[MarketSpec] = []
    for coin in LISTINGS:
        if coin.venues and venue not in coin.venues:
            continue
        kinds: Sequence[tuple[str, Precision]] = [
            *([(f"{coin.base}/USDT", coin.spot)] if spot else []),
            *([(f"{coin.base}/USDT:USDT", coin.perp)] if perp else []),
        ]
        for symbol, p in kinds:
            out.append(
                MarketSpec(
                    symbol,
                    coin.price,
                    price_decimals=p.price_decimals,
                    tick=p.tick,
                    amount_decimals=p.amount_decimals,
                    mean_amount=coin.mean_amount,
                    listed=coin.listed,
                )
            )
    return out
