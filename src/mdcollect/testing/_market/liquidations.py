"""Liquidations of perpetuals: forced orders drawn a minute at a time from the price model.

A minute's liquidations depend only on ``(seed, venue, symbol, minute)`` and the
spec, like a fast market's trades: their number is Poisson with a mean that grows
with the minute's move of the model price (large moves liquidate more), their side
follows the move (a falling price liquidates longs: forced ``sell`` orders) with
some of the other side, their price is the model price at their time a little
past it in the order's direction (a bankruptcy price), and their size log-normal.
About one in six shares its millisecond with another (venues push several forced
orders of one instant together). Binance pushes only the latest forced order of a
symbol per 1000 ms, so ``one_per_second`` keeps the last of each second.
"""

from __future__ import annotations

import functools
from typing import Final

import attrs
import numpy as np
import pandas as pd

from .model import price_units, seeded_rng
from .spec import MarketKey, MarketSpec, alive_intervals
from .units import MINUTE, SECOND

__all__ = ["RawLiquidations", "liquidations_in"]

#: Mean liquidations per minute of a quiet minute; a minute that moves by 0.1 % has twice as many.
_BASE_PER_MINUTE: Final = 120.0
_MOVE_SCALE: Final = 1_000.0
#: How far past the model price a forced order goes (fraction of the price).
_SLIPPAGE: Final = 0.0015


@attrs.frozen
class RawLiquidations:
    """Forced orders in integer units, sorted by time: ``ts`` ms, ``buy`` (side),
    ``price`` (units of ``10**-price_decimals``), ``amount`` (of ``10**-amount_decimals``)."""

    ts: list[int]
    buy: list[bool]
    price: list[int]
    amount: list[int]

    def __len__(self) -> int:
        return len(self.ts)

    def rows(self) -> list[tuple[int, bool, int, int]]:
        """``(ts, buy, price, amount)`` tuples in time order."""
        return list(zip(self.ts, self.buy, self.price, self.amount, strict=True))

    def to_frame(self, spec: MarketSpec) -> pd.DataFrame:
        """Ground truth as ccxt parses it: ``side``, ``price``, ``amount`` (base units)
        by a UTC ``DatetimeIndex`` named ``timestamp`` (not unique: twins share one)."""
        index = pd.DatetimeIndex(pd.to_datetime(self.ts, unit="ms", utc=True), name="timestamp")
        return pd.DataFrame(
            {
                "side": ["buy" if b else "sell" for b in self.buy],
                "price": np.asarray(self.price, dtype=np.float64) / 10**spec.price_decimals,
                "amount": np.asarray(self.amount, dtype=np.float64) / 10**spec.amount_decimals,
            },
            index=index,
        )


@functools.lru_cache(maxsize=4096)
def _minute(key: MarketKey, minute: int) -> list[tuple[int, bool, int, int]]:
    seed, venue, spec = key
    t0 = minute * MINUTE
    ends = price_units(key, np.asarray([t0, t0 + MINUTE], dtype=np.int64))
    move = (float(ends[1]) - float(ends[0])) / max(float(ends[0]), 1.0)
    rng = seeded_rng(seed, venue, spec.symbol, minute, "liquidations")
    n = int(rng.poisson(_BASE_PER_MINUTE * (1.0 + _MOVE_SCALE * abs(move))))
    offsets = np.sort(rng.integers(0, MINUTE, size=n))
    # about one in six shares the millisecond of the one before
    twins = rng.random(n) < 1 / 6
    for i in range(1, n):
        if twins[i]:
            offsets[i] = offsets[i - 1]
    falling = move < 0
    sell = rng.random(n) < (0.75 if falling else 0.25)
    sizes = rng.lognormal(np.log(max(spec.mean_amount, 1e-9) * 4), 0.8, size=n)
    ts = (t0 + offsets).astype(np.int64)
    model = price_units(key, ts) if n else np.zeros(0, dtype=np.int64)
    out = []
    for i in range(n):
        factor = 1 - _SLIPPAGE if sell[i] else 1 + _SLIPPAGE
        px = round(float(model[i]) * factor / spec.tick) * spec.tick
        qty = max(1, round(float(sizes[i]) * 10**spec.amount_decimals))
        out.append((int(ts[i]), not bool(sell[i]), max(spec.tick, px), qty))
    return out


def liquidations_in(
    key: MarketKey, start: int, end: int, now: int, *, one_per_second: bool = False
) -> RawLiquidations:
    """Forced orders of a perpetual with ``start <= ts < min(end, now)`` while it trades
    (none on spot markets). ``one_per_second`` (Binance): the last of each whole second
    only, and none of the second containing ``now`` (not pushed yet)."""
    spec = key[2]
    lo, hi = start, min(end, now)
    if one_per_second:
        hi = min(hi, now // SECOND * SECOND)
        lo, hi = lo // SECOND * SECOND, -(-hi // SECOND) * SECOND
    rows: list[tuple[int, bool, int, int]] = []
    if spec.is_contract and hi > lo:
        alive = alive_intervals(spec, lo, hi)
        for minute in range(lo // MINUTE, (hi - 1) // MINUTE + 1):
            rows += [
                r
                for r in _minute(key, minute)
                if lo <= r[0] < hi and any(a <= r[0] < b for a, b in alive)
            ]
    if one_per_second and rows:
        # the last of each second (rows are in time order), then only those asked for
        last: dict[int, tuple[int, bool, int, int]] = {}
        for r in rows:
            last[r[0] // SECOND] = r
        end = min(end, now // SECOND * SECOND)
        rows = [r for r in last.values() if start <= r[0] < end]
    return RawLiquidations(
        [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows]
    )
