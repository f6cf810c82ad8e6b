"""mdcollect.analytics against values computed by hand on small frames.

The expected numbers are written out, each with the arithmetic that gives it
(worked with ``math`` on paper-sized inputs), never by running the same pandas
expression the module runs.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mdcollect import InvalidRequest
from mdcollect._time import ms_to_index
from mdcollect.analytics import (
    YEAR,
    annualized_funding,
    correlation,
    realized_volatility,
    returns,
    volume_profile,
)
from tests.conftest import T0

HOUR = 3_600_000
LN_1_1 = 0.09531017980432493  # ln(1.1)
LN_0_9 = -0.10536051565782628  # ln(0.9)


def _frame(step: int, **columns: list[float]) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    return pd.DataFrame(columns, index=ms_to_index(T0 + step * np.arange(n)))


def _candles() -> pd.DataFrame:
    """Four 1h candles. high/low: 1.1, 1.21, 1.21, 1; close/open: 1, 1.1, 0.9, 1."""
    return _frame(
        HOUR,
        open=[100.0, 100.0, 110.0, 99.0],
        high=[110.0, 121.0, 119.79, 99.0],
        low=[100.0, 100.0, 99.0, 99.0],
        close=[100.0, 110.0, 99.0, 99.0],
        volume=[1.0, 2.0, 3.0, 4.0],
    )


def test_returns_simple_and_log() -> None:
    r = returns(_candles())
    assert r.name == "returns"
    assert list(r.index) == list(_candles().index[1:])
    # 110/100 - 1, 99/110 - 1, 99/99 - 1
    assert r.to_numpy() == pytest.approx([0.1, -0.1, 0.0])
    assert returns(_candles(), log=True).to_numpy() == pytest.approx([LN_1_1, LN_0_9, 0.0])


def test_close_to_close_volatility_is_the_sample_std_of_log_returns() -> None:
    vol = realized_volatility(_candles(), 2, annualize=False)
    # windows of two log returns: std(ddof=1) of (a, b) is |a - b| / sqrt(2)
    # (0.0953102 + 0.1053605) / 1.4142136 = 0.1418956; 0.1053605 / 1.4142136 = 0.0745011
    assert list(vol.index) == list(_candles().index[2:])
    assert vol.to_numpy() == pytest.approx([0.14189560954670769, 0.07450113509096039])
    # a year of 1h candles is 365 * 24 = 8760 of them: x sqrt(8760) = 93.5948717
    yearly = realized_volatility(_candles(), 2)
    assert yearly.to_numpy() == pytest.approx([13.280701363844226, 6.972924176944118])
    assert yearly.name == "volatility"


def test_parkinson_volatility() -> None:
    vol = realized_volatility(_candles(), 2, method="parkinson", annualize=False)
    # sqrt(mean(ln(H/L)^2) / (4 ln 2)) with ln(H/L) = a, 2a, 2a, 0 (a = ln 1.1):
    # sqrt(2.5 a^2 / 2.7725887) = 0.0905037; sqrt(4 a^2 / ...) = 2a / 1.6651092 = 0.1144792;
    # sqrt(2 a^2 / ...) = 0.0809490
    assert list(vol.index) == list(_candles().index[1:])
    assert vol.to_numpy() == pytest.approx(
        [0.09050374844562575, 0.1144791927484404, 0.08094901349718404]
    )


def test_garman_klass_volatility() -> None:
    vol = realized_volatility(_candles(), 2, method="garman_klass", annualize=False)
    # per candle 0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2, with 2 ln 2 - 1 = 0.3862944:
    # 0.5 a^2 = 0.0045420; 2 a^2 - 0.3862944 a^2 = 0.0146591; 2 a^2 - 0.3862944 b^2 =
    # 0.0138798 (b = ln 0.9); 0 -> sqrt of the means of neighbours
    assert vol.to_numpy() == pytest.approx(
        [0.09798205505597778, 0.11945463692143754, 0.08330627084813601]
    )


def test_annualization_follows_the_timeframe() -> None:
    daily = _candles()
    daily.index = ms_to_index(T0 + 24 * HOUR * np.arange(4))
    per_candle = realized_volatility(daily, 2, method="parkinson", annualize=False)
    # 365 daily candles a year; a gap (a missing day) does not change the timeframe
    yearly = realized_volatility(daily, 2, method="parkinson")
    assert (yearly / per_candle).to_numpy() == pytest.approx([math.sqrt(365)] * 3)
    gapped = daily.drop(daily.index[2])
    ratio = realized_volatility(gapped, 2, method="parkinson") / realized_volatility(
        gapped, 2, method="parkinson", annualize=False
    )
    assert ratio.to_numpy() == pytest.approx([math.sqrt(365)] * 2)
    # an explicit timeframe wins: 4h candles are 6 * 365 = 2190 a year
    told = realized_volatility(daily, 2, method="parkinson", timeframe="4h")
    assert (told / per_candle).to_numpy() == pytest.approx([math.sqrt(2190)] * 3)
    assert YEAR == 365 * 24 * HOUR


def test_volume_profile_by_hour_of_day_utc() -> None:
    # two days of 1h candles: volume h + 1 on the first day, 2 (h + 1) on the second
    day = [float(h + 1) for h in range(24)]
    frame = _frame(HOUR, volume=day + [2 * v for v in day])
    profile = volume_profile(frame)
    assert list(profile.index) == list(range(24)) and profile.index.name == "hour"
    # hour h: 3 (h + 1); total 3 * (1 + ... + 24) = 900; share (h + 1) / 300
    assert profile["volume"].tolist() == [3.0 * (h + 1) for h in range(24)]
    assert profile["share"].to_numpy() == pytest.approx([(h + 1) / 300 for h in range(24)])
    # 30m candles count in the hour they start in; hours without rows are 0
    halves = _frame(HOUR // 2, volume=[1.0, 2.0, 4.0])
    p = volume_profile(halves)
    assert p.loc[0, "volume"] == 3.0 and p.loc[1, "volume"] == 4.0 and p.loc[5, "volume"] == 0
    assert p["share"].sum() == pytest.approx(1.0)


def _closes(log_returns: list[float]) -> list[float]:
    closes = [100.0]
    for r in log_returns:
        closes.append(closes[-1] * math.exp(r))
    return closes


def test_correlation_of_returns_aligned_on_common_timestamps() -> None:
    # log returns A: 0.01, 0.02, 0.03; B: 0.01, 0.03, 0.02. Deviations from the mean
    # 0.02: A (-1, 0, 1), B (-1, 1, 0) (x 0.01): pearson = 1 / sqrt(2 * 2) = 0.5;
    # the ranks are the same numbers: spearman 0.5
    a = _frame(HOUR, close=_closes([0.01, 0.02, 0.03]))
    b = _frame(HOUR, close=_closes([0.01, 0.03, 0.02]))
    # an extra row in B at 00:30, and one in A after the end: both left out
    extra_b = _frame(HOUR, close=[55.0])
    extra_b.index = ms_to_index([T0 + HOUR // 2])
    extra_a = _frame(HOUR, close=[1.0])
    extra_a.index = ms_to_index([T0 + 10 * HOUR])
    frames = {"A": pd.concat([a, extra_a]), "B": pd.concat([b, extra_b]).sort_index()}
    m = correlation(frames)
    assert list(m.index) == list(m.columns) == ["A", "B"]
    assert m.to_numpy() == pytest.approx(np.array([[1.0, 0.5], [0.5, 1.0]]))
    assert correlation(frames, "spearman").loc["A", "B"] == pytest.approx(0.5)


def test_annualized_funding_uses_each_settlement_interval() -> None:
    # every 8 h, then every 4 h from 16:00: 365 * 24 / 8 = 1095 and 365 * 24 / 4 = 2190
    funding = pd.DataFrame(
        {"rate": [0.0003, 0.0002, -0.0001, 0.00005, 0.0001]},
        index=ms_to_index([T0, T0 + 8 * HOUR, T0 + 16 * HOUR, T0 + 20 * HOUR, T0 + 24 * HOUR]),
    )
    out = annualized_funding(funding)
    assert out.name == "annualized"
    assert list(out.index) == list(funding.index[1:])
    # 0.0002 * 1095, -0.0001 * 1095, 0.00005 * 2190, 0.0001 * 2190
    assert out.to_numpy() == pytest.approx([0.219, -0.1095, 0.1095, 0.219])


@pytest.mark.parametrize(
    ("call", "says"),
    [
        (lambda: realized_volatility(_candles(), 2, method="yang_zhang"),  # type: ignore[arg-type]
         "method 'yang_zhang' is not valid; allowed: 'close', 'parkinson', 'garman_klass'"),
        (lambda: realized_volatility(_candles(), 1), "window must be an integer >= 2, got 1"),
        (lambda: realized_volatility(_candles(), 2.5), "window must be an integer >= 2, got 2.5"),  # type: ignore[arg-type]
        (lambda: realized_volatility(_candles()[["close"]], 2, method="parkinson"),
         "needs the column(s) high, low; the frame has close"),
        (lambda: returns(_candles().drop(columns="close")), "needs the column(s) close"),
        (lambda: returns(_candles().reset_index()), "indexed by time"),
        (lambda: returns(_candles().iloc[::-1]), "sorted by time"),
        (lambda: returns([1.0, 2.0]), "needs a DataFrame"),  # type: ignore[arg-type]
        (lambda: realized_volatility(_candles().iloc[:1], 2), "cannot tell the timeframe"),
        (lambda: volume_profile(_frame(4 * HOUR, volume=[1.0, 2.0])),
         "needs candles of 1h or shorter, got a frame of 4h candles"),
        (lambda: correlation({"A": _candles()}), "at least two symbols"),
        (lambda: correlation({"A": _candles(), "B": _candles()}, "kendall"),  # type: ignore[arg-type]
         "method 'kendall' is not valid; allowed: 'pearson', 'spearman'"),
        (lambda: correlation({"A": _candles(), "B": _candles().iloc[:2]}),
         "at least 3 timestamps common to all symbols"),
        (lambda: annualized_funding(_candles()), "needs the column(s) rate"),
        (lambda: annualized_funding(pd.DataFrame({"rate": [0.1, 0.2]},
                                                 index=ms_to_index([T0, T0]))),
         "without repeats"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_naming_the_value(call: object, says: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        call()  # type: ignore[operator]
    assert says in str(info.value)
