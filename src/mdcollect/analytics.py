"""Small analytics on the frames :func:`mdcollect.load_ohlcv` and ``load_funding`` return.

Plain pandas in and out: candles are a frame with a UTC ``DatetimeIndex`` named
``timestamp`` and the ``ohlcv`` columns; several symbols are a mapping of symbol to
frame (what ``load_ohlcv`` gives for a list of symbols). Nothing here reads storage
or talks to an exchange.

>>> frame = load_ohlcv("BTC/USDT", "1h", "2024-01-01", "2024-01-31", exchange="binance")
>>> returns(frame).tail(1)
>>> realized_volatility(frame, 24, method="parkinson").tail(1)   # annualized, 365 days
>>> correlation(load_ohlcv(["BTC/USDT", "ETH/USDT"], "1h", "2024-01-01", "2024-01-31"))

Time: crypto trades every day of the year, so a year is 365 days of candles
(:data:`YEAR`): 8,760 candles of 1h, 525,600 of 1m; the calendar month ``1M`` counts 12
a year. A frame's timeframe is the smallest step between its rows (gaps only make
steps longer), or the ``timeframe=`` given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Final, Literal

import numpy as np
import pandas as pd

from ._errors import InvalidRequest
from ._rules import check_choice, check_number
from ._time import DAY, HOUR, Timeframe, index_ms

__all__ = [
    "YEAR",
    "annualized_funding",
    "correlation",
    "realized_volatility",
    "returns",
    "volume_profile",
]

#: A year of crypto trading in ms: 365 days (markets never close).
YEAR: Final = 365 * DAY

VolatilityMethod = Literal["close", "parkinson", "garman_klass"]
CorrelationMethod = Literal["pearson", "spearman"]
_VOLATILITY_METHODS: Final = ("close", "parkinson", "garman_klass")
# not "kendall": pandas computes it with scipy, which mdcollect does not depend on
_CORRELATION_METHODS: Final = ("pearson", "spearman")
# the shortest and longest calendar month: a step between them is the calendar month
_MONTH_STEPS: Final = (28 * DAY, 31 * DAY)


def returns(frame: pd.DataFrame, log: bool = False) -> pd.Series:
    """Close-to-close returns of candles: ``close[t] / close[t-1] - 1`` (``log=True``:
    ``ln(close[t] / close[t-1])``), at the later candle's timestamp.

    ``n`` candles give ``n - 1`` returns (the first candle has no previous close). A
    missing candle makes that return span the gap: :func:`correlation` aligns symbols
    first so that theirs never do.

    >>> returns(frame, log=True).sum()   # ln(last close / first close)
    """
    close = _columns(frame, ("close",), "returns")["close"]
    return _returns(close, log).rename("returns")


def realized_volatility(
    frame: pd.DataFrame,
    window: int,
    method: VolatilityMethod = "close",
    annualize: bool = True,
    *,
    timeframe: str | None = None,
) -> pd.Series:
    """Volatility over a rolling ``window`` of candles, at each window's last candle.

    ``method``:

    * ``"close"``: the sample standard deviation (``n - 1``) of the ``window`` log
      returns ending at each candle (so it needs ``window + 1`` closes);
    * ``"parkinson"``: ``sqrt(mean(ln(high / low) ** 2) / (4 ln 2))`` over ``window``
      candles (Parkinson, 1980: the range, no drift);
    * ``"garman_klass"``: ``sqrt(mean(0.5 ln(high / low) ** 2 - (2 ln 2 - 1)
      ln(close / open) ** 2))`` over ``window`` candles (Garman and Klass, 1980).

    These are per candle; ``annualize`` (the default) multiplies by
    ``sqrt(candles a year)``, a year being 365 days (:data:`YEAR`). ``window`` is at
    least 2; the first values (before a full window) are left out.

    >>> realized_volatility(frame, 24, method="garman_klass").iloc[-1]   # the last day's
    """
    check_number("window", window, integer=True, minimum=2, strict=False)
    method = check_choice("method", method, _VOLATILITY_METHODS)  # type: ignore[assignment]
    needed = {"close": ("close",), "parkinson": ("high", "low")}.get(
        method, ("open", "high", "low", "close")
    )
    data = _columns(frame, needed, "realized_volatility")
    if method == "close":
        r = _returns(data["close"], log=True)
        vol = r.rolling(window).std(ddof=1)
    else:
        hl = _ln(data["high"] / data["low"]) ** 2
        if method == "parkinson":
            variance = hl / (4 * math.log(2))
        else:
            co = _ln(data["close"] / data["open"]) ** 2
            variance = 0.5 * hl - (2 * math.log(2) - 1) * co
        vol = variance.rolling(window).mean() ** 0.5
    vol = vol.dropna()
    if annualize:
        vol = vol * math.sqrt(_per_year(frame, timeframe, "realized_volatility"))
    return vol.rename("volatility")


def volume_profile(frame: pd.DataFrame, *, timeframe: str | None = None) -> pd.DataFrame:
    """Volume by hour of day (UTC): one row per hour ``0..23`` (index ``hour``) with the
    ``volume`` traded in candles starting in that hour and its ``share`` of the total.

    Needs candles of one hour or shorter (a 4h candle's volume has no hour).

    >>> volume_profile(frame)["share"].idxmax()   # the busiest hour, UTC
    """
    data = _columns(frame, ("volume",), "volume_profile")
    step = _step(frame, timeframe, "volume_profile")
    if step is not None and step > HOUR:
        raise InvalidRequest(
            f"volume_profile needs candles of 1h or shorter, got a frame of "
            f"{_step_name(step)} candles"
        )
    hours = pd.Index(data.index.hour, name="hour")  # type: ignore[attr-defined]
    volume = data["volume"].groupby(hours).sum().reindex(range(24), fill_value=0.0)
    volume.index.name = "hour"
    total = float(volume.sum())
    share = volume / total if total > 0 else volume * 0.0
    return pd.DataFrame({"volume": volume.astype(float), "share": share.astype(float)})


def correlation(
    frames: Mapping[str, pd.DataFrame], method: CorrelationMethod = "pearson"
) -> pd.DataFrame:
    """Correlation matrix of the symbols' close-to-close returns (symbol by symbol).

    The frames are aligned on the timestamps they all have (the intersection of their
    indexes) before returns are taken, so every return spans the same period for every
    symbol. ``method``: ``"pearson"`` or ``"spearman"`` (of ranks; pandas'
    ``DataFrame.corr``).

    >>> correlation({"BTC/USDT": btc, "ETH/USDT": eth}).loc["BTC/USDT", "ETH/USDT"]
    """
    method = check_choice("method", method, _CORRELATION_METHODS)  # type: ignore[assignment]
    if not isinstance(frames, Mapping) or len(frames) < 2:
        raise InvalidRequest(
            "correlation needs a mapping of at least two symbols to their candles, such as "
            f"load_ohlcv(['BTC/USDT', 'ETH/USDT'], ...), got {_describe(frames)}"
        )
    closes = {
        str(name): _columns(f, ("close",), f"correlation of {name!r}")["close"]
        for name, f in frames.items()
    }
    aligned = pd.concat(closes, axis=1, join="inner")
    if len(aligned) < 3:
        raise InvalidRequest(
            f"correlation needs at least 3 timestamps common to all symbols (2 returns), "
            f"got {len(aligned)}"
        )
    logs = pd.DataFrame(np.log(aligned.to_numpy(float)), aligned.index, aligned.columns)
    matrix = logs.diff().iloc[1:].corr(method=method)
    matrix.index.name = matrix.columns.name = None
    return matrix


def annualized_funding(funding_frame: pd.DataFrame) -> pd.Series:
    """Each funding settlement's rate as a yearly rate: ``rate * YEAR / interval``, where
    ``interval`` is the time since the previous settlement, so that a contract whose
    funding moved from every 8 h to every 4 h is annualized exactly on both sides
    (``x 1095`` then ``x 2190``). Simple, not compounded.

    ``funding_frame`` is what ``load_funding`` returns (a ``rate`` column, one row per
    settlement); the first settlement has no interval and is left out.

    >>> annualized_funding(load_funding("BTC/USDT:USDT", "2024-01-01", "2024-01-31")).mean()

    (0.01 % every 8 h is 10.95 % a year.)
    """
    data = _columns(funding_frame, ("rate",), "annualized_funding")
    ms = index_ms(data)
    interval = np.diff(ms)
    if (interval <= 0).any():
        raise InvalidRequest(
            "annualized_funding needs settlements sorted by time without repeats; "
            f"the row at {data.index[1:][interval <= 0][0]} is not after the one before"
        )
    rate = data["rate"].iloc[1:]
    return (rate * (YEAR / interval.astype(float))).rename("annualized")


# -- helpers ----------------------------------------------------------------------------
def _columns(frame: object, needed: Sequence[str], what: str) -> pd.DataFrame:
    """``frame`` if it is a frame of candles (or settlements) with ``needed``."""
    if not isinstance(frame, pd.DataFrame):
        raise InvalidRequest(
            f"{what} needs a DataFrame such as load_ohlcv returns, got {_describe(frame)}"
        )
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise InvalidRequest(
            f"{what} needs the column(s) {', '.join(missing)}; the frame has "
            f"{', '.join(map(str, frame.columns)) or 'no columns'}"
        )
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise InvalidRequest(
            f"{what} needs a frame indexed by time (a DatetimeIndex named timestamp, as "
            f"load_ohlcv returns), got a {type(frame.index).__name__}"
        )
    if not frame.index.is_monotonic_increasing:
        raise InvalidRequest(f"{what} needs rows sorted by time")
    return frame


def _returns(close: pd.Series, log: bool) -> pd.Series:
    ratio = close / close.shift(1)
    out = _ln(ratio) if log else ratio - 1.0
    return out.iloc[1:]


def _ln(values: pd.Series) -> pd.Series:
    return pd.Series(np.log(values.to_numpy(float)), values.index, name=values.name)


def _step(frame: pd.DataFrame, timeframe: str | None, what: str) -> int | None:
    """The candle length in ms (``None`` for the calendar month): ``timeframe`` parsed,
    else the smallest step between rows."""
    if timeframe is not None:
        tf = Timeframe.parse(timeframe)
        return None if tf.is_calendar else tf.ms
    steps = np.diff(index_ms(frame))
    steps = steps[steps > 0]
    if not len(steps):
        raise InvalidRequest(
            f"{what} cannot tell the timeframe of a frame of {len(frame)} row(s); "
            "pass timeframe='1h' (or the frame's)"
        )
    step = int(steps.min())
    return None if _MONTH_STEPS[0] <= step <= _MONTH_STEPS[1] else step


def _per_year(frame: pd.DataFrame, timeframe: str | None, what: str) -> float:
    step = _step(frame, timeframe, what)
    return 12.0 if step is None else YEAR / step


def _step_name(step: int) -> str:
    for unit, ms in (("d", DAY), ("h", HOUR)):
        if step % ms == 0:
            return f"{step // ms}{unit}"
    return f"{step} ms"


def _describe(value: object) -> str:
    if isinstance(value, Mapping):
        return f"a mapping of {len(value)} item(s)"
    return f"{type(value).__name__}: {value!r}"[:120]
