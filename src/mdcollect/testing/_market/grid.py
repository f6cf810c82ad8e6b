"""The candle grid: :class:`Frame` turns a ccxt timeframe into candle open times."""

from __future__ import annotations

import calendar
import datetime as dt
import re
from typing import Final

import attrs
import numpy as np

from .units import DAY, HOUR, I64, MINUTE, MONDAY_OFFSET, SECOND, WEEK

_TF_RE: Final = re.compile(r"^(\d+)([smhdwMy])$")
_UNIT_MS: Final = {"s": SECOND, "m": MINUTE, "h": HOUR, "d": DAY, "w": WEEK}


@attrs.frozen
class Frame:
    """A candle grid: fixed length ``ms`` aligned to ``offset``, or ``months`` calendar months."""

    ms: int = 0
    offset: int = 0
    months: int = 0

    @classmethod
    def parse(cls, timeframe: str, offset: int = 0) -> Frame:
        """Parse a ccxt timeframe (``1s``..``1w``, ``1M``); weeks open on Monday 00:00 UTC."""
        m = _TF_RE.match(timeframe)
        if m is None:
            raise ValueError(f"unknown timeframe {timeframe!r}")
        n, unit = int(m.group(1)), m.group(2)
        if n <= 0:
            raise ValueError(f"unknown timeframe {timeframe!r}")
        if unit == "M":
            return cls(months=n)
        if unit == "y":
            return cls(months=12 * n)
        ms = n * _UNIT_MS[unit]
        if unit == "w":
            offset += MONDAY_OFFSET
        return cls(ms=ms, offset=offset % ms)

    def floor(self, t: int) -> int:
        if self.months:
            d = dt.datetime.fromtimestamp(t / 1000, tz=dt.UTC)
            index = (d.year * 12 + d.month - 1) // self.months * self.months
            return _month_start(index)
        return (t - self.offset) // self.ms * self.ms + self.offset

    def next(self, t: int) -> int:
        """Open time of the candle after the one opening at ``t``."""
        if self.months:
            d = dt.datetime.fromtimestamp(t / 1000, tz=dt.UTC)
            return _month_start(d.year * 12 + d.month - 1 + self.months)
        return t + self.ms

    def prev(self, t: int) -> int:
        if self.months:
            d = dt.datetime.fromtimestamp(t / 1000, tz=dt.UTC)
            return _month_start(d.year * 12 + d.month - 1 - self.months)
        return t - self.ms

    def starts(self, start: int, end: int) -> I64:
        """Open times of candles with open time in ``[start, end)``."""
        first = self.floor(start)
        if first < start:
            first = self.next(first)
        if self.months:
            out: list[int] = []
            t = first
            while t < end:
                out.append(t)
                t = self.next(t)
            return np.asarray(out, dtype=np.int64)
        if end <= first:
            return np.empty(0, dtype=np.int64)
        return np.arange(first, end, self.ms, dtype=np.int64)

    def step_estimate(self) -> int:
        return self.ms if self.ms else self.months * 31 * DAY


def _month_start(index: int) -> int:
    year, month0 = divmod(index, 12)
    return calendar.timegm((year, month0 + 1, 1, 0, 0, 0)) * 1000
