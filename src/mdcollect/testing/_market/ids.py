"""Trade ids, and the numbered trades of a day or a minute that every read starts from.

Ids are contiguous from 1 at listing, so a trade's id is the number of trades kept
before its day (a prefix sum over day counts, cached per market) plus its place in
the day (or, in a fast market, in its minute).
"""

from __future__ import annotations

import numpy as np

from .blocks import block_counts, block_kept, block_prefix
from .cache import BLOCKS, DAYS, PREFIX, PREFIX_LOCK
from .days import generate_kept, minute_counts
from .results import RawTrades
from .spec import MarketKey, is_fast, is_plain_day
from .units import DAY, MINUTES_PER_DAY


def day_count(key: MarketKey, day: int) -> int:
    spec = key[2]
    if is_fast(spec):
        if is_plain_day(spec, day):
            return int(block_counts(key, day).sum())
        return int(block_prefix(key, day)[-1])
    if is_plain_day(spec, day):
        return int(minute_counts(key, day).sum())
    return len(generate_kept(key, day))


def id_base(key: MarketKey, day: int) -> int:
    """Number of trades before ``day`` (ids are contiguous from 1 at listing)."""
    first = key[2].listed // DAY
    if day <= first:
        return 0
    with PREFIX_LOCK:
        prefix = PREFIX.get(key)
        have = 0 if prefix is None else len(prefix) - 1
    need = day - first
    if prefix is None or have < need:
        counts = [day_count(key, first + i) for i in range(have, need + 366)]
        base = 0 if prefix is None else int(prefix[-1])
        extra = base + np.cumsum(np.asarray(counts, dtype=np.int64))
        with PREFIX_LOCK:
            prefix = np.concatenate(
                [np.zeros(1, dtype=np.int64) if prefix is None else prefix, extra]
            )
            PREFIX[key] = prefix
    return int(prefix[need])


def day_of_id(key: MarketKey, trade_id: int, last_day: int) -> int:
    """The day holding trade ``trade_id``, or ``last_day + 1`` if no trade up to ``last_day`` has it."""
    first = key[2].listed // DAY
    if id_base(key, last_day + 1) < trade_id:
        return last_day + 1
    with PREFIX_LOCK:
        prefix = PREFIX[key]
    i = int(np.searchsorted(prefix, trade_id, side="left"))
    return first + max(i - 1, 0)


def block_of_id(key: MarketKey, trade_id: int, last_day: int) -> int:
    """The minute holding trade ``trade_id`` of a fast market, or the first minute after
    ``last_day`` if no trade up to ``last_day`` has it."""
    day = day_of_id(key, trade_id, last_day)
    if day > last_day:
        return day * MINUTES_PER_DAY
    prefix = block_prefix(key, day)
    i = int(np.searchsorted(prefix, trade_id - id_base(key, day), side="left"))
    return day * MINUTES_PER_DAY + max(i - 1, 0)


def generate_day(key: MarketKey, day: int) -> RawTrades:
    """All trades of one UTC day (before "now" filtering), with contiguous ids."""
    cached = DAYS.get((key, day))
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    kept = generate_kept(key, day)
    ids = id_base(key, day) + np.arange(1, len(kept) + 1, dtype=np.int64)
    result = RawTrades(ids, kept.ts, kept.price, kept.amount, kept.buy)
    DAYS.put((key, day), result)
    return result


def day_trades(key: MarketKey, day: int) -> RawTrades:
    """The trades of one UTC day for reads that need no ids (candles, prices): the
    numbered day when cached, else the day as drawn, so no id base is counted."""
    cached = DAYS.get((key, day))
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    return generate_kept(key, day)


def generate_block(key: MarketKey, block: int) -> RawTrades:
    """The trades of minute ``block`` of a fast market (before "now" filtering), with ids."""
    cached = BLOCKS.get((key, block))
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    kept = block_kept(key, block)
    day, minute = divmod(block, MINUTES_PER_DAY)
    base = id_base(key, day) + int(block_prefix(key, day)[minute])
    ids = base + np.arange(1, len(kept) + 1, dtype=np.int64)
    result = RawTrades(ids, kept.ts, kept.price, kept.amount, kept.buy)
    BLOCKS.put((key, block), result)
    return result
