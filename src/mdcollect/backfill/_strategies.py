"""The strategies: candles from the candle endpoint, candles (and trades) from trades,
funding settlements from the funding history, open interest from its history; and
:data:`JOBS`, which kind of history is backfilled by which."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Literal, cast, get_args

import numpy as np
import pandas as pd

from .._backoff import EMPTY_PAGE_REASKS
from .._errors import ExchangeError, InvalidRequest
from .._intervals import Interval, IntervalSet
from .._keys import (
    CANDLE_KINDS,
    HISTORY_KINDS,
    LIVE_ONLY_KINDS,
    CandleKind,
    DatasetKey,
    HistoryKind,
)
from .._rules import check_choice, check_choices
from .._schema import empty_frame, merge_frames
from .._time import DAY, HOUR, MINUTE, Timeframe, format_ms, index_ms
from ..aggregate import CandleBins, aggregate_bins
from ..storage import DataCollectionStorage
from ._engine import BackfillJob, Chunk, candles_in, split_windows

if TYPE_CHECKING:
    from ..exchanges import ExchangeClient, ExchangeInfo, FundingHistory

log = logging.getLogger("mdcollect.backfill")

#: How candles are backfilled: ``auto`` picks (:func:`make_job`), ``ohlcv`` pages the
#: candle endpoint, ``trades`` resamples trades.
Strategy = Literal["auto", "ohlcv", "trades"]
STRATEGIES: Final[tuple[Strategy, ...]] = get_args(Strategy)


class _CandleJob(BackfillJob):
    """Shared by the strategies that produce candles: alignment and closing."""

    tf: Timeframe

    def __init__(
        self,
        exchange: str,
        symbol: str,
        timeframe: str | Timeframe,
        start: int,
        end: int,
        *,
        kind: CandleKind = "ohlcv",
    ) -> None:
        self.tf = Timeframe.parse(timeframe)
        super().__init__(DatasetKey(exchange, symbol, kind, str(self.tf)), start, end)
        # the endpoint paged: candles, or mark (index, premium) candles
        self.made_from = "candles" if kind == "ohlcv" else f"{kind} candles"

    @property
    def kind(self) -> CandleKind:
        """The candles this job fills: ``ohlcv``, ``mark``, ``index`` or ``premium``."""
        return cast("CandleKind", self.key.kind)

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

    ``kind`` picks which price's candles: ``ohlcv`` (last price, the default),
    or on perpetuals ``mark``, ``index``, ``premium`` (ccxt's ``fetch_mark_ohlcv``
    and siblings): the same loop, another endpoint, stored under that kind.

    Before-listing ranges are covered with one listing-date request instead of
    being scanned. A page proves "no candle" only for the span it demonstrably
    answered for: from its first row on, and from the cursor only when a row at
    or before the cursor's first candle shows the exchange answered from there.
    A page starting later (ccxt moved ``since``, the exchange ignored it, or an
    outage) is asked again from a candle before the cursor; a short page is
    followed up from its last candle, so the answer shows where it starts; an empty
    answer to that follow-up (the candle asked from exists), or to the ask from before
    the cursor, is asked again, up to :data:`EMPTY_PAGE_REASKS` times. What no answer
    proves is left uncovered and the window reported failed.

    >>> job = OHLCVBackfill("binance", "BTC/USDT", "1m", start_ms, end_ms)
    >>> job = OHLCVBackfill("binance_futures", "BTC/USDT:USDT", "1m", start_ms, end_ms, kind="mark")
    """

    # windows are independent pages: several at once (the carry below is a hint)
    windows_in_flight = 4

    def __init__(
        self,
        exchange: str,
        symbol: str,
        timeframe: str | Timeframe,
        start: int,
        end: int,
        *,
        kind: CandleKind = "ohlcv",
    ) -> None:
        super().__init__(exchange, symbol, timeframe, start, end, kind=kind)
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

    def request_seconds(self, info: ExchangeInfo) -> float | None:
        if self.kind == "ohlcv" or self.kind not in info.price_kinds:
            return super().request_seconds(info)
        from ..exchanges import request_seconds

        return request_seconds(info, info.price_kinds[self.kind].endpoint, info.page_limit)

    async def prepare(
        self, client: ExchangeClient, storage: DataCollectionStorage, missing: IntervalSet
    ) -> IntervalSet:
        await client.check_candle_symbol(self.key.symbol, self.kind)
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
        if client.info.first_candle in ("since_zero", "day_scan"):
            # the first window's page, asked now (fetch uses it), shows a listing
            # before the range without a request of its own: only a page starting
            # later than asked (the listing, or an outage) needs the listing request
            first = split_windows(missing, self.window_ms(client.info), self.align)[0]
            frame = await self._page(client, first.start, first.end)
            self._first_page = ((first.start, first.end), frame)
            ts = index_ms(frame)
            if len(ts) and int(ts[0]) <= self.tf.ceil(first.start):
                return missing
        listing = await client.first_candle_time(self.key.symbol, str(self.tf), since=missing.start)
        if listing is None or missing.start is None or listing <= missing.start:
            return missing
        before = (
            missing & Interval(missing.start, listing) if listing > missing.start else IntervalSet()
        )
        for iv in before:
            # the exchange has nothing before the listing: covered, no rows
            await asyncio.to_thread(
                storage.write, self.key, empty_frame(self.kind), covered=iv, source=self.source
            )
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
        reasked = 0
        cursor = window.start
        while cursor < window.end:
            first = tf.ceil(cursor)
            ask = cursor if retry_from is None else retry_from
            frame = await self._page(client, ask, window.end)
            ts = index_ms(frame)
            if not len(ts) and ask == seen and reasked < EMPTY_PAGE_REASKS:
                # asked from a closed candle the last page showed: it exists, so an
                # empty answer is the exchange's hiccup, not the end of its data
                reasked += 1
                log.warning("%s: empty page from %s, a known candle; asking again", self.key, seen)
                continue
            if not len(ts) and ask == retry_from and reasked < EMPTY_PAGE_REASKS:
                # asked from before the cursor, which an empty or late answer left
                # unproven, and nothing again: as likely a hiccup twice as a span
                # without candles, so asked again before the window is given up
                reasked += 1
                log.warning("%s: empty page from %s again; asking again", self.key, ask)
                continue
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
                    yield Chunk(empty_frame(self.kind), Interval(cursor, upto))
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
        return await client.fetch_ohlcv(self.key.symbol, str(self.tf), since, until, kind=self.kind)


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
        self.made_from = "trades" if self.tf is None else f"trades->{self.tf}"

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
        check_trades_history(client.info)
        await client.check_symbol(self.key.symbol)
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
                self.key.symbol, page.next_since, window.end, cursor=page.cursor, known=page.known
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
        buy = trades["side"].to_numpy() == "buy"
        bins = aggregate_bins(ts, price, amount, [tf], buy)[tf]
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
    kind: CandleKind = "ohlcv",
) -> BackfillJob:
    """The right job for a candle range on the exchange ``info`` describes: the candle
    endpoint where its history is deep, or where (given ``now``) the range lies within
    the recent ``page_limit`` candles a shallow endpoint serves (Kraken's weeks);
    trades resampled otherwise. ``strategy`` overrides the choice.

    ``kind`` ``mark``, ``index`` or ``premium`` pages that price's candle endpoint
    (:class:`OHLCVBackfill` with that kind); refused with :class:`InvalidRequest`,
    before any request, where the exchange serves none or with strategy ``trades``.

    >>> make_job(exchange_info("kraken"), "BTC/USDT", "1h", start_ms, end_ms)
    TradesBackfill(kraken:ohlcv:1h:BTC/USDT, ...)
    >>> make_job(exchange_info("bybit_futures"), "BTC/USDT:USDT", "1h", s, e, kind="mark")
    OHLCVBackfill(bybit_futures:mark:1h:BTC/USDT:USDT, ...)
    """
    check_strategy(strategy)
    check_choice("kind", kind, CANDLE_KINDS)
    if kind != "ohlcv":
        info.check_candle_kind(kind)
        if strategy == "trades":
            raise InvalidRequest(
                f"{kind!r} candles come only from their candle endpoint; "
                "use strategy 'auto' or 'ohlcv' (not 'trades')"
            )
        info.check_timeframe(str(timeframe))
        return OHLCVBackfill(info.key, symbol, timeframe, start, end, kind=kind)
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
        check_trades_history(info)
        return TradesBackfill(info.key, symbol, timeframe, start, end)
    return OHLCVBackfill(info.key, symbol, timeframe, start, end)


