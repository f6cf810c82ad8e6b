"""Fast markets, a minute ("block") at a time: the trades of a minute as drawn, before ids.

A block depends only on ``(seed, venue, symbol, minute)``, the per-minute counts of
its day (one cheap seeded draw per day) and the spec, so reading ``[start, end)``
generates only the minutes it touches.
"""

from __future__ import annotations

import numpy as np

from .cache import BLOCK_PREFIX
from .model import fills, seeded_rng
from .results import EMPTY_TRADES, RawTrades
from .spec import MAX_TRADES_PER_MINUTE, MarketKey, alive_intervals, is_plain_day
from .units import DAY, I64, MINUTE, MINUTES_PER_DAY, i64


def block_counts(key: MarketKey, day: int) -> I64:
    """Trades per minute of ``day`` of a fast market before listing/outage removal."""
    seed, venue, spec = key
    drawn = seeded_rng(seed, venue, spec.symbol, day, "blocks").poisson(
        spec.trades_per_minute, MINUTES_PER_DAY
    )
    out: I64 = np.minimum(drawn, MAX_TRADES_PER_MINUTE).astype(np.int64)
    return out


def block_kept(key: MarketKey, block: int) -> RawTrades:
    """The trades of minute ``block`` (ms // MINUTE) of a fast market that listing and
    outages keep, ids not yet assigned."""
    seed, venue, spec = key
    start = block * MINUTE
    alive = alive_intervals(spec, start, start + MINUTE)
    if not alive:
        return EMPTY_TRADES
    day, minute = divmod(block, MINUTES_PER_DAY)
    n = int(block_counts(key, day)[minute])
    rng = seeded_rng(seed, venue, spec.symbol, block, "block")
    # distinct ms offsets: unique timestamps without unique_sorted's shifting, which
    # would crawl when nearly every ms of the minute holds a trade
    offsets = np.sort(rng.choice(MINUTE, n, replace=False, shuffle=False)).astype(np.int64)
    ts: I64 = offsets + start
    price, amount, buy = fills(key, rng, ts)
    if alive == [(start, start + MINUTE)]:
        return RawTrades(i64(n), ts, price, amount, buy)
    keep = np.zeros(n, dtype=np.bool_)
    for a, b in alive:
        keep |= (ts >= a) & (ts < b)
    return RawTrades(i64(int(keep.sum())), ts[keep], price[keep], amount[keep], buy[keep])


def block_prefix(key: MarketKey, day: int) -> I64:
    """Kept trades of ``day`` of a fast market before each minute (1441 entries)."""
    cached = BLOCK_PREFIX.get((key, day))
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    spec = key[2]
    counts = block_counts(key, day)
    if not is_plain_day(spec, day):
        d0 = day * MINUTES_PER_DAY
        kept = np.zeros(MINUTES_PER_DAY, dtype=np.int64)
        partial: set[int] = set()
        for a, b in alive_intervals(spec, day * DAY, (day + 1) * DAY):
            full_lo, full_hi = -(-a // MINUTE), b // MINUTE
            if full_lo < full_hi:
                kept[full_lo - d0 : full_hi - d0] = counts[full_lo - d0 : full_hi - d0]
            if a % MINUTE:
                partial.add(a // MINUTE)
            if b % MINUTE:
                partial.add(b // MINUTE)
        for block in partial:
            kept[block - d0] = len(block_kept(key, block))
        counts = kept
    prefix = np.concatenate([i64(1), np.cumsum(counts)])
    BLOCK_PREFIX.put((key, day), prefix)
    return prefix
