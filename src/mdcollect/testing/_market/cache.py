"""Process-wide caches of generated trades and aggregates, and the LRU that bounds them.

Generation is a pure function of ``(seed, venue, spec, day or minute)``, so every
emulator (and test) in a process shares these. The sizes are the emulator's memory
budget: change them here and nowhere else.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final

from .results import Agg
from .spec import MarketKey
from .units import I64


class LRU:
    """Thread-safe LRU holding at most ``size`` entries, or ``size`` in total ``weigh(value)``.

    A value is weighed when put: a mutable value that grows must be put again.
    """

    def __init__(self, size: int, weigh: Callable[[Any], int] | None = None) -> None:
        self._size = size
        self._weigh = weigh
        self._total = 0
        #: key -> (value, its weight when put)
        self._data: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return None
            self._data.move_to_end(key)
            return entry[0]

    def put(self, key: Any, value: Any) -> None:
        weight = 1 if self._weigh is None else self._weigh(value)
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._total -= old[1]
            self._data[key] = (value, weight)
            self._total += weight
            while self._total > self._size and len(self._data) > 1:
                self._total -= self._data.popitem(last=False)[1][1]

    def values(self) -> list[Any]:
        """The entries held, least recently used first."""
        with self._lock:
            return [value for value, _ in self._data.values()]

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._data.clear()
            self._total = 0


_DAY_CACHE_SIZE: Final = 96
_AGG_CACHE_SIZE: Final = 512

# fast markets
#: Trades (33 bytes each) the block cache holds: 66 minutes at 60,000 trades a minute.
_BLOCK_CACHE_ROWS: Final = 4_000_000
_PREFIX_CACHE_SIZE: Final = 1024
_MINUTE_TABLE_CACHE_SIZE: Final = 64

# Process-wide caches: generation is a pure function of the key, so emulators (and
# tests) share them.
#: (key, day) -> the numbered trades of a day (slow markets)
DAYS = LRU(_DAY_CACHE_SIZE)
#: (key, day) -> per-minute aggregates of a closed day
MINUTES = LRU(_AGG_CACHE_SIZE)
#: (key, day) -> the daily aggregate of a closed day
DAILY: dict[tuple[MarketKey, int], Agg] = {}
#: key -> trades kept before each day since listing (the id base), under PREFIX_LOCK
PREFIX: dict[MarketKey, I64] = {}
PREFIX_LOCK = threading.Lock()

#: (key, minute) -> the numbered trades of a minute (fast markets), by row count
BLOCKS = LRU(_BLOCK_CACHE_ROWS, weigh=lambda t: len(t) + 1)
#: (key, day) -> trades kept before each minute of the day (fast markets)
BLOCK_PREFIX = LRU(_PREFIX_CACHE_SIZE)
#: (key, day) -> per-minute aggregates of a fast market's day, filled as asked
MINUTE_TABLES = LRU(_MINUTE_TABLE_CACHE_SIZE)