def check_trades_history(info: ExchangeInfo) -> None:
    """Nothing if past trades can be read from the exchange ``info`` describes;
    :class:`InvalidRequest` otherwise (Bybit spot, Coinbase), before any request."""
    if not info.trades_history:
        raise InvalidRequest(
            f"{info.key} serves only recent trades (no trade history by time); "
            "backfill its candles from the candle endpoint instead"
        )


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


#: The interval most perpetuals settle funding at; a window is one page of them.
FUNDING_PERIOD: Final = 8 * HOUR
#: Answers with a long silence asked for one window before giving up on it.
_MAX_FUNDING_ASKS: Final = 5
#: Settlements this recent are not asked for yet: exchanges publish them a moment late.
FUNDING_PUBLISH_LAG: Final = MINUTE


class FundingBackfill(BackfillJob):
    """Funding settlements of a perpetual from the exchange's funding history
    (ccxt ``fetch_funding_rate_history``), one row per settlement.

    Coverage means "every settlement in this span is stored". A window is one
    8-hourly settlement fewer than a page, so a page that is not full proves the
    whole window (a year of an 8-hourly symbol on Binance: two requests). A full
    page proves only the span it answered for: from the window start to its last
    row where pages hold the oldest settlements (Binance), from its first row to
    the window end where they hold the newest (OKX, Bybit); the rest of the window
    is asked next. So a symbol whose interval changed (8 h to 4 h) stays exact: its
    windows take two pages. An answer with more than 8 hours without a settlement
    (before the listing, or a page cut short or empty) is asked again until two
    answers in a row agree. Ranges older than the exchange keeps are refused
    (:func:`funding_job`).

    >>> job = FundingBackfill("binance_futures", "BTC/USDT:USDT", start_ms, end_ms)
    """

    made_from = "funding"

    def __init__(self, exchange: str, symbol: str, start: int, end: int) -> None:
        super().__init__(DatasetKey(exchange, symbol, "funding"), start, end)

    def required(self, now: int) -> Interval | None:
        hi = min(self.end, now - FUNDING_PUBLISH_LAG)
        return Interval(self.start, hi) if hi > self.start else None

    def window_ms(self, info: ExchangeInfo) -> int:
        return (_funding_history(info).page_limit - 1) * FUNDING_PERIOD

    def request_seconds(self, info: ExchangeInfo) -> float | None:
        from ..exchanges import request_seconds

        how = _funding_history(info)
        return request_seconds(info, how.endpoint, how.page_limit)

    async def prepare(
        self, client: ExchangeClient, storage: DataCollectionStorage, missing: IntervalSet
    ) -> IntervalSet:
        market = await client.check_symbol(self.key.symbol)
        if not market.get("swap"):
            raise InvalidRequest(
                f"symbol {self.key.symbol!r} on {client.key} is not a perpetual swap; funding "
                "exists only for perpetuals such as 'BTC/USDT:USDT'"
            )
        return missing

    async def fetch(self, client: ExchangeClient, window: Interval) -> AsyncIterator[Chunk]:
        how = _funding_history(client.info)
        lo, hi = window.start, window.end
        # the settlements of the last answer for (lo, hi) with a silence, and how many
        previous: tuple[int, ...] | None = None
        asked = 0
        while lo < hi:
            frame = await client.fetch_funding_history(self.key.symbol, lo, hi)
            ts = tuple(int(t) for t in index_ms(frame))
            full = len(ts) >= how.page_limit
            if not full:  # not cut short: every settlement of [lo, hi)
                span = Interval(lo, hi)
            elif how.newest_first:
                span = Interval(ts[0], hi)
            else:
                span = Interval(lo, ts[-1] + 1)
            if _silent(span, ts) and ts != previous:
                # no settlement for longer than any funding interval: before a listing
                # or after a delisting, or a page cut short or empty; taken once two
                # answers in a row agree
                asked += 1
                if asked >= _MAX_FUNDING_ASKS:
                    raise ExchangeError(
                        f"{self.key}: {asked} answers for {Interval(lo, hi)} disagree about "
                        "settlements missing for more than 8 hours; left uncovered"
                    )
                previous = ts
                log.info("%s: no settlement in part of %s; asking again", self.key, span)
                continue
            previous, asked = None, 0
            yield Chunk(frame, span)
            if not full:
                return
            if how.newest_first:
                hi = span.start
            else:
                lo = span.end


