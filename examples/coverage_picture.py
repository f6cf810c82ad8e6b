"""What a store holds, as a picture: fetch two symbols (one with two days missing), draw
their coverage, and a few analytics on the candles.

python examples/coverage_picture.py      (needs mdcollect[plot]; MDCOLLECT_EMULATE=1 offline)

In a notebook, end a cell with ``fig`` to show the picture.
"""

import mdcollect
from mdcollect import analytics

storage = mdcollect.open_storage("memory://")
for start, end in (("2024-01-01", "2024-01-02"), ("2024-01-05", "2024-01-07")):
    mdcollect.ensure_data(["BTC/USDT"], "1h", start, end, exchange="binance",
                          storage=storage, padding_days=0, progress=False)  # fmt: skip
mdcollect.ensure_data(["ETH/USDT"], "1h", "2024-01-01", "2024-01-07", exchange="binance",
                      storage=storage, padding_days=0, progress=False)  # fmt: skip

fig = mdcollect.plot_coverage(storage)
fig.savefig("coverage.png")
print("wrote coverage.png; holes:")
datasets = storage.keys()
for key in datasets:
    cov = storage.coverage(key)
    print(f"  {key}: {cov.gaps(mdcollect.Interval(cov.start, cov.end))}")

frames = mdcollect.load_ohlcv(["BTC/USDT", "ETH/USDT"], "1h", "2024-01-05", "2024-01-07",
                              exchange="binance", storage=storage, progress=False)  # fmt: skip
print("daily Parkinson volatility, annualized, last value:")
for symbol, frame in frames.items():
    vol = analytics.realized_volatility(frame, 24, method="parkinson")
    print(f"  {symbol}: {vol.iloc[-1]:.1%}")
print("correlation of hourly returns:")
print(analytics.correlation(frames).round(2))
