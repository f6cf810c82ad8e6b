"""The synthetic market: determinism, candles derived exactly from trades, listing/outages/now."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from emulator_helpers import DAY, HOUR, MINUTE, NOW, make_market

from mdcollect.testing import DEFAULT_LISTING, MarketSpec


def test_same_seed_same_market_in_another_process() -> None:
    start = NOW - 2 * DAY
    here = make_market().trades("binance", "BTC/USDT", start, start + HOUR)
    code = (
        "from emulator_helpers import make_market;"
        f"t = make_market().trades('binance', 'BTC/USDT', {start}, {start + HOUR});"
        "print(int(t.id.sum()), repr(float(t.price.sum())), repr(float(t.amount.sum())), len(t))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=str(Path(__file__).parent),
    )
    assert out.stdout.split() == [
        str(int(here.id.sum())),
        repr(float(here.price.sum())),
        repr(float(here.amount.sum())),
        str(len(here)),
    ]
    other = make_market(seed=4).trades("binance", "BTC/USDT", start, start + HOUR)
    assert not np.array_equal(here.price[:10], other.price[:10])


@pytest.mark.parametrize("timeframe", ["1m", "5m", "1h", "4h", "1d"])
def test_candles_are_exactly_the_trades(timeframe: str) -> None:
    market = make_market()
    end = NOW - NOW % DAY - DAY
    start = end - 2 * DAY
    candles = market.candles("binance", "BTC/USDT", timeframe, start, end)
    trades = market.trades("binance", "BTC/USDT", start, end)
    step = {"1m": MINUTE, "5m": 5 * MINUTE, "1h": HOUR, "4h": 4 * HOUR, "1d": DAY}[timeframe]
    assert np.array_equal(candles.timestamp, np.arange(start, end, step))
    bucket = (trades.timestamp - start) // step
    for i in range(len(candles)):
        sel = bucket == i
        if not sel.any():
            assert candles.volume[i] == 0 and candles.trades[i] == 0
            assert (
                candles.open[i]
                == candles.high[i]
                == candles.low[i]
                == candles.close[i]
                == candles.close[i - 1]
            )
            continue
        p = trades.price[sel]
        assert (candles.open[i], candles.high[i], candles.low[i], candles.close[i]) == (
            p[0],
            p.max(),
            p.min(),
            p[-1],
        )
        assert candles.trades[i] == sel.sum()
        assert candles.volume[i] == pytest.approx(trades.amount[sel].sum(), abs=1e-9)


def test_empty_minutes_occur_but_never_first_minute_of_day() -> None:
    market = make_market()
    start = NOW - NOW % DAY - 5 * DAY
    c = market.candles("binance", "BTC/USDT", "1m", start, start + 5 * DAY)
    empty = c.trades == 0
    assert 0.005 < empty.mean() < 0.1
    assert not empty[::1440].any()


def test_trade_ids_are_contiguous_and_increasing() -> None:
    market = make_market()
    start = NOW - NOW % DAY - DAY
    t = market.trades("binance", "BTC/USDT", start - HOUR, start + HOUR)  # crosses midnight
    assert np.array_equal(np.diff(t.id), np.ones(len(t) - 1))
    assert (np.diff(t.timestamp) > 0).all()
    first = market.trades("binance", "BTC/USDT", DEFAULT_LISTING, DEFAULT_LISTING + MINUTE)
    assert first.id[0] == 1


def test_nothing_before_listing_and_outages_have_no_candles() -> None:
    base = NOW - NOW % HOUR
    listed = base - 2 * DAY + 7 * MINUTE
    outage = (base - DAY, base - DAY + 30 * MINUTE)
    market = make_market(listed=listed, outages=[outage])
    c = market.candles("binance", "BTC/USDT", "1m", listed - HOUR, NOW)
    assert c.timestamp[0] == listed
    assert not ((c.timestamp >= outage[0]) & (c.timestamp < outage[1])).any()
    assert outage[1] in c.timestamp and outage[0] - MINUTE in c.timestamp
    t = market.trades("binance", "BTC/USDT", 0, NOW)
    assert t.timestamp.min() >= listed
    assert not ((t.timestamp >= outage[0]) & (t.timestamp < outage[1])).any()
    assert len(market.candles("binance", "BTC/USDT", "1m", 0, listed)) == 0
    hourly = market.candles("binance", "BTC/USDT", "1h", outage[0] - HOUR, outage[1] + HOUR)
    assert outage[0] in hourly.timestamp  # the hour is only half in the outage


def test_now_is_partial_and_future_is_empty() -> None:
    market = make_market()
    c = market.candles("binance", "BTC/USDT", "1h", NOW - 3 * HOUR, NOW + 5 * HOUR)
    assert c.timestamp[-1] == NOW - NOW % HOUR
    partial = market.trades("binance", "BTC/USDT", NOW - NOW % HOUR, NOW + HOUR)
    assert partial.timestamp.max() < NOW
    assert c.trades[-1] == len(partial)
    assert (
        len(
            market.candles(
                "binance", "BTC/USDT", "1h", NOW - 3 * HOUR, NOW + 5 * HOUR, closed_only=True
            )
        )
        == 2
    )


def test_kraken_has_no_flat_candles() -> None:
    market = make_market()
    start = NOW - NOW % DAY - DAY
    c = market.candles("kraken", "BTC/USDT", "1m", start, start + DAY)
    assert (c.trades > 0).all() and len(c) < 1440


def test_weekly_and_monthly_candles() -> None:
    market = make_market()
    w = market.candles(
        "binance", "BTC/USDT", "1w", DEFAULT_LISTING - 7 * DAY, DEFAULT_LISTING + 30 * DAY
    )
    assert w.timestamp[0] == 1_577_664_000_000  # Monday 2019-12-30, the week of the listing
    m = market.candles("binance", "BTC/USDT", "1M", DEFAULT_LISTING, DEFAULT_LISTING + 70 * DAY)
    assert list(m.timestamp) == [1_577_836_800_000, 1_580_515_200_000, 1_583_020_800_000]
    d = market.candles("binance", "BTC/USDT", "1d", 1_580_515_200_000, 1_583_020_800_000)
    assert m.volume[1] == pytest.approx(d.volume.sum())
    assert m.high[1] == d.high.max() and m.open[1] == d.open[0] and m.close[1] == d.close[-1]


def test_user_market() -> None:
    market = make_market()
    market.add(MarketSpec("SOL/USDT:USDT", base_price=100.0, listed=NOW - DAY))
    assert "SOL/USDT:USDT" in market.symbols("okx")
    assert "SOL/USDT:USDT" not in market.symbols("kraken")
    assert len(market.candles("okx", "SOL/USDT:USDT", "1h", 0, NOW)) == 25  # both ends partial