def _silent(span: Interval, ts: Sequence[int]) -> bool:
    """Whether ``span`` has a stretch longer than :data:`FUNDING_PERIOD` without a
    settlement (its edges count as settlements)."""
    edges = [span.start, *ts, span.end]
    return any(b - a > FUNDING_PERIOD for a, b in itertools.pairwise(edges))


def _funding_history(info: ExchangeInfo) -> FundingHistory:
    if info.funding is None:
        raise InvalidRequest(
            f"{info.key} has no funding history in mdcollect; exchanges that have it: "
            "binance_futures, okx_futures, bybit_futures"
        )
    return info.funding


def funding_job(info: ExchangeInfo, symbol: str, start: int, end: int, now: int) -> FundingBackfill:
    """A :class:`FundingBackfill`, or :class:`InvalidRequest` (before any request) when the
    exchange has no funding history or ``start`` is older than it keeps (OKX: 3 months).

    >>> funding_job(exchange_info("okx_futures"), "BTC/USDT:USDT", year_ago, now, now)
    Traceback (most recent call last):
    InvalidRequest: okx_futures keeps funding history for the last 90 days only ...
    """
    how = _funding_history(info)
    if how.depth_ms is not None:
        # a day of margin: the exchange's horizon moves on while we ask
        oldest = now - how.depth_ms + DAY
        if start < oldest:
            raise InvalidRequest(
                f"{info.key} keeps funding history for the last {how.depth_ms // DAY} days only: "
                f"{symbol} from {format_ms(start)} is older than it serves; the oldest start "
                f"it can fill now is {format_ms(oldest)}"
            )
    return FundingBackfill(info.key, symbol, start, end)


