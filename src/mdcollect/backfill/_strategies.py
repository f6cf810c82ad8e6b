"""The strategies: candles from the candle endpoint, or candles (and trades) from trades."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Final, Literal, get_args

import numpy as np
import pandas as pd

from .._errors import ExchangeError, InvalidRequest
from .._intervals import Interval, IntervalSet
from .._keys import DatasetKey
from .._schema import empty_frame, merge_frames
from .._time import DAY, HOUR, Timeframe, format_ms, index_ms
from ..aggregate import CandleBins, aggregate_bins
from ..storage import DataCollectionStorage
from ._engine import BackfillJob, Chunk, candles_in, split_windows

if TYPE_CHECKING:
    from ..exchanges import ExchangeClient, ExchangeInfo

log = logging.getLogger("mdcollect.backfill")

#: How candles are backfilled: ``auto`` picks (:func:`make_job`), ``ohlcv`` pages the
#: candle endpoint, ``trades`` resamples trades.
Strategy = Literal["auto", "ohlcv", "trades"]
STRATEGIES: Final[tuple[Strategy, ...]] = get_args(Strategy)


class _CandleJob(BackfillJob):
    """Shared by the strategies that produce candles: alignment and closing."""

    tf: Timeframe

    def __init__(
        self, exchange: str, symbol: str, timeframe: str | Timeframe, start: int, end: int
    ) -> None:
        self.tf = Timeframe.parse(timeframe)
        super().__init__(DatasetKey(exchange, symbol, "ohlcv", str(self.tf)), start, end)

    def required(self, now: int) -> Interval | None:
        # candles starting in [start, end); the still-open candle is never required
        lo = self.tf.ceil(self.start)
        hi = min(self.tf.ceil(self.end), self.tf.floor(now))
        return Interval(lo, hi) if hi > lo else None

    def align(self, ts: int) -> int:
        return self.tf.floor(ts)

    def progress_units(self, interval: Interval) -> int:
        if self.tf.is_calendar:
            return max(1, self.tf.count(interval.start, interval.end))
        return candles_in(interval, self.tf.ms)


class OHLCVBackfill(_CandleJob):
    """Candles from the exchange's candle endpoint, a page (``page_limit`` candles) a window.

    Before-listing ranges are covered with one listing-date request instead of
    being scanned. A page proves "no candle" only for the span it demonstrably
    answered for: from its first row on, and from the cursor only when a row at
    or before the cursor's first candle shows the exchange answered from there.
    A page starting later (ccxt moved ``since``, the exchange ignored it, or an
    outage) is asked again from a candle before the cursor; a short page is
    followed up from its last candle, so the answer shows where it starts. What
    no answer proves is left uncovered and the window reported failed.

    >>> job = OHLCVBackfill("binance", "BTC/USDT", "1m", start_ms, end_ms)
    """

    # windows are independent pages: several at once (the carry below is a hint)
    windows_in_flight = 4

    def __init__(
        self, exchange: str, symbol: str, timeframe: str | Timeframe, start: int, end: int
    ) -> None:
        super().__init__(exchange, symbol, timeframe, start, end)
        # (window end, last candle seen before it): a contiguous next window can
        # prove its start from that candle
        self._carry: tuple[int, int] | None = None
        # ((since, until), page): the first window's page, fetched by prepare to
        # learn whether the listing is earlier; fetch uses it instead of asking again
        self._first_page: tuple[tuple[int, int], pd.DataFrame] | None = None

    def window_ms(self, info: ExchangeInfo) -> int:
        if self.tf.is_calendar:
            return info.page_limit * 28 * DAY  # at most a page of months
        return info.page_limit * self.tf.ms

    async def prepare(
        self, client: ExchangeClient, storage: DataCollectionStorage, missing: IntervalSet
    ) -> IntervalSet:
        await client.check_symbol(self.key.symbol)
        client.check_timeframe(str(self.tf))
        if missing.start is None:
            return missing
        # candles stored just before the gap prove the listing is earlier: no request
        recent = self.tf.add(self.tf.floor(missing.start), -10)
        prior = await asyncio.to_thread(
            storage.read, self.key, min(recent, missing.start - 7 * DAY), missing.start, []
        )
        if len(prior):
            return missing
        if client.info.first_candle == "since_zero":
            # the first window's page, asked now (fetch uses it), shows a listing
            # before the range without a request of its own: only a page starting
            # later than asked (the listing, or an outage) needs the listing request
            first = split_windows(missing, self.window_ms(client.info), self.align)[0]
            frame = await self._page(client, first.start, first.end)
            self._first_page = ((first.start, first.end), frame)
            ts = index_ms(frame)
            if len(ts) and int(ts[0]) <= self.tf.ceil(first.start):
                return missing
        listing = await client.first_candle_time(self.key.symbol, str(self.tf))
        if listing is None or missing.start is None or listing <= missing.start:
            return missing
        before = (
            missing & Interval(missing.start, listing) if listing > missing.start else IntervalSet()
        )
        for iv in before:
            # the exchange has nothing before the listing: covered, no rows
            await asyncio.to_thread(storage.write, self.key, empty_frame("ohlcv"), covered=iv)
        log.info(
            "%s: listed at %d; %d ms before it covered without fetching",
            self.key,
            listing,
            before.total,
        )
        return missing - before

    async def fetch(self, client: ExchangeClient, window: Interval) -> AsyncIterator[Chunk]:
        tf, page = self.tf, client.info.page_limit
        carry, self._carry = self._carry, None
        # the last candle known to exist before the cursor, with none between them
        seen = carry[1] if carry is not None and carry[0] == window.start else None
        retry_from: int | None = None  # ask from this time before the cursor
        unproven: list[Interval] = []
        cursor = window.start
        while cursor < window.end:
            first = tf.ceil(cursor)
            ask = cursor if retry_from is None else retry_from
            frame = await self._page(client, ask, window.end)
            ts = index_ms(frame)
            inside = ts >= cursor
            if len(ts) and int(ts[0]) <= first:
                # a row at or before the cursor's first candle: answered from the cursor
                seen = int(ts[-1])
                if inside.any():
                    upto = min(window.end, tf.add(seen, 1))
                    yield Chunk(frame[inside], Interval(cursor, upto))
                    cursor, retry_from = upto, seen
                    continue
                if len(ts) < page:  # not cut short before the cursor: none up to its end
                    upto = min(window.end, tf.add(tf.ceil(ask), page))
                    yield Chunk(empty_frame("ohlcv"), Interval(cursor, upto))
                    cursor, retry_from = upto, None
                    continue
            elif retry_from is None:
                # not proof of absence before its first row: ask again from before the
                # cursor, from the candle seen last or, not knowing one, half a page back
                if seen is None:
                    retry_from = tf.add(first, -max(1, page // 2))
                    continue
                if tf.add(seen, page) > first:
                    retry_from = seen
                    continue
            retry_from = None
            if not inside.any():
                unproven.append(Interval(cursor, window.end))
                break
            # the page stands from its first row on; before it nothing is proven
            head = int(ts[inside][0])
            unproven.append(Interval(cursor, head))
            seen = int(ts[-1])
            upto = min(window.end, tf.add(seen, 1))
            yield Chunk(frame[inside], Interval(head, upto))
            cursor, retry_from = upto, seen
        if unproven:
            spans = ", ".join(str(iv) for iv in unproven)
            raise ExchangeError(
                f"{self.key}: the exchange's answers do not show that {spans} has no candles "
                "(its pages started later than asked or ignored since); left uncovered"
            )
        if seen is not None:
            self._carry = (window.end, seen)

    async def _page(self, client: ExchangeClient, since: int, until: int) -> pd.DataFrame:
        kept = self._first_page
        if kept is not None and kept[0] == (since, until):
            self._first_page = None
            return kept[1]
        return await client.fetch_ohlcv(self.key.symbol, str(self.tf), since, until)


class TradesBackfill(BackfillJob):
    """Trades paged from the trades endpoint: stored as trades, or resampled into candles.

    For exchanges whose candle endpoint has no deep history (Kraken), candles come
    from the trades with :mod:`mdcollect.aggregate` (the same code the live
    collector uses). Windows are whole candles; each window's trades are paged
    to exhaustion before the window is covered.

    >>> job = TradesBackfill("kraken", "BTC/USDT", "1h", start_ms, end_ms)          # candles
    >>> job = TradesBackfill("binance", "BTC/USDT", None, start_ms, end_ms)         # raw trades
    """

    def __init__(
        self,
        exchange: str,
        symbol: str,
        timeframe: str | Timeframe | None,
        start: int,
        end: int,
        *,
        fill_empty: bool = True,
        window: int = 6 * HOUR,
    ) -> None:
        self.tf = Timeframe.parse(timeframe) if timeframe is not None else None
        if self.tf is not None and self.tf.is_calendar:
            raise InvalidRequest("resampling trades into '1M' candles is not supported")
        self.fill_empty = fill_empty
        self._window = window
        self._prev_close: float | None = None
        key = (
            DatasetKey(exchange, symbol, "ohlcv", str(self.tf))
            if self.tf is not None
            else DatasetKey(exchange, symbol, "trades")
        )
        super().__init__(key, start, end)

    def required(self, now: int) -> Interval | None:
        if self.tf is None:
            hi = min(self.end, now)
            return Interval(self.start, hi) if hi > self.start else None
        lo = self.tf.ceil(self.start)
        hi = min(self.tf.ceil(self.end), self.tf.floor(now))
        return Interval(lo, hi) if hi > lo else None

    def window_ms(self, info: ExchangeInfo) -> int:
        if self.tf is None:
            return self._window
        return max(1, self._window // self.tf.ms) * self.tf.ms

    def align(self, ts: int) -> int:
        return self.tf.floor(ts) if self.tf is not None else ts

    def progress_units(self, interval: Interval) -> int:
        return candles_in(interval, self.tf.ms if self.tf is not None else self._window)

    def request_seconds(self, info: ExchangeInfo) -> float | None:
        from ..exchanges import request_seconds

        return request_seconds(info, info.trades_endpoint, info.trades_page_limit)

    async def prepare(
        self, client: ExchangeClient, storage: DataCollectionStorage, missing: IntervalSet
    ) -> IntervalSet:
        await client.check_symbol(self.key.symbol)
        if not client.info.trades_history:
            raise InvalidRequest(
                f"{client.key} serves only recent trades (no trade history by time); "
                "backfill its candles from the candle endpoint instead"
            )
        if self.tf is not None and self.fill_empty and missing.start is not None:
            # a flat candle continues the previous close: take it from storage
            prev = await asyncio.to_thread(storage.read, self.key, None, missing.start, ["close"])
            if len(prev):
                self._prev_close = float(prev["close"].iloc[-1])
        return missing

    async def fetch(self, client: ExchangeClient, window: Interval) -> AsyncIterator[Chunk]:
        trades = empty_frame("trades")
        page = await client.fetch_trades_page(self.key.symbol, window.start, window.end)
        trades = merge_frames("trades", trades, page.frame)
        while page.next_since is not None:
            page = await client.fetch_trades_page(
                self.key.symbol, page.next_since, window.end, cursor=page.cursor
            )
            trades = merge_frames("trades", trades, page.frame)
        if self.tf is None:
            yield Chunk(trades, window)
            return
        yield Chunk(self._candles(trades, window), window)

    def _candles(self, trades: pd.DataFrame, window: Interval) -> pd.DataFrame:
        assert self.tf is not None
        tf = self.tf
        ts = index_ms(trades)
        price = trades["price"].to_numpy(dtype=np.float64)
        amount = trades["amount"].to_numpy(dtype=np.float64)
        bins = aggregate_bins(ts, price, amount, [tf])[tf]
        if self.fill_empty:
            bins = _fill_from(bins, tf, window, self._prev_close)
        bins = bins.clip(tf, window.start, window.end)
        if len(bins):
            self._prev_close = float(bins.close[-1])
        return bins.to_frame()


def _fill_from(
    bins: CandleBins, tf: Timeframe, window: Interval, prev_close: float | None
) -> CandleBins:
    """Flat candles for every empty bin of the window, continuing ``prev_close``."""
    if prev_close is None:
        return bins.fill(tf, window.start, window.end)
    # seed the grid with a flat candle just before the window, then drop it
    joined = CandleBins.concat(CandleBins.flat(window.start - tf.ms, prev_close), bins)
    return joined.fill(tf, window.start, window.end).clip(tf, window.start, window.end)


def make_job(
    info: ExchangeInfo,
    symbol: str,
    timeframe: str | Timeframe,
    start: int,
    end: int,
    *,
    strategy: Strategy = "auto",
    now: int | None = None,
) -> BackfillJob:
    """The right job for a candle range on the exchange ``info`` describes: the candle
    endpoint where its history is deep, or where (given ``now``) the range lies within
    the recent ``page_limit`` candles a shallow endpoint serves (Kraken's weeks);
    trades resampled otherwise. ``strategy`` overrides the choice.

    >>> make_job(exchange_info("kraken"), "BTC/USDT", "1h", start_ms, end_ms)
    TradesBackfill(kraken:ohlcv:1h:BTC/USDT, ...)
    """
    check_strategy(strategy)
    if not info.deep_history:
        oldest = None if now is None else _oldest_served(info, timeframe, now)
        recent = oldest is not None and Timeframe.parse(timeframe).ceil(start) >= oldest
        if strategy == "auto":
            strategy = "ohlcv" if recent else "trades"
        elif strategy == "ohlcv" and oldest is not None and not recent:
            raise InvalidRequest(
                f"strategy 'ohlcv' cannot serve {symbol} {timeframe} from {format_ms(start)} "
                f"on {info.key}: its candle endpoint answers only the latest "
                f"{info.page_limit} candles (from {format_ms(oldest)}); use strategy "
                "'auto' or 'trades'"
            )
    if strategy == "trades":
        return TradesBackfill(info.key, symbol, timeframe, start, end)
    return OHLCVBackfill(info.key, symbol, timeframe, start, end)


def check_strategy(strategy: object) -> Strategy:
    """``strategy`` if it is one of :data:`STRATEGIES`; :class:`InvalidRequest` otherwise
    (a caller without mypy can pass anything)."""
    if strategy not in STRATEGIES:
        allowed = ", ".join(repr(s) for s in STRATEGIES)
        raise InvalidRequest(f"strategy {strategy!r} is not valid; allowed: {allowed}")
    return strategy


def _oldest_served(info: ExchangeInfo, timeframe: str | Timeframe, now: int) -> int:
    """The oldest candle a shallow candle endpoint (``info.page_limit`` candles back
    from ``now``) still serves, with one candle of margin: it moves on while we ask."""
    tf = Timeframe.parse(timeframe)
    return tf.add(tf.floor(now), -(info.page_limit - 1))
