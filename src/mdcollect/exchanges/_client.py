"""``ExchangeClient``: one ccxt ``async_support`` exchange, with retries and schema frames."""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import aiohttp
import ccxt
import ccxt.async_support as ccxt_async
import ccxt.pro as ccxt_pro
import numpy as np
import pandas as pd
from attrs import frozen

from .._backoff import EMPTY_PAGE_REASKS
from .._errors import ExchangeError, InvalidRequest
from .._keys import CandleKind
from .._rules import check_number
from .._schema import empty_frame
from .._time import DAY, Timeframe, check_ms, format_ms, index_ms, ms_to_timestamp, now_ms
from ._http import (
    ExchangeTotals,
    ResponseRecord,
    SessionStats,
    current_record,
    exchange_totals,
    make_session,
    track_malformed_json,
)
from ._limiter import WeightLimiter, limiter_for
from ._raw import RawSink, RawTap
from ._registry import ExchangeInfo, exchange_info
from ._retry import RetryPolicy, translate_error
from .parsing import (
    book_row,
    contract_size,
    funding_history_rows,
    funding_snapshot_row,
    ohlcv_frame,
    open_interest_rows,
    rows_frame,
    ticker_row,
    trades_frame,
)

__all__ = ["ExchangeClient", "TradesPage"]

log: Final = logging.getLogger("mdcollect.exchanges")

T = TypeVar("T")

# Errors a ccxt call can raise that say something about the exchange or its
# response; anything else (CancelledError, our own bugs) propagates untouched.
_CALL_ERRORS: Final = (
    ccxt.BaseError,
    aiohttp.ClientError,
    TimeoutError,
    ConnectionError,
    # ccxt's parsers on a garbled body
    TypeError,
    ValueError,
    KeyError,
    IndexError,
    AttributeError,
)

#: Seconds an attempt may wait in ccxt's throttle queue on top of the request timeout.
ATTEMPT_QUEUE_SECONDS: Final = 60.0

#: The share of an exchange's published rate limit an ExchangeClient uses by default.
RATE_LIMIT_SHARE: Final = 0.95


@frozen
class TradesPage:
    """One page of trades and where the next page starts.

    ``frame`` holds the trades with ``since <= timestamp < until`` (trades
    schema). ``next_since`` is the ``since`` of the next request, ``None``
    when ``[since, until)`` is exhausted or the exchange serves no deeper
    trades; ``cursor`` is the exchange's opaque cursor to pass back with it
    (Kraken), else ``None``. Consecutive pages may overlap at one millisecond;
    rows are identified by ``(timestamp, id)``, so merging them deduplicates.
    Pass ``known`` back with ``next_since`` (see :meth:`ExchangeClient.fetch_trades_page`).
    """

    frame: pd.DataFrame
    next_since: int | None
    cursor: str | None = None
    #: A trade is known at ``next_since`` (this page's last row, followed up from):
    #: the next page must show it, so an empty answer there is asked again.
    known: bool = False


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


#: Seconds a websocket close may wait for the server's close frame before the
#: connection is dropped.
_WS_CLOSE_TIMEOUT: Final = 1.0


#: ccxt.pro's append-only stream caches (rows since the last read), emptied with the
#: connections that fed them (:meth:`ExchangeClient.close_streams`).
_APPEND_CACHES: Final = ("trades", "ohlcvs", "liquidations")


#: ccxt's credential settings, never handed to another process (:meth:`replica_config`).
_CREDENTIALS: Final = frozenset(
    {"apiKey", "secret", "password", "uid", "login", "privateKey", "walletAddress", "token"}
)


