"""Time units in ms, the numpy array types, and the int64 bounds every module here shares."""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]

SECOND: Final = 1_000
MINUTE: Final = 60_000
HOUR: Final = 3_600_000
DAY: Final = 86_400_000
WEEK: Final = 7 * DAY
#: 1970-01-05, the first Monday after the epoch: weekly candles open on Mondays.
MONDAY_OFFSET: Final = 4 * DAY
MINUTES_PER_DAY: Final = DAY // MINUTE

INT_MIN: Final = np.iinfo(np.int64).min
INT_MAX: Final = np.iinfo(np.int64).max


def i64(n: int = 0) -> I64:
    """``n`` int64 zeros (an empty column by default)."""
    return np.zeros(n, dtype=np.int64)
