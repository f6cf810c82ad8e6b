"""The collectors per kind: trades (and candles from them), candles, tickers, books, funding,
open interest, liquidations."""

from __future__ import annotations

import asyncio
import contextlib
import math
import warnings
from abc import abstractmethod
from collections import OrderedDict
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Final

import numpy as np
import pandas as pd

from .._errors import InvalidRequest, first_leaf
from .._intervals import Interval
from .._keys import DatasetKey
from .._schema import empty_frame, normalize_frame
from .._time import Timeframe, index_ms, ms_to_index, now_ms
from ..aggregate import CandleAggregator
from ..storage import DataCollectionStorage
from ._base import DataSourceCollector, Message, Mode, log
from ._clock import Clock
from ._options import (
    LiquidationsOptions,
    OHLCVOptions,
    OpenInterestOptions,
    OrderBookOptions,
    SnapshotOptions,
    TradesOptions,
)

__all__ = [
    "FundingRateCollector",
    "LiquidationsCollector",
    "OHLCVCollector",
    "OpenInterestCollector",
    "OrderBookCollector",
    "TickerCollector",
    "TradesCollector",
]

#: how far behind the newest trade re-sent trades are still recognised (ms)
_SEEN_MS: Final = 10_000


class TradesCollector(DataSourceCollector):
    """Live trades, with the receipt time (``received``), and candles built from them.

    ``candles`` lists timeframes (``["1s", "1m"]``) to build from the trades with
    :class:`~mdcollect.aggregate.CandleAggregator` and store as closed ``ohlcv``
    candles, aligned to UTC; ``fill_empty`` adds Binance-style flat candles for
    empty intervals. Trades re-sent by the feed are dropped (``stats.duplicates``).
    Coverage: on websockets from just after the first trade of a connection to
    the newest trade; polled, exactly the windows fetched (``poll_lag`` seconds
    behind now, for the exchange to publish them).

    >>> c = TradesCollector("binance", ["BTC/USDT", "ETH/USDT"], candles=["1s", "1m"])
    >>> c.keys()[0]
    DatasetKey('binance', 'BTC/USDT', 'trades')
    """

    kind = "trades"
    ws_method = "watchTrades"
    kind_options = TradesOptions

    def __init__(
        self,
        exchange: Any,
        symbols: Sequence[str] | str,
        *,
        mode: Mode = "auto",
        candles: Sequence[str] = (),
        fill_empty: bool = True,
        poll_lag: float = 1.0,
        **options: Any,
    ) -> None:
        super().__init__(exchange, symbols, mode=mode, **options)
        opts = TradesOptions(candles=candles, fill_empty=fill_empty, poll_lag=poll_lag)
        tfs = [opts.candles] if isinstance(opts.candles, str) else opts.candles
        self.timeframes: list[Timeframe] = [Timeframe.parse(t) for t in tfs]
        CandleAggregator(self.timeframes or ["1m"], start=0)  # InvalidRequest on 1M
        self.fill_empty = opts.fill_empty
        self.poll_lag = float(opts.poll_lag)
        self._aggs: dict[str, CandleAggregator] = {}
        self._cov_end: dict[str, int] = {}
        # per symbol, (time, id) of recent trades in arrival order
        self._seen: dict[str, OrderedDict[tuple[int, str], None]] = {}
        self._contract: dict[str, Decimal | None] = {}

    def keys(self) -> list[DatasetKey]:
        out = super().keys()
        for s in self.symbols:
            out += [DatasetKey(self.exchange, s, "ohlcv", str(tf)) for tf in self.timeframes]
        return out

    def raw_options(self) -> dict[str, Any]:
        return {"candles": [str(tf) for tf in self.timeframes], "fill_empty": self.fill_empty}

    def derived_keys(self, key: DatasetKey) -> list[DatasetKey]:
        if key.kind != "trades":
            return []
        return [DatasetKey(self.exchange, key.symbol, "ohlcv", str(tf)) for tf in self.timeframes]

    def backfill_jobs(self, key: DatasetKey, gap: Interval) -> list[Any]:
        tf = key.timeframe if key.kind == "ohlcv" else None
        return [
            _gap_trades_job(self.clock)(
                self.exchange, key.symbol, tf, gap.start, gap.end, fill_empty=self.fill_empty
            )
        ]

    def _start_session(self) -> None:
        self._aggs.clear()
        self._cov_end.clear()
        self._seen.clear()

    async def _feed(self, client: Any, queue: asyncio.Queue[Message]) -> None:
        if self._check_ws(client):
            await self._each_symbol(lambda s: self._watch(client, queue, s))
        else:
            if not client.info.trades_history:
                raise InvalidRequest(
                    f"{self.exchange} serves only recent trades over REST; use mode='ws'"
                )
            await self._each_symbol(lambda s: self._poll(client, queue, s))

    async def _prepare_symbol(self, client: Any, symbol: str) -> None:
        from ..exchanges import contract_size

        self._contract[symbol] = contract_size(await client.check_symbol(symbol))

    async def _watch(self, client: Any, queue: asyncio.Queue[Message], symbol: str) -> None:
        from ..exchanges import trade_rows

        limit = client.ws_trades_limit
        while True:
            trades = await client.watch_trades_raw(symbol)
            # captured (raw=True), the receipt time of the frame that brought them: the
            # stamp a replay of the capture gives them too
            received = client.ws_received()
            if received is None:
                received = self.clock.time_ms()
            rows = trade_rows(trades, self._contract.get(symbol), received)
            if rows:
                # ccxt keeps the last `limit` trades of a symbol: a batch that fills
                # the cache may follow trades evicted before this task got to read them
                full = len(trades) >= limit
                if full:
                    self.stats.feed_overflows += 1
                    log.warning(
                        "%s: %s: %d trades since the last read fill ccxt's cache: older"
                        " ones may be lost; refilling from REST",
                        self.name, symbol, len(trades),
                    )  # fmt: skip
                await self._put(queue, Message(symbol, rows, max(r[0] for r in rows), resync=full))
            else:
                self._beat()

    async def _poll(self, client: Any, queue: asyncio.Queue[Message], symbol: str) -> None:
        lag = int(self.poll_lag * 1000)
        since = self.clock.time_ms() - lag
        while True:
            t0 = self.clock.monotonic()
            until = self.clock.time_ms() - lag
            if until > since:
                frames = []
                page = await client.fetch_trades_page(symbol, since, until)
                frames.append(page.frame)
                while page.next_since is not None:
                    page = await client.fetch_trades_page(
                        symbol, page.next_since, until, cursor=page.cursor, known=page.known
                    )
                    frames.append(page.frame)
                received = self.clock.time_ms()
                rows: list[tuple[Any, ...]] = []
                for f in frames:
                    if len(f):
                        ts = index_ms(f)
                        rows += zip(
                            ts.tolist(), f["id"], f["price"], f["amount"], f["side"],
                            [received] * len(f), strict=True,
                        )  # fmt: skip
                await self._put(queue, Message(symbol, rows, until, start=since))
                since = until
            await asyncio.sleep(max(0.0, self.poll_interval - (self.clock.monotonic() - t0)))

    def _frames(
        self, items: list[Message]
    ) -> list[tuple[DatasetKey, pd.DataFrame, Interval | None]]:
        by_sym: dict[str, list[Message]] = {}
        for m in items:
            by_sym.setdefault(m.symbol, []).append(m)
        out: list[tuple[DatasetKey, pd.DataFrame, Interval | None]] = []
        for sym, msgs in by_sym.items():
            # a resync splits the batch: what came before is stored as covered; the
            # symbol's coverage (and candles) start afresh after the possible hole
            cuts = [i for i, m in enumerate(msgs) if m.resync and i] + [len(msgs)]
            lo = 0
            for hi in cuts:
                part = msgs[lo:hi]
                if part[0].resync:
                    self._cov_end.pop(sym, None)
                    self._aggs.pop(sym, None)
                out += self._symbol_frames(sym, part)
                lo = hi
        return out

    def _symbol_frames(
        self, sym: str, msgs: list[Message]
    ) -> list[tuple[DatasetKey, pd.DataFrame, Interval | None]]:
        from ..exchanges import row_columns

        rows = [r for m in msgs for r in m.rows]
        watermark = max(m.watermark for m in msgs if m.watermark is not None)
        start = msgs[0].start
        # drop trades the feed sent twice (same time and id)
        seen = self._seen.setdefault(sym, OrderedDict())
        fresh = []
        for r in rows:
            ident = (r[0], r[1])
            if ident in seen:
                self.stats.duplicates += 1
                continue
            seen[ident] = None
            fresh.append(r)
        # forget from the front (arrival order): O(evicted), not a rebuild per batch
        horizon = watermark - _SEEN_MS
        while seen and next(iter(seen))[0] < horizon:
            seen.popitem(last=False)
        self.stats.rows_received += len(fresh)
        if fresh:
            frame = pd.DataFrame.from_records(fresh, columns=["timestamp", *row_columns("trades")])
            if not frame["timestamp"].is_monotonic_increasing:
                frame = frame.sort_values("timestamp", kind="stable")
            ts = frame["timestamp"].to_numpy(dtype=np.int64)
            frame = frame.drop(columns="timestamp")
            frame.index = ms_to_index(ts)
        else:
            frame = empty_frame("trades", row_columns("trades"))
            ts = np.empty(0, dtype=np.int64)
        # coverage: what this connection has delivered completely
        if sym not in self._cov_end:
            if start is not None:
                first = start
            elif len(ts):
                # trades sharing the first millisecond may predate the connection
                first = int(ts[0]) + 1
            else:
                return []
            self._cov_end[sym] = first
            if self.timeframes:
                self._aggs[sym] = CandleAggregator(
                    self.timeframes, start=first, fill_empty=self.fill_empty
                )
        lo = self._cov_end[sym]
        covered = Interval(lo, watermark) if watermark > lo else None
        self._cov_end[sym] = max(lo, watermark)
        out: list[tuple[DatasetKey, pd.DataFrame, Interval | None]] = [
            (DatasetKey(self.exchange, sym, "trades"), frame, covered)
        ]
        agg = self._aggs.get(sym)
        if agg is not None:
            price = frame["price"].to_numpy(dtype=np.float64)
            amount = frame["amount"].to_numpy(dtype=np.float64)
            buy = frame["side"].to_numpy() == "buy"
            for tf, (bins, cov) in agg.add(ts, price, amount, watermark=watermark, buy=buy).items():
                if cov is None:
                    continue
                out.append(
                    (
                        DatasetKey(self.exchange, sym, "ohlcv", str(tf)),
                        bins.to_frame(),
                        Interval(*cov),
                    )
                )
        return out


