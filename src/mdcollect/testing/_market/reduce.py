"""Reduction: consecutive rows (trades, seconds, minutes, days) into buckets (candles)."""

from __future__ import annotations

import attrs
import numpy as np

from .results import Agg
from .units import I64, INT_MAX, INT_MIN, i64


def reduce_rows(units: Agg, starts: I64) -> Agg:
    """Aggregate consecutive unit rows into buckets beginning at row indices ``starts``."""
    n = len(units)
    if n == 0:
        m = len(starts)
        return Agg(*(i64(m) for _ in attrs.fields(Agg)))
    ends = np.append(starts[1:], n)
    empty = starts >= ends
    # One sentinel row past the end lets empty trailing buckets index ``n`` without
    # clamping, which would cut the last unit out of the bucket before them.
    idx = np.minimum(starts, n)

    def total(x: I64) -> I64:
        cs = np.concatenate([i64(1), np.cumsum(x)])
        out: I64 = cs[ends] - cs[starts]
        return out

    def pad(x: I64, fill: int) -> I64:
        return np.append(x, np.int64(fill))

    count = total(units.count)
    has = units.count > 0
    high = np.maximum.reduceat(pad(np.where(has, units.high, INT_MIN), INT_MIN), idx)
    low = np.minimum.reduceat(pad(np.where(has, units.low, INT_MAX), INT_MAX), idx)
    pos = np.arange(n, dtype=np.int64)
    first = np.minimum.reduceat(pad(np.where(has, pos, n), n), idx)
    last = np.maximum.reduceat(pad(np.where(has, pos, -1), -1), idx)
    none = empty | (count == 0)
    first = np.where(none, 0, np.minimum(first, n - 1))
    last = np.where(none, 0, np.maximum(last, 0))
    zero = np.zeros(len(starts), dtype=np.int64)
    return Agg(
        zero,
        count,
        np.where(none, 0, units.open[first]),
        np.where(none, 0, high),
        np.where(none, 0, low),
        np.where(none, 0, units.close[last]),
        total(units.volume),
        total(units.quote),
        total(units.buy_volume),
        total(units.buy_quote),
    )
