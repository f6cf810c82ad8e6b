"""Trades into closed candles, many timeframes at once, vectorised.

One implementation serves the historical :class:`~mdcollect.backfill.TradesBackfill`
and the live :class:`~mdcollect.collectors.TradesCollector`.

>>> from mdcollect.aggregate import trades_to_ohlcv
>>> candles = trades_to_ohlcv(trades, "1m")                 # one frame
>>> frames = trades_to_ohlcv(trades, ["1s", "1m", "1h"])    # dict of frames

Candles align to UTC interval boundaries (weeks to Monday), never to the first
trade. A candle is emitted only when closed: with ``end`` given, only candles
ending at or before ``end``; without it, the trades are taken as complete.
``fill_empty=True`` adds Binance-style flat candles for empty intervals (open =
high = low = close = the previous close, zero volume, zero trades).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import overload

import numpy as np
import pandas as pd

from ._errors import InvalidRequest
from ._schema import normalize_frame
from ._time import DAY, Timeframe, index_ms, ms_to_index

__all__ = ["CandleAggregator", "CandleBins", "aggregate_bins", "trades_to_ohlcv"]


class CandleBins:
    """Candles as parallel numpy arrays: start ms, OHLC, volume, trade count, quote
    volume and the taker-buy base and quote volumes (NaN when the sides are unknown)."""

    __slots__ = (
        "buy_quote",
        "buy_volume",
        "close",
        "count",
        "high",
        "low",
        "open",
        "quote",
        "start",
        "volume",
    )

    def __init__(
        self,
        start: np.ndarray,
        open_: np.ndarray,
        high: np.ndarray,
        low: np.ndarray,
        close: np.ndarray,
        volume: np.ndarray,
        count: np.ndarray,
        quote: np.ndarray,
        buy_volume: np.ndarray,
        buy_quote: np.ndarray,
    ) -> None:
        self.start, self.open, self.high, self.low = start, open_, high, low
        self.close, self.volume, self.count = close, volume, count
        self.quote, self.buy_volume, self.buy_quote = quote, buy_volume, buy_quote

    def __len__(self) -> int:
        return len(self.start)

    def _columns(self) -> tuple[np.ndarray, ...]:
        return (
            self.start,
            self.open,
            self.high,
            self.low,
            self.close,
            self.volume,
            self.count,
            self.quote,
            self.buy_volume,
            self.buy_quote,
        )

    def take(self, index: np.ndarray) -> CandleBins:
        """The candles at ``index`` (a boolean mask or positions)."""
        return CandleBins(*(c[index] for c in self._columns()))

    @classmethod
    def empty(cls) -> CandleBins:
        """No candles."""
        e_f = np.empty(0, dtype=np.float64)
        e_i = np.empty(0, dtype=np.int64)
        return cls(e_i, e_f, e_f, e_f, e_f, e_f, e_i, e_f, e_f, e_f)

    @classmethod
    def concat(cls, first: CandleBins, second: CandleBins) -> CandleBins:
        """``first`` then ``second`` (which must start later)."""
        return cls(
            *(
                np.concatenate([a, b])
                for a, b in zip(first._columns(), second._columns(), strict=True)
            )
        )

    @classmethod
    def flat(cls, start: int, price: float) -> CandleBins:
        """One zero-volume candle at ``price``."""
        p = np.array([price], dtype=np.float64)
        z = np.zeros(1)
        return cls(np.array([start], dtype=np.int64), p, p, p, p, z, np.zeros(1, np.int64), z, z, z)

    @classmethod
    def from_trades(
        cls,
        ts: np.ndarray,
        price: np.ndarray,
        amount: np.ndarray,
        tf: Timeframe,
        buy: np.ndarray | None = None,
    ) -> CandleBins:
        """Aggregate trades (sorted by time) into ``tf`` bins; ``buy`` marks the trades
        whose taker bought (``side == "buy"``), ``None`` when unknown."""
        quote = price * amount
        if buy is None:
            buy_volume = buy_quote = np.full(len(ts), np.nan)
        else:
            buy_volume = np.where(buy, amount, 0.0)
            buy_quote = np.where(buy, quote, 0.0)
        return cls._reduce(
            tf.floor_array(ts),
            price,
            price,
            price,
            price,
            amount,
            None,
            quote,
            buy_volume,
            buy_quote,
        )

    def coarsen(self, tf: Timeframe) -> CandleBins:
        """These candles merged into the coarser ``tf`` (its bins must be unions of ours)."""
        return self._reduce(tf.floor_array(self.start), *self._columns()[1:])

    @classmethod
    def _reduce(
        cls,
        bins: np.ndarray,
        open_: np.ndarray,
        high: np.ndarray,
        low: np.ndarray,
        close: np.ndarray,
        volume: np.ndarray,
        count: np.ndarray | None,
        quote: np.ndarray,
        buy_volume: np.ndarray,
        buy_quote: np.ndarray,
    ) -> CandleBins:
        n = len(bins)
        if n == 0:
            return cls.empty()
        starts = np.flatnonzero(np.r_[True, bins[1:] != bins[:-1]])
        ends = np.r_[starts[1:], n]
        cnt = (ends - starts) if count is None else np.add.reduceat(count, starts)
        return cls(
            bins[starts],
            open_[starts],
            np.maximum.reduceat(high, starts),
            np.minimum.reduceat(low, starts),
            close[ends - 1],
            np.add.reduceat(volume, starts),
            cnt.astype(np.int64),
            np.add.reduceat(quote, starts),
            np.add.reduceat(buy_volume, starts),
            np.add.reduceat(buy_quote, starts),
        )

    def fill(self, tf: Timeframe, start: int | None, end: int | None) -> CandleBins:
        """Add flat zero-volume candles for the empty bins between candles (and up to ``end``)."""
        if len(self) == 0:
            return self
        first = int(self.start[0])
        last_end = int(self.start[-1])
        if end is not None:
            last_end = max(last_end, tf.floor(end - 1))
        if tf.is_calendar:
            grid = _calendar_grid(first, last_end)
        else:
            grid = np.arange(first, last_end + 1, tf.ms, dtype=np.int64)
        if len(grid) == len(self):
            return self
        pos = np.searchsorted(self.start, grid)
        pos_c = np.minimum(pos, len(self) - 1)
        present = self.start[pos_c] == grid
        # index of the last real candle at or before each grid bin
        prev = np.where(present, pos_c, pos - 1)
        prev_close = self.close[prev]
        pick = np.where(present, pos_c, 0)
        zero_f = np.zeros(len(grid))
        return CandleBins(
            grid,
            np.where(present, self.open[pick], prev_close),
            np.where(present, self.high[pick], prev_close),
            np.where(present, self.low[pick], prev_close),
            np.where(present, self.close[pick], prev_close),
            np.where(present, self.volume[pick], zero_f),
            np.where(present, self.count[pick], 0).astype(np.int64),
            np.where(present, self.quote[pick], zero_f),
            np.where(present, self.buy_volume[pick], zero_f),
            np.where(present, self.buy_quote[pick], zero_f),
        )

    def clip(self, tf: Timeframe, start: int | None, end: int | None) -> CandleBins:
        """Only candles that start at or after ``start`` and end at or before ``end``."""
        keep = np.ones(len(self), dtype=bool)
        if start is not None:
            keep &= self.start >= start
        if end is not None:
            keep &= _bin_end(self.start, tf) <= end
        if keep.all():
            return self
        return self.take(keep)

    def to_frame(self) -> pd.DataFrame:
        """The candles in the ohlcv schema: ``trades`` holds the trade count, ``vwap`` is
        ``quote_volume / volume`` (NaN for a candle without volume); the taker-buy
        columns are left out when the trades' sides were unknown."""
        index = ms_to_index(self.start)
        volume = self.volume.astype(np.float64)
        quote = self.quote.astype(np.float64)
        vwap = np.divide(quote, volume, out=np.full(len(volume), np.nan), where=volume > 0)
        # a mean of prices lies within them; the division can round a last bit outside
        vwap = np.clip(vwap, self.low, self.high)
        columns: dict[str, np.ndarray] = {
            "open": self.open.astype(np.float64),
            "high": self.high.astype(np.float64),
            "low": self.low.astype(np.float64),
            "close": self.close.astype(np.float64),
            "volume": volume,
            "quote_volume": quote,
            "trades": self.count.astype(np.int64),
        }
        if not np.isnan(self.buy_volume).any():
            columns["taker_buy_volume"] = self.buy_volume.astype(np.float64)
            columns["taker_buy_quote_volume"] = self.buy_quote.astype(np.float64)
        columns["vwap"] = vwap
        return pd.DataFrame(columns, index=index)


