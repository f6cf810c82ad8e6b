"""A deterministic order book around the synthetic market's last price.

The book is a pure function of ``(market, venue, symbol, bucket)`` where a bucket
is :data:`BOOK_MS` ms of time: ``DEPTH`` price levels a tick apart on each side
of the last traded price before the bucket, sizes hashed from the level and a
slowly moving epoch (about a tenth of the levels change every bucket). The
bucket number is the book's update id, so a REST snapshot (``lastUpdateId``) and
the websocket diff stream (``U``/``u``) always agree.
"""

from __future__ import annotations

from typing import Final

import attrs
import numpy as np

from mdcollect.testing._market import SyntheticMarket

__all__ = ["BOOK_MS", "DEPTH", "Book", "book_at", "book_diff"]

#: Length of one book update in ms (Binance's ``@100ms`` diff stream).
BOOK_MS: Final = 100
#: Levels per side.
DEPTH: Final = 100
#: Gaps longer than this many buckets are diffed as a full replacement.
_MAX_WALK: Final = 600

Level = tuple[int, int]  # (price units, size units)


@attrs.frozen
class Book:
    """One book state: ``update_id`` (bucket number), bids best first, asks best first."""

    update_id: int
    time: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


def _sizes(ticks: np.ndarray, bucket: int, seed: int, mean_units: int) -> list[int]:
    with np.errstate(over="ignore"):
        return _hash_sizes(ticks.astype(np.uint64), bucket, seed, mean_units)


def _hash_sizes(t: np.ndarray, bucket: int, seed: int, mean_units: int) -> list[int]:
    phase = (t * np.uint64(2654435761)) % np.uint64(10)
    epoch = (np.uint64(bucket) + phase) // np.uint64(10)
    h = t * np.uint64(0x9E3779B97F4A7C15) ^ epoch * np.uint64(0xBF58476D1CE4E5B9)
    h ^= np.uint64(seed & 0xFFFFFFFF) * np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    h *= np.uint64(0xD6E8FEB86CD8A5B3)
    h ^= h >> np.uint64(29)
    span = np.uint64(max(2, 4 * mean_units))
    return [int(x) for x in (h % span + np.uint64(1)).tolist()]


def book_at(market: SyntheticMarket, venue: str, symbol: str, t: int) -> Book:
    """The book in force at ``t`` (ms): the one of bucket ``t // BOOK_MS``."""
    bucket = t // BOOK_MS
    start = bucket * BOOK_MS
    spec = market.spec(venue, symbol)
    last = market.raw_trades_backward(venue, symbol, end=start, limit=1)
    mid = int(last.price[0]) if len(last) else round(spec.base_price * 10**spec.price_decimals)
    tick = max(1, spec.tick)
    mid_tick = mid // tick
    steps = np.arange(1, DEPTH + 1, dtype=np.int64)
    bid_ticks = mid_tick - steps
    bid_ticks = bid_ticks[bid_ticks > 0]
    ask_ticks = mid_tick + steps
    mean_units = max(1, round(spec.mean_amount * 10**spec.amount_decimals))
    bid_sizes = _sizes(bid_ticks, bucket, market.seed, mean_units)
    ask_sizes = _sizes(ask_ticks, bucket, market.seed, mean_units)
    bids = tuple((int(p) * tick, s) for p, s in zip(bid_ticks.tolist(), bid_sizes, strict=True))
    asks = tuple((int(p) * tick, s) for p, s in zip(ask_ticks.tolist(), ask_sizes, strict=True))
    return Book(bucket, start, bids, asks)


def _side_diff(levels: set[int], new: tuple[Level, ...], reverse: bool) -> list[Level]:
    now = dict(new)
    out = [(p, now.get(p, 0)) for p in levels]
    return sorted(out, reverse=reverse)


def book_diff(
    market: SyntheticMarket, venue: str, symbol: str, old: Book, new: Book
) -> tuple[list[Level], list[Level]]:
    """Levels to apply to ``old`` to get ``new`` (size 0 removes a level): ``(bids, asks)``.

    Every level touched by any bucket in between is included, as on Binance, so a
    snapshot taken inside the gap plus this diff also gives ``new``.
    """
    touched_b: set[int] = set()
    touched_a: set[int] = set()
    prev = old
    if new.update_id - old.update_id <= _MAX_WALK:
        for bucket in range(old.update_id + 1, new.update_id + 1):
            cur = (
                new if bucket == new.update_id else book_at(market, venue, symbol, bucket * BOOK_MS)
            )
            pb, pa = dict(prev.bids), dict(prev.asks)
            cb, ca = dict(cur.bids), dict(cur.asks)
            touched_b |= {p for p in pb.keys() | cb.keys() if pb.get(p) != cb.get(p)}
            touched_a |= {p for p in pa.keys() | ca.keys() if pa.get(p) != ca.get(p)}
            prev = cur
    else:  # a long gap: replace everything seen at either end
        touched_b = {p for p, _ in old.bids} | {p for p, _ in new.bids}
        touched_a = {p for p, _ in old.asks} | {p for p, _ in new.asks}
    return _side_diff(touched_b, new.bids, True), _side_diff(touched_a, new.asks, False)