class ExchangeClient:
    """Async access to one exchange through ccxt, with retries and schema frames.

    ``key`` is an exchange key (a ccxt id or an alias such as
    ``binance_futures``, see :func:`exchange_keys`). ``base_url`` sends every
    request to another host (an :class:`~mdcollect.testing.ExchangeEmulator`,
    a proxy), keeping the paths. Any other keyword is **ccxt constructor config**
    (``timeout=``, ``enableRateLimit=``, ``apiKey=``, ``options=``...), merged
    over the registry's options; ``enableRateLimit`` defaults to true. Exchanges
    whose budget the registry knows (Binance, Bybit) are then paced by the
    process's shared :attr:`limiter`: bursts up to the exchange's rolling-window
    budget, its usage headers and announced limits obeyed (see
    :mod:`mdcollect.exchanges._limiter`); others by ccxt's throttler with
    ``rateLimit`` widened so that 95% of the exchange's limit is used. Passing
    ``rateLimit=`` keeps ccxt's throttler at that spacing.

    >>> async def main() -> None:
    ...     async with ExchangeClient("binance") as client:
    ...         candles = await client.fetch_ohlcv("BTC/USDT", "1m", since, since + 3_600_000)

    Each ``fetch_*`` call is one page: one request plus retries of transient
    failures (``retry``, a :class:`RetryPolicy`). Timestamps are int ms; the
    frames have a UTC ``timestamp`` index. ``request_count`` counts the HTTP
    requests made (retries and market loading included), ``retry_count`` the
    retries.
    """

    def __init__(
        self,
        key: str,
        base_url: str | None = None,
        *,
        retry: RetryPolicy | None = None,
        clock: Callable[[], int] | None = None,
        **ccxt_config: Any,
    ) -> None:
        self.key: str = key
        #: Where requests go instead of the exchange (``None``: the exchange itself).
        self.base_url: str | None = base_url
        # what another process needs to build a like client, credentials left out
        self._replica: dict[str, Any] = {
            k: v for k, v in ccxt_config.items() if k not in _CREDENTIALS
        }
        if retry is not None:
            self._replica["retry"] = retry
        self.info: ExchangeInfo = exchange_info(key)
        self.retry: RetryPolicy = retry if retry is not None else RetryPolicy()
        self.retry_count: int = 0
        self._clock: Callable[[], int] = clock if clock is not None else now_ms
        self._totals: ExchangeTotals = exchange_totals(key)
        self._stats = SessionStats(totals=self._totals)
        self._emulated = False
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session_lock = asyncio.Lock()
        self._markets_lock = asyncio.Lock()
        # monotonic time before which no request may be sent (a 429/418 Retry-After
        # holds every request of this exchange, not only the one that got it)
        self._resume_at = 0.0
        self._tap: RawTap | None = None  # websocket frames captured or replayed
        config: dict[str, Any] = {"enableRateLimit": True}
        if base_url is not None and base_url.startswith("http://"):
            # no TLS to drain on close: skip ccxt's 250 ms grace sleep
            config["timeout_on_exit"] = 0
        config.update(ccxt_config)
        config["options"] = _deep_merge(self.info.options, ccxt_config.get("options") or {})
        # ccxt.pro classes subclass async_support ones: REST works the same, and the
        # watch_* methods are there when the exchange has websockets
        exchange_class = getattr(ccxt_pro, self.info.ccxt_id, None) or getattr(
            ccxt_async, self.info.ccxt_id
        )
        self.exchange: ccxt_async.Exchange = exchange_class(config)
        #: The shared budget this client paces by (see :mod:`._limiter`), or ``None``
        #: when ccxt's throttler paces it (or nothing does).
        self.limiter: WeightLimiter | None = None
        budget = self.info.budget
        if budget is not None and config.get("enableRateLimit") and "rateLimit" not in ccxt_config:
            # ccxt still computes each request's cost and awaits throttle(cost): that
            # call now spends the exchange's rolling budget instead of an even pace
            self.limiter = limiter_for(budget, base_url or "")
            self.exchange.throttle = self.limiter.throttle
        elif "rateLimit" not in ccxt_config and self.exchange.rateLimit:
            # ccxt's costs mirror the exchanges' weights at 100% of the limit; the
            # rolling windows exchanges count in would then tip over on jitter and
            # on calls ccxt does not weigh exactly: keep a margin (no 429s). The
            # exchange's own rateLimit is only known once constructed.
            self.exchange.rateLimit = self.exchange.rateLimit / RATE_LIMIT_SHARE
            self.exchange.tokenBucket = None
            self.exchange.init_rest_rate_limiter()
        self.exchange.on_json_response = track_malformed_json(
            self.exchange.on_json_response,
            None if self.limiter is None else self.limiter.observe_body,
        )
        if self.info.candle_fields:
            self.exchange.parse_ohlcv = _keep_raw_candles(  # type: ignore[method-assign]
                self.exchange.parse_ohlcv
            )
        if base_url is not None:
            from ._urls import redirect_urls

            redirect_urls(self.exchange, base_url)

    def __repr__(self) -> str:
        emulated = ", emulated" if self.emulated else ""
        return f"ExchangeClient({self.key!r}, ccxt={self.info.ccxt_id!r}{emulated})"

    @property
    def emulated(self) -> bool:
        """True when this client talks to :class:`mdcollect.testing.ExchangeEmulator`:
        made by ``emu.client(...)``, or an answer carried the emulator's header. Its
        data is synthetic and never goes to the real default store."""
        return self._emulated or self._stats.emulator

    @emulated.setter
    def emulated(self, value: bool) -> None:
        self._emulated = bool(value)

    def replica_config(self) -> dict[str, Any]:
        """The keywords (ccxt config and ``retry``) to build a like client in another
        process, e.g. a Dask worker: ``ExchangeClient(c.key, c.base_url,
        **c.replica_config())``. Credentials (``apiKey``, ``secret``...) are left out:
        history needs none, and they stay in this process.

        >>> ExchangeClient("binance", timeout=5000, apiKey="k").replica_config()
        {'timeout': 5000}
        """
        return dict(self._replica)

    @property
    def request_count(self) -> int:
        """HTTP requests sent so far, retries and market loading included."""
        return self._stats.requests

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        await self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _bind_loop(self) -> None:
        """Use the running loop; a client reused from another loop (each sync call runs
        its own) gets a fresh session, locks, ccxt throttler and websocket clients there.

        ccxt binds its throttler and websocket clients to the loop it first ran in; a
        throttler whose loop has ended keeps ``running`` set and never wakes the next
        request, so every loop change rebuilds them (the loop of the last use is kept,
        also across :meth:`release`, to notice the change)."""
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        if self._loop is not None:
            ex = self.exchange
            self._session = None
            ex.session = None
            ex.asyncio_loop = None  # ccxt's open() binds the running loop again
            ex.init_throttler()
            if isinstance(getattr(ex, "clients", None), dict):
                ex.clients = {}  # websocket clients of the old loop
        self._loop = loop
        self._session_lock = asyncio.Lock()
        self._markets_lock = asyncio.Lock()

    async def release(self) -> None:
        """Close the HTTP session but keep the client (markets, counters) for later use,
        in this or another event loop. The sync ``ensure_data`` calls this at the end
        of its loop."""
        session, self._session = self._session, None
        self.exchange.session = None
        if session is not None:
            await session.close()

    async def _open(self) -> None:
        self._bind_loop()
        if self._session is not None:
            return
        async with self._session_lock:
            if self._session is not None:
                return
            ex = self.exchange
            session = await make_session(
                self._stats,
                on_answer=None if self.limiter is None else self.limiter.answered,
                verify=bool(ex.verify),
                cafile=ex.cafile,
                trust_env=bool(ex.aiohttp_trust_env),
            )
            # ccxt's documented "session" option, set after construction because an
            # aiohttp session must be created inside the running loop.
            ex.session = session
            ex.own_session = False
            self._session = session

    async def close(self) -> None:
        """Close the ccxt exchange and its HTTP session (idempotent)."""
        try:
            await self.exchange.close()
        finally:
            session, self._session = self._session, None
            if session is not None:
                await session.close()

    # ------------------------------------------------------------------ calls

    async def _call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        await self._open()
        where = f"{self.key} {what}"

        async def attempt() -> T:
            wait = self._resume_at - time.monotonic()
            if wait > 0:
                self._totals.retry_after_seconds += wait
                await self.retry.sleep(wait)
            record = ResponseRecord()
            token = current_record.set(record)
            try:
                # ccxt's own timeout covers the HTTP exchange, not its throttle queue:
                # this bounds the whole attempt so nothing waits forever. Not wait_for:
                # Python 3.11's loses a cancel that comes as the answer arrives
                async with asyncio.timeout(self._attempt_deadline()):
                    result = await fn()
            except _CALL_ERRORS as exc:
                error = translate_error(
                    exc,
                    where=where,
                    status=record.status,
                    retry_after=record.retry_after,
                    malformed=record.malformed,
                    host=record.host,
                )
                if error.retry_after is not None:
                    self._resume_at = max(self._resume_at, time.monotonic() + error.retry_after)
                raise error from exc
            finally:
                current_record.reset(token)
            if record.malformed:
                # ccxt parsed garbage out of a body that was not JSON
                raise ExchangeError(
                    f"{where} failed (transient HTTP {record.status}): malformed JSON response",
                    transient=True,
                )
            return result

        return await self.retry.run(attempt, what=where, on_retry=self._on_retry, log=log)

    def _attempt_deadline(self) -> float:
        """Seconds one attempt may take: ccxt's request timeout plus time to wait in
        its throttle queue."""
        timeout = self.exchange.timeout
        seconds = timeout / 1000 if isinstance(timeout, int | float) and timeout > 0 else 10.0
        return seconds + ATTEMPT_QUEUE_SECONDS

    def _on_retry(self, exc: ExchangeError, wait: float) -> None:
        self.retry_count += 1
        self._totals.retries += 1
        if exc.retry_after is not None:
            self._totals.retry_after_seconds += wait

    async def load_markets(self, reload: bool = False) -> dict[str, dict[str, Any]]:
        """Load the exchange's markets once (concurrent callers share one load).

        >>> markets = await client.load_markets()
        >>> markets["BTC/USDT"]["id"]
        'BTCUSDT'
        """
        self._bind_loop()
        async with self._markets_lock:
            if self.exchange.markets and not reload:
                return dict(self.exchange.markets)
            markets = await self._call(
                "load_markets", lambda: self.exchange.load_markets(reload=reload)
            )
            return dict(markets)

    async def check_symbol(self, symbol: str) -> dict[str, Any]:
        """The ccxt market of ``symbol``; :class:`InvalidRequest` naming close matches if unknown.

        >>> (await client.check_symbol("BTC/USDT"))["spot"]
        True
        """
        markets = self.exchange.markets
        if not markets:
            markets = await self.load_markets()
        market = markets.get(symbol) if isinstance(symbol, str) else None
        if market is None:
            raise InvalidRequest(self._unknown_symbol_message(symbol, list(markets)))
        return dict(market)

    def _unknown_symbol_message(self, symbol: object, symbols: Sequence[str]) -> str:
        text = str(symbol)
        candidates = {s.upper(): s for s in symbols}
        close = [
            candidates[c]
            for c in difflib.get_close_matches(text.upper(), list(candidates), n=5, cutoff=0.6)
        ]
        hint = f"; close matches: {', '.join(close)}" if close else ""
        kind = f" {self.info.market_type}" if self.info.market_type else ""
        return f"symbol {symbol!r} is not listed on {self.key}{kind} ({len(symbols)} markets){hint}"

    async def check_candle_symbol(self, symbol: str, kind: CandleKind = "ohlcv") -> dict[str, Any]:
        """The ccxt market of ``symbol`` if the exchange serves ``kind`` candles for it:
        ``ohlcv`` for any listed symbol, ``mark``, ``index`` and ``premium`` for
        contracts on an exchange that has them (:meth:`ExchangeInfo.check_candle_kind`);
        :class:`InvalidRequest` otherwise (at most the market list is requested).

        >>> await client.check_candle_symbol("BTC/USDT:USDT", "mark")
        """
        self.info.check_candle_kind(kind)
        market = await self.check_symbol(symbol)
        if kind != "ohlcv" and not market.get("contract"):
            raise InvalidRequest(
                f"{symbol!r} on {self.key} is not a perpetual or futures market: it has no "
                f"{kind!r} candles (they exist for contracts such as 'BTC/USDT:USDT')"
            )
        return market

    def check_timeframe(self, timeframe: str) -> str:
        """``timeframe`` if the exchange serves it; :class:`InvalidRequest` listing those it
        does (:meth:`ExchangeInfo.check_timeframe`).

        >>> client.check_timeframe("1m")
        '1m'
        """
        return str(self.info.check_timeframe(timeframe))

    # ------------------------------------------------------------------ candles

    async def fetch_ohlcv(
        self,
        symbol: str,
        timeframe: str,
        since: int,
        until: int,
        *,
        limit: int | None = None,
        kind: CandleKind = "ohlcv",
    ) -> pd.DataFrame:
        """One page of closed candles from ``since``: rows with ``since <= ts < until``.

        At most ``limit`` candles (default and maximum: ``info.page_limit``) are
        asked for, starting at the first candle boundary ``>= since``; the page
        may hold fewer (gaps, the listing, ``until``). The still-open candle
        (``ts + timeframe > now``) is dropped. Rows are deduplicated and sorted,
        in the ``ohlcv`` schema. ``kind`` picks the price: ``ohlcv`` the last
        price, ``mark``, ``index`` or ``premium`` the candles ccxt's
        ``fetch_mark_ohlcv``, ``fetch_index_ohlcv`` or ``fetch_premium_index_ohlcv``
        return (refused with :class:`InvalidRequest`, before any request, where the
        exchange or the market has none). Exchanges without deep history
        (``info.deep_history`` false, e.g. Kraken) answer their most recent
        candles whatever ``since`` is.

        >>> frame = await client.fetch_ohlcv("BTC/USDT", "1h", 1_704_067_200_000, 1_704_153_600_000)
        >>> list(frame.columns)
        ['open', 'high', 'low', 'close', 'volume']
        """
        await self.check_candle_symbol(symbol, kind)
        tf_name = self.check_timeframe(timeframe)
        tf = Timeframe.parse(tf_name)
        since, until = _check_range(since, until)
        page = self._page_limit(limit, self.info.page_limit)
        start = tf.ceil(since)
        if start >= until:
            return empty_frame(kind)
        params = dict(self.info.ohlcv_params)
        if kind != "ohlcv":
            params["price"] = self.info.price_kinds[kind].param
        if self.info.ohlcv_until:
            params["until"] = min(until, tf.add(start, page)) - 1
        ask = self.info.ohlcv_since(tf, start)  # ccxt must not move it past `start`
        price = "" if kind == "ohlcv" else f", kind={kind!r}"
        rows = await self._call(
            f"fetch_ohlcv({symbol!r}, {tf_name!r}, since={ask}{price})",
            lambda: self.exchange.fetch_ohlcv(symbol, tf_name, ask, page, params),
        )
        return ohlcv_frame(rows, tf, since, until, self._clock(), kind, self.info.candle_fields)

    async def first_candle_time(
        self, symbol: str, timeframe: str = "1d", *, since: int | None = None
    ) -> int | None:
        """When ``symbol``'s first ``timeframe`` candle starts (ms), with at most one request
        (three on Coinbase).

        How depends on the exchange (``info.first_candle``): Binance answers
        candles from the epoch, so one request with ``since=0``; OKX and Bybit
        publish the listing time in their instruments list (read from the
        loaded markets, floored to ``timeframe``); Kraken's candles reach back
        only ~720 candles, so its listing time is unknowable: ``None``. Coinbase
        publishes none and answers only the span asked (300 candles at most), so
        the first candle at or after ``since`` is found from there
        (``day_scan``: see :meth:`_first_candle_after`); ``None`` without ``since``.
        ``None`` also when the exchange has no candle for the symbol.

        >>> await client.first_candle_time("BTC/USDT")
        1577836800000
        """
        market = await self.check_symbol(symbol)
        tf_name = self.check_timeframe(timeframe)
        tf = Timeframe.parse(tf_name)
        how = self.info.first_candle
        if how == "none":
            return None
        if how == "day_scan":
            return None if since is None else await self._first_candle_after(symbol, tf, since)
        if how == "market_created":
            created = market.get("created")
            if isinstance(created, int | float) and created > 0:
                return tf.floor(int(created))
        params = dict(self.info.ohlcv_params)
        rows = await self._call(
            f"fetch_ohlcv({symbol!r}, {tf_name!r}, since=0)",
            lambda: self.exchange.fetch_ohlcv(symbol, tf_name, 0, 1, params),
        )
        if not rows:
            return None
        return int(min(r[0] for r in rows))

    async def _first_candle_after(self, symbol: str, tf: Timeframe, since: int) -> int | None:
        """The first ``tf`` candle at or after ``since``'s UTC day: pages of days from it up
        to now until one has a candle, then that day's first hour, then that hour's first
        minute, as far as ``tf`` needs (a request each).

        Only a page's first row is taken as proof that nothing is before it in the span
        asked. An empty page is asked twice before the next is asked; a later page whose
        candles start at its start does not show where they began (an empty answer may
        have been a hiccup), so then, as for an empty hour or minute page: ``None``."""
        days, page = Timeframe.parse("1d"), self.info.page_limit
        first = days.floor(since)
        skipped = False
        while True:
            ts = index_ms(await self.fetch_ohlcv(symbol, "1d", first, days.add(first, page)))
            if not len(ts):
                ts = index_ms(await self.fetch_ohlcv(symbol, "1d", first, days.add(first, page)))
            if len(ts):
                if skipped and int(ts[0]) <= first:
                    return None
                first = int(ts[0])
                break
            first, skipped = days.add(first, page), True
            if first >= self._clock():
                return None
        for step in ("1h", "1m"):
            if days.ms <= tf.ms:
                break  # a day is a candle of tf
            step_tf = Timeframe.parse(step)
            ts = index_ms(await self.fetch_ohlcv(symbol, step, first, step_tf.add(first, page)))
            if not len(ts):
                return None
            first = int(ts[0])
            if step_tf.ms <= tf.ms:
                break
        return tf.floor(first)

    # ------------------------------------------------------------------ trades

    async def fetch_trades_page(
        self,
        symbol: str,
        since: int,
        until: int,
        *,
        limit: int | None = None,
        cursor: str | None = None,
        known: bool = False,
    ) -> TradesPage:
        """One page of trades from ``since`` (or ``cursor``) and where the next page starts.

        Paging by ``next_since`` (and ``cursor`` and ``known``) until it is ``None``
        covers ``[since, until)`` without gaps; pages may overlap at the boundary
        millisecond, and rows merge by ``(timestamp, id)``. Exchanges whose
        trades endpoint serves only recent trades (``info.trades_since`` false)
        answer one page of recent trades and ``next_since=None``, unless they
        serve trades newest first before a time (``info.trades_before``, OKX):
        then one call reads the whole range.

        A page with fewer rows than asked for proves trades only up to its last
        row (a page cut short looks like the end of the data): it is followed up
        from that row, and the answer shows where it starts. An empty answer is
        asked again and taken once two answers in a row are empty; from a trade
        known to exist (``known``) it is asked again up to
        :data:`~mdcollect._backoff.EMPTY_PAGE_REASKS` times, then refused with
        :class:`ExchangeError`: the rule of candle pages.

        >>> page = await client.fetch_trades_page("BTC/USDT", since, until)
        >>> while page.next_since is not None:
        ...     page = await client.fetch_trades_page(
        ...         "BTC/USDT", page.next_since, until, cursor=page.cursor, known=page.known
        ...     )
        """
        market = await self.check_symbol(symbol)
        since, until = _check_range(since, until)
        info = self.info
        page = self._page_limit(limit, info.trades_page_limit)
        if info.trades_before is not None:
            return await self._trades_before(symbol, market, since, until, page)
        params: dict[str, Any] = {}
        window_end = until
        if info.trades_window_ms is not None:
            window_end = min(until, since + info.trades_window_ms)
            params["until"] = window_end - 1
        if cursor is not None and info.trades_cursor is not None:
            params[info.trades_cursor.param] = cursor
        ask_since = since if info.trades_since else None

        async def ask() -> list[dict[str, Any]]:
            trades = await self._call(
                f"fetch_trades({symbol!r}, since={since})",
                lambda: self.exchange.fetch_trades(symbol, ask_since, page, params),
            )
            return [t for t in trades if t.get("timestamp") is not None]

        trades = await ask()
        size = contract_size(market)
        if not info.trades_since:
            return TradesPage(trades_frame(trades, size, since=since, until=until), None)
        what = f"{symbol} trades from {format_ms(since)}"

        def doubtful(rows: list[dict[str, Any]]) -> bool:
            # asked from a trade known to be at ``since``: the answer must show it
            if known:
                return not any(int(t["timestamp"]) == since for t in rows)
            return not rows

        trades = await self._settled(ask, trades, doubtful, known=known, what=what)
        frame = trades_frame(trades, size, since=since, until=until)
        last_ts = max((int(t["timestamp"]) for t in trades), default=None)
        if last_ts is None:  # two empty answers: none up to window_end
            return TradesPage(frame, window_end if window_end < until else None)
        if last_ts >= until:
            return TradesPage(frame, None)
        if info.trades_cursor is not None:
            # paged by the exchange's cursor, which starts the next answer at this page's
            # last trade (known): the same cursor again shows nothing after it
            next_cursor = info.trades_cursor.extract(trades)
            if next_cursor is None or next_cursor == cursor:
                return TradesPage(frame, None)
            return TradesPage(frame, last_ts, next_cursor, known=True)
        if last_ts > since:
            # full, or with fewer rows (the end of the window's trades, or cut short):
            # more trades may follow its last row, so ask from there again
            return TradesPage(frame, last_ts, known=True)
        if len(trades) >= page:
            log.warning(
                "%s: a full page of trades at one millisecond (%d); skipping past it",
                self.key,
                since,
            )
            return TradesPage(frame, since + 1)
        # only the trades at ``since``: the exchange shows none after them up to window_end
        return TradesPage(frame, window_end if window_end < until else None)

    async def _settled(
        self,
        ask: Callable[[], Awaitable[list[dict[str, Any]]]],
        rows: list[dict[str, Any]],
        doubtful: Callable[[list[dict[str, Any]]], bool],
        *,
        known: bool,
        what: str,
    ) -> list[dict[str, Any]]:
        """A trades answer that may show less than there is (``doubtful``), asked again.

        Asked from a trade ``known`` to exist, an answer that does not show it (empty,
        or cut short at that end) is the exchange's hiccup: asked again up to
        :data:`EMPTY_PAGE_REASKS` times, then an :class:`ExchangeError`. Otherwise a
        doubtful answer (empty, or short where that would end the paging) may be the
        truth: taken once two answers in a row agree.
        """
        previous: list[tuple[int, str]] | None = None
        asks = 0
        while doubtful(rows):
            ids = [(int(t["timestamp"]), str(t.get("id"))) for t in rows]
            if ids == previous and not known:
                return rows
            if asks >= EMPTY_PAGE_REASKS:
                seen = "without the trade asked from" if known else "without two agreeing"
                raise ExchangeError(
                    f"{self.key}: {what}: {asks + 1} answers came back {seen}; left uncovered"
                )
            asks += 1
            previous = ids
            log.warning(
                "%s: %s came back %s; asking again", self.key, what, "short" if rows else "empty"
            )
            rows = await ask()
        return rows

    async def _trades_before(
        self, symbol: str, market: Mapping[str, Any], since: int, until: int, page: int
    ) -> TradesPage:
        """``[since, until)`` read newest first (OKX history-trades): the page before
        ``until``, then pages before the oldest trade id until one reaches
        ``since`` or the start of history. Paging by id never splits trades that
        share a millisecond. One call covers the whole range."""
        before = self.info.trades_before
        assert before is not None
        if before.retention_ms is not None and since < self._clock() - before.retention_ms:
            days = before.retention_ms // DAY
            raise InvalidRequest(
                f"{self.key} keeps trades of the last {days} days only; "
                f"{symbol} trades from {ms_to_timestamp(since)} cannot be read"
            )
        params: dict[str, Any] = {**before.by_time, before.param: str(until)}
        rows: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:

            async def ask(params: dict[str, Any] = params) -> list[dict[str, Any]]:
                trades = await self._call(
                    f"fetch_trades({symbol!r}, before={params[before.param]})",
                    functools.partial(self.exchange.fetch_trades, symbol, None, page, params),
                )
                return [t for t in trades if t.get("timestamp") is not None]

            def doubtful(rows: list[dict[str, Any]], known: str | None = cursor) -> bool:
                # before a time, no trade known: a short page is the start of the market's
                # history or one cut short (taken once two answers agree); before the id
                # just after the oldest trade seen: the answer must show that trade
                if known is None:
                    return len(rows) < page
                return not any(str(t["id"]) == known for t in rows)

            what = f"{symbol} trades before {params[before.param]}"
            trades = await self._settled(
                ask, await ask(), doubtful, known=cursor is not None, what=what
            )
            rows += trades
            if len(trades) < page:
                break  # the start of the market's history
            oldest = min(trades, key=lambda t: (int(t["timestamp"]), int(t["id"])))
            if int(oldest["timestamp"]) < since or str(oldest["id"]) == cursor:
                break
            cursor = str(oldest["id"])
            # ask from just after it, so the answer starts with a trade known to exist
            params = {**before.by_id, before.param: str(int(cursor) + 1)}
        # rows the exchange repeated are merged by (timestamp, id) in the frame
        frame = trades_frame(rows, contract_size(market), since=since, until=until)
        return TradesPage(frame, None)

    async def fetch_trades(
        self, symbol: str, since: int, until: int, *, limit: int | None = None
    ) -> pd.DataFrame:
        """One page of trades with ``since <= ts < until``, in the ``trades`` schema.

        >>> trades = await client.fetch_trades("BTC/USDT", since, since + 60_000)
        >>> list(trades.columns)
        ['id', 'price', 'amount', 'side']
        """
        return (await self.fetch_trades_page(symbol, since, until, limit=limit)).frame

    # ------------------------------------------------------------------ live data

    def has_ws(self, method: str) -> bool:
        """True when this client serves ``method`` (a ccxt name such as ``watchTrades``)
        over websockets through ``ccxt.pro``: the exchange has it, or, for
        ``watchFundingRate``, Binance's mark-price stream carries the funding rate
        (see :meth:`watch_funding_rate`).

        >>> ExchangeClient("binance").has_ws("watchTrades")
        True
        >>> ExchangeClient("binance_futures").has_ws("watchFundingRate")
        True
        """
        if not hasattr(self.exchange, "clients"):
            return False
        if self.exchange.has.get(method):
            return True
        return method == "watchFundingRate" and self._funding_from_mark_price()

    def _funding_from_mark_price(self) -> bool:
        """Whether funding rates come from ccxt ``watch_mark_price``: the exchange has no
        ``watchFundingRate`` but Binance's ``markPrice`` stream, whose messages carry the
        funding rate (``r``) and the next funding time (``T``)."""
        ex = self.exchange
        return (
            not ex.has.get("watchFundingRate")
            and bool(ex.has.get("watchMarkPrice"))
            and isinstance(ex, ccxt_pro.binance)
        )

    def ws_last_message(self) -> int | None:
        """Wall-clock ms of the last websocket frame received on any connection (pings
        and subscription acks included): the feed's heartbeat; ``None`` before any."""
        last: int | None = None
        for client in (getattr(self.exchange, "clients", None) or {}).values():
            for attr in ("last_message_at", "lastPong"):
                t = getattr(client, attr, None)
                if isinstance(t, int | float) and (last is None or t > last):
                    last = int(t)
        return last

    def ws_keepalive(self, seconds: float) -> None:
        """Ping websocket connections at least every ``seconds`` (connections opened from
        now on), so a quiet channel still shows a heartbeat: every pong counts in
        :meth:`ws_last_message`. The exchange's own interval is kept when shorter
        (ccxt's Binance default is 180 s; OKX's 18 s). ccxt itself gives up on a
        connection only after six unanswered pings, leaving the call to the caller's
        silence rule.

        >>> client.ws_keepalive(10)   # a DataCollector with max_silence=30 does this
        """
        check_number("keep-alive seconds", seconds)
        streaming = getattr(self.exchange, "streaming", None)
        if not isinstance(streaming, dict):
            return
        ms = max(1, int(seconds * 1000))
        current = streaming.get("keepAlive")
        if not isinstance(current, int | float) or current <= 0 or ms < current:
            streaming["keepAlive"] = ms
        streaming["maxPingPongMisses"] = max(float(streaming.get("maxPingPongMisses", 2.0)), 6.0)

    async def close_streams(self) -> None:
        """Close every websocket connection (the next ``watch_*`` call opens a fresh one);
        the REST session stays open.

        >>> await client.close_streams()
        """
        clients = getattr(self.exchange, "clients", None) or {}
        self.exchange.clients = {}

        async def close(ws: Any) -> None:
            # a polite close reads on until the server's close frame: behind a busy
            # stream that is seconds of frames nobody wants, so it is cut short
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), _WS_CLOSE_TIMEOUT)

        await asyncio.gather(*(close(ws) for ws in clients.values()))
        # ccxt.pro keeps what the old connections delivered but nobody read yet as "new
        # updates" of its append-only caches: the next connection's first read would hand
        # them over with its own rows, and a collector would count the time between as
        # covered (rows lost across a restart). The next connection starts empty.
        for cache in _APPEND_CACHES:
            if isinstance(getattr(self.exchange, cache, None), dict):
                setattr(self.exchange, cache, {})

    async def _watch(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """One ``watch_*`` call: no retry (a broken stream is the collector's to reopen),
        errors translated to :class:`ExchangeError`."""
        self._bind_loop()
        if not self.exchange.markets:
            await self.load_markets()
        try:
            result = await fn()
        except _CALL_ERRORS as exc:
            raise translate_error(exc, where=f"{self.key} {what}") from exc
        if self._tap is not None:
            self._tap.read_done()
        return result

    @property
    def ws_trades_limit(self) -> int:
        """How many trades of a symbol ccxt.pro keeps between two reads (its
        ``tradesLimit`` option; 1000 unless configured): a read returning that many
        may follow trades that were dropped from the cache unread."""
        return int(self.exchange.options.get("tradesLimit") or 1000)

    async def watch_trades_raw(self, symbol: str) -> list[dict[str, Any]]:
        """The next ccxt trades of ``symbol`` from the websocket (only new ones).

        >>> trades = await client.watch_trades_raw("BTC/USDT")
        >>> trades[0]["price"]
        42000.1
        """
        trades = await self._watch(
            f"watch_trades({symbol!r})",
            lambda: self.exchange.watch_trades(symbol, None, None, {"newUpdates": True}),
        )
        return list(trades)

    async def watch_trades(self, symbol: str) -> pd.DataFrame:
        """The next trades of ``symbol`` from the websocket, in the ``trades`` schema with
        ``received`` (ms, when they arrived).

        >>> frame = await client.watch_trades("BTC/USDT")
        >>> list(frame.columns)
        ['id', 'price', 'amount', 'side', 'received']
        """
        market = await self.check_symbol(symbol)
        received = now_ms()
        rows = await self.watch_trades_raw(symbol)
        return trades_frame(rows, contract_size(market), received=received)

    async def watch_ohlcv_raw(self, symbol: str, timeframe: str) -> list[list[float]]:
        """The candles of ``symbol`` the websocket updated (the open one included).

        >>> rows = await client.watch_ohlcv_raw("BTC/USDT", "1m")
        >>> rows[-1][0] % 60_000
        0
        """
        self.check_timeframe(timeframe)
        rows = await self._watch(
            f"watch_ohlcv({symbol!r}, {timeframe!r})",
            lambda: self.exchange.watch_ohlcv(symbol, timeframe, None, None, {"newUpdates": True}),
        )
        return [list(r) for r in rows]

    async def watch_liquidations_raw(self, symbol: str) -> list[dict[str, Any]]:
        """The ccxt liquidations of perpetual ``symbol`` received since the last call,
        waiting for at least one (ccxt.pro ``watch_liquidations``).

        ccxt resolves a watch with one liquidation and keeps every one in its cache,
        so the rest of a burst is read from there (:meth:`take_liquidations`).

        >>> liqs = await client.watch_liquidations_raw("BTC/USDT:USDT")
        >>> liqs[0]["side"], liqs[0]["contracts"]
        ('sell', 0.014)
        """
        await self._watch(
            f"watch_liquidations({symbol!r})", lambda: self.exchange.watch_liquidations(symbol)
        )
        return self.take_liquidations(symbol)

    def take_liquidations(self, symbol: str) -> list[dict[str, Any]]:
        """The ccxt liquidations of ``symbol`` received and not taken yet (no waiting),
        oldest first; those ccxt's cache (1000) dropped before they were taken are lost.

        >>> client.take_liquidations("BTC/USDT:USDT")
        []
        """
        cache = getattr(self.exchange, "liquidations", None)
        if not cache:
            return []
        new = cache.getLimit(symbol, None)  # received for this symbol since the last call
        if not new:
            return []
        mine = [liq for liq in cache if liq.get("symbol") == symbol]
        if new > len(mine):
            log.warning(
                "%s: %d liquidations of %s since the last read overflowed ccxt's cache; "
                "%d kept", self.key, new, symbol, len(mine),
            )  # fmt: skip
        return mine[-new:]

    def ws_frame_time(self, *streams: str) -> int | None:
        """Wall-clock ms of the last frame (data, acks, pongs) on the websocket
        connections subscribed to a stream whose name contains one of ``streams``
        (case-insensitive, e.g. ``"liquidation", "forceorder"``); ``None`` when there is
        no such connection or it has received nothing yet.

        >>> client.ws_frame_time("liquidation", "forceorder")
        1717000000123
        """
        wanted = [s.lower() for s in streams]
        last: int | None = None
        for conn in (getattr(self.exchange, "clients", None) or {}).values():
            subs = getattr(conn, "subscriptions", None) or {}
            if not any(w in str(name).lower() for name in subs for w in wanted):
                continue
            for attr in ("last_message_at", "lastPong"):
                t = getattr(conn, attr, None)
                if isinstance(t, int | float) and t and (last is None or t > last):
                    last = int(t)
        return last

    async def watch_ticker(self, symbol: str) -> pd.DataFrame:
        """The next ticker of ``symbol`` from the websocket (one row, ``ticker`` schema).

        >>> (await client.watch_ticker("BTC/USDT")).columns[:2].tolist()
        ['bid', 'ask']
        """
        params = dict(self.info.ws_ticker_params)
        t = await self._watch(
            f"watch_ticker({symbol!r})", lambda: self.exchange.watch_ticker(symbol, params)
        )
        return rows_frame("ticker", [ticker_row(t, self._ws_stamp())])

    async def watch_order_book(self, symbol: str, depth: int = 5) -> pd.DataFrame:
        """The next top-``depth`` order book snapshot of ``symbol`` from the websocket.

        >>> (await client.watch_order_book("BTC/USDT", 5)).shape
        (1, 20)
        """
        ob = await self._watch(
            f"watch_order_book({symbol!r})", lambda: self.exchange.watch_order_book(symbol)
        )
        return rows_frame("orderbook", [book_row(ob, depth, self._ws_stamp())], depth=depth)

    async def watch_funding_rate(self, symbol: str) -> pd.DataFrame:
        """The next funding rate of perpetual ``symbol`` from the websocket (a
        ``funding_snapshot`` row: ``funding_time`` is the settlement it is for).

        ccxt.pro's ``watch_funding_rate`` where the exchange has it; on Binance
        (``binance``, ``binanceusdm``), which has none, the ``markPrice@1s`` stream
        through ``watch_mark_price``: its message is the REST ``premiumIndex`` in
        short keys, parsed by ccxt's own ``parse_funding_rate`` into the very row
        :meth:`fetch_funding_rate` gives.

        >>> (await client.watch_funding_rate("BTC/USDT:USDT"))["rate"].iloc[0]
        0.0001
        """
        if self._funding_from_mark_price():
            market = await self.check_symbol(symbol)
            tick = await self._watch(
                f"watch_mark_price({symbol!r})", lambda: self.exchange.watch_mark_price(symbol)
            )
            fr = self._mark_price_funding(tick, market)
        else:
            fr = await self._watch(
                f"watch_funding_rate({symbol!r})",
                lambda: self.exchange.watch_funding_rate(symbol),
            )
        return rows_frame("funding_snapshot", [funding_snapshot_row(fr, self._ws_stamp())])

    def _mark_price_funding(
        self, tick: Mapping[str, Any], market: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        """A ccxt funding rate from a Binance mark-price ticker (its ``info`` is the message)."""
        info = tick.get("info")
        if not isinstance(info, Mapping) or info.get("r") in (None, ""):
            raise ExchangeError(
                f"{self.key} watch_mark_price({market.get('symbol')!r}): the mark-price "
                "message carries no funding rate"
            )
        # markPriceUpdate keys -> the REST premiumIndex fields ccxt parses
        keys = {
            "s": "symbol",
            "p": "markPrice",
            "i": "indexPrice",
            "P": "estimatedSettlePrice",
            "r": "lastFundingRate",
            "T": "nextFundingTime",
            "E": "time",
        }
        premium_index = {rest: info[ws] for ws, rest in keys.items() if ws in info}
        fr: Mapping[str, Any] = self.exchange.parse_funding_rate(premium_index, dict(market))
        return fr

    # ------------------------------------------------------------------ raw frames

    def capture_ws(self, sink: RawSink) -> None:
        """Hand every websocket frame this client receives to ``sink(received_ms, path,
        text)`` before ccxt parses it (``path``: the connection URL without scheme and
        host). While capturing, :meth:`ws_received` tells a watch the receipt time of
        the frame that answered it.

        >>> frames = []
        >>> client.capture_ws(lambda t, path, text: frames.append((t, text)))
        """
        self._raw_tap().sinks.append(sink)

    def ws_received(self) -> int | None:
        """Receipt ms (on this client's clock) of the frame that answered the current
        task's last ``watch_*`` call, when frames are captured or replayed; else ``None``.
        """
        tap = self._tap
        return None if tap is None else tap.received()

    def ws_streams(self) -> dict[str, list[str]]:
        """The ccxt subscription keys each websocket connection carries, by connection
        path (what a capture records to route its frames again on replay)."""
        tap = self._tap
        return {} if tap is None else tap.streams()

    @contextlib.contextmanager
    def replaying(self) -> Iterator[RawTap]:
        """Within the block, this client's websockets replay frames instead of
        connecting: its connections are fed by the yielded :class:`RawTap`'s
        ``deliver``. Afterwards they connect again (REST is untouched throughout).

        >>> with client.replaying() as tap:
        ...     ...
        """
        if self._tap is not None:
            raise InvalidRequest(f"{self.key}: this client already captures or replays frames")
        tap = self._tap = RawTap(self.exchange, self._clock, replay=True)
        try:
            yield tap
        finally:
            tap.detach()
            self._tap = None

    def _raw_tap(self) -> RawTap:
        if self._tap is None:
            self._tap = RawTap(self.exchange, self._clock)
        return self._tap

    def _ws_stamp(self) -> int:
        received = self.ws_received()
        return now_ms() if received is None else received

    async def fetch_ticker(self, symbol: str) -> pd.DataFrame:
        """The current ticker of ``symbol`` over REST (one row, ``ticker`` schema).

        >>> (await client.fetch_ticker("BTC/USDT"))["last"].iloc[0]
        42000.1
        """
        await self.check_symbol(symbol)
        t = await self._call(
            f"fetch_ticker({symbol!r})", lambda: self.exchange.fetch_ticker(symbol)
        )
        return rows_frame("ticker", [ticker_row(t, now_ms())])

    async def fetch_order_book(self, symbol: str, depth: int = 5) -> pd.DataFrame:
        """A top-``depth`` order book snapshot of ``symbol`` over REST (``orderbook`` schema).

        >>> (await client.fetch_order_book("BTC/USDT", 5)).columns[0]
        'bid_px_0'
        """
        await self.check_symbol(symbol)
        ob = await self._call(
            f"fetch_order_book({symbol!r})", lambda: self.exchange.fetch_order_book(symbol)
        )
        return rows_frame("orderbook", [book_row(ob, depth, now_ms())], depth=depth)

    async def fetch_funding_rate(self, symbol: str) -> pd.DataFrame:
        """The current funding rate of perpetual ``symbol`` over REST (a ``funding_snapshot``
        row: ``funding_time`` is the settlement it is for).

        >>> (await client.fetch_funding_rate("BTC/USDT:USDT")).columns.tolist()
        ['rate', 'mark_price', 'index_price', 'funding_time']
        """
        await self.check_symbol(symbol)
        fr = await self._call(
            f"fetch_funding_rate({symbol!r})", lambda: self.exchange.fetch_funding_rate(symbol)
        )
        return rows_frame("funding_snapshot", [funding_snapshot_row(fr, now_ms())])

    async def fetch_funding_history(
        self, symbol: str, since: int, until: int, *, limit: int | None = None
    ) -> pd.DataFrame:
        """One page of past funding settlements of perpetual ``symbol``: rows with
        ``since <= timestamp < until`` in the ``funding`` schema (``mark_price`` where the
        exchange gives it), at most ``limit`` (default and maximum: the exchange's page,
        ``info.funding.page_limit``).

        Which settlements a full page holds depends on the exchange: the oldest of the
        span (Binance) or the newest (OKX, Bybit: ``info.funding.newest_first``).

        >>> frame = await client.fetch_funding_history("BTC/USDT:USDT", since, until)
        >>> frame.columns.tolist()
        ['rate', 'mark_price', 'index_price']
        """
        how = self.info.funding
        if how is None:
            raise InvalidRequest(
                f"{self.key} has no funding history in mdcollect; exchanges that have it: "
                "binance_futures, okx_futures, bybit_futures"
            )
        market = await self.check_symbol(symbol)
        if not market.get("swap"):
            raise InvalidRequest(
                f"symbol {symbol!r} on {self.key} is not a perpetual swap; funding exists only "
                "for perpetuals such as 'BTC/USDT:USDT'"
            )
        since, until = _check_range(since, until)
        page = self._page_limit(limit, how.page_limit)
        if until <= since:
            return empty_frame("funding")
        params = {how.until_param: until + how.until_offset}
        rates = await self._call(
            f"fetch_funding_rate_history({symbol!r}, since={since})",
            lambda: self.exchange.fetch_funding_rate_history(symbol, since, page, params),
        )
        rows = [r for r in funding_history_rows(rates) if since <= r[0] < until]
        return rows_frame("funding", rows)

    async def fetch_open_interest_history(
        self, symbol: str, timeframe: str, since: int, until: int, *, limit: int | None = None
    ) -> pd.DataFrame:
        """One page of past open interest of perpetual ``symbol`` at the exchange's period
        ``timeframe``: rows with ``since <= timestamp < until`` whose period has closed, in
        the ``open_interest`` schema, at most ``limit`` (default and maximum: the exchange's
        page, ``info.open_interest.page_limit``). A period the exchange does not keep is
        refused with :class:`InvalidRequest` naming those it does, before any request.

        >>> frame = await client.fetch_open_interest_history("BTC/USDT:USDT", "1h", since, until)
        >>> frame.columns.tolist()
        ['open_interest', 'open_interest_value']
        """
        how = self.info.open_interest_history(timeframe)
        market = await self.check_symbol(symbol)
        if not market.get("swap"):
            raise InvalidRequest(
                f"symbol {symbol!r} on {self.key} is not a perpetual swap; open interest is "
                "kept only for perpetuals such as 'BTC/USDT:USDT'"
            )
        since, until = _check_range(since, until)
        page = self._page_limit(limit, how.page_limit)
        tf = Timeframe.parse(timeframe)
        since_row = tf.ceil(since)
        if until <= since_row:
            return empty_frame("open_interest")
        # ccxt's until is inclusive; it also bounds the span to ``page`` periods
        params = {"until": min(until, tf.add(since_row, page)) - 1}
        interests = await self._call(
            f"fetch_open_interest_history({symbol!r}, {timeframe!r}, since={since_row})",
            lambda: self.exchange.fetch_open_interest_history(
                symbol, timeframe, since_row, page, params
            ),
        )
        now = self._clock()
        rows = [
            r for r in open_interest_rows(interests)
            if since <= r[0] < until and tf.add(r[0], 1) <= now
        ]  # fmt: skip
        return rows_frame("open_interest", rows)

    @staticmethod
    def _page_limit(limit: int | None, maximum: int) -> int:
        if limit is None:
            return maximum
        check_number("limit", limit, integer=True)
        return min(limit, maximum)


def _check_range(since: int, until: int) -> tuple[int, int]:
    bounds = []
    for name, value in (("since", since), ("until", until)):
        ms = int(value) if isinstance(value, np.integer) else value
        check_number(f"{name} (ms since the epoch)", ms, integer=True, strict=False)
        bounds.append(check_ms(int(ms), name))
    since, until = bounds
    if until < since:
        raise InvalidRequest(f"until {format_ms(until)} is before since {format_ms(since)}")
    return since, until


def _keep_raw_candles(parse_ohlcv: Callable[..., list[Any]]) -> Callable[..., list[Any]]:
    """Wrap ccxt's ``parse_ohlcv`` so each parsed candle keeps, after its six values, the
    exchange's raw row, from which :func:`ohlcv_frame` reads the optional ``ohlcv``
    columns at the positions ``info.candle_fields`` gives (:func:`candle_columns`).

    ccxt's ``fetch_ohlcv`` builds each exchange's request (endpoint, since, limit,
    paging) and then calls ``parse_ohlcv`` on every raw row, dropping what the
    unified candle has no place for. Wrapping that one call keeps ccxt's requests
    untouched and the extra fields exact, where asking the implicit API ourselves
    would repeat each exchange's request building. Inverse markets count volumes in
    contracts or the base coin, so their rows keep ccxt's six values only.
    """

    def parse(ohlcv: Any, market: Any = None) -> list[Any]:
        row = parse_ohlcv(ohlcv, market)
        if isinstance(ohlcv, list) and not (isinstance(market, dict) and market.get("inverse")):
            row.append(ohlcv)
        return row

    return parse
