"""The synthetic market: determinism, candles derived exactly from trades, listing/outages/now,
and fast markets generated a minute at a time."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import ccxt
import numpy as np
import pandas as pd
import pytest
from emulator_helpers import DAY, HOUR, MINUTE, NOW, make_market

from mdcollect.exchanges._urls import redirect_urls
from mdcollect.testing import DEFAULT_LISTING, EmulatorProcess, MarketSpec, SyntheticMarket
from mdcollect.testing._market import (
    FAST_TRADES_PER_MINUTE,
    MAX_TRADES_PER_MINUTE,
    Frame,
    RawTrades,
)
from mdcollect.testing._market.cache import LRU


def _python(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter beside this file (nothing cached)."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=str(Path(__file__).parent),
    )


def test_same_seed_same_market_in_another_process() -> None:
    start = NOW - 2 * DAY
    here = make_market().trades("binance", "BTC/USDT", start, start + HOUR)
    code = (
        "from emulator_helpers import make_market;"
        f"t = make_market().trades('binance', 'BTC/USDT', {start}, {start + HOUR});"
        "print(int(t.id.sum()), repr(float(t.price.sum())), repr(float(t.amount.sum())), len(t))"
    )
    out = _python(code)
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


@pytest.mark.parametrize("venue", ["binance", "okx", "bybit", "kraken"])
def test_candle_quote_and_taker_volumes_are_the_trades(venue: str) -> None:
    """The emulator's optional candle values come from its own trades: the quote volume
    is the sum of price x amount, the taker-buy volumes the same over buys; so
    mdcollect's trades_to_ohlcv (an independent computation) gives the same."""
    from mdcollect.aggregate import trades_to_ohlcv

    market = make_market()
    end = NOW - NOW % HOUR - HOUR
    start = end - 6 * HOUR
    rich = ("quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume", "vwap")
    want = market.candles(venue, "BTC/USDT", "5m", start, end).to_frame(rich)
    trades = market.trades(venue, "BTC/USDT", start, end).to_frame()
    got = trades_to_ohlcv(trades, "5m", start=start, end=end)
    want = want[want["trades"] > 0]
    assert len(got) == len(want) > 10
    pd.testing.assert_frame_equal(got, want, check_freq=False, rtol=1e-9)


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


# --------------------------------------------------------------------------- slow markets: unchanged


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.blake2b(digest_size=8)
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _raw_candle_digest(
    market: SyntheticMarket, tf: str, start: int, end: int, *, fill_empty: bool = True
) -> tuple[str, int]:
    c = market.raw_candles("binance", "BTC/USDT", tf, start, end, fill_empty=fill_empty)
    a = c.agg
    arrays = (a.start, a.count, a.open, a.high, a.low, a.close, a.volume, a.quote)
    return _digest(*arrays, a.buy_volume, a.buy_quote), len(c)


def _market_digests(market: SyntheticMarket) -> dict[str, Any]:
    out: dict[str, Any] = {}
    t = market.raw_trades("binance", "BTC/USDT", NOW - 2 * DAY - HOUR, NOW + HOUR)
    out["trades_2d"] = (_digest(t.id, t.ts, t.price, t.amount, t.buy), len(t))
    for tf in ["1s", "1m", "5m", "1h", "1d"]:
        span = 10 * MINUTE if tf == "1s" else 2 * DAY
        out[f"candles_{tf}"] = _raw_candle_digest(market, tf, NOW - span - 7 * MINUTE, NOW + HOUR)
    out["kraken_1m"] = _raw_candle_digest(market, "1m", NOW - DAY, NOW, fill_empty=False)
    t = market.raw_trades_forward("binance", "BTC/USDT", start=NOW - DAY - 3 * HOUR, limit=1000)
    out["fwd_start"] = (_digest(t.id, t.ts, t.price), len(t))
    mid = int(t.id[500])
    t = market.raw_trades_forward("binance", "BTC/USDT", from_id=mid, limit=1000)
    out["fwd_id"] = (_digest(t.id, t.ts, t.price), len(t))
    t = market.raw_trades_backward("binance", "BTC/USDT", before_id=mid, limit=1000)
    out["bwd_id"] = (_digest(t.id, t.ts, t.price), len(t))
    t = market.raw_trades_backward("binance", "BTC/USDT", end=NOW - DAY + 5, limit=1000)
    out["bwd_end"] = (_digest(t.id, t.ts, t.price), len(t))
    out["close_before"] = market._close_before(market._key("binance", "BTC/USDT"), NOW - DAY, NOW)
    return out