def _bin_end(start: np.ndarray, tf: Timeframe) -> np.ndarray:
    if tf.is_calendar:
        months = start.astype("datetime64[ms]").astype("datetime64[M]") + 1
        return months.astype("datetime64[ms]").astype(np.int64)
    return start + tf.ms


def _calendar_grid(first: int, last: int) -> np.ndarray:
    a = np.datetime64(first, "ms").astype("datetime64[M]")
    b = np.datetime64(last, "ms").astype("datetime64[M]")
    return np.arange(a, b + 1).astype("datetime64[ms]").astype(np.int64)


def _nests(fine: Timeframe, coarse: Timeframe) -> bool:
    """True when every ``coarse`` bin is a union of whole ``fine`` bins."""
    if fine.is_calendar:
        return False
    if coarse.is_calendar:
        return DAY % fine.ms == 0
    return coarse.ms % fine.ms == 0 and (coarse.origin - fine.origin) % fine.ms == 0


def aggregate_bins(
    ts: np.ndarray,
    price: np.ndarray,
    amount: np.ndarray,
    timeframes: Sequence[Timeframe],
    buy: np.ndarray | None = None,
) -> dict[Timeframe, CandleBins]:
    """Unfilled, unclipped candles per timeframe; each derived from the finest that nests.
    ``buy`` marks the trades whose taker bought (for the taker-buy volumes)."""
    done: dict[Timeframe, CandleBins] = {}
    order = sorted(set(timeframes), key=lambda t: (t.is_calendar, 0 if t.is_calendar else t.ms))
    for tf in order:
        source = next((done[f] for f in reversed(list(done)) if _nests(f, tf)), None)
        done[tf] = (
            source.coarsen(tf)
            if source is not None
            else CandleBins.from_trades(ts, price, amount, tf, buy)
        )
    return done