#: Answers with a missing period asked for one window before giving up on it.
_MAX_OPEN_INTEREST_ASKS: Final = 5
#: The margin kept from the exchange's horizon: it moves on while we ask.
_DEPTH_MARGIN: Final = HOUR


class OpenInterestBackfill(BackfillJob):
    """Open interest of a perpetual at the exchange's period (ccxt
    ``fetch_open_interest_history``), one row per period, at its start.

    A window is one page of periods, so one request fills it. Coverage means "every
    period in this span the exchange has is stored": a page proves absence only for
    the span it answered for, and an answer missing periods (before the listing, an
    outage, or a page cut short or empty) is asked again until two answers in a row
    agree. Ranges older than the exchange keeps are refused (:func:`open_interest_job`).

    >>> job = OpenInterestBackfill("binance_futures", "BTC/USDT:USDT", "1h", start_ms, end_ms)
    """

    tf: Timeframe
    # each window is one page on its own: several at once
    windows_in_flight = 4

    def __init__(
        self, exchange: str, symbol: str, timeframe: str | Timeframe, start: int, end: int
    ) -> None:
        self.tf = Timeframe.parse(timeframe)
        super().__init__(DatasetKey(exchange, symbol, "open_interest", str(self.tf)), start, end)

    def required(self, now: int) -> Interval | None:
        # a period's row is complete once the period has closed
        lo = self.tf.ceil(self.start)
        hi = min(self.tf.ceil(self.end), self.tf.floor(now))
        return Interval(lo, hi) if hi > lo else None

    def align(self, ts: int) -> int:
        return self.tf.floor(ts)

    def window_ms(self, info: ExchangeInfo) -> int:
        return info.open_interest_history(str(self.tf)).page_limit * self.tf.ms

    def progress_units(self, interval: Interval) -> int:
        return candles_in(interval, self.tf.ms)

    def request_seconds(self, info: ExchangeInfo) -> float | None:
        from ..exchanges import request_seconds

        how = info.open_interest_history(str(self.tf))
        return request_seconds(info, how.endpoint, how.page_limit)

    async def prepare(
        self, client: ExchangeClient, storage: DataCollectionStorage, missing: IntervalSet
    ) -> IntervalSet:
        client.info.open_interest_history(str(self.tf))
        market = await client.check_symbol(self.key.symbol)
        if not market.get("swap"):
            raise InvalidRequest(
                f"symbol {self.key.symbol!r} on {client.key} is not a perpetual swap; open "
                "interest is kept only for perpetuals such as 'BTC/USDT:USDT'"
            )
        return missing

    async def fetch(self, client: ExchangeClient, window: Interval) -> AsyncIterator[Chunk]:
        tf = self.tf
        periods = candles_in(Interval(tf.ceil(window.start), window.end), tf.ms)
        # the periods of the last answer that missed some, and how many such answers
        previous: tuple[int, ...] | None = None
        asked = 0
        while True:
            frame = await client.fetch_open_interest_history(
                self.key.symbol, str(tf), window.start, window.end
            )
            ts = tuple(int(t) for t in index_ms(frame))
            if len(ts) < periods and ts != previous:
                # periods missing: before a listing or an outage, or a page cut short
                # or empty; taken once two answers in a row agree
                asked += 1
                if asked >= _MAX_OPEN_INTEREST_ASKS:
                    raise ExchangeError(
                        f"{self.key}: {asked} answers for {window} disagree about which "
                        "periods have open interest; left uncovered"
                    )
                previous = ts
                log.info("%s: %d of %d periods in %s; asking again", self.key, len(ts),
                         periods, window)  # fmt: skip
                continue
            yield Chunk(frame, window)
            return


