"""Mark-price, index-price and premium-index candles, derived from the last-price candles.

Perpetuals publish three more candle series besides the traded (last) price. The
emulator derives them from the synthetic market's own candles, so they are
consistent with its prices, deterministic, and cheap:

- **mark** = last x (1 + m(t)), m(t) = 400 ppm x sin(2 pi t / 8 h): within 0.04 % of
  the last price, oscillating over a funding period.
- **index** = last x (1 + i(t)), i(t) = 250 ppm x sin(2 pi t / 5 h + 1): within
  0.025 % of the last price.
- **premium** = mark / index - 1, per price of the candle (open, high, low, close
  of the mark over the same of the index), then high and low widened to the
  extremes of the four so that ``high >= open, close >= low``.

``t`` is the candle's open time, so the factor is constant within a candle:
multiplying by a positive constant (rounded down to the price tick) keeps the
order of open, high, low and close. The candles of one timeframe are therefore
*not* aggregates of another timeframe's (a 1h mark candle is last-price 1h x
m(hour)); each timeframe is its own series, as each is on the exchanges.

Mark and index candles exist exactly where last-price candles exist (listing,
outages) and have no volume (zero; the dialects write what each venue writes).
Premium values are in units of ``10**-8`` (:data:`PREMIUM_DECIMALS`): the spec
handed with them says so, so the dialects render them like prices.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

import attrs
import numpy as np

from .results import Agg, RawCandles
from .units import HOUR, I64

__all__ = ["PREMIUM_DECIMALS", "PRICE_KINDS", "PriceKind", "derive"]

PriceKind = Literal["mark", "index", "premium"]
#: The derived candle series.
PRICE_KINDS: Final[tuple[PriceKind, ...]] = get_args(PriceKind)
#: Premium index candles are rendered with 8 decimals (Binance writes 8).
PREMIUM_DECIMALS: Final = 8

_PPM: Final = 1_000_000
_MARK_PPM: Final = 400.0
_MARK_PERIOD: Final = 8 * HOUR
_INDEX_PPM: Final = 250.0
_INDEX_PERIOD: Final = 5 * HOUR


def _basis(start: I64, amplitude: float, period: int, phase: float) -> I64:
    angle = 2.0 * np.pi * (start % period).astype(np.float64) / period + phase
    out: I64 = np.rint(amplitude * np.sin(angle)).astype(np.int64)
    return out


def _scaled(raw: RawCandles, ppm: I64) -> Agg:
    a = raw.agg
    factor = _PPM + ppm

    def price(col: I64) -> I64:
        out: I64 = (col * factor) // _PPM
        return out

    zero = np.zeros(len(a), dtype=np.int64)
    return Agg(
        start=a.start,
        count=a.count,
        open=price(a.open),
        high=price(a.high),
        low=price(a.low),
        close=price(a.close),
        volume=zero,
        quote=zero,
        buy_volume=zero,
        buy_quote=zero,
    )


def derive(raw: RawCandles, kind: PriceKind) -> RawCandles:
    """The ``kind`` candles of the last-price candles ``raw`` (see the module docstring).

    >>> mark = derive(raw, "mark")   # same open times, spec and frame as raw
    """
    start = raw.agg.start
    mark = _scaled(raw, _basis(start, _MARK_PPM, _MARK_PERIOD, 0.0))
    if kind == "mark":
        return attrs.evolve(raw, agg=mark)
    index = _scaled(raw, _basis(start, _INDEX_PPM, _INDEX_PERIOD, 1.0))
    if kind == "index":
        return attrs.evolve(raw, agg=index)
    one = 10**PREMIUM_DECIMALS

    def premium(m: I64, i: I64) -> I64:
        # in doubles: m * 10**8 could overflow int64 for prices with many decimals
        ratio = m.astype(np.float64) / np.maximum(i, 1).astype(np.float64)
        out: I64 = np.rint((ratio - 1.0) * one).astype(np.int64)
        return out

    cols = [premium(getattr(mark, c), getattr(index, c)) for c in ("open", "high", "low", "close")]
    stacked = np.vstack(cols)
    agg = attrs.evolve(
        mark, open=cols[0], high=stacked.max(axis=0), low=stacked.min(axis=0), close=cols[3]
    )
    spec = attrs.evolve(raw.spec, price_decimals=PREMIUM_DECIMALS)
    return RawCandles(agg, spec, raw.now, raw.frame)
