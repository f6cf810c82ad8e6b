"""A backtest pre-hook: make sure the candles are stored, then backtest on them.

ensure_data fetches only what the store lacks (nothing on the second run), then
backtesting.py runs a moving-average crossover on the stored candles, and the same
strategy computed with plain pandas must agree with it trade for trade.

python examples/backtest_prehook.py      (needs backtesting; MDCOLLECT_EMULATE=1 offline)
"""

import warnings

import pandas as pd
from backtesting import Backtest, Strategy
from backtesting.lib import crossover

import mdcollect

SYMBOL, TIMEFRAME, START, END = "BTC/USDT", "1h", "2024-01-01", "2024-01-31"
CANDLES = 31 * 24  # January, whole days: the end date counts whole
FAST, SLOW = 10, 30
CASH = 1_000_000

# the pre-hook: 30 days before START too, for the indicators' warm-up elsewhere
report = mdcollect.ensure_data([SYMBOL], TIMEFRAME, START, END, exchange="binance",
                               progress=False)  # fmt: skip
print(report)
assert report.ok, report

frame = mdcollect.load_ohlcv(SYMBOL, TIMEFRAME, START, END, exchange="binance",
                             columns="backtesting", progress=False)  # fmt: skip
assert len(frame) == CANDLES, f"{len(frame)} candles, expected {CANDLES}"
assert (frame.index.to_series().diff().dropna() == pd.Timedelta(TIMEFRAME)).all()
print(f"{len(frame)} candles of {SYMBOL} {TIMEFRAME}, {frame.index[0]} .. {frame.index[-1]}")


def sma(values: pd.Series, n: int) -> pd.Series:
    return pd.Series(values).rolling(n).mean()


class SmaCross(Strategy):
    """Long one BTC while the fast average is above the slow one."""

    def init(self) -> None:
        self.fast = self.I(sma, self.data.Close, FAST)
        self.slow = self.I(sma, self.data.Close, SLOW)

    def next(self) -> None:
        if crossover(self.fast, self.slow) and not self.position:
            self.buy(size=1)
        elif crossover(self.slow, self.fast) and self.position:
            self.position.close()


# the index without its time zone: backtesting.py's plots and stats expect naive times
data = frame.tz_convert(None)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # backtesting.py's notes on its own defaults
    stats = Backtest(data, SmaCross, cash=CASH, finalize_trades=True).run()
trades = stats["_trades"][["EntryTime", "ExitTime", "EntryPrice", "ExitPrice", "PnL"]]


def pandas_trades(data: pd.DataFrame) -> pd.DataFrame:
    """The same strategy in plain pandas: a cross seen at a candle's close is traded at
    the next candle's open; a trade still open at the end is closed at the last open."""
    fast, slow = data.Close.rolling(FAST).mean(), data.Close.rolling(SLOW).mean()
    above = fast > slow
    below = fast < slow
    up = above & below.shift(1, fill_value=False)
    down = below & above.shift(1, fill_value=False)
    rows, entry = [], None
    for i in range(SLOW, len(data)):  # backtesting.py starts once both averages exist
        fill = min(i + 1, len(data) - 1)
        if entry is None and up.iloc[i] and i + 1 < len(data):
            entry = fill
        elif entry is not None and (down.iloc[i] or i == len(data) - 1):
            t0, t1 = data.index[entry], data.index[fill]
            o0, o1 = data.Open.iloc[entry], data.Open.iloc[fill]
            rows.append((t0, t1, o0, o1, o1 - o0))
            entry = None
    return pd.DataFrame(rows, columns=list(trades.columns))


expected = pandas_trades(data)
pd.testing.assert_frame_equal(trades.reset_index(drop=True), expected, check_dtype=False)
final = CASH + expected.PnL.sum()
assert abs(stats["Equity Final [$]"] - final) < 1e-6, (stats["Equity Final [$]"], final)
print(f"{len(trades)} trades, equity {stats['Equity Final [$]']:.2f} (pandas: {final:.2f})")
print(f"return {stats['Return [%]']:.4f} %, win rate {stats['Win Rate [%]']:.1f} %")