def oldest_open_interest(info: ExchangeInfo, timeframe: str | Timeframe, now: int) -> int | None:
    """The oldest period start of open interest at ``timeframe`` that ``info``'s exchange
    still serves at ``now`` (with a margin: its horizon moves on while we ask), ``None``
    when it keeps it from the listing on."""
    tf = Timeframe.parse(timeframe)
    depth = info.open_interest_history(str(tf)).depth(str(tf))
    return None if depth is None else tf.ceil(now - depth + _DEPTH_MARGIN)


def open_interest_job(
    info: ExchangeInfo, symbol: str, timeframe: str | Timeframe, start: int, end: int, now: int
) -> OpenInterestBackfill:
    """An :class:`OpenInterestBackfill`, or :class:`InvalidRequest` (before any request) when
    the exchange keeps no open interest at ``timeframe`` (naming the periods it keeps) or
    ``start`` is older than it keeps (Binance: 30 days), saying how far back it goes.

    >>> open_interest_job(exchange_info("binance_futures"), "BTC/USDT:USDT", "1h", year_ago,
    ...                   now, now)
    Traceback (most recent call last):
    InvalidRequest: binance_futures keeps open-interest history for 30 days: the oldest ...
    """
    tf = Timeframe.parse(timeframe)
    how = info.open_interest_history(str(tf))
    oldest = oldest_open_interest(info, tf, now)
    if oldest is not None and start < oldest:
        days = (how.depth(str(tf)) or 0) // DAY
        raise InvalidRequest(
            f"{info.key} keeps open-interest history for {days} days: the oldest available is "
            f"{format_ms(oldest)} UTC ({tf} periods); {symbol} from {format_ms(start)} is "
            "older than it serves"
        )
    return OpenInterestBackfill(info.key, symbol, tf, start, end)


def history_floor(info: ExchangeInfo, kind: HistoryKind, tf: Timeframe, now: int) -> int | None:
    """The oldest start the exchange serves ``kind`` from at ``now`` where it keeps only
    recent history (funding on OKX, open interest), ``None`` where it keeps it all or does
    not serve it (its job says so). :func:`~mdcollect.ensure_data` clamps padding to it."""
    if kind == "open_interest":
        if info.open_interest is None or str(tf) not in info.open_interest.periods:
            return None
        return oldest_open_interest(info, tf, now)
    if kind == "funding" and info.funding is not None and info.funding.depth_ms is not None:
        return now - info.funding.depth_ms + DAY
    return None