@overload
def trades_to_ohlcv(
    trades: pd.DataFrame,
    timeframe: str | Timeframe,
    fill_empty: bool = ...,
    *,
    start: int | None = ...,
    end: int | None = ...,
) -> pd.DataFrame: ...
@overload
def trades_to_ohlcv(
    trades: pd.DataFrame,
    timeframe: list[str | Timeframe] | list[str] | list[Timeframe] | tuple[str | Timeframe, ...],
    fill_empty: bool = ...,
    *,
    start: int | None = ...,
    end: int | None = ...,
) -> dict[str, pd.DataFrame]: ...
def trades_to_ohlcv(
    trades: pd.DataFrame,
    timeframe: str | Timeframe | Sequence[str | Timeframe],
    fill_empty: bool = False,
    *,
    start: int | None = None,
    end: int | None = None,
) -> pd.DataFrame | dict[str, pd.DataFrame]:
    """Closed candles in the ``ohlcv`` schema from trades, with the optional columns:
    ``quote_volume`` (the sum of ``price * amount``), ``trades`` (the trade count),
    ``taker_buy_volume`` and ``taker_buy_quote_volume`` (the same sums over the trades
    whose ``side`` is ``buy``: the taker bought) and ``vwap`` (``quote_volume /
    volume``, NaN for a flat candle without trades). On Binance's trades these equal
    its klines' quote asset volume, number of trades and taker buy volumes.

    ``trades`` is a frame in the ``trades`` schema (UTC index or ``timestamp`` column).
    ``timeframe`` is one timeframe (returns a frame) or a list (returns a dict keyed by
    the timeframe strings). ``start``/``end`` (ms) bound the window the trades cover:
    candles starting before ``start`` or ending after ``end`` are not closed within it
    and are left out. ``fill_empty`` adds flat zero-volume candles for empty intervals
    after the first trade, as Binance does.
    """
    single = isinstance(timeframe, str | Timeframe)
    if isinstance(timeframe, str | Timeframe):
        tfs = [Timeframe.parse(timeframe)]
    else:
        tfs = [Timeframe.parse(t) for t in timeframe]
    if not tfs:
        raise InvalidRequest("timeframe list is empty; give at least one such as '1m'")
    norm = normalize_frame("trades", trades)
    ts = index_ms(norm)
    if start is not None or end is not None:
        lo = 0 if start is None else int(np.searchsorted(ts, start, side="left"))
        hi = len(ts) if end is None else int(np.searchsorted(ts, end, side="left"))
        norm, ts = norm.iloc[lo:hi], ts[lo:hi]
    price = norm["price"].to_numpy(dtype=np.float64)
    amount = norm["amount"].to_numpy(dtype=np.float64)
    buy = norm["side"].to_numpy() == "buy"
    bins = aggregate_bins(ts, price, amount, tfs, buy)
    out: dict[str, pd.DataFrame] = {}
    for tf in tfs:
        b = bins[tf]
        if fill_empty:
            b = b.fill(tf, start, end)
        out[str(tf)] = b.clip(tf, start, end).to_frame()
    return out[str(tfs[0])] if single else out


def _merge_open(open_: CandleBins, new: CandleBins) -> CandleBins:
    """``open_`` (zero or one candle) followed by ``new``, merged where they share a bin."""
    if len(open_) == 0:
        return new
    if len(new) == 0:
        return open_
    if open_.start[0] != new.start[0]:
        return CandleBins.concat(open_, new)
    head = CandleBins(
        new.start[:1],
        open_.open[:1],
        np.maximum(open_.high[:1], new.high[:1]),
        np.minimum(open_.low[:1], new.low[:1]),
        new.close[:1],
        open_.volume[:1] + new.volume[:1],
        open_.count[:1] + new.count[:1],
        open_.quote[:1] + new.quote[:1],
        open_.buy_volume[:1] + new.buy_volume[:1],
        open_.buy_quote[:1] + new.buy_quote[:1],
    )
    if len(new) == 1:
        return head
    return CandleBins.concat(head, new.take(np.arange(1, len(new))))