_BASE = NOW - NOW % HOUR

# Digests computed with the day-at-a-time generator before fast markets existed:
# markets at or below FAST_TRADES_PER_MINUTE must stay bit-identical.
_SLOW_MARKETS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "default": (
        {},
        {
            "trades_2d": ("f266f2bd8465a4e8", 11597),
            "candles_1s": ("582670e77ee7dba1", 1020),
            "candles_1m": ("a02b049fa51d09d6", 2887),
            "candles_5m": ("44eba1de4b46226c", 577),
            "candles_1h": ("6ccedef7d0d59830", 48),
            "candles_1d": ("03bb07b10926d899", 2),
            "kraken_1m": ("fbb53683a5b1340f", 1415),
            "fwd_start": ("b7d59aecbcf82275", 1000),
            "fwd_id": ("412d5457efdff302", 1000),
            "bwd_id": ("6bd3bd557ce0778f", 1000),
            "bwd_end": ("b773e972315a2cb1", 1000),
            "close_before": 2377768,
        },
    ),
    "600_per_minute_listed_with_outage": (
        {
            "trades_per_minute": 600.0,
            "listed": _BASE - 2 * DAY + 7 * MINUTE + 123,
            "outages": [(_BASE - DAY, _BASE - DAY + 30 * MINUTE + 17)],
        },
        {
            "trades_2d": ("5b79178a94684bc5", 1711889),
            "candles_1s": ("598cac0f0794ca61", 1020),
            "candles_1m": ("4848edf199beefce", 2857),
            "candles_5m": ("421937ab92890729", 571),
            "candles_1h": ("c3237ade1626ea1d", 48),
            "candles_1d": ("6b090923269fa761", 2),
            "kraken_1m": ("0b2f10b884b2f10f", 1424),
            "fwd_start": ("5caf91928da14007", 1000),
            "fwd_id": ("3e074c1a160bd35e", 1000),
            "bwd_id": ("e8371651d90a8109", 1000),
            "bwd_end": ("2b1f2833b97d8749", 1000),
            "close_before": 2396311,
        },
    ),
    "at_the_threshold": (
        {"trades_per_minute": FAST_TRADES_PER_MINUTE, "listed": _BASE - DAY - 5 * HOUR},
        {
            "trades_2d": ("8343eb95fa8c15fb", 2628723),
            "candles_1s": ("078f4be0f91da5c0", 1020),
            "candles_1m": ("c471e13eb19b3904", 1754),
            "candles_5m": ("ef13f1a9e9787afe", 351),
            "candles_1h": ("7127e8b8019bd967", 30),
            "candles_1d": ("5515a72a83b3e155", 2),
            "kraken_1m": ("23a44f6de927714a", 1440),
            "fwd_start": ("d4b4094e9ec24453", 1000),
            "fwd_id": ("a2b41afb3b0693c1", 1000),
            "bwd_id": ("12d4dedca9a218f8", 1000),
            "bwd_end": ("1c0efae4627f8c3d", 1000),
            "close_before": 2377553,
        },
    ),
}


@pytest.mark.parametrize("name", list(_SLOW_MARKETS))
def test_slow_markets_are_unchanged(name: str) -> None:
    spec, expected = _SLOW_MARKETS[name]
    assert _market_digests(make_market(**spec)) == expected


# --------------------------------------------------------------------------- fast markets

#: Three minutes past a UTC midnight: fast markets below span two days.
FAST_NOW = NOW - NOW % DAY + DAY + 3 * MINUTE + 456
MIDNIGHT = FAST_NOW - FAST_NOW % DAY
FAST_LISTED = FAST_NOW - 9 * MINUTE - 789
#: Starts and ends inside minutes: both boundary blocks are partial.
FAST_OUTAGE = (MIDNIGHT - 3 * MINUTE + 300, MIDNIGHT - 2 * MINUTE + 7_000)


def _fast_market(seed: int = 3, clock_ms: int = FAST_NOW, **spec: Any) -> SyntheticMarket:
    """Binance BTC/USDT at 60,000 trades a minute, listed 9 minutes before ``FAST_NOW``."""
    spec = {
        "trades_per_minute": 60_000.0,
        "listed": FAST_LISTED,
        "outages": [FAST_OUTAGE],
        **spec,
    }
    return make_market(seed, clock_ms=clock_ms, **spec)


