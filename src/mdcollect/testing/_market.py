"""Deterministic synthetic market: trades first, candles derived exactly from them.

Every (venue, symbol) has its own seeded stream of trades, generated one UTC day at
a time with numpy. A day depends only on ``(seed, venue, symbol, day)`` and the
market's spec, never on another day, so any day can be produced in any process
in any order. Candles of every timeframe are reduced from those trades (first,
max, min, last, sum), so trades and candles always agree.

Fast markets (more than :data:`FAST_TRADES_PER_MINUTE` trades per minute, whose
days would not fit in memory) are generated one minute ("block") at a time
instead: a block depends only on ``(seed, venue, symbol, minute)``, the per-minute
counts of its day (one cheap seeded draw per day, which also numbers the ids),
and the spec, so reading ``[start, end)`` generates only the minutes it touches.

Prices are integers in units of ``10**-price_decimals`` and amounts integers in
units of ``10**-amount_decimals`` until they are rendered, so sums are exact and
``float(units) / 10**decimals`` is the same double that parsing the decimal string
of a dialect gives.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import hashlib
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

import attrs
import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = [
    "DEFAULT_LISTING",
    "FAST_TRADES_PER_MINUTE",
    "MAX_TRADES_PER_MINUTE",
    "Candles",
    "MarketSpec",
    "SyntheticMarket",
    "Trades",
]

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
#: 2020-01-01T00:00:00Z, when every default market is listed.
DEFAULT_LISTING: Final = 1_577_836_800_000

_INT_MIN: Final = np.iinfo(np.int64).min
_INT_MAX: Final = np.iinfo(np.int64).max

# Slow price components: (period ms, amplitude of log price). A sum of sines makes
# the price a pure function of time, so days are independent.
_WAVES: Final = (
    (41 * DAY, 0.30),
    (int(6.3 * DAY), 0.06),
    (21 * HOUR, 0.02),
    (int(2.9 * HOUR), 0.008),
    (37 * MINUTE, 0.003),
)
_NOISE: Final = 0.0004  # per-trade multiplicative noise (log sigma)
_GRID: Final = 5 * MINUTE
#: Markets with more trades per minute are generated a minute at a time (a day of
#: 2.16M trades or more is too big to hold), slower ones a UTC day at a time.
FAST_TRADES_PER_MINUTE: Final = 1_500.0
#: Most trades a minute of a fast market holds: one per ms, as unique timestamps need.
MAX_TRADES_PER_MINUTE: Final = MINUTE
_MINUTES_PER_DAY: Final = DAY // MINUTE


def _to_outages(value: Iterable[Sequence[int]]) -> tuple[tuple[int, int], ...]:
    out = tuple(sorted((int(a), int(b)) for a, b in value))
    for start, end in out:
        if end <= start:
            raise ValueError(f"outage window must have start < end, got [{start}, {end})")
    return out


@attrs.frozen
class MarketSpec:
    """One synthetic market: its symbol, price scale, precision, listing and outages.

    ``exchange=None`` puts the market on every dialect that supports its type
    (Kraken is spot only); otherwise on the named dialect (``"binance"``,
    ``"okx"``, ``"bybit"``, ``"kraken"``; aliases such as ``"binanceusdm"`` work).
    A spec for a symbol a dialect already lists replaces the default one.

    Example::

        MarketSpec("SOL/USDT", base_price=100.0, listed=1_600_000_000_000,
                   outages=[(1_650_000_000_000, 1_650_003_600_000)])

    Added in 0.1.0.
    """

    symbol: str
    base_price: float = 100.0
    price_decimals: int = 2
    #: Price tick in units of ``10**-price_decimals`` (Binance BTCUSDT perp: 0.10 -> 10).
    tick: int = 1
    amount_decimals: int = 5
    mean_amount: float = 0.05
    #: Mean trades per minute. Above :data:`FAST_TRADES_PER_MINUTE` the market is
    #: generated a minute at a time, with at most one trade per ms (60,000 a minute).
    trades_per_minute: float = 4.0
    listed: int = DEFAULT_LISTING
    #: Half-open ``[start, end)`` ms windows without trades and without candles.
    outages: tuple[tuple[int, int], ...] = attrs.field(default=(), converter=_to_outages)
    exchange: str | None = None
    volatility: float = 1.0

    @property
    def is_contract(self) -> bool:
        """True for swap symbols such as ``BTC/USDT:USDT``."""
        return ":" in self.symbol

    @property
    def base(self) -> str:
        return self.symbol.split("/")[0]

    @property
    def quote(self) -> str:
        return self.symbol.split("/")[1].split(":")[0]

    @property
    def settle(self) -> str | None:
        return self.symbol.split(":")[1] if self.is_contract else None


# --------------------------------------------------------------------------- timeframes

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


# --------------------------------------------------------------------------- results


@attrs.frozen(eq=False)
class _Agg:
    """Integer aggregates: one row per trade, minute, day or candle."""

    start: I64
    count: I64
    open: I64
    high: I64
    low: I64
    close: I64
    volume: I64
    quote: I64
    buy_volume: I64
    buy_quote: I64

    def __len__(self) -> int:
        return len(self.start)

    def take(self, index: Any) -> _Agg:
        return _Agg(*(getattr(self, f.name)[index] for f in attrs.fields(_Agg)))

    @staticmethod
    def concat(parts: Sequence[_Agg]) -> _Agg:
        if not parts:
            return _EMPTY_AGG
        if len(parts) == 1:
            return parts[0]
        return _Agg(
            *(np.concatenate([getattr(p, f.name) for p in parts]) for f in attrs.fields(_Agg))
        )


def _i64(n: int = 0) -> I64:
    return np.zeros(n, dtype=np.int64)


_EMPTY_AGG: Final = _Agg(*(_i64() for _ in attrs.fields(_Agg)))


@attrs.frozen(eq=False)
class RawTrades:
    """Trades in integer units, as the dialects render them."""

    id: I64
    ts: I64
    price: I64  # units of 10**-price_decimals
    amount: I64  # units of 10**-amount_decimals
    buy: B  # taker side is buy

    def __len__(self) -> int:
        return len(self.id)

    def take(self, index: Any) -> RawTrades:
        return RawTrades(
            self.id[index], self.ts[index], self.price[index], self.amount[index], self.buy[index]
        )

    @staticmethod
    def concat(parts: Sequence[RawTrades]) -> RawTrades:
        parts = [p for p in parts if len(p)]
        if not parts:
            return _EMPTY_TRADES
        if len(parts) == 1:
            return parts[0]
        return RawTrades(
            np.concatenate([p.id for p in parts]),
            np.concatenate([p.ts for p in parts]),
            np.concatenate([p.price for p in parts]),
            np.concatenate([p.amount for p in parts]),
            np.concatenate([p.buy for p in parts]),
        )

    def as_agg(self) -> _Agg:
        quote = self.price * self.amount
        zero = np.zeros_like(self.amount)
        return _Agg(
            self.ts,
            np.ones_like(self.ts),
            self.price,
            self.price,
            self.price,
            self.price,
            self.amount,
            quote,
            np.where(self.buy, self.amount, zero),
            np.where(self.buy, quote, zero),
        )


_EMPTY_TRADES: Final = RawTrades(_i64(), _i64(), _i64(), _i64(), np.zeros(0, dtype=np.bool_))


@attrs.frozen(eq=False)
class RawCandles:
    """Candles in integer units (see :class:`RawTrades`); ``count == 0`` marks a flat candle."""

    agg: _Agg
    spec: MarketSpec
    now: int
    frame: Frame

    def __len__(self) -> int:
        return len(self.agg)

    def take(self, index: Any) -> RawCandles:
        return RawCandles(self.agg.take(index), self.spec, self.now, self.frame)

    def close_time(self) -> I64:
        """Binance ``closeTime``: the last ms of each candle."""
        if self.frame.months:
            return np.asarray([self.frame.next(int(t)) - 1 for t in self.agg.start], dtype=np.int64)
        return self.agg.start + (self.frame.ms - 1)

    def confirmed(self) -> B:
        """True for closed candles, False for the still-open one."""
        ends = self.close_time() + 1
        out: B = ends <= self.now
        return out


@attrs.frozen(eq=False)
class Candles:
    """Ground-truth candles: numpy columns, one row per candle, sorted by open time.

    Prices and volumes are floats equal to what ccxt parses from the dialects.

    Example::

        c = emu.market.candles("binance", "BTC/USDT", "1m", start, end)
        assert exchange.fetch_ohlcv("BTC/USDT", "1m", start, 3) == c.to_list()[:3]

    Added in 0.1.0.
    """

    timestamp: I64
    open: F64
    high: F64
    low: F64
    close: F64
    volume: F64
    quote_volume: F64
    trades: I64
    taker_buy_volume: F64
    taker_buy_quote_volume: F64

    def __len__(self) -> int:
        return len(self.timestamp)

    def to_list(self) -> list[list[float]]:
        """ccxt OHLCV rows ``[timestamp, open, high, low, close, volume]``."""
        return [
            [int(t), float(o), float(h), float(lo), float(c), float(v)]
            for t, o, h, lo, c, v in zip(
                self.timestamp, self.open, self.high, self.low, self.close, self.volume, strict=True
            )
        ]

    def to_frame(self) -> pd.DataFrame:
        """A DataFrame in the ``ohlcv`` schema (UTC ``DatetimeIndex`` named ``timestamp``)."""
        index = pd.DatetimeIndex(
            pd.to_datetime(self.timestamp, unit="ms", utc=True), name="timestamp"
        )
        return pd.DataFrame(
            {
                "open": self.open,
                "high": self.high,
                "low": self.low,
                "close": self.close,
                "volume": self.volume,
                "trades": self.trades,
            },
            index=index,
        )


@attrs.frozen(eq=False)
class Trades:
    """Ground-truth trades: numpy columns sorted by (timestamp, id); ``amount`` in base currency.

    Added in 0.1.0.
    """

    id: I64
    timestamp: I64
    price: F64
    amount: F64
    side: npt.NDArray[np.str_]

    def __len__(self) -> int:
        return len(self.id)

    def to_frame(self) -> pd.DataFrame:
        """A DataFrame in the ``trades`` schema (``id`` as str)."""
        index = pd.DatetimeIndex(
            pd.to_datetime(self.timestamp, unit="ms", utc=True), name="timestamp"
        )
        return pd.DataFrame(
            {
                "id": self.id.astype(str),
                "price": self.price,
                "amount": self.amount,
                "side": self.side,
            },
            index=index,
        )


def _scale(values: I64, decimals: int) -> F64:
    out: F64 = values.astype(np.float64) / float(10**decimals)
    return out


# --------------------------------------------------------------------------- generation

_DAY_CACHE_SIZE: Final = 96
_AGG_CACHE_SIZE: Final = 512
_Key = tuple[int, str, MarketSpec]  # (seed, venue, spec)


class _LRU:
    """Thread-safe LRU holding at most ``size`` entries, or ``size`` in total ``weigh(value)``."""

    def __init__(self, size: int, weigh: Callable[[Any], int] | None = None) -> None:
        self._size = size
        self._weigh = weigh
        self._total = 0
        self._data: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def _weight(self, value: Any) -> int:
        return 1 if self._weigh is None else self._weigh(value)

    def get(self, key: Any) -> Any:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._total -= self._weight(old)
            self._data[key] = value
            self._total += self._weight(value)
            while self._total > self._size and len(self._data) > 1:
                self._total -= self._weight(self._data.popitem(last=False)[1])


# Process-wide caches: generation is a pure function of the key, so emulators (and
# tests) share them.
_DAYS = _LRU(_DAY_CACHE_SIZE)
_MINUTES = _LRU(_AGG_CACHE_SIZE)
_DAILY: dict[tuple[_Key, int], _Agg] = {}
_PREFIX: dict[_Key, I64] = {}
_PREFIX_LOCK = threading.Lock()


def _rng(seed: int, venue: str, symbol: str, *parts: object) -> np.random.Generator:
    text = "|".join(str(p) for p in (seed, venue, symbol, *parts))
    digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def _minute_counts(key: _Key, day: int) -> I64:
    """Trades per minute of ``day`` before listing/outage removal (first minute >= 1)."""
    seed, venue, spec = key
    u = _rng(seed, venue, spec.symbol, day, "n").random(1440)
    counts: I64 = np.searchsorted(_poisson_cdf(spec.trades_per_minute), u, side="right").astype(
        np.int64
    )
    counts[0] = max(int(counts[0]), 1)
    return counts


def _alive_intervals(spec: MarketSpec, start: int, end: int) -> list[tuple[int, int]]:
    """``[start, end) & [listed, inf) - outages`` as sorted disjoint intervals."""
    out: list[tuple[int, int]] = []
    cursor = max(start, spec.listed)
    for a, b in spec.outages:
        if b <= cursor:
            continue
        if a >= end:
            break
        if a > cursor:
            out.append((cursor, min(a, end)))
        cursor = max(cursor, b)
    if cursor < end:
        out.append((cursor, end))
    return out


def _is_plain_day(spec: MarketSpec, day: int) -> bool:
    start, end = day * DAY, (day + 1) * DAY
    return start >= spec.listed and not any(a < end and b > start for a, b in spec.outages)


def _model_log_price(key: _Key, t: I64) -> F64:
    """Log of the noise-free price: a sum of slow sines sampled on a 5-minute grid, interpolated."""
    seed, _, spec = key
    # The model depends on the base asset only: spot and perpetual, and every venue,
    # track the same price; trades add per-market noise.
    phases = _rng(seed, "model", spec.base, "phase").random(len(_WAVES)) * 2 * math.pi
    if len(t) == 0:
        return np.zeros(0, dtype=np.float64)
    lo = int(t.min()) // _GRID * _GRID
    hi = int(t.max()) // _GRID * _GRID + _GRID
    grid = np.arange(lo, hi + 1, _GRID, dtype=np.int64)
    gf = grid.astype(np.float64)
    x = np.zeros(len(grid), dtype=np.float64)
    for (period, amp), phase in zip(_WAVES, phases, strict=True):
        x += amp * spec.volatility * np.sin(2 * math.pi * gf / period + phase)
    out: F64 = math.log(spec.base_price) + np.interp(t.astype(np.float64), gf, x)
    return out


def _price_units(key: _Key, t: I64, noise: F64 | None = None) -> I64:
    spec = key[2]
    logp = _model_log_price(key, t)
    if noise is not None:
        logp = logp + noise
    tick_value = spec.tick * 10.0**-spec.price_decimals
    ticks = np.maximum(np.rint(np.exp(logp) / tick_value), 1).astype(np.int64)
    out: I64 = ticks * spec.tick
    return out


@functools.lru_cache(maxsize=64)
def _poisson_cdf(lam: float) -> F64:
    k = np.arange(0, max(20, int(lam * 6 + 20)))
    logp = -lam + k * math.log(lam) - np.array([math.lgamma(i + 1) for i in k])
    cdf: F64 = np.cumsum(np.exp(logp))
    return cdf


def _generate_kept(key: _Key, day: int) -> RawTrades:
    """All trades of one UTC day (before "now" filtering), ids not yet assigned."""
    seed, venue, spec = key
    start = day * DAY
    alive = _alive_intervals(spec, start, start + DAY)
    if not alive:
        return _EMPTY_TRADES
    counts = _minute_counts(key, day)
    n = int(counts.sum())
    rng = _rng(seed, venue, spec.symbol, day, "t")
    minute = np.repeat(np.arange(1440, dtype=np.int64), counts)
    ts = _unique_sorted(minute * MINUTE + rng.integers(0, MINUTE, n)) + start
    price, amount, buy = _fills(key, rng, ts)
    if len(alive) == 1 and alive[0] == (start, start + DAY):
        return RawTrades(_i64(n), ts, price, amount, buy)
    keep = np.zeros(n, dtype=np.bool_)
    for a, b in alive:
        keep |= (ts >= a) & (ts < b)
    return RawTrades(_i64(int(keep.sum())), ts[keep], price[keep], amount[keep], buy[keep])


def _unique_sorted(offsets: I64) -> I64:
    """Sort ms offsets within a day and make them unique (one trade per ms, as ids need)."""
    ts = np.sort(offsets)
    while True:
        dup = np.flatnonzero(ts[1:] == ts[:-1]) + 1
        if not len(dup):
            return ts
        ts[dup] = np.where(ts[dup] + 1 < DAY, ts[dup] + 1, ts[dup] - 2)
        ts.sort()


def _fills(key: _Key, rng: np.random.Generator, ts: I64) -> tuple[I64, I64, B]:
    """Price units, amount units and buy flags of trades at ``ts``, drawn from ``rng``
    in a fixed order (so a market's trades never change)."""
    spec, n = key[2], len(ts)
    noise = rng.normal(0.0, _NOISE * spec.volatility, n)
    price = _price_units(key, ts, noise)
    step = 10.0**-spec.amount_decimals
    sigma = 0.9
    mu = math.log(spec.mean_amount / step) - sigma * sigma / 2
    amount = np.maximum(np.rint(rng.lognormal(mu, sigma, n)), 1).astype(np.int64)
    buy = rng.random(n) < 0.5
    return price, amount, buy


def _generate_day(key: _Key, day: int) -> RawTrades:
    """All trades of one UTC day (before "now" filtering), with contiguous ids."""
    cached = _DAYS.get((key, day))
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    kept = _generate_kept(key, day)
    ids = _id_base(key, day) + np.arange(1, len(kept) + 1, dtype=np.int64)
    result = RawTrades(ids, kept.ts, kept.price, kept.amount, kept.buy)
    _DAYS.put((key, day), result)
    return result


def _day_count(key: _Key, day: int) -> int:
    spec = key[2]
    if _is_fast(spec):
        if _is_plain_day(spec, day):
            return int(_block_counts(key, day).sum())
        return int(_block_prefix(key, day)[-1])
    if _is_plain_day(spec, day):
        return int(_minute_counts(key, day).sum())
    return len(_generate_kept(key, day))


def _id_base(key: _Key, day: int) -> int:
    """Number of trades before ``day`` (ids are contiguous from 1 at listing)."""
    first = key[2].listed // DAY
    if day <= first:
        return 0
    with _PREFIX_LOCK:
        prefix = _PREFIX.get(key)
        have = 0 if prefix is None else len(prefix) - 1
    need = day - first
    if prefix is None or have < need:
        counts = [_day_count(key, first + i) for i in range(have, need + 366)]
        base = 0 if prefix is None else int(prefix[-1])
        extra = base + np.cumsum(np.asarray(counts, dtype=np.int64))
        with _PREFIX_LOCK:
            prefix = np.concatenate(
                [np.zeros(1, dtype=np.int64) if prefix is None else prefix, extra]
            )
            _PREFIX[key] = prefix
    return int(prefix[need])


def _day_of_id(key: _Key, trade_id: int, last_day: int) -> int:
    """The day holding trade ``trade_id``, or ``last_day + 1`` if no trade up to ``last_day`` has it."""
    first = key[2].listed // DAY
    if _id_base(key, last_day + 1) < trade_id:
        return last_day + 1
    with _PREFIX_LOCK:
        prefix = _PREFIX[key]
    i = int(np.searchsorted(prefix, trade_id, side="left"))
    return first + max(i - 1, 0)


# --------------------------------------------------------------------------- fast markets

#: Trades (33 bytes each) the block cache holds: 66 minutes at 60,000 trades a minute.
_BLOCK_CACHE_ROWS: Final = 4_000_000
_PREFIX_CACHE_SIZE: Final = 1024
_MINUTE_TABLE_CACHE_SIZE: Final = 64

_BLOCKS = _LRU(_BLOCK_CACHE_ROWS, weigh=lambda t: len(t) + 1)
_BLOCK_PREFIX = _LRU(_PREFIX_CACHE_SIZE)
_MINUTE_TABLES = _LRU(_MINUTE_TABLE_CACHE_SIZE)
_AGG_FIELDS: Final = tuple(f.name for f in attrs.fields(_Agg))


def _is_fast(spec: MarketSpec) -> bool:
    """Whether the market is generated a minute at a time (see :data:`FAST_TRADES_PER_MINUTE`)."""
    return spec.trades_per_minute > FAST_TRADES_PER_MINUTE


def _block_counts(key: _Key, day: int) -> I64:
    """Trades per minute of ``day`` of a fast market before listing/outage removal."""
    seed, venue, spec = key
    drawn = _rng(seed, venue, spec.symbol, day, "blocks").poisson(
        spec.trades_per_minute, _MINUTES_PER_DAY
    )
    out: I64 = np.minimum(drawn, MAX_TRADES_PER_MINUTE).astype(np.int64)
    return out


def _block_kept(key: _Key, block: int) -> RawTrades:
    """The trades of minute ``block`` (ms // MINUTE) of a fast market that listing and
    outages keep, ids not yet assigned."""
    seed, venue, spec = key
    start = block * MINUTE
    alive = _alive_intervals(spec, start, start + MINUTE)
    if not alive:
        return _EMPTY_TRADES
    day, minute = divmod(block, _MINUTES_PER_DAY)
    n = int(_block_counts(key, day)[minute])
    rng = _rng(seed, venue, spec.symbol, block, "block")
    # distinct ms offsets: unique timestamps without _unique_sorted's shifting, which
    # would crawl when nearly every ms of the minute holds a trade
    offsets = np.sort(rng.choice(MINUTE, n, replace=False, shuffle=False)).astype(np.int64)
    ts: I64 = offsets + start
    price, amount, buy = _fills(key, rng, ts)
    if alive == [(start, start + MINUTE)]:
        return RawTrades(_i64(n), ts, price, amount, buy)
    keep = np.zeros(n, dtype=np.bool_)
    for a, b in alive:
        keep |= (ts >= a) & (ts < b)
    return RawTrades(_i64(int(keep.sum())), ts[keep], price[keep], amount[keep], buy[keep])


def _block_prefix(key: _Key, day: int) -> I64:
    """Kept trades of ``day`` of a fast market before each minute (1441 entries)."""
    cached = _BLOCK_PREFIX.get((key, day))
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    spec = key[2]
    counts = _block_counts(key, day)
    if not _is_plain_day(spec, day):
        d0 = day * _MINUTES_PER_DAY
        kept = np.zeros(_MINUTES_PER_DAY, dtype=np.int64)
        partial: set[int] = set()
        for a, b in _alive_intervals(spec, day * DAY, (day + 1) * DAY):
            full_lo, full_hi = -(-a // MINUTE), b // MINUTE
            if full_lo < full_hi:
                kept[full_lo - d0 : full_hi - d0] = counts[full_lo - d0 : full_hi - d0]
            if a % MINUTE:
                partial.add(a // MINUTE)
            if b % MINUTE:
                partial.add(b // MINUTE)
        for block in partial:
            kept[block - d0] = len(_block_kept(key, block))
        counts = kept
    prefix = np.concatenate([_i64(1), np.cumsum(counts)])
    _BLOCK_PREFIX.put((key, day), prefix)
    return prefix


def _generate_block(key: _Key, block: int) -> RawTrades:
    """The trades of minute ``block`` of a fast market (before "now" filtering), with ids."""
    cached = _BLOCKS.get((key, block))
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    kept = _block_kept(key, block)
    day, minute = divmod(block, _MINUTES_PER_DAY)
    base = _id_base(key, day) + int(_block_prefix(key, day)[minute])
    ids = base + np.arange(1, len(kept) + 1, dtype=np.int64)
    result = RawTrades(ids, kept.ts, kept.price, kept.amount, kept.buy)
    _BLOCKS.put((key, block), result)
    return result


def _block_of_id(key: _Key, trade_id: int, last_day: int) -> int:
    """The minute holding trade ``trade_id`` of a fast market, or the first minute after
    ``last_day`` if no trade up to ``last_day`` has it."""
    day = _day_of_id(key, trade_id, last_day)
    if day > last_day:
        return day * _MINUTES_PER_DAY
    prefix = _block_prefix(key, day)
    i = int(np.searchsorted(prefix, trade_id - _id_base(key, day), side="left"))
    return day * _MINUTES_PER_DAY + max(i - 1, 0)


def _fast_trades_in(key: _Key, start: int, end: int) -> RawTrades:
    """Trades of a fast market with ``start <= ts < end`` (``end`` already cut at now)."""
    parts = []
    for a, b in _alive_intervals(key[2], start, end):
        for block in range(a // MINUTE, (b - 1) // MINUTE + 1):
            t = _generate_block(key, block)
            lo, hi = np.searchsorted(t.ts, [a, b], side="left")
            parts.append(t.take(slice(int(lo), int(hi))))
    return RawTrades.concat(parts)


def _fast_forward(key: _Key, cursor: int, stop: int, from_id: int | None, limit: int) -> RawTrades:
    """The first ``limit`` trades of a fast market in ``[cursor, stop)`` (id >= ``from_id``)."""
    spec = key[2]
    parts: list[RawTrades] = []
    have = 0
    while have < limit and cursor < stop:
        nxt = _next_alive(spec, cursor)
        if nxt is None or nxt >= stop:
            break
        cursor = max(cursor, nxt)
        block = cursor // MINUTE
        t = _generate_block(key, block)
        lo, hi = np.searchsorted(t.ts, [cursor, stop], side="left")
        chunk = t.take(slice(int(lo), int(hi)))
        if from_id is not None:
            chunk = chunk.take(chunk.id >= from_id)
        parts.append(chunk.take(slice(0, limit - have)))
        have += len(parts[-1])
        cursor = (block + 1) * MINUTE
    return RawTrades.concat(parts)


def _fast_backward(
    key: _Key, cursor: int, floor: int, before_id: int | None, limit: int
) -> RawTrades:
    """The last ``limit`` trades of a fast market in ``[floor, cursor)`` (id < ``before_id``)."""
    spec = key[2]
    parts: list[RawTrades] = []
    have = 0
    while have < limit and cursor > floor:
        prev = _prev_alive(spec, cursor)
        if prev is None or prev <= floor:
            break
        cursor = min(cursor, prev)
        block = (cursor - 1) // MINUTE
        t = _generate_block(key, block)
        lo, hi = np.searchsorted(t.ts, [max(floor, block * MINUTE), cursor], side="left")
        chunk = t.take(slice(int(lo), int(hi)))
        if before_id is not None:
            chunk = chunk.take(chunk.id < before_id)
        take = min(limit - have, len(chunk))
        parts.append(chunk.take(slice(len(chunk) - take, len(chunk))))
        have += take
        cursor = block * MINUTE
    return RawTrades.concat(parts[::-1])


@attrs.frozen(eq=False)
class _MinuteTable:
    """Per-minute aggregates of one day of a fast market, filled in as minutes are asked for.

    ``rows[i]`` is :class:`_Agg` field ``i`` (``start`` left 0); ``done[m]`` is set once
    minute ``m`` is final (closed before now). Concurrent fills write identical values.
    """

    rows: I64 = attrs.field(
        factory=lambda: np.zeros((len(_AGG_FIELDS), _MINUTES_PER_DAY), np.int64)
    )
    done: B = attrs.field(factory=lambda: np.zeros(_MINUTES_PER_DAY, dtype=np.bool_))


def _fast_minutes(key: _Key, lo: int, hi: int, now: int) -> _Agg:
    """Per-minute aggregates of a fast market for minutes ``[lo, hi)`` (trades before now)."""
    spec = key[2]
    parts = []
    for day in range(lo // _MINUTES_PER_DAY, (hi - 1) // _MINUTES_PER_DAY + 1):
        d0 = day * _MINUTES_PER_DAY
        table = _MINUTE_TABLES.get((key, day))
        if table is None:
            table = _MinuteTable()
            _MINUTE_TABLES.put((key, day), table)
        a, b = max(lo, d0) - d0, min(hi, d0 + _MINUTES_PER_DAY) - d0
        opens = (d0 + np.arange(a, b, dtype=np.int64)) * MINUTE
        # cached minutes are closed before some clock's now, maybe not before this one's
        closed = opens + MINUTE <= now
        rows = np.where(closed & table.done[a:b], table.rows[:, a:b], 0)
        for m in np.flatnonzero((opens < now) & ~(closed & table.done[a:b])).tolist():
            t0 = int(opens[m])
            if _alive_intervals(spec, t0, t0 + MINUTE):
                t = _generate_block(key, d0 + a + m)
                if not closed[m]:
                    t = t.take(t.ts < now)
                agg = _reduce(t.as_agg(), _i64(1))
                rows[:, m] = [int(getattr(agg, f)[0]) for f in _AGG_FIELDS]
            if closed[m]:
                table.rows[:, a + m] = rows[:, m]
                table.done[a + m] = True
        parts.append(_Agg(*rows))
    agg = _Agg.concat(parts)
    return attrs.evolve(agg, start=np.arange(lo, hi, dtype=np.int64) * MINUTE)


def _fast_close_before(key: _Key, t: int, now: int) -> int | None:
    """Last traded price of a fast market before ``min(t, now)``; None if nothing traded."""
    spec = key[2]
    cursor = min(t, now)
    while cursor > spec.listed:
        prev = _prev_alive(spec, cursor)
        if prev is None:
            break
        cursor = min(cursor, prev)
        block = (cursor - 1) // MINUTE
        tr = _generate_block(key, block)
        i = int(np.searchsorted(tr.ts, cursor, side="left"))
        if i > 0:
            return int(tr.price[i - 1])
        cursor = block * MINUTE
    return None


def _reduce(units: _Agg, starts: I64) -> _Agg:
    """Aggregate consecutive unit rows into buckets beginning at row indices ``starts``."""
    n = len(units)
    if n == 0:
        m = len(starts)
        return _Agg(*(_i64(m) for _ in attrs.fields(_Agg)))
    ends = np.append(starts[1:], n)
    empty = starts >= ends
    # One sentinel row past the end lets empty trailing buckets index ``n`` without
    # clamping, which would cut the last unit out of the bucket before them.
    idx = np.minimum(starts, n)

    def total(x: I64) -> I64:
        cs = np.concatenate([_i64(1), np.cumsum(x)])
        out: I64 = cs[ends] - cs[starts]
        return out

    def pad(x: I64, fill: int) -> I64:
        return np.append(x, np.int64(fill))

    count = total(units.count)
    has = units.count > 0
    high = np.maximum.reduceat(pad(np.where(has, units.high, _INT_MIN), _INT_MIN), idx)
    low = np.minimum.reduceat(pad(np.where(has, units.low, _INT_MAX), _INT_MAX), idx)
    pos = np.arange(n, dtype=np.int64)
    first = np.minimum.reduceat(pad(np.where(has, pos, n), n), idx)
    last = np.maximum.reduceat(pad(np.where(has, pos, -1), -1), idx)
    none = empty | (count == 0)
    first = np.where(none, 0, np.minimum(first, n - 1))
    last = np.where(none, 0, np.maximum(last, 0))
    zero = np.zeros(len(starts), dtype=np.int64)
    return _Agg(
        zero,
        count,
        np.where(none, 0, units.open[first]),
        np.where(none, 0, high),
        np.where(none, 0, low),
        np.where(none, 0, units.close[last]),
        total(units.volume),
        total(units.quote),
        total(units.buy_volume),
        total(units.buy_quote),
    )


class SyntheticMarket:
    """The emulator's ground truth: deterministic trades, candles and funding per market.

    The same ``seed`` gives the same market in every process. ``clock`` returns "now"
    in ms (default: the wall clock); nothing at or after now exists, and the candle
    containing now is partial.

    Example::

        market = SyntheticMarket(seed=1, clock=lambda: 1_700_000_000_000)
        c = market.candles("binance", "BTC/USDT", "1h", 1_690_000_000_000, 1_690_036_000_000)
        t = market.trades("binance", "BTC/USDT", 1_690_000_000_000, 1_690_000_060_000)
        assert c.volume[0] >= t.amount.sum()

    Added in 0.1.0.
    """

    def __init__(
        self,
        seed: int = 0,
        markets: Iterable[MarketSpec] = (),
        clock: Callable[[], int] | None = None,
        *,
        venues: dict[str, Sequence[MarketSpec]] | None = None,
        aliases: dict[str, str] | None = None,
        contract_venues: Iterable[str] = ("binance", "okx", "bybit"),
    ) -> None:
        self.seed = seed
        self._clock = clock
        self._aliases = dict(aliases or {})
        self._contract_venues = set(contract_venues)
        self._specs: dict[str, dict[str, MarketSpec]] = {}
        for venue, specs in (venues or {}).items():
            self._specs[venue] = {s.symbol: s for s in specs}
        for spec in markets:
            self.add(spec)

    # -- configuration

    def now(self) -> int:
        """Current time in ms according to the clock."""
        return int(self._clock()) if self._clock is not None else int(time.time() * 1000)

    def venue(self, exchange: str) -> str:
        """Canonical venue for an exchange id or alias (``binanceusdm`` -> ``binance``)."""
        return self._aliases.get(exchange, exchange)

    def add(self, spec: MarketSpec) -> None:
        """Add or replace a market (on every venue when ``spec.exchange`` is None)."""
        venues = [self.venue(spec.exchange)] if spec.exchange else list(self._specs)
        for venue in venues:
            if spec.is_contract and venue not in self._contract_venues:
                continue
            self._specs.setdefault(venue, {})[spec.symbol] = attrs.evolve(spec, exchange=venue)

    def configure(self, exchange: str, symbol: str, **changes: Any) -> MarketSpec:
        """Change one market's spec (e.g. ``listed=``, ``outages=``) and return the new spec."""
        venue = self.venue(exchange)
        spec = attrs.evolve(self.spec(venue, symbol), **changes)
        self._specs[venue][symbol] = spec
        return spec

    def spec(self, exchange: str, symbol: str) -> MarketSpec:
        """The spec of one market; KeyError when the venue does not list it."""
        return self._specs[self.venue(exchange)][symbol]

    def symbols(self, exchange: str) -> list[str]:
        """Unified symbols listed on a venue."""
        return list(self._specs.get(self.venue(exchange), {}))

    def _key(self, exchange: str, symbol: str) -> _Key:
        venue = self.venue(exchange)
        return (self.seed, venue, self._specs[venue][symbol])

    # -- trades

    def raw_trades(self, exchange: str, symbol: str, start: int, end: int) -> RawTrades:
        """Trades with ``start <= timestamp < min(end, now)``."""
        return _trades_in(self._key(exchange, symbol), start, end, self.now())

    def raw_trades_forward(
        self,
        exchange: str,
        symbol: str,
        *,
        start: int | None = None,
        from_id: int | None = None,
        end: int | None = None,
        limit: int,
    ) -> RawTrades:
        """The first ``limit`` trades at/after ``start`` (or with id >= ``from_id``), before ``end``."""
        key = self._key(exchange, symbol)
        spec = key[2]
        now = self.now()
        stop = now if end is None else min(end, now)
        if _is_fast(spec):
            if from_id is not None:
                cursor = _block_of_id(key, max(from_id, 1), (now - 1) // DAY) * MINUTE
            else:
                assert start is not None
                cursor = max(start, spec.listed)
            return _fast_forward(key, cursor, stop, from_id, limit)
        if from_id is not None:
            day = _day_of_id(key, max(from_id, 1), (now - 1) // DAY)
            lo_ts = day * DAY
        else:
            assert start is not None
            lo_ts = max(start, spec.listed)
            day = lo_ts // DAY
        parts: list[RawTrades] = []
        have = 0
        while have < limit and day * DAY < stop:
            if _alive_intervals(spec, day * DAY, (day + 1) * DAY):
                t = _generate_day(key, day)
                mask = (t.ts >= lo_ts) & (t.ts < stop)
                if from_id is not None:
                    mask &= t.id >= from_id
                chunk = t.take(mask)
                parts.append(chunk.take(slice(0, limit - have)))
                have += len(parts[-1])
            else:
                nxt = _next_alive(spec, day * DAY)
                if nxt is None:
                    break
                day = max(day, nxt // DAY - 1)
            day += 1
        return RawTrades.concat(parts)

    def raw_trades_backward(
        self,
        exchange: str,
        symbol: str,
        *,
        end: int | None = None,
        before_id: int | None = None,
        start: int | None = None,
        limit: int,
    ) -> RawTrades:
        """The last ``limit`` trades before ``end`` (or with id < ``before_id``), chronological."""
        key = self._key(exchange, symbol)
        spec = key[2]
        stop = self.now() if end is None else min(end, self.now())
        floor = max(spec.listed, start if start is not None else spec.listed)
        if _is_fast(spec):
            cursor = stop
            if before_id is not None:
                block = _block_of_id(key, max(before_id - 1, 1), (stop - 1) // DAY)
                cursor = min(cursor, (block + 1) * MINUTE)
            return _fast_backward(key, cursor, floor, before_id, limit)
        day = (stop - 1) // DAY
        if before_id is not None:
            day = min(day, _day_of_id(key, max(before_id - 1, 1), day))
        parts: list[RawTrades] = []
        have = 0
        while have < limit and (day + 1) * DAY > floor:
            if _alive_intervals(spec, day * DAY, (day + 1) * DAY):
                t = _generate_day(key, day)
                mask = (t.ts < stop) & (t.ts >= floor)
                if before_id is not None:
                    mask &= t.id < before_id
                chunk = t.take(mask)
                take = min(limit - have, len(chunk))
                parts.append(chunk.take(slice(len(chunk) - take, len(chunk))))
                have += take
            day -= 1
        return RawTrades.concat(parts[::-1])

    def trades(self, exchange: str, symbol: str, start: int, end: int) -> Trades:
        """Ground-truth trades with ``start <= timestamp < end`` (and before now)."""
        spec = self.spec(exchange, symbol)
        raw = self.raw_trades(exchange, symbol, start, end)
        return Trades(
            raw.id,
            raw.ts,
            _scale(raw.price, spec.price_decimals),
            _scale(raw.amount, spec.amount_decimals),
            np.where(raw.buy, "buy", "sell"),
        )

    # -- candles

    def _minutes(self, key: _Key, day: int, now: int) -> _Agg:
        """Per-minute aggregates of a day (trades before now only)."""
        if _is_fast(key[2]):
            return _fast_minutes(key, day * _MINUTES_PER_DAY, (day + 1) * _MINUTES_PER_DAY, now)
        partial = (day + 1) * DAY > now
        if not partial:
            cached = _MINUTES.get((key, day))
            if cached is not None:
                return cached  # type: ignore[no-any-return]
        t = _generate_day(key, day)
        if partial:
            t = t.take(t.ts < now)
        starts = np.searchsorted(t.ts, day * DAY + np.arange(1440, dtype=np.int64) * MINUTE)
        agg = _reduce(t.as_agg(), starts.astype(np.int64))
        agg = attrs.evolve(agg, start=day * DAY + np.arange(1440, dtype=np.int64) * MINUTE)
        if not partial:
            _MINUTES.put((key, day), agg)
        return agg

    def _daily(self, key: _Key, day: int, now: int) -> _Agg:
        partial = (day + 1) * DAY > now
        if not partial and (key, day) in _DAILY:
            return _DAILY[(key, day)]
        spec = key[2]
        if day * DAY >= now or not _alive_intervals(spec, day * DAY, (day + 1) * DAY):
            agg = _reduce(_EMPTY_AGG, _i64(1))
        else:
            agg = _reduce(self._minutes(key, day, now), _i64(1))
        agg = attrs.evolve(agg, start=np.asarray([day * DAY], dtype=np.int64))
        if not partial:
            _DAILY[(key, day)] = agg
        return agg

    def _units(self, key: _Key, start: int, end: int, unit: int, now: int) -> _Agg:
        """Aggregates at ``unit`` resolution (1 s, 1 min or 1 day) covering ``[start, end)``."""
        spec = key[2]
        if unit == DAY:
            parts = [self._daily(key, d, now) for d in range(start // DAY, end // DAY)]
            return _Agg.concat(parts)
        if unit == MINUTE and _is_fast(spec):
            return _fast_minutes(key, start // MINUTE, end // MINUTE, now)
        parts = []
        for day in range(start // DAY, (end - 1) // DAY + 1):
            lo, hi = max(start, day * DAY), min(end, (day + 1) * DAY)
            if unit == MINUTE:
                if day * DAY < now and _alive_intervals(spec, day * DAY, (day + 1) * DAY):
                    m = self._minutes(key, day, now)
                else:
                    m = _reduce(_EMPTY_AGG, _i64(1440))
                    m = attrs.evolve(m, start=day * DAY + np.arange(1440, dtype=np.int64) * MINUTE)
                a, b = (lo - day * DAY) // MINUTE, (hi - day * DAY) // MINUTE
                parts.append(m.take(slice(a, b)))
            else:
                t = _trades_in(key, lo, hi, now)
                grid = np.arange(lo, hi, unit, dtype=np.int64)
                sec = _reduce(t.as_agg(), np.searchsorted(t.ts, grid).astype(np.int64))
                parts.append(attrs.evolve(sec, start=grid))
        return _Agg.concat(parts)

    def _close_before(self, key: _Key, t: int, now: int) -> int:
        """Last traded price before ``t`` (the model price when nothing traded yet)."""
        spec = key[2]
        if _is_fast(spec):
            price = _fast_close_before(key, t, now)
            if price is not None:
                return price
            return int(_price_units(key, np.asarray([max(t, spec.listed)], dtype=np.int64))[0])
        day = (t - 1) // DAY
        while (day + 1) * DAY > spec.listed:
            if _alive_intervals(spec, day * DAY, (day + 1) * DAY):
                tr = _generate_day(key, day)
                i = int(np.searchsorted(tr.ts, min(t, now), side="left"))
                if i > 0:
                    return int(tr.price[i - 1])
            day -= 1
        return int(_price_units(key, np.asarray([max(t, spec.listed)], dtype=np.int64))[0])

    def raw_candles(
        self,
        exchange: str,
        symbol: str,
        timeframe: str | Frame,
        start: int,
        end: int,
        *,
        fill_empty: bool = True,
    ) -> RawCandles:
        """Candles with open time in ``[start, end)``; the one containing now is partial.

        A candle exists when its interval overlaps ``[listed, now)`` minus the outage
        windows. An existing candle without trades is flat at the previous close with
        zero volume when ``fill_empty`` (Binance, OKX, Bybit), otherwise omitted (Kraken).
        """
        key = self._key(exchange, symbol)
        spec = key[2]
        frame = timeframe if isinstance(timeframe, Frame) else Frame.parse(timeframe)
        now = self.now()
        lo = max(start, frame.floor(spec.listed))
        hi = min(end, now)
        starts = frame.starts(lo, hi)
        if len(starts) == 0:
            return RawCandles(_EMPTY_AGG, spec, now, frame)
        ends = np.append(starts[1:], frame.next(int(starts[-1])))
        alive = np.zeros(len(starts), dtype=np.bool_)
        for a, b in _alive_intervals(spec, int(starts[0]), min(int(ends[-1]), now)):
            alive |= (starts < b) & (ends > a)
        if not alive.any():
            return RawCandles(_EMPTY_AGG, spec, now, frame)
        keep = np.flatnonzero(alive)
        starts, ends = starts[keep[0] : keep[-1] + 1], ends[keep[0] : keep[-1] + 1]
        alive = alive[keep[0] : keep[-1] + 1]
        span_lo, span_hi = int(starts[0]), int(ends[-1])
        if frame.ms and frame.ms < MINUTE:
            unit = frame.ms
        elif (frame.months or frame.ms % DAY == 0) and frame.offset % DAY == 0:
            unit = DAY
        else:
            unit = MINUTE
        units = self._units(key, span_lo, span_hi, unit, now)
        agg = _reduce(units, ((starts - span_lo) // unit).astype(np.int64))
        agg = attrs.evolve(agg, start=starts)
        empty = agg.count == 0
        if fill_empty and empty.any():
            close = np.where(empty, 0, agg.close)
            valid = np.where(~empty, np.arange(len(close)), -1)
            np.maximum.accumulate(valid, out=valid)
            prior = self._close_before(key, span_lo, now) if valid[0] < 0 else 0
            filled = np.where(valid >= 0, close[np.maximum(valid, 0)], prior)
            agg = attrs.evolve(
                agg,
                open=np.where(empty, filled, agg.open),
                high=np.where(empty, filled, agg.high),
                low=np.where(empty, filled, agg.low),
                close=np.where(empty, filled, agg.close),
            )
        keep_mask = alive & (~empty if not fill_empty else True)
        return RawCandles(agg.take(keep_mask), spec, now, frame)

    def raw_candles_forward(
        self,
        exchange: str,
        symbol: str,
        frame: Frame,
        start: int,
        limit: int,
        *,
        end: int | None = None,
        fill_empty: bool = True,
    ) -> RawCandles:
        """The first ``limit`` candles with open time >= ``start`` (and <= ``end``)."""
        spec = self.spec(exchange, symbol)
        now = self.now()
        stop = now if end is None else min(end + 1, now)
        parts: list[RawCandles] = []
        have = 0
        cursor = max(start, frame.floor(spec.listed))
        while have < limit and cursor < stop:
            nxt = _next_alive(spec, cursor)
            if nxt is None or nxt >= stop:
                break
            cursor = max(cursor, frame.floor(nxt))
            hi = min(stop, cursor + frame.step_estimate() * (limit - have) + 1)
            got = self.raw_candles(exchange, symbol, frame, cursor, hi, fill_empty=fill_empty)
            got = got.take(slice(0, limit - have))
            if len(got):
                parts.append(got)
                have += len(got)
            cursor = hi
        return _concat_candles(parts, spec, now, frame)

    def raw_candles_backward(
        self,
        exchange: str,
        symbol: str,
        frame: Frame,
        end: int,
        limit: int,
        *,
        start: int | None = None,
        fill_empty: bool = True,
    ) -> RawCandles:
        """The last ``limit`` candles with open time <= ``end`` (and >= ``start``)."""
        spec = self.spec(exchange, symbol)
        now = self.now()
        floor = frame.floor(spec.listed) if start is None else max(start, frame.floor(spec.listed))
        hi = min(end + 1, now)
        parts: list[RawCandles] = []
        have = 0
        while have < limit and hi > floor:
            lo = max(floor, hi - frame.step_estimate() * (limit - have + 1))
            got = self.raw_candles(exchange, symbol, frame, lo, hi, fill_empty=fill_empty)
            take = min(len(got), limit - have)
            if take:
                parts.append(got.take(slice(len(got) - take, len(got))))
                have += take
            hi = lo
            prev = _prev_alive(spec, hi)
            if prev is None:
                break
            hi = min(hi, frame.next(frame.floor(prev - 1)))
        return _concat_candles(parts[::-1], spec, now, frame)

    def candles(
        self,
        exchange: str,
        symbol: str,
        timeframe: str,
        start: int,
        end: int,
        *,
        fill_empty: bool | None = None,
        closed_only: bool = False,
    ) -> Candles:
        """Ground-truth candles with open time in ``[start, end)``.

        ``fill_empty=None`` uses the venue's rule (flat candles everywhere but Kraken).
        ``closed_only=True`` drops the still-open candle.
        """
        if fill_empty is None:
            fill_empty = self.venue(exchange) != "kraken"
        raw = self.raw_candles(exchange, symbol, timeframe, start, end, fill_empty=fill_empty)
        if closed_only:
            raw = raw.take(raw.confirmed())
        spec = raw.spec
        a, pd_, ad = raw.agg, spec.price_decimals, spec.amount_decimals
        return Candles(
            a.start,
            _scale(a.open, pd_),
            _scale(a.high, pd_),
            _scale(a.low, pd_),
            _scale(a.close, pd_),
            _scale(a.volume, ad),
            _scale(a.quote, pd_ + ad),
            a.count,
            _scale(a.buy_volume, ad),
            _scale(a.buy_quote, pd_ + ad),
        )

    # -- funding and mark price

    def mark_price(self, exchange: str, symbol: str, t: int) -> float:
        """Model (noise-free) price at ``t``: the mark/index price of perpetuals."""
        key = self._key(exchange, symbol)
        spec = key[2]
        units = _price_units(key, np.asarray([t], dtype=np.int64))
        return float(units[0]) / float(10**spec.price_decimals)

    def funding(
        self, exchange: str, symbol: str, start: int, end: int
    ) -> list[tuple[int, float, float]]:
        """Funding events ``(time, rate, mark_price)`` every 8 h in ``[start, min(end, now)]``."""
        spec = self.spec(exchange, symbol)
        if not spec.is_contract:
            return []
        period = 8 * HOUR
        lo = max(start, spec.listed)
        hi = min(end, self.now())
        first = -(-lo // period) * period
        out = []
        for t in range(first, hi + 1, period):
            out.append(
                (t, self.funding_rate(exchange, symbol, t), self.mark_price(exchange, symbol, t))
            )
        return out

    def funding_rate(self, exchange: str, symbol: str, t: int) -> float:
        """Deterministic funding rate of the 8-hour period starting at/before ``t``."""
        seed, venue, spec = self._key(exchange, symbol)
        period = t // (8 * HOUR)
        u = float(_rng(seed, venue, spec.symbol, period, "f").random())
        return round(0.0001 + 0.0003 * (u - 0.3), 8)


def _trades_in(key: _Key, start: int, end: int, now: int) -> RawTrades:
    spec = key[2]
    end = min(end, now)
    start = max(start, spec.listed)
    if end <= start:
        return _EMPTY_TRADES
    if _is_fast(spec):
        return _fast_trades_in(key, start, end)
    parts = []
    for day in range(start // DAY, (end - 1) // DAY + 1):
        if not _alive_intervals(spec, day * DAY, (day + 1) * DAY):
            continue
        t = _generate_day(key, day)
        lo, hi = np.searchsorted(t.ts, [start, end], side="left")
        parts.append(t.take(slice(int(lo), int(hi))))
    return RawTrades.concat(parts)


def _concat_candles(
    parts: Sequence[RawCandles], spec: MarketSpec, now: int, frame: Frame
) -> RawCandles:
    return RawCandles(_Agg.concat([p.agg for p in parts]), spec, now, frame)


def _next_alive(spec: MarketSpec, t: int) -> int | None:
    """First alive ms at or after ``t`` (ignoring now)."""
    iv = _alive_intervals(spec, t, _INT_MAX // 2)
    return iv[0][0] if iv else None


def _prev_alive(spec: MarketSpec, t: int) -> int | None:
    """One past the last alive ms before ``t``."""
    iv = _alive_intervals(spec, 0, t)
    return iv[-1][1] if iv else None