def _gap_trades_job(clock: Clock) -> Any:
    """``TradesBackfill`` that stamps ``received`` (when the backfill fetched them, on
    ``clock``) on raw trades, so refilled rows keep the column live rows have."""
    from ..backfill import Chunk, TradesBackfill

    class _GapTrades(TradesBackfill):
        async def fetch(self, client: Any, window: Interval) -> Any:
            async for chunk in super().fetch(client, window):
                if self.tf is None:
                    frame = chunk.frame.copy()
                    frame["received"] = clock.time_ms()
                    chunk = Chunk(frame, chunk.confirmed)
                yield chunk

    return _GapTrades


class OHLCVCollector(DataSourceCollector):
    """Closed candles of ``timeframes`` from the exchange (websocket kline streams or polling).

    A candle is stored once closed: on websockets when the stream moves to the
    next candle, polled when its end has passed. Coverage spans consecutive
    closed candles.

    >>> c = OHLCVCollector("binance", ["BTC/USDT"], timeframes=["1m", "1h"])
    """

    kind = "ohlcv"
    ws_method = "watchOHLCV"
    kind_options = OHLCVOptions

    def __init__(
        self,
        exchange: Any,
        symbols: Sequence[str] | str,
        *,
        mode: Mode = "auto",
        timeframes: Sequence[str] | str = ("1m",),
        **options: Any,
    ) -> None:
        super().__init__(exchange, symbols, mode=mode, **options)
        opts = OHLCVOptions(timeframes=timeframes)
        timeframes = [opts.timeframes] if isinstance(opts.timeframes, str) else opts.timeframes
        if not timeframes:
            raise InvalidRequest("timeframes is empty; give at least one such as '1m'")
        self.timeframes: list[Timeframe] = [Timeframe.parse(t) for t in timeframes]
        self._last: dict[tuple[str, str], list[float]] = {}
        self._cov_end: dict[tuple[str, str], int] = {}

    def keys(self) -> list[DatasetKey]:
        return [
            DatasetKey(self.exchange, s, "ohlcv", str(tf))
            for s in self.symbols
            for tf in self.timeframes
        ]

    def raw_options(self) -> dict[str, Any]:
        return {"timeframes": [str(tf) for tf in self.timeframes]}

    @property
    def first_data_within(self) -> float:
        """A websocket feed stores a candle when it closes: up to the longest timeframe."""
        if self.mode == "poll":
            return 0.0
        return max(31 * 86_400.0 if tf.is_calendar else tf.ms / 1000 for tf in self.timeframes)

    def backfill_jobs(self, key: DatasetKey, gap: Interval) -> list[Any]:
        from ..backfill import make_job
        from ..exchanges import exchange_info

        assert key.timeframe is not None
        return [
            make_job(exchange_info(self.exchange), key.symbol, key.timeframe, gap.start, gap.end)
        ]

    def _start_session(self) -> None:
        self._last.clear()
        self._cov_end.clear()

    async def _feed(self, client: Any, queue: asyncio.Queue[Message]) -> None:
        for tf in self.timeframes:
            client.check_timeframe(str(tf))
        ws = self._check_ws(client)
        fn = self._watch if ws else self._poll
        await self._each_symbol(
            lambda p: fn(client, queue, p[0], p[1]),
            expand=lambda s: [(s, tf) for tf in self.timeframes],
        )

    async def _watch(
        self, client: Any, queue: asyncio.Queue[Message], sym: str, tf: Timeframe
    ) -> None:
        from ..exchanges import ohlcv_row

        name = str(tf)
        while True:
            rows = await client.watch_ohlcv_raw(sym, name)
            self._beat()
            last = self._last.get((sym, name))
            closed = []
            for r in sorted(rows, key=lambda r: r[0]):
                if last is not None and r[0] > last[0]:
                    closed.append(last)  # the stream moved on: the previous candle is final
                if last is None or r[0] >= last[0]:
                    last = r
            if last is not None:
                self._last[(sym, name)] = last
            if closed:
                msg_rows = [ohlcv_row(r) for r in closed]
                await self._put(queue, Message(sym, msg_rows, None, timeframe=name))

    async def _poll(
        self, client: Any, queue: asyncio.Queue[Message], sym: str, tf: Timeframe
    ) -> None:
        name = str(tf)
        since = tf.floor(self.clock.time_ms()) - tf.ms
        while True:
            t0 = self.clock.monotonic()
            frame = await client.fetch_ohlcv(sym, name, since, tf.floor(self.clock.time_ms()))
            self._beat()
            if len(frame):
                ts = index_ms(frame).tolist()
                rows = [
                    (t, *vals) for t, vals in zip(ts, frame.itertuples(index=False), strict=True)
                ]
                msg = Message(
                    sym, rows, None, start=since, timeframe=name, columns=tuple(frame.columns)
                )
                await self._put(queue, msg)
                since = int(ts[-1]) + tf.ms
            await asyncio.sleep(max(0.0, self.poll_interval - (self.clock.monotonic() - t0)))

    def _frames(
        self, items: list[Message]
    ) -> list[tuple[DatasetKey, pd.DataFrame, Interval | None]]:
        from ..exchanges import row_columns

        out: list[tuple[DatasetKey, pd.DataFrame, Interval | None]] = []
        for m in items:
            assert m.timeframe is not None
            tf = Timeframe.parse(m.timeframe)
            self.stats.rows_received += len(m.rows)
            columns = m.columns if m.columns is not None else row_columns("ohlcv")
            frame = pd.DataFrame.from_records(m.rows, columns=["timestamp", *columns])
            ts = frame["timestamp"].to_numpy(dtype=np.int64)
            # coverage over consecutive candles only
            pair = (m.symbol, m.timeframe)
            prev_end = self._cov_end.get(pair, m.start if m.start is not None else int(ts[0]))
            covered = None
            expected = np.arange(prev_end, int(ts[-1]) + 1, tf.ms)
            if int(ts[0]) >= prev_end and len(expected) == len(ts) and bool((expected == ts).all()):
                covered = Interval(prev_end, int(ts[-1]) + tf.ms)
            else:
                log.info("%s: %s %s candles not consecutive; not covered", self.name, m.symbol, tf)
            self._cov_end[pair] = int(ts[-1]) + tf.ms
            out.append((DatasetKey(self.exchange, m.symbol, "ohlcv", m.timeframe), frame, covered))
        return out