def _all_trades(market: SyntheticMarket) -> RawTrades:
    return market.raw_trades("binance", "BTC/USDT", 0, FAST_NOW + HOUR)


def test_fast_market_ids_times_listing_and_outage() -> None:
    t = _all_trades(_fast_market())
    alive_ms = FAST_NOW - FAST_LISTED - (FAST_OUTAGE[1] - FAST_OUTAGE[0])
    # ~60,000 a minute, capped at one per ms: most ms of the alive span hold a trade
    assert 0.95 * alive_ms < len(t) <= alive_ms
    assert np.array_equal(t.id, np.arange(1, len(t) + 1))  # from 1 at listing, across midnight
    assert (np.diff(t.ts) > 0).all()  # unique and increasing
    assert t.ts[0] >= FAST_LISTED and t.ts[-1] < FAST_NOW
    assert not ((t.ts >= FAST_OUTAGE[0]) & (t.ts < FAST_OUTAGE[1])).any()
    assert ((t.ts >= FAST_OUTAGE[0] - 300) & (t.ts < FAST_OUTAGE[0])).sum() > 200
    assert ((t.ts >= FAST_OUTAGE[1]) & (t.ts < FAST_OUTAGE[1] + 300)).sum() > 200
    assert (t.ts < MIDNIGHT).any() and (t.ts >= MIDNIGHT).any()
    per_minute = np.bincount((t.ts // MINUTE - t.ts[0] // MINUTE).astype(np.intp))
    assert per_minute.max() <= MAX_TRADES_PER_MINUTE
    assert t.price.min() > 0 and t.amount.min() > 0
    # a window equals the same slice of the whole
    lo, hi = MIDNIGHT - 90_000 + 17, MIDNIGHT + 45_001
    w = _fast_market().raw_trades("binance", "BTC/USDT", lo, hi)
    sel = (t.ts >= lo) & (t.ts < hi)
    assert np.array_equal(w.id, t.id[sel]) and np.array_equal(w.price, t.price[sel])


def test_fast_market_slower_rate_is_poisson_per_minute() -> None:
    market = _fast_market(trades_per_minute=3_000.0, outages=[])
    t = _all_trades(market)
    full = (t.ts >= FAST_LISTED // MINUTE * MINUTE + MINUTE) & (t.ts < FAST_NOW // MINUTE * MINUTE)
    per_minute = np.bincount((t.ts[full] // MINUTE - t.ts[full][0] // MINUTE).astype(np.intp))
    assert len(per_minute) == 9  # the full minutes between listing and now
    assert (np.abs(per_minute - 3_000) < 300).all() and len(set(per_minute.tolist())) > 1
    assert np.array_equal(t.id, np.arange(1, len(t) + 1))


def test_fast_market_forward_and_backward() -> None:
    market = _fast_market()
    t = _all_trades(market)
    n = len(t)

    def same(got: RawTrades, sel: Any) -> None:
        assert np.array_equal(got.id, t.id[sel]) and np.array_equal(got.ts, t.ts[sel])
        assert np.array_equal(got.price, t.price[sel]) and np.array_equal(got.buy, t.buy[sel])

    fwd = market.raw_trades_forward
    start = FAST_OUTAGE[0] - 1_000
    i = int(np.searchsorted(t.ts, start))
    same(fwd("binance", "BTC/USDT", start=start, limit=150_000), slice(i, i + 150_000))
    same(fwd("binance", "BTC/USDT", start=0, limit=5), slice(0, 5))
    same(fwd("binance", "BTC/USDT", from_id=1, limit=3), slice(0, 3))
    k = int(np.searchsorted(t.ts, MIDNIGHT)) + 5  # just after midnight
    same(fwd("binance", "BTC/USDT", from_id=int(t.id[k]), limit=70_000), slice(k, k + 70_000))
    same(fwd("binance", "BTC/USDT", from_id=n - 9, limit=100), slice(n - 10, n))
    assert len(fwd("binance", "BTC/USDT", from_id=n + 1, limit=100)) == 0
    end = MIDNIGHT + 1_234
    j = int(np.searchsorted(t.ts, end))
    same(fwd("binance", "BTC/USDT", start=start, end=end, limit=10**6), slice(i, j))

    bwd = market.raw_trades_backward
    same(bwd("binance", "BTC/USDT", limit=7), slice(n - 7, n))
    same(bwd("binance", "BTC/USDT", end=end, limit=100_000), slice(j - 100_000, j))
    same(bwd("binance", "BTC/USDT", before_id=int(t.id[k]), limit=90_000), slice(k - 90_000, k))
    same(bwd("binance", "BTC/USDT", before_id=4, limit=10), slice(0, 3))
    same(bwd("binance", "BTC/USDT", end=end, start=start, limit=10**6), slice(i, j))
    assert len(bwd("binance", "BTC/USDT", end=FAST_LISTED, limit=10)) == 0


@pytest.mark.parametrize("timeframe", ["1s", "1m", "5m", "1h", "1d"])
def test_fast_market_candles_are_exactly_the_trades(timeframe: str) -> None:
    market = _fast_market()
    t = _all_trades(market)
    c = market.raw_candles("binance", "BTC/USDT", timeframe, 0, FAST_NOW + HOUR)
    step = Frame.parse(timeframe).ms
    bucket = t.ts // step * step
    starts, first = np.unique(bucket, return_index=True)
    last = np.append(first[1:], len(t)) - 1
    assert np.array_equal(c.agg.start, starts)  # no empty candle at 60,000 a minute
    assert np.array_equal(c.agg.count, np.diff(np.append(first, len(t))))
    assert np.array_equal(c.agg.open, t.price[first])
    assert np.array_equal(c.agg.close, t.price[last])
    assert np.array_equal(c.agg.high, np.maximum.reduceat(t.price, first))
    assert np.array_equal(c.agg.low, np.minimum.reduceat(t.price, first))
    assert np.array_equal(c.agg.volume, np.add.reduceat(t.amount, first))
    buy = np.where(t.buy, t.amount, 0)
    assert np.array_equal(c.agg.buy_volume, np.add.reduceat(buy, first))
    assert np.array_equal(c.agg.quote, np.add.reduceat(t.price * t.amount, first))
    assert not c.confirmed()[-1] and c.confirmed()[:-1].all()


def test_fast_market_candles_follow_the_clock() -> None:
    # A minute cached as closed under a later clock is partial or absent under an earlier one.
    late, early = _fast_market(), _fast_market(clock_ms=FAST_NOW - 30_500)
    late.raw_candles("binance", "BTC/USDT", "1m", 0, FAST_NOW)
    c = early.raw_candles("binance", "BTC/USDT", "1m", 0, FAST_NOW)
    t = early.raw_trades("binance", "BTC/USDT", 0, FAST_NOW)
    assert t.ts[-1] < FAST_NOW - 30_500
    assert c.agg.start[-1] == (FAST_NOW - 30_500) // MINUTE * MINUTE
    assert c.agg.count[-1] == (t.ts >= c.agg.start[-1]).sum()
    assert c.agg.count.sum() == len(t)


def test_fast_market_close_before() -> None:
    market = _fast_market()
    key = market._key("binance", "BTC/USDT")
    t = _all_trades(market)
    for at in [FAST_OUTAGE[1] + 1, FAST_OUTAGE[1] - 5, MIDNIGHT, FAST_NOW + HOUR]:
        i = int(np.searchsorted(t.ts, min(at, FAST_NOW)))
        assert market._close_before(key, at, FAST_NOW) == t.price[i - 1]
    model = market._close_before(key, FAST_LISTED, FAST_NOW)  # nothing traded yet
    assert model == round(market.mark_price("binance", "BTC/USDT", FAST_LISTED) * 100)


def test_fast_market_same_in_another_process_read_alone() -> None:
    # Blocks depend only on their minute: reading one minute cold in a fresh process
    # gives the same rows as reading it inside a longer window here.
    lo, hi = MIDNIGHT + 20_000, MIDNIGHT + 21_000
    t = _all_trades(_fast_market())
    sel = (t.ts >= lo) & (t.ts < hi)
    code = (
        "import test_market as m;"
        f"t = m._fast_market().raw_trades('binance', 'BTC/USDT', {lo}, {hi});"
        "print(m._digest(t.id, t.ts, t.price, t.amount, t.buy))"
    )
    out = _python(code)
    assert out.stdout.strip() == _digest(
        t.id[sel], t.ts[sel], t.price[sel], t.amount[sel], t.buy[sel]
    )


def test_reading_a_minute_of_a_fast_market_generates_only_that_minute() -> None:
    # Listed in 2020 at 60,000 a minute: a day is 86M trades (~2.8 GB), years ~10**11 ids.
    market = make_market(seed=99, trades_per_minute=60_000.0)
    tracemalloc.start()
    try:
        t = market.raw_trades("binance", "BTC/USDT", NOW - MINUTE, NOW)
        c = market.raw_candles("binance", "BTC/USDT", "1m", NOW - 5 * MINUTE, NOW)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 40_000_000  # a handful of ~2 MB blocks and small per-day counts
    assert 59_000 < len(t) <= 60_000
    assert c.agg.start[-1] == NOW // MINUTE * MINUTE  # the open minute, partial
    assert c.agg.count[-1] == (t.ts >= c.agg.start[-1]).sum()
    assert np.array_equal(t.id, np.arange(t.id[0], t.id[0] + len(t)))
    days = (NOW - DEFAULT_LISTING) // DAY
    assert 59_000 * 1440 * days < t.id[0] < 60_000 * 1440 * (days + 1)
    before = market.raw_trades_backward("binance", "BTC/USDT", before_id=int(t.id[0]), limit=1)
    assert before.id[0] == t.id[0] - 1 and before.ts[0] < NOW - MINUTE


def test_emulator_process_serves_given_fast_market() -> None:
    spec = MarketSpec(
        "SOL/USDT",
        150.0,
        trades_per_minute=60_000.0,
        listed=FAST_LISTED,
        outages=[FAST_OUTAGE],
        exchange="binance",
    )
    with EmulatorProcess(seed=5, now=FAST_NOW, rate_limits=False, markets=[spec]) as proc:
        ex = ccxt.binance({"enableRateLimit": False, "timeout": 5000})
        redirect_urls(ex, proc.url)
        rows = ex.fetch_ohlcv("SOL/USDT", "1m", since=FAST_LISTED - HOUR, limit=20)
        trades = ex.fetch_trades("SOL/USDT", limit=5, params={"method": "publicGetTrades"})
    local = make_market(seed=5, clock_ms=FAST_NOW)  # same seed and spec: same market
    local.add(spec)
    truth = local.candles("binance", "SOL/USDT", "1m", FAST_LISTED - HOUR, FAST_NOW)
    assert rows == truth.to_list() and len(rows) == 11  # listing minute to the open one
    assert sum(truth.trades) > 450_000
    last = local.trades("binance", "SOL/USDT", FAST_NOW - 1_000, FAST_NOW)
    assert [int(t["id"]) for t in trades] == last.id[-5:].tolist()
    assert [t["price"] for t in trades] == last.price[-5:].tolist()


def test_block_cache_is_bounded_by_rows() -> None:
    cache = LRU(10, weigh=len)
    cache.put("a", [1] * 4)
    cache.put("b", [1] * 4)
    assert cache.get("a") == [1] * 4  # "a" is now the most recent
    cache.put("c", [1] * 4)  # 12 rows > 10: the least recent ("b") goes
    assert cache.get("b") is None and cache.get("a") is not None
    cache.put("a", [1] * 2)  # replacing an entry replaces its weight
    cache.put("d", [1] * 4)
    assert [cache.get(k) is not None for k in "acd"] == [True, True, True]
    cache.put("e", [1] * 50)  # one entry larger than the budget is still kept, alone
    assert cache.get("e") is not None and cache.get("d") is None


def test_liquidations_are_deterministic_and_shaped_per_venue() -> None:
    """Forced orders of perpetuals only, the same for any window; Binance and OKX push
    one a second, Bybit all (several can share a millisecond); none in the future."""
    m = make_market()
    lo, hi = NOW - 10 * MINUTE, NOW
    for venue in ("binanceusdm", "okx", "bybit"):
        whole = m.liquidations(venue, "BTC/USDT:USDT", lo, hi + MINUTE)
        assert len(whole) > 100
        assert whole.index.max().value // 1_000_000 < NOW  # nothing at or after now
        # another market of the same seed, and any split of the window, give the same rows
        # (the pick of one a second included)
        assert whole.equals(make_market().liquidations(venue, "BTC/USDT:USDT", lo, hi))
        step = 37_001
        parts = [m.liquidations(venue, "BTC/USDT:USDT", a, a + step) for a in range(lo, hi, step)]
        assert pd.concat(parts).equals(whole)
        seconds = whole.index.asi8 // 1_000_000_000
        if venue == "bybit":
            assert whole.index.duplicated().any()
        else:
            assert not np.any(np.diff(seconds) == 0)
        assert set(whole["side"]) == {"buy", "sell"} and (whole["price"] > 0).all()
    assert m.liquidations("binance", "BTC/USDT", lo, hi).empty  # spot has none
