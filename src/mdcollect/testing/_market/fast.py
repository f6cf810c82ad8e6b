"""Reading fast markets minute by minute: ranges, pages by time or id, per-minute
aggregates (kept once the minute closed) and the last traded price."""

from __future__ import annotations

import attrs
import numpy as np

from .cache import MINUTE_TABLES
from .ids import generate_block
from .reduce import reduce_rows
from .results import AGG_FIELDS, Agg, RawTrades
from .spec import MarketKey, alive_intervals, next_alive, prev_alive
from .units import I64, MINUTE, MINUTES_PER_DAY, B, i64


def fast_trades_in(key: MarketKey, start: int, end: int) -> RawTrades:
    """Trades of a fast market with ``start <= ts < end`` (``end`` already cut at now)."""
    parts = []
    for a, b in alive_intervals(key[2], start, end):
        for block in range(a // MINUTE, (b - 1) // MINUTE + 1):
            t = generate_block(key, block)
            lo, hi = np.searchsorted(t.ts, [a, b], side="left")
            parts.append(t.take(slice(int(lo), int(hi))))
    return RawTrades.concat(parts)


def fast_forward(
    key: MarketKey, cursor: int, stop: int, from_id: int | None, limit: int
) -> RawTrades:
    """The first ``limit`` trades of a fast market in ``[cursor, stop)`` (id >= ``from_id``)."""
    spec = key[2]
    parts: list[RawTrades] = []
    have = 0
    while have < limit and cursor < stop:
        nxt = next_alive(spec, cursor)
        if nxt is None or nxt >= stop:
            break
        cursor = max(cursor, nxt)
        block = cursor // MINUTE
        t = generate_block(key, block)
        lo, hi = np.searchsorted(t.ts, [cursor, stop], side="left")
        chunk = t.take(slice(int(lo), int(hi)))
        if from_id is not None:
            chunk = chunk.take(chunk.id >= from_id)
        parts.append(chunk.take(slice(0, limit - have)))
        have += len(parts[-1])
        cursor = (block + 1) * MINUTE
    return RawTrades.concat(parts)


def fast_backward(
    key: MarketKey, cursor: int, floor: int, before_id: int | None, limit: int
) -> RawTrades:
    """The last ``limit`` trades of a fast market in ``[floor, cursor)`` (id < ``before_id``)."""
    spec = key[2]
    parts: list[RawTrades] = []
    have = 0
    while have < limit and cursor > floor:
        prev = prev_alive(spec, cursor)
        if prev is None or prev <= floor:
            break
        cursor = min(cursor, prev)
        block = (cursor - 1) // MINUTE
        t = generate_block(key, block)
        lo, hi = np.searchsorted(t.ts, [max(floor, block * MINUTE), cursor], side="left")
        chunk = t.take(slice(int(lo), int(hi)))
        if before_id is not None:
            chunk = chunk.take(chunk.id < before_id)
        take = min(limit - have, len(chunk))
        parts.append(chunk.take(slice(len(chunk) - take, len(chunk))))
        have += take
        cursor = block * MINUTE
    return RawTrades.concat(parts[::-1])


@attrs.frozen(eq=False)
class MinuteTable:
    """Per-minute aggregates of one day of a fast market, filled in as minutes are asked for.

    ``rows[i]`` is :class:`Agg` field ``i`` (``start`` left 0); ``done[m]`` is set once
    minute ``m`` is final (closed before now). Concurrent fills write identical values.
    """

    rows: I64 = attrs.field(factory=lambda: np.zeros((len(AGG_FIELDS), MINUTES_PER_DAY), np.int64))
    done: B = attrs.field(factory=lambda: np.zeros(MINUTES_PER_DAY, dtype=np.bool_))


def fast_minutes(key: MarketKey, lo: int, hi: int, now: int) -> Agg:
    """Per-minute aggregates of a fast market for minutes ``[lo, hi)`` (trades before now)."""
    spec = key[2]
    parts = []
    for day in range(lo // MINUTES_PER_DAY, (hi - 1) // MINUTES_PER_DAY + 1):
        d0 = day * MINUTES_PER_DAY
        table = MINUTE_TABLES.get((key, day))
        if table is None:
            table = MinuteTable()
            MINUTE_TABLES.put((key, day), table)
        a, b = max(lo, d0) - d0, min(hi, d0 + MINUTES_PER_DAY) - d0
        opens = (d0 + np.arange(a, b, dtype=np.int64)) * MINUTE
        # cached minutes are closed before some clock's now, maybe not before this one's
        closed = opens + MINUTE <= now
        rows = np.where(closed & table.done[a:b], table.rows[:, a:b], 0)
        for m in np.flatnonzero((opens < now) & ~(closed & table.done[a:b])).tolist():
            t0 = int(opens[m])
            if alive_intervals(spec, t0, t0 + MINUTE):
                t = generate_block(key, d0 + a + m)
                if not closed[m]:
                    t = t.take(t.ts < now)
                agg = reduce_rows(t.as_agg(), i64(1))
                rows[:, m] = [int(getattr(agg, f)[0]) for f in AGG_FIELDS]
            if closed[m]:
                table.rows[:, a + m] = rows[:, m]
                table.done[a + m] = True
        parts.append(Agg(*rows))
    agg = Agg.concat(parts)
    return attrs.evolve(agg, start=np.arange(lo, hi, dtype=np.int64) * MINUTE)


def fast_close_before(key: MarketKey, t: int, now: int) -> int | None:
    """Last traded price of a fast market before ``min(t, now)``; None if nothing traded."""
    spec = key[2]
    cursor = min(t, now)
    while cursor > spec.listed:
        prev = prev_alive(spec, cursor)
        if prev is None:
            break
        cursor = min(cursor, prev)
        block = (cursor - 1) // MINUTE
        tr = generate_block(key, block)
        i = int(np.searchsorted(tr.ts, cursor, side="left"))
        if i > 0:
            return int(tr.price[i - 1])
        cursor = block * MINUTE
    return None