class _SnapshotCollector(DataSourceCollector):
    """Kinds without history: a row per update (websockets) or per poll, no coverage."""

    kind_options = SnapshotOptions

    @property
    def columns(self) -> list[str]:
        """Deprecated: the row columns; use :func:`mdcollect.exchanges.row_columns`."""
        warnings.warn(
            f"{type(self).__name__}.columns is deprecated: use "
            "mdcollect.exchanges.row_columns(kind)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self._row_columns()

    def __init__(
        self,
        exchange: Any,
        symbols: Sequence[str] | str,
        *,
        mode: Mode = "auto",
        interval: float | None = None,
        **options: Any,
    ) -> None:
        super().__init__(exchange, symbols, mode=mode, **options)
        opts = SnapshotOptions(interval=interval)
        self.interval = None if opts.interval is None else float(opts.interval)

    def raw_options(self) -> dict[str, Any]:
        return {"interval": self.interval}

    def _row_columns(self) -> list[str]:
        from ..exchanges import row_columns

        return row_columns(self.kind)

    async def _feed(self, client: Any, queue: asyncio.Queue[Message]) -> None:
        ws = self._check_ws(client)
        await self._each_symbol(lambda s: self._loop(client, queue, s, ws))

    async def _loop(self, client: Any, queue: asyncio.Queue[Message], sym: str, ws: bool) -> None:
        every = self.interval if self.interval is not None else (0.0 if ws else self.poll_interval)
        last_emit: float | None = None
        while True:
            t0 = self.clock.monotonic()
            frame = await (self._watch_one(client, sym) if ws else self._fetch_one(client, sym))
            self._beat()
            now = self.clock.monotonic()
            if last_emit is None or now - last_emit >= every:
                last_emit = now
                ts = index_ms(frame).tolist()
                rows = [(t, *v) for t, v in zip(ts, frame.itertuples(index=False), strict=True)]
                await self._put(queue, Message(sym, rows))
            if not ws:
                await asyncio.sleep(max(0.0, every - (self.clock.monotonic() - t0)))

    @abstractmethod
    async def _watch_one(self, client: Any, sym: str) -> pd.DataFrame:
        """One snapshot of ``sym`` from the websocket."""

    @abstractmethod
    async def _fetch_one(self, client: Any, sym: str) -> pd.DataFrame:
        """One snapshot of ``sym`` over REST."""

    def _frames(
        self, items: list[Message]
    ) -> list[tuple[DatasetKey, pd.DataFrame, Interval | None]]:
        by_sym: dict[str, list[tuple[Any, ...]]] = {}
        for m in items:
            by_sym.setdefault(m.symbol, []).extend(m.rows)
        out: list[tuple[DatasetKey, pd.DataFrame, Interval | None]] = []
        for sym, rows in by_sym.items():
            self.stats.rows_received += len(rows)
            frame = pd.DataFrame.from_records(rows, columns=["timestamp", *self._row_columns()])
            out.append((DatasetKey(self.exchange, sym, self.kind), frame, None))
        return out


class TickerCollector(_SnapshotCollector):
    """Best bid/ask and last price per update (websocket) or every ``interval`` seconds.

    >>> c = TickerCollector("binance", ["BTC/USDT"], mode="poll", interval=5)
    """

    kind = "ticker"
    ws_method = "watchTicker"

    async def _watch_one(self, client: Any, sym: str) -> pd.DataFrame:
        frame: pd.DataFrame = await client.watch_ticker(sym)
        return frame

    async def _fetch_one(self, client: Any, sym: str) -> pd.DataFrame:
        frame: pd.DataFrame = await client.fetch_ticker(sym)
        return frame


class OrderBookCollector(_SnapshotCollector):
    """Top-``depth`` order book snapshots every ``interval`` seconds (default 1).

    >>> c = OrderBookCollector("binance", ["BTC/USDT"], depth=10, interval=1.0)
    """

    kind = "orderbook"
    ws_method = "watchOrderBook"
    kind_options = OrderBookOptions

    def __init__(
        self,
        exchange: Any,
        symbols: Sequence[str] | str,
        *,
        mode: Mode = "auto",
        depth: int = 5,
        interval: float | None = 1.0,
        **options: Any,
    ) -> None:
        super().__init__(exchange, symbols, mode=mode, interval=interval, **options)
        self.depth = OrderBookOptions(depth=depth, interval=interval).depth

    def raw_options(self) -> dict[str, Any]:
        return {"depth": self.depth, "interval": self.interval}

    def _row_columns(self) -> list[str]:
        from ..exchanges import row_columns

        return row_columns("orderbook", self.depth)

    async def _watch_one(self, client: Any, sym: str) -> pd.DataFrame:
        frame: pd.DataFrame = await client.watch_order_book(sym, self.depth)
        return frame

    async def _fetch_one(self, client: Any, sym: str) -> pd.DataFrame:
        frame: pd.DataFrame = await client.fetch_order_book(sym, self.depth)
        return frame


class FundingRateCollector(_SnapshotCollector):
    """Funding rate, mark and index price of perpetuals (websocket or every ``interval`` s).

    Websockets: ccxt.pro ``watchFundingRate`` (OKX), or on Binance, which has none,
    the mark-price stream (``watchMarkPrice``), whose messages carry the funding
    rate; both give the same row as polling. Exchanges with neither poll in
    ``mode="auto"`` and fail with :class:`~mdcollect.InvalidRequest` in ``mode="ws"``.

    Every update is stored in the ``funding_snapshot`` kind (with ``funding_time``,
    the settlement its rate is announced for). Once an update announces a later
    settlement, the one before has happened: its last announced rate is written as
    that settlement's row of the ``funding`` dataset, the one funding history fills
    (``ensure_data(..., kinds=("funding",))``), so live and history are one truth.
    Such a row has no mark price (NaN); a settlement the collector did not see an
    update for on both sides (started or restarted across it) is not written.
    The live row only fills: a settlement already stored (by history) keeps every
    value it has, so its ``mark_price`` never turns NaN; history written later
    replaces the live row.

    >>> c = FundingRateCollector("binance_futures", ["BTC/USDT:USDT"], interval=60)
    """

    kind = "funding_snapshot"
    ws_method = "watchFundingRate"

    def __init__(
        self,
        exchange: Any,
        symbols: Sequence[str] | str,
        *,
        mode: Mode = "auto",
        interval: float | None = None,
        **options: Any,
    ) -> None:
        super().__init__(exchange, symbols, mode=mode, interval=interval, **options)
        if self.interval is None and mode == "poll":
            self.interval = 60.0
        # per symbol: (settlement time, rate last announced for it)
        self._announced: dict[str, tuple[int, float]] = {}

    async def _watch_one(self, client: Any, sym: str) -> pd.DataFrame:
        frame: pd.DataFrame = await client.watch_funding_rate(sym)
        return frame

    def _prepare_write(
        self, storage: DataCollectionStorage, key: DatasetKey, frame: pd.DataFrame
    ) -> pd.DataFrame:
        """Settlements are written fill-only: values already stored win, the live row
        fills only what is missing (history knows the mark price; the live feed not)."""
        if key.kind != "funding":
            return frame
        frame = normalize_frame("funding", frame)
        ms = index_ms(frame)
        stored = storage.read(key, int(ms[0]), int(ms[-1]) + 1)
        stored = stored[stored.index.isin(frame.index)]
        if not len(stored):
            return frame
        return stored.combine_first(frame)

    async def _fetch_one(self, client: Any, sym: str) -> pd.DataFrame:
        frame: pd.DataFrame = await client.fetch_funding_rate(sym)
        return frame

    def _frames(
        self, items: list[Message]
    ) -> list[tuple[DatasetKey, pd.DataFrame, Interval | None]]:
        from ..exchanges import row_columns

        out = super()._frames(items)
        settled: dict[str, list[tuple[int, float, float, float]]] = {}
        for m in items:
            for ts, rate, *_, funding_time in m.rows:
                if not funding_time:
                    continue
                prev = self._announced.get(m.symbol)
                if prev is not None and funding_time > prev[0] and ts >= prev[0]:
                    settled.setdefault(m.symbol, []).append((prev[0], prev[1], np.nan, np.nan))
                self._announced[m.symbol] = (int(funding_time), float(rate))
        for sym, rows in settled.items():
            frame = pd.DataFrame.from_records(rows, columns=["timestamp", *row_columns("funding")])
            out.append((DatasetKey(self.exchange, sym, "funding"), frame, None))
        return out


class OpenInterestCollector(DataSourceCollector):
    """Open interest of perpetuals at the exchange's ``period`` (``5m`` to ``1d``), polled
    once a period: when a period closes (and ``poll_lag`` seconds more, for the exchange
    to publish it) the periods closed since the last row are asked from the exchange's
    open-interest history and written to the ``open_interest`` dataset that history
    fills (``ensure_data(..., kinds=("open_interest",))``): live and history are one
    truth, the same rows.

    Coverage is what the collector demonstrably got: from where a poll asked to the
    last of the consecutive periods it received; an answer with a missing period
    covers nothing, and the periods not received are asked again at the next poll.
    Time comes from ``clock`` (a :class:`~mdcollect.collectors.ManualClock` in tests);
    the loop looks at it every ``poll_interval`` seconds. No exchange streams open
    interest through ccxt.pro here: ``mode="ws"`` is refused.

    >>> c = OpenInterestCollector("binance_futures", ["BTC/USDT:USDT"], period="5m")
    >>> c.keys()[0]
    DatasetKey('binance_futures', 'BTC/USDT:USDT', 'open_interest', '5m')
    """

    kind = "open_interest"
    ws_method = "watchOpenInterest"
    kind_options = OpenInterestOptions

    def __init__(
        self,
        exchange: Any,
        symbols: Sequence[str] | str,
        *,
        mode: Mode = "auto",
        period: str = "5m",
        poll_lag: float = 5.0,
        **options: Any,
    ) -> None:
        super().__init__(exchange, symbols, mode=mode, **options)
        opts = OpenInterestOptions(period=period, poll_lag=poll_lag)
        if isinstance(exchange, str):
            from ..exchanges import exchange_info

            exchange_info(exchange).open_interest_history(opts.period)
        self.period: str = opts.period
        self._tf = Timeframe.parse(opts.period)
        self.poll_lag = float(opts.poll_lag)

    def keys(self) -> list[DatasetKey]:
        return [DatasetKey(self.exchange, s, "open_interest", str(self._tf)) for s in self.symbols]

    @property
    def first_data_within(self) -> float:
        """The first rows come when a period has closed: up to a period and the lag."""
        return self._tf.ms / 1000 + self.poll_lag

    def backfill_jobs(self, key: DatasetKey, gap: Interval) -> list[Any]:
        from ..backfill import OpenInterestBackfill

        return [OpenInterestBackfill(self.exchange, key.symbol, self._tf, gap.start, gap.end)]

    async def _feed(self, client: Any, queue: asyncio.Queue[Message]) -> None:
        client.info.open_interest_history(str(self._tf))
        if self.mode == "ws":
            raise InvalidRequest(
                f"{self.exchange} streams no open interest over websockets; use mode='poll'"
            )
        await self._each_symbol(lambda s: self._poll(client, queue, s))

    def _closed_upto(self) -> int:
        """The end of the periods closed (and published, ``poll_lag``) by now."""
        return self._tf.floor(self.clock.time_ms() - int(self.poll_lag * 1000))

    async def _poll(self, client: Any, queue: asyncio.Queue[Message], sym: str) -> None:
        tf = self._tf
        since = self._closed_upto() - tf.ms  # the last closed period
        while True:
            upto = self._closed_upto()
            frame = await client.fetch_open_interest_history(sym, str(tf), since, upto)
            self._beat()
            ts = index_ms(frame).tolist()
            if ts:
                rows = [(t, *v) for t, v in zip(ts, frame.itertuples(index=False), strict=True)]
                await self._put(queue, Message(sym, rows, None, start=since, timeframe=str(tf)))
                since = int(ts[-1]) + tf.ms
            # once a period: wait for the next one to close, looking at the clock (an
            # injected clock moves in steps: no event to wait on)
            while True:
                if self._closed_upto() > upto:
                    break
                await asyncio.sleep(self.poll_interval)

    def _frames(
        self, items: list[Message]
    ) -> list[tuple[DatasetKey, pd.DataFrame, Interval | None]]:
        from ..exchanges import row_columns

        out: list[tuple[DatasetKey, pd.DataFrame, Interval | None]] = []
        for m in items:
            assert m.timeframe is not None and m.start is not None
            self.stats.rows_received += len(m.rows)
            frame = pd.DataFrame.from_records(
                m.rows, columns=["timestamp", *row_columns("open_interest")]
            )
            ts = frame["timestamp"].to_numpy(dtype=np.int64)
            expected = np.arange(m.start, int(ts[-1]) + 1, self._tf.ms)
            covered = None
            if len(expected) == len(ts) and bool((expected == ts).all()):
                covered = Interval(m.start, int(ts[-1]) + self._tf.ms)
            else:
                log.info("%s: %s open interest has missing periods; not covered", self.name,
                         m.symbol)  # fmt: skip
            key = DatasetKey(self.exchange, m.symbol, "open_interest", m.timeframe)
            out.append((key, frame, covered))
        return out


#: Seconds between two looks at the liquidation streams' connections when no
#: liquidation arrives: how soon a subscription or a quiet second shows in coverage.
_LIQUIDATION_TICK: Final = 0.05
#: Stream names (ccxt subscription keys) of the liquidation streams, any venue.
_LIQUIDATION_STREAMS: Final = ("liquidation", "forceorder")


class LiquidationsCollector(DataSourceCollector):
    """Liquidations (forced orders) of perpetuals, live from the exchange's websocket
    (ccxt.pro ``watch_liquidations``: Binance USD-M ``<symbol>@forceOrder``, OKX
    ``liquidation-orders``, Bybit ``allLiquidation.<symbol>``).

    Rows: ``side`` (the forced order's: a liquidated long is a ``sell``), ``price``,
    ``amount`` in base units, ``received`` and an ``id`` made from the row's content
    (no venue numbers liquidations), so two at the same millisecond both stay and one
    delivered twice is stored once.

    No exchange serves past liquidations, so there is nothing to poll and nothing to
    backfill: ``mode="poll"`` raises :class:`~mdcollect.InvalidRequest`. Coverage is
    what the stream delivered while it was up: from the first frame after subscribing
    (the exchange's acknowledgement) to the last frame before it broke, both moved in
    by the exchange's push delay (``ExchangeInfo.liquidation_delay_ms``: a liquidation
    may be pushed that long after it happened, and a frame on a connection shared with
    other streams may precede the acknowledgement). A reconnect leaves an honest hole in coverage
    that no backfill can fill. Coverage times are the wall clock at which frames
    arrived (ccxt's stamps), exchange times being on the same clock.

    >>> from mdcollect import DataCollector, open_storage
    >>> c = LiquidationsCollector("binance_futures", ["BTC/USDT:USDT", "ETH/USDT:USDT"])
    >>> c.keys()[0]
    DatasetKey('binance_futures', 'BTC/USDT:USDT', 'liquidations')
    >>> async with DataCollector([c], open_storage("memory://")) as dc:  # doctest: +SKIP
    ...     await asyncio.sleep(60)
    """

    kind = "liquidations"
    ws_method = "watchLiquidations"
    kind_options = LiquidationsOptions

    def __init__(
        self,
        exchange: Any,
        symbols: Sequence[str] | str,
        *,
        mode: Mode = "ws",
        **options: Any,
    ) -> None:
        if mode == "poll":
            raise InvalidRequest(
                "LiquidationsCollector has nothing to poll: exchanges publish liquidations "
                "only as a websocket stream (no REST history); use mode='ws'"
            )
        super().__init__(exchange, symbols, mode=mode, **options)
        self._taken: dict[str, list[dict[str, Any]]] = {}
        self._contract: dict[str, Decimal | None] = {}
        self._wake = asyncio.Event()
        self._subscribed_at = 0  # wall ms the first watch was issued (this session)
        self._confirmed: int | None = None  # wall ms of the first frame after it
        self._last_frame: int | None = None
        self._cov_end: dict[str, int] = {}

    @property
    def first_data_within(self) -> float:
        """Unbounded: a quiet market may liquidate nothing for hours, which is no sign of
        a broken feed; the stream's frames (acks, pongs) are its sign of life."""
        return math.inf

    def _start_session(self) -> None:
        self._taken.clear()
        self._cov_end.clear()
        self._confirmed = None
        self._last_frame = None

    async def _feed(self, client: Any, queue: asyncio.Queue[Message]) -> None:
        from ..exchanges import contract_size

        if not self._check_ws(client):
            raise InvalidRequest(
                f"{self.exchange} has no websocket {self.ws_method}, and liquidations have "
                "nothing to poll"
            )
        for s in self.symbols:
            self._contract[s] = contract_size(await client.check_symbol(s))
        self._subscribed_at = now_ms()
        try:
            async with asyncio.TaskGroup() as tg:
                for s in self.symbols:
                    tg.create_task(self._watch(client, s))
                tg.create_task(self._drain(client, queue))
        except BaseExceptionGroup as eg:
            # what ccxt received before the stream broke is stored with the coverage it
            # completes (no waiting: the queue may be full while the collector stops)
            self._emit(client, queue, wait=False)
            raise first_leaf(eg) from None
        except asyncio.CancelledError:
            self._emit(client, queue, wait=False)
            raise

    async def _watch(self, client: Any, symbol: str) -> None:
        while True:
            liqs = await client.watch_liquidations_raw(symbol)
            self._taken.setdefault(symbol, []).extend(liqs)
            self._wake.set()

    async def _drain(self, client: Any, queue: asyncio.Queue[Message]) -> None:
        """The one producer of messages: rows and coverage stay in order on the queue."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), _LIQUIDATION_TICK)
            self._wake.clear()
            for msg in self._emit(client, queue, wait=True):
                await self._put(queue, msg)

    def _emit(self, client: Any, queue: asyncio.Queue[Message], *, wait: bool) -> list[Message]:
        """Messages of what arrived since the last call, one per symbol with news; with
        ``wait=False`` they are put on the queue now (those that fit) instead of returned."""
        from ..exchanges import liquidation_rows

        # the frame time first, then the rows: every row received by then is taken
        last = client.ws_frame_time(*_LIQUIDATION_STREAMS)
        advanced = last is not None and last > self._subscribed_at and last != self._last_frame
        if advanced:
            self._last_frame = last
            if self._confirmed is None:
                # the first frame after subscribing: the ack, or on a connection shared
                # with other streams possibly a frame just before it; a push delay later
                # the subscription is surely in force
                self._confirmed = last + client.info.liquidation_delay_ms
        watermark = None
        if self._confirmed is not None and self._last_frame is not None:
            watermark = max(self._confirmed, self._last_frame - client.info.liquidation_delay_ms)
        received = self.clock.time_ms()
        out: list[Message] = []
        for sym in self.symbols:
            liqs = self._taken.pop(sym, []) + client.take_liquidations(sym)
            if not liqs and not advanced:
                continue
            rows = liquidation_rows(
                liqs, self._contract.get(sym), received,
                position_side=client.info.liquidation_side_is_position,
            )  # fmt: skip
            msg = Message(sym, rows, watermark, start=self._confirmed)
            if wait:
                out.append(msg)
            elif not queue.full():
                queue.put_nowait(msg)
        return out

    def _frames(
        self, items: list[Message]
    ) -> list[tuple[DatasetKey, pd.DataFrame, Interval | None]]:
        from ..exchanges import row_columns

        by_sym: dict[str, list[Message]] = {}
        for m in items:
            by_sym.setdefault(m.symbol, []).append(m)
        out: list[tuple[DatasetKey, pd.DataFrame, Interval | None]] = []
        for sym, msgs in by_sym.items():
            rows = [r for m in msgs for r in m.rows]
            self.stats.rows_received += len(rows)
            columns = row_columns("liquidations")
            if rows:
                frame = pd.DataFrame.from_records(rows, columns=["timestamp", *columns])
            else:  # coverage alone: none happened while the stream was up
                frame = empty_frame("liquidations", columns)
            covered = None
            marks = [m for m in msgs if m.watermark is not None and m.start is not None]
            if marks:
                lo = self._cov_end.get(sym, marks[0].start)
                hi = max(m.watermark for m in marks)  # type: ignore[type-var]
                assert lo is not None and hi is not None
                if hi > lo:
                    covered = Interval(lo, hi)
                    self._cov_end[sym] = hi
            out.append((DatasetKey(self.exchange, sym, "liquidations"), frame, covered))
        return out
