"""What the market hands out: integer rows (:class:`RawTrades`, :class:`RawCandles`,
:class:`Agg`) for the dialects to render, and float ground truth (:class:`Candles`,
:class:`Trades`) for tests to compare with."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Final

import attrs
import numpy as np
import numpy.typing as npt
import pandas as pd

from .grid import Frame
from .spec import MarketSpec
from .units import F64, I64, B, i64


@attrs.frozen(eq=False)
class Agg:
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

    def take(self, index: Any) -> Agg:
        return Agg(*(getattr(self, f.name)[index] for f in attrs.fields(Agg)))

    @staticmethod
    def concat(parts: Sequence[Agg]) -> Agg:
        if not parts:
            return EMPTY_AGG
        if len(parts) == 1:
            return parts[0]
        return Agg(
            *(np.concatenate([getattr(p, f.name) for p in parts]) for f in attrs.fields(Agg))
        )


EMPTY_AGG: Final = Agg(*(i64() for _ in attrs.fields(Agg)))
AGG_FIELDS: Final = tuple(f.name for f in attrs.fields(Agg))


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
            return EMPTY_TRADES
        if len(parts) == 1:
            return parts[0]
        return RawTrades(
            np.concatenate([p.id for p in parts]),
            np.concatenate([p.ts for p in parts]),
            np.concatenate([p.price for p in parts]),
            np.concatenate([p.amount for p in parts]),
            np.concatenate([p.buy for p in parts]),
        )

    def rows(self) -> Iterator[tuple[int, int, int, int, bool]]:
        """``(id, ts, price, amount, buy)`` per trade, as Python ints and bools."""
        return zip(
            self.id.tolist(),
            self.ts.tolist(),
            self.price.tolist(),
            self.amount.tolist(),
            self.buy.tolist(),
            strict=True,
        )

    def as_agg(self) -> Agg:
        quote = self.price * self.amount
        zero = np.zeros_like(self.amount)
        return Agg(
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


EMPTY_TRADES: Final = RawTrades(i64(), i64(), i64(), i64(), np.zeros(0, dtype=np.bool_))


@attrs.frozen(eq=False)
class RawCandles:
    """Candles in integer units (see :class:`RawTrades`); ``count == 0`` marks a flat candle."""

    agg: Agg
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


def concat_candles(
    parts: Sequence[RawCandles], spec: MarketSpec, now: int, frame: Frame
) -> RawCandles:
    return RawCandles(Agg.concat([p.agg for p in parts]), spec, now, frame)


@attrs.frozen(eq=False)
class Candles:
    """Ground-truth candles: numpy columns, one row per candle, sorted by open time.

    Prices and volumes are floats equal to what ccxt parses from the dialects.

    Example::

        c = emu.market.candles("binance", "BTC/USDT", "1m", start, end)
        assert exchange.fetch_ohlcv("BTC/USDT", "1m", start, 3) == c.to_list()[:3]
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

    @staticmethod
    def from_raw(raw: RawCandles) -> Candles:
        """The floats of ``raw``, as ccxt parses them from the dialects."""
        spec = raw.spec
        a, pd_, ad = raw.agg, spec.price_decimals, spec.amount_decimals
        return Candles(
            a.start,
            scale(a.open, pd_),
            scale(a.high, pd_),
            scale(a.low, pd_),
            scale(a.close, pd_),
            scale(a.volume, ad),
            scale(a.quote, pd_ + ad),
            a.count,
            scale(a.buy_volume, ad),
            scale(a.buy_quote, pd_ + ad),
        )

    def to_list(self) -> list[list[float]]:
        """ccxt OHLCV rows ``[timestamp, open, high, low, close, volume]``."""
        return [
            [int(t), float(o), float(h), float(lo), float(c), float(v)]
            for t, o, h, lo, c, v in zip(
                self.timestamp, self.open, self.high, self.low, self.close, self.volume, strict=True
            )
        ]

    def to_frame(self, optional: Sequence[str] = ("trades",)) -> pd.DataFrame:
        """A DataFrame in the ``ohlcv`` schema (UTC ``DatetimeIndex`` named ``timestamp``),
        with the ``optional`` candle columns among ``quote_volume``, ``trades``,
        ``taker_buy_volume``, ``taker_buy_quote_volume`` and ``vwap`` (quote volume over
        volume, NaN without volume), in that order.

        Example::

            c.to_frame(("quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume"))
        """
        index = pd.DatetimeIndex(
            pd.to_datetime(self.timestamp, unit="ms", utc=True), name="timestamp"
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            vwap = np.where(self.volume > 0, self.quote_volume / self.volume, np.nan)
        extra = {
            "quote_volume": self.quote_volume,
            "trades": self.trades,
            "taker_buy_volume": self.taker_buy_volume,
            "taker_buy_quote_volume": self.taker_buy_quote_volume,
            "vwap": vwap,
        }
        unknown = set(optional) - set(extra)
        if unknown:
            raise ValueError(f"no candle column {sorted(unknown)}; allowed: {list(extra)}")
        return pd.DataFrame(
            {
                "open": self.open,
                "high": self.high,
                "low": self.low,
                "close": self.close,
                "volume": self.volume,
                **{c: v for c, v in extra.items() if c in optional},
            },
            index=index,
        )


@attrs.frozen(eq=False)
class Trades:
    """Ground-truth trades: numpy columns sorted by (timestamp, id); ``amount`` in base currency."""

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


def scale(values: I64, decimals: int) -> F64:
    out: F64 = values.astype(np.float64) / float(10**decimals)
    return out