#: Makes the job filling one symbol's ``kind`` over ``[start, end)``: ``(info, symbol,
#: timeframe, start, end, strategy, now)``; the timeframe and strategy matter to candles.
JobMaker = Callable[["ExchangeInfo", str, Timeframe, int, int, Strategy, int], BackfillJob]


def _ohlcv_job(
    info: ExchangeInfo, symbol: str, tf: Timeframe, start: int, end: int, strategy: Strategy,
    now: int,
) -> BackfillJob:  # fmt: skip
    return make_job(info, symbol, tf, start, end, strategy=strategy, now=now)


def _trades_job(
    info: ExchangeInfo, symbol: str, tf: Timeframe, start: int, end: int, strategy: Strategy,
    now: int,
) -> BackfillJob:  # fmt: skip
    check_trades_history(info)
    return TradesBackfill(info.key, symbol, None, start, end)


def _funding_job(
    info: ExchangeInfo, symbol: str, tf: Timeframe, start: int, end: int, strategy: Strategy,
    now: int,
) -> BackfillJob:  # fmt: skip
    return funding_job(info, symbol, start, end, now)


def _open_interest_job(
    info: ExchangeInfo, symbol: str, tf: Timeframe, start: int, end: int, strategy: Strategy,
    now: int,
) -> BackfillJob:  # fmt: skip
    return open_interest_job(info, symbol, tf, start, end, now)


def _price_job(kind: CandleKind) -> JobMaker:
    """The job maker for the candles of a price other than the last: ``mark``, ``index``,
    ``premium`` (:func:`make_job` with that kind; refused where the exchange has none)."""

    def job(
        info: ExchangeInfo, symbol: str, tf: Timeframe, start: int, end: int,
        strategy: Strategy, now: int,
    ) -> BackfillJob:  # fmt: skip
        return make_job(info, symbol, tf, start, end, strategy=strategy, now=now, kind=kind)

    return job


#: Which job fills which kind: one line per kind of history.
JOBS: Final[Mapping[HistoryKind, JobMaker]] = MappingProxyType(
    {
        "ohlcv": _ohlcv_job,
        "trades": _trades_job,
        "funding": _funding_job,
        "mark": _price_job("mark"),
        "index": _price_job("index"),
        "premium": _price_job("premium"),
        "open_interest": _open_interest_job,
    }
)
assert set(JOBS) == set(HISTORY_KINDS), "every kind of history has its job"


def check_kind(kind: object) -> HistoryKind:
    """``kind`` if it is one of :data:`~mdcollect._keys.HISTORY_KINDS`; :class:`InvalidRequest`
    naming them otherwise."""
    _refuse_live_only(kind)
    check_choice("kind", kind, HISTORY_KINDS)
    return kind  # type: ignore[return-value]


def check_kinds(kinds: object) -> tuple[HistoryKind, ...]:
    """A non-empty list or tuple of :data:`~mdcollect._keys.HISTORY_KINDS`, without repeats,
    in the order given; :class:`InvalidRequest` naming the allowed ones otherwise.

    >>> check_kinds(("ohlcv", "funding"))
    ('ohlcv', 'funding')
    """
    if isinstance(kinds, list | tuple):
        for kind in kinds:
            _refuse_live_only(kind)
    return check_choices("kinds", kinds, HISTORY_KINDS)  # type: ignore[return-value]


def _refuse_live_only(kind: object) -> None:
    """:class:`InvalidRequest` for a kind only live collection fills, saying how to collect it."""
    if isinstance(kind, str) and kind in LIVE_ONLY_KINDS:
        raise InvalidRequest(
            f"kind {kind!r} is live-only: no exchange serves its history, so it cannot be "
            f"ensured or backfilled; collect it with {LIVE_ONLY_KINDS[kind]}"  # type: ignore[index]
        )