class CandleAggregator:
    """Incremental trades-to-candles for live feeds: closed candles of many timeframes.

    Feed it batches of trades in time order with :meth:`add` and a *watermark*:
    the time before which every trade has been seen (the newest trade's time on
    a websocket feed, the end of the polled window with REST). It returns, per
    timeframe, the candles that closed (``end <= watermark``) since the last call
    and the interval they cover, built by the same :func:`aggregate_bins` as
    :func:`trades_to_ohlcv`. Candles align to UTC boundaries; the first candle
    is the first one starting at or after ``start`` (the feed may have missed
    trades before it), so a candle is never emitted from part of its trades.
    ``fill_empty`` adds Binance-style flat zero-volume candles for empty bins.

    >>> agg = CandleAggregator(["1s", "1m"], start=1_700_000_000_000)
    >>> out = agg.add(ts, price, amount, watermark=int(ts[-1]))
    >>> bins, covered = out[Timeframe.parse("1m")]
    >>> bins.to_frame()  # closed 1m candles in the ohlcv schema
    """

    def __init__(
        self,
        timeframes: Sequence[str | Timeframe],
        *,
        start: int,
        fill_empty: bool = False,
    ) -> None:
        tfs = [Timeframe.parse(t) for t in timeframes]
        if not tfs:
            raise InvalidRequest("candle timeframe list is empty; give at least one such as '1m'")
        for tf in tfs:
            if tf.is_calendar:
                raise InvalidRequest(f"timeframe {str(tf)!r} cannot be built live; use 1s..1w")
        self.timeframes: list[Timeframe] = list(dict.fromkeys(tfs))
        self.fill_empty = fill_empty
        empty = CandleBins.empty()
        self._open: dict[Timeframe, CandleBins] = dict.fromkeys(self.timeframes, empty)
        # the end of the last closed (emitted or skipped) candle: candles start here
        self._done: dict[Timeframe, int] = {tf: tf.ceil(start) for tf in self.timeframes}
        self._last_close: dict[Timeframe, float | None] = dict.fromkeys(self.timeframes)
        self.watermark: int = start

    def add(
        self,
        ts: np.ndarray,
        price: np.ndarray,
        amount: np.ndarray,
        *,
        watermark: int,
        buy: np.ndarray | None = None,
    ) -> dict[Timeframe, tuple[CandleBins, tuple[int, int] | None]]:
        """Add trades (sorted by time, none before the previous watermark) and close candles;
        ``buy`` marks the trades whose taker bought (the taker-buy volumes).

        Returns ``{timeframe: (closed candles, (start, end) covered or None)}``.
        Trades older than what is already closed are ignored (they were late).
        """
        ts = np.asarray(ts, dtype=np.int64)
        if len(ts):
            keep = ts >= min(self._done.values())
            if not keep.all():
                ts, price, amount = ts[keep], price[keep], amount[keep]
                buy = None if buy is None else buy[keep]
        self.watermark = max(self.watermark, int(watermark))
        bins = aggregate_bins(ts, price, amount, self.timeframes, buy)
        out: dict[Timeframe, tuple[CandleBins, tuple[int, int] | None]] = {}
        for tf in self.timeframes:
            b = bins[tf]
            done = self._done[tf]
            if len(b) and b.start[0] < done:
                b = b.take(b.start >= done)
            merged = _merge_open(self._open[tf], b)
            limit = tf.floor(self.watermark)  # bins starting before this are closed
            closed_mask = merged.start < limit
            closed = merged.take(closed_mask)
            self._open[tf] = merged.take(~closed_mask)
            if limit <= done:
                out[tf] = (closed, None)
                continue
            if self.fill_empty:
                if self._last_close[tf] is None:
                    if len(closed) == 0:
                        # nothing to continue from yet: claim nothing
                        out[tf] = (closed, None)
                        continue
                    done = int(closed.start[0])
                closed = self._fill(tf, closed, done, limit)
            if len(closed):
                self._last_close[tf] = float(closed.close[-1])
            self._done[tf] = limit
            out[tf] = (closed, (done, limit))
        return out

    def _fill(self, tf: Timeframe, closed: CandleBins, lo: int, hi: int) -> CandleBins:
        prev = self._last_close[tf]
        if prev is None:
            if len(closed) == 0:
                return closed
            return closed.fill(tf, None, hi)
        seeded = CandleBins.concat(CandleBins.flat(lo - tf.ms, prev), closed)
        return seeded.fill(tf, None, hi).clip(tf, lo, hi)
