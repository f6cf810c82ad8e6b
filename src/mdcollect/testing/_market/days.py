"""Slow markets, a UTC day at a time: the trades of a day as drawn, before ids.

A day depends only on ``(seed, venue, symbol, day)`` and the spec: per-minute
counts (Poisson), then timestamps, prices, amounts and sides; listing and outages
then remove what falls outside the market's trading time.
"""

from __future__ import annotations

import numpy as np

from .model import fills, poisson_cdf, seeded_rng
from .results import EMPTY_TRADES, RawTrades
from .spec import MarketKey, alive_intervals
from .units import DAY, I64, MINUTE, i64


def minute_counts(key: MarketKey, day: int) -> I64:
    """Trades per minute of ``day`` before listing/outage removal (first minute >= 1)."""
    seed, venue, spec = key
    u = seeded_rng(seed, venue, spec.symbol, day, "n").random(1440)
    counts: I64 = np.searchsorted(poisson_cdf(spec.trades_per_minute), u, side="right").astype(
        np.int64
    )
    counts[0] = max(int(counts[0]), 1)
    return counts


def unique_sorted(offsets: I64) -> I64:
    """Sort ms offsets within a day and make them unique (one trade per ms, as ids need)."""
    ts = np.sort(offsets)
    while True:
        dup = np.flatnonzero(ts[1:] == ts[:-1]) + 1
        if not len(dup):
            return ts
        ts[dup] = np.where(ts[dup] + 1 < DAY, ts[dup] + 1, ts[dup] - 2)
        ts.sort()


def generate_kept(key: MarketKey, day: int) -> RawTrades:
    """All trades of one UTC day (before "now" filtering), ids not yet assigned."""
    seed, venue, spec = key
    start = day * DAY
    alive = alive_intervals(spec, start, start + DAY)
    if not alive:
        return EMPTY_TRADES
    counts = minute_counts(key, day)
    n = int(counts.sum())
    rng = seeded_rng(seed, venue, spec.symbol, day, "t")
    minute = np.repeat(np.arange(1440, dtype=np.int64), counts)
    ts = unique_sorted(minute * MINUTE + rng.integers(0, MINUTE, n)) + start
    price, amount, buy = fills(key, rng, ts)
    if len(alive) == 1 and alive[0] == (start, start + DAY):
        return RawTrades(i64(n), ts, price, amount, buy)
    keep = np.zeros(n, dtype=np.bool_)
    for a, b in alive:
        keep |= (ts >= a) & (ts < b)
    return RawTrades(i64(int(keep.sum())), ts[keep], price[keep], amount[keep], buy[keep])
