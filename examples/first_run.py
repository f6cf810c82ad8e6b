"""A first run: write a day of 1-minute candles to the default store and read them back.

python examples/first_run.py
"""

import numpy as np
import pandas as pd

import mdcollect

storage = mdcollect.default_storage()  # ArcticDB on LMDB under $MDCOLLECT_HOME
key = mdcollect.DatasetKey("example", "BTC/USDT", "ohlcv", "1m")

index = pd.date_range("2024-01-01", periods=1440, freq="1min", tz="UTC", name="timestamp")
close = 42_000 + np.cumsum(np.random.default_rng(0).normal(0, 5, len(index)))
frame = pd.DataFrame(
    {"open": close, "high": close + 3, "low": close - 3, "close": close, "volume": 1.0},
    index=index,
)
day = mdcollect.Interval(
    int(index[0].value // 1_000_000), int(index[-1].value // 1_000_000) + 60_000
)

storage.write(key, frame, covered=day)
print(storage.url)
print(storage.read(key, day.start, day.start + 5 * 60_000))
print("covered:", storage.coverage(key))
