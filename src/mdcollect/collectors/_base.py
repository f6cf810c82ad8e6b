"""``DataSourceCollector``: the feed -> bounded queue -> batch -> storage pipeline every kind shares."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, ClassVar, Final, TypeAlias

import pandas as pd
from attrs import define, field, frozen

from .._backoff import Backoff
from .._errors import InvalidRequest
from .._intervals import Interval, IntervalSet
from .._keys import DatasetKey, Kind
from ..storage import DataCollectionStorage
from ._clock import Clock, as_clock
from ._options import CollectorOptions, Mode

__all__ = ["CollectorStats", "DataSourceCollector", "Mode", "WriteObserver"]

log: Final = logging.getLogger("mdcollect.collectors")

#: Called after each successful storage write of a collector with the dataset, the
#: frame handed to storage, the coverage the write marked (empty: none) and the rows
#: storage reported written; in the worker thread that wrote.
WriteObserver: TypeAlias = Callable[[DatasetKey, pd.DataFrame, IntervalSet, int], None]

#: Captured frames held after the last read mark (waiting for the read that takes
#: them) before they are batched anyway: a quiet stream's acks and pings.
_RAW_HELD: Final = 10_000

#: Waits between retries of a failed storage write (the rows stay buffered meanwhile).
_WRITE_RETRY: Final = Backoff(initial=0.05, maximum=2.0, jitter="equal")


#: Upper bounds (seconds) of the buckets of :class:`WriteLatency`.
WRITE_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


@define
class WriteLatency:
    """How long storage writes took: counts per bucket of :data:`WRITE_BUCKETS` (the
    last one: slower than all), their sum and number (a Prometheus histogram's)."""

    counts: list[int] = field(factory=lambda: [0] * (len(WRITE_BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, seconds: float) -> None:
        """Count one write of ``seconds``."""
        self.counts[bisect.bisect_left(WRITE_BUCKETS, seconds)] += 1
        self.total += seconds
        self.count += 1


@define
class CollectorStats:
    """Counters of one collector (kept across restarts).

    ``messages_received`` counts feed messages (websocket updates, REST polls with
    rows); ``rows_received`` rows accepted from them (duplicates removed);
    ``rows_written`` rows that reached storage; ``rows_dropped`` rows given up
    because storage stayed down past the buffer bound; ``write_errors`` failed
    storage writes (each retried); ``duplicates`` rows seen twice on the feed;
    ``feed_overflows`` times the client's websocket cache filled between two reads
    (rows may have been missed there; the span is refilled from REST);
    ``write_latency`` how long each successful storage write took.
    """

    messages_received: int = 0
    rows_received: int = 0
    rows_written: int = 0
    rows_dropped: int = 0
    write_errors: int = 0
    duplicates: int = 0
    feed_overflows: int = 0
    last_message: int | None = None
    #: the exchange's timestamp (ms) of the newest row received (trades: the trade's
    #: time; candles: the candle's open time)
    last_exchange_time: int | None = None
    last_write: int | None = None
    last_error: str | None = None
    write_latency: WriteLatency = field(factory=WriteLatency)
    #: websocket frames stored in the ``raw`` dataset (``raw=True``)
    raw_frames: int = 0


@frozen
class Message:
    """One feed message on the queue: rows of one symbol.

    ``rows`` are tuples ``(timestamp, *columns)`` of the collector's kind;
    ``watermark`` is the time before which the feed has delivered everything
    (``None`` when the kind has no notion of completeness); ``start`` is where a
    polled window began (``None`` on websockets). ``resync`` says rows may be
    missing just before these (the client's cache overflowed while the loop was
    busy): the symbol's coverage starts afresh here, and the skipped span is a gap
    to refill, as after a reconnect. ``columns`` names the rows' columns after
    ``timestamp`` when they are not the kind's usual ones (polled candles with the
    optional ``ohlcv`` columns the exchange gives).
    """

    symbol: str
    rows: list[tuple[Any, ...]]
    watermark: int | None = None
    start: int | None = None
    timeframe: str | None = None
    resync: bool = False
    columns: tuple[str, ...] | None = None


class _RowQueue(asyncio.Queue[Message]):
    """An asyncio queue full at ``maxsize`` messages or ``max_rows`` rows (a message
    bigger than ``max_rows`` still goes into an empty queue)."""

    def __init__(self, maxsize: int, max_rows: int) -> None:
        super().__init__(maxsize)
        self.max_rows = max_rows
        self.rows = 0

    def _put(self, item: Message) -> None:
        super()._put(item)
        self.rows += len(item.rows)

    def _get(self) -> Message:
        item: Message = super()._get()
        self.rows -= len(item.rows)
        return item

    def full(self) -> bool:
        return super().full() or self.rows >= self.max_rows


@frozen
class _Entry:
    seq: int
    key: DatasetKey
    frame: pd.DataFrame
    covered: Interval | None
    #: the rows' lineage: ``live:ws`` or ``live:poll``
    source: str = "live:poll"

    @property
    def rows(self) -> int:
        return len(self.frame)


class DataSourceCollector(ABC):
    """Collects one kind of live data for symbols of one exchange into a storage.

    ``await collector.run(storage)`` runs until cancelled: a feed (websockets
    through ``ccxt.pro``, or REST polling) puts messages on a bounded queue
    (``queue_size`` messages or ``queue_rows`` rows, whichever comes first; a full
    queue makes the feed wait; trades a websocket feed missed meanwhile are
    refilled from REST like a reconnect's); a processor
    turns them into frames; a writer upserts them in batches of ``batch_rows``
    rows or every ``batch_seconds``, off the event loop (``asyncio.to_thread``).
    When storage fails, rows are kept (up to ``buffer_rows``) and retried with
    capped backoff; past the bound the oldest rows are dropped and counted in
    ``stats.rows_dropped``, never silently. Leaving ``run`` (cancelled or
    failed) processes what was queued and flushes the buffer (``flush_timeout``).

    Ages (silence, the batch age) and stamps are read from ``clock`` (a
    :class:`~mdcollect.collectors.Clock`; the system clocks by default), which
    a :class:`~mdcollect.DataCollector` replaces with its own.

    ``exchange`` is an exchange key or an :class:`~mdcollect.ExchangeClient`
    (e.g. one pointed at an :class:`~mdcollect.testing.ExchangeEmulator`); a
    client built from a key belongs to the collector. ``mode`` is ``"ws"``,
    ``"poll"`` or ``"auto"`` (websockets when the exchange has them).

    >>> from mdcollect.collectors import TradesCollector
    >>> collector = TradesCollector("binance", ["BTC/USDT"], candles=["1s", "1m"])
    >>> task = asyncio.create_task(collector.run(open_storage("memory://")))

    Most users hand collectors to :class:`~mdcollect.DataCollector`, which
    restarts them and reports their health.
    """

    kind: ClassVar[Kind]
    #: the ccxt ``has`` name of the websocket method this kind uses
    ws_method: ClassVar[str]
    #: the attrs class of the options this kind takes beside :class:`CollectorOptions`
    #: (what a config section may set for it); ``None``: none
    kind_options: ClassVar[type | None] = None

    def __init__(
        self,
        exchange: Any,
        symbols: Sequence[str] | str,
        *,
        mode: Mode = "auto",
        batch_rows: int = 5_000,
        batch_seconds: float = 1.0,
        queue_size: int = 10_000,
        queue_rows: int = 100_000,
        buffer_rows: int = 1_000_000,
        poll_interval: float = 1.0,
        flush_timeout: float = 30.0,
        name: str | None = None,
        clock: Clock | None = None,
        raw: bool = False,
    ) -> None:
        from ..exchanges import ExchangeClient, exchange_info

        self.clock: Clock = as_clock(clock)

        if isinstance(exchange, ExchangeClient):
            self._client: ExchangeClient | None = exchange
            self._owns_client = False
            self.exchange: str = exchange.key
        elif isinstance(exchange, str):
            exchange_info(exchange)  # InvalidRequest naming the key if unknown
            self._client = None
            self._owns_client = True
            self.exchange = exchange
        else:
            raise InvalidRequest(
                f"exchange must be an exchange key or an ExchangeClient, got {exchange!r}"
            )
        syms = [symbols] if isinstance(symbols, str) else list(symbols)
        if not syms or not all(isinstance(s, str) and s for s in syms):
            raise InvalidRequest(f"symbols must be a non-empty list of symbols, got {symbols!r}")
        self.symbols: list[str] = list(dict.fromkeys(syms))
        opts = CollectorOptions(
            mode=mode,
            batch_rows=batch_rows,
            batch_seconds=batch_seconds,
            queue_size=queue_size,
            queue_rows=queue_rows,
            buffer_rows=buffer_rows,
            poll_interval=poll_interval,
            flush_timeout=flush_timeout,
            raw=raw,
        )
        if opts.raw and opts.mode == "poll":
            raise InvalidRequest(
                "raw=True stores websocket frames, and mode='poll' reads none; "
                "use mode='ws' or 'auto'"
            )
        self.mode: Mode = opts.mode
        self.batch_rows = opts.batch_rows
        self.batch_seconds = float(opts.batch_seconds)
        self.queue_size = opts.queue_size
        self.queue_rows = opts.queue_rows
        self.buffer_rows = opts.buffer_rows
        self.poll_interval = float(opts.poll_interval)
        self.flush_timeout = float(opts.flush_timeout)
        self.name: str = name or f"{self.exchange}:{self.kind}:{','.join(self.symbols)}"
        self.stats = CollectorStats()
        self._pending: deque[_Entry] = deque()
        self._pending_rows = 0
        self._inflight_max = -1  # entries with seq <= this are being written
        self._seq = itertools.count()
        self._flush_lock = asyncio.Lock()
        self._heartbeat: float | None = None
        self._ws_seen: int | None = None  # the newest websocket frame stamp seen
        self._ws_beat: float | None = None  # when it was first seen (self.clock)
        self._ws_opened = False
        self._queue: asyncio.Queue[Message] | None = None
        self._oldest: float | None = None  # monotonic time the oldest pending row arrived
        self._symbol_tasks: _SymbolTasks | None = None  # the feed's per-symbol tasks, running
        #: store the websocket frames too (``raw`` kind): see :meth:`raw_key`
        self.raw: bool = opts.raw
        self._raw_frames: list[tuple[int, str, str]] = []  # captured, not yet batched
        self._raw_cut = 0  # frames up to the last read mark among them: ready to batch
        self._raw_clients: list[Any] = []  # the clients whose frames come here
        self._feeding = False  # the feed task runs

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.exchange!r}, {self.symbols!r}, mode={self.mode!r})"

    # ------------------------------------------------------------------ public

    def keys(self) -> list[DatasetKey]:
        """The datasets this collector writes."""
        return [DatasetKey(self.exchange, s, self.kind) for s in self.symbols]

    @property
    def kinds(self) -> list[str]:
        """The kinds of data this collector writes (trades collectors may add ``ohlcv``)."""
        return sorted({k.kind for k in self.keys()})

    def raw_key(self) -> DatasetKey:
        """Where ``raw=True`` stores the websocket frames: the ``raw`` dataset of this
        exchange whose channel (the symbol field) is this collector's kind.

        >>> TradesCollector("binance", ["BTC/USDT"], raw=True).raw_key()
        DatasetKey('binance', 'trades', 'raw')
        """
        from ._raw import raw_key

        return raw_key(self.exchange, self.kind)

    def raw_options(self) -> dict[str, Any]:
        """The options of this kind (:attr:`kind_options`) a replay of its frames needs
        to build the same collector; none by default."""
        return {}

    @property
    def queued_messages(self) -> int:
        """Feed messages waiting to be processed (at most ``queue_size``)."""
        return 0 if self._queue is None else self._queue.qsize()

    @property
    def buffered_rows(self) -> int:
        """Rows received and not yet in storage."""
        return self._pending_rows

    def heartbeat(self) -> float | None:
        """Time (``self.clock.monotonic()``) of the feed's last sign of life: a message, a
        successful poll, or (websockets) any frame from the exchange, pongs included;
        ``None`` before any.

        A websocket frame counts from when it is first noticed here (the supervisor
        looks every ``check_interval``): ccxt stamps frames with the real wall clock,
        which an injected clock need not follow.
        """
        hb = self._heartbeat
        client = self._client
        if client is not None and self._uses_ws(client):
            last = client.ws_last_message()
            if last is not None and last != self._ws_seen:
                self._ws_seen = last
                self._ws_beat = self.clock.monotonic()
            if self._ws_beat is not None:
                hb = self._ws_beat if hb is None else max(hb, self._ws_beat)
        return hb

    def client(self) -> Any:
        """The :class:`~mdcollect.ExchangeClient` this collector uses (created on first use)."""
        if self._client is None:
            from ..exchanges import ExchangeClient

            self._client = ExchangeClient(self.exchange)
        return self._client

    def use_client(self, client: Any) -> None:
        """Talk to the exchange through ``client`` (an :class:`~mdcollect.ExchangeClient`
        the caller owns) from the next run on.

        >>> collector.use_client(ExchangeClient("binance", base_url=emu.url))
        """
        self._client = client
        self._owns_client = False

    async def add_symbols(self, symbols: Sequence[str] | str) -> list[str]:
        """Collect ``symbols`` too; returns those that were new. Once the collector has
        its exchange client, each new symbol is checked with the exchange first (an
        unknown one raises :class:`~mdcollect.InvalidRequest`, nothing added). While
        the feed runs (:attr:`changes_symbols_live`) the new symbols start at once,
        the others untouched; otherwise they are collected from the next run.

        >>> await collector.add_symbols(["SOL/USDT"])
        ['SOL/USDT']
        """
        new = [s for s in _symbol_list(symbols) if s not in self.symbols]
        if self._client is not None:
            for s in new:
                await self._prepare_symbol(self._client, s)
        tasks = self._symbol_tasks
        self.symbols.extend(new)
        if tasks is not None:
            for s in new:
                tasks.start(s)
        return new

    async def remove_symbols(self, symbols: Sequence[str] | str) -> list[str]:
        """Stop collecting ``symbols`` (what they received is still written); returns
        those removed. The other symbols are untouched; at least one must remain.

        >>> await collector.remove_symbols("ETH/USDT")
        ['ETH/USDT']
        """
        gone = list(dict.fromkeys(_symbol_list(symbols)))
        unknown = [s for s in gone if s not in self.symbols]
        if unknown:
            raise InvalidRequest(
                f"{self.name} does not collect {unknown}; it collects {self.symbols}"
            )
        if len(gone) == len(self.symbols):
            raise InvalidRequest(
                f"{self.name} would collect nothing: remove the collector instead of all its symbols"
            )
        tasks = self._symbol_tasks
        for s in gone:
            self.symbols.remove(s)
            if tasks is not None:
                await tasks.stop(s)
        return gone

    @property
    def changes_symbols_live(self) -> bool:
        """True while the feed runs its symbols as separate tasks: :meth:`add_symbols`
        and :meth:`remove_symbols` then take effect at once (otherwise at the next run)."""
        return self._symbol_tasks is not None

    async def aclose(self) -> None:
        """Close the exchange client if this collector created it."""
        if self._owns_client and self._client is not None:
            await self._client.close()

    @property
    def first_data_within(self) -> float:
        """Seconds a healthy feed may need before it stores its first rows (on top of
        :class:`~mdcollect.DataCollector`'s ``first_data_grace``): 0 unless the kind
        waits for something, such as a candle to close."""
        return 0.0

    def derived_keys(self, key: DatasetKey) -> list[DatasetKey]:
        """Datasets this collector builds from ``key``'s rows (candles from trades): a
        hole in ``key`` is a hole in them too. None by default."""
        return []

    def backfill_jobs(self, key: DatasetKey, gap: Interval) -> list[Any]:
        """Backfill jobs that refill ``gap`` of ``key`` (a range a reconnect left
        uncovered); none by default (kinds without history)."""
        return []

    async def run(
        self, storage: DataCollectionStorage, *, on_write: WriteObserver | None = None
    ) -> None:
        """Collect into ``storage`` until cancelled (or until the feed fails: the error
        propagates after the buffered rows are flushed).

        ``on_write(key, frame, covered, rows)`` (a :data:`WriteObserver`), when given,
        is called after each successful write, in the worker thread that wrote: the
        dataset, the frame handed to ``storage``, the :class:`~mdcollect.IntervalSet`
        the write marked covered (empty: none) and the rows ``storage`` reported
        written. :class:`~mdcollect.DataCollector` watches freshness and spots gaps
        this way; an observer that raises is logged, the write still counts.
        """
        client = self.client()
        if self.raw and not any(c is client for c in self._raw_clients):
            client.capture_ws(self._raw_frames_in)
            self._raw_clients.append(client)
        queue: asyncio.Queue[Message] = _RowQueue(self.queue_size, self.queue_rows)
        self._queue = queue
        self._heartbeat = self.clock.monotonic()
        self._start_session()
        tasks = [
            asyncio.create_task(self._checked_feed(client, queue), name=f"{self.name} feed"),
            asyncio.create_task(self._process_loop(queue), name=f"{self.name} process"),
            asyncio.create_task(self._flush_loop(storage, on_write), name=f"{self.name} write"),
        ]
        self._feeding = True
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                t.result()
            raise RuntimeError(f"{self.name}: the feed ended")  # feeds run until cancelled
        finally:
            # the feed stops before its streams close: a read that completed just now
            # would otherwise loop into a fresh connection while this one shuts down
            tasks[0].cancel()
            await asyncio.gather(tasks[0], return_exceptions=True)
            if self._feeding:
                # frames after the last read mark were never read (the feed stopped
                # first): they gave no row, so the capture keeps none for a replay either
                del self._raw_frames[self._raw_cut :]
            self._feeding = False
            try:
                if self._ws_opened:
                    # a fresh connection next run (a silent one may look open);
                    # collectors sharing a client reconnect through their own restart.
                    # Closed first: a busy stream would keep the loop decoding frames
                    # nobody reads while the tasks wind down and the flush waits
                    self._ws_opened = False
                    await client.close_streams()
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                # everything the feed handed over is processed and flushed before leaving
                items: list[Message] = []
                while not queue.empty():
                    items.append(queue.get_nowait())
                if items:
                    self._process(items)
                self._batch_raw()
                try:
                    await asyncio.wait_for(
                        self.flush(storage, on_write=on_write), self.flush_timeout
                    )
                except TimeoutError:
                    log.error(
                        "%s: %d rows still buffered %.0f s into the final flush: kept for"
                        " the next run, lost if there is none",
                        self.name, self.buffered_rows, self.flush_timeout,
                    )  # fmt: skip

    async def flush(
        self, storage: DataCollectionStorage, *, on_write: WriteObserver | None = None
    ) -> None:
        """Write every buffered row now, retrying storage failures (capped backoff);
        ``on_write`` as in :meth:`run`."""
        attempt = 0
        self._batch_raw()
        while self._pending:
            if await self._write_pending(storage, on_write):
                attempt = 0
                continue
            await asyncio.sleep(_WRITE_RETRY.delay(attempt))
            attempt += 1

    async def _checked_feed(self, client: Any, queue: asyncio.Queue[Message]) -> None:
        # every symbol is checked before a stream opens: an unknown one fails this
        # collector alone (InvalidRequest, not restarted) instead of failing inside a
        # stream, whose end would close the streams of every collector sharing the client
        for s in list(self.symbols):
            await self._prepare_symbol(client, s)
        await self._feed(client, queue)

    # ------------------------------------------------------------------ subclass hooks

    @abstractmethod
    async def _feed(self, client: Any, queue: asyncio.Queue[Message]) -> None:
        """Put messages on ``queue`` until cancelled; raise when the feed breaks."""

    @abstractmethod
    def _frames(
        self, items: list[Message]
    ) -> list[tuple[DatasetKey, pd.DataFrame, Interval | None]]:
        """Turn messages into frames to store, each with the interval it completes."""

    async def _prepare_symbol(self, client: Any, symbol: str) -> None:
        """Check ``symbol`` with the exchange before collecting it (InvalidRequest when
        unknown); kinds that need per-symbol facts (contract sizes) keep them here."""
        await client.check_symbol(symbol)

    async def _each_symbol(
        self,
        fn: Callable[[Any], Coroutine[Any, Any, None]],
        expand: Callable[[str], list[Any]] | None = None,
    ) -> None:
        """Run ``fn(item)`` for every item of every symbol (``expand(symbol)``, default the
        symbol itself) as its own task, until one fails (its error propagates, the
        others are cancelled) or all end. :meth:`add_symbols` and
        :meth:`remove_symbols` start and stop a symbol's tasks meanwhile."""
        tasks = _SymbolTasks(fn, expand or (lambda s: [s]))
        self._symbol_tasks = tasks
        try:
            await tasks.run(list(self.symbols))
        finally:
            self._symbol_tasks = None

    def _start_session(self) -> None:  # noqa: B027 - optional hook
        """A new connection begins: forget per-connection state."""

    def _prepare_write(
        self, storage: DataCollectionStorage, key: DatasetKey, frame: pd.DataFrame
    ) -> pd.DataFrame:
        """The frame to upsert into ``key`` (in the writer thread, just before the
        write); ``frame`` unchanged by default."""
        return frame

    def _uses_ws(self, client: Any) -> bool:
        if self.mode == "poll":
            return False
        if self.mode == "ws":
            return True
        return bool(client.has_ws(self.ws_method))

    def _check_ws(self, client: Any) -> bool:
        use = self._uses_ws(client)
        if use and not client.has_ws(self.ws_method):
            raise InvalidRequest(
                f"{self.exchange} has no websocket {self.ws_method}; use mode='poll'"
            )
        self._ws_opened = use
        return use

    def _beat(self) -> None:
        self._heartbeat = self.clock.monotonic()

    async def _put(self, queue: asyncio.Queue[Message], msg: Message) -> None:
        self._heartbeat = self.clock.monotonic()
        if msg.rows:
            self.stats.messages_received += 1
            self.stats.last_message = self.clock.time_ms()
            newest = int(max(r[0] for r in msg.rows))
            last = self.stats.last_exchange_time
            if last is None or newest > last:
                self.stats.last_exchange_time = newest
        await queue.put(msg)

    # ------------------------------------------------------------------ pipeline

    async def _process_loop(self, queue: asyncio.Queue[Message]) -> None:
        while True:
            items = [await queue.get()]
            rows = len(items[0].rows)
            while rows < self.batch_rows and not queue.empty():
                item = queue.get_nowait()
                items.append(item)
                rows += len(item.rows)
            self._process(items)
            # let the feed run between batches
            await asyncio.sleep(0)

    def _process(self, items: list[Message]) -> None:
        for key, frame, covered in self._frames(items):
            if len(frame) == 0 and covered is None:
                continue
            self._add(key, frame, covered)
        if self._raw_cut and self._oldest is None:
            self._oldest = self.clock.monotonic()  # the frames age like rows

    def _raw_frames_in(self, received: int, path: str, text: str) -> None:
        # only while the feed reads: a frame nobody reads gave no row, nor may a replay
        if self.raw and self._feeding:
            self._raw_frames.append((received, path, text))
            if not path or len(self._raw_frames) >= _RAW_HELD:
                self._raw_cut = len(self._raw_frames)

    def _batch_raw(self) -> None:
        """The frames captured up to the last read mark, as one pending ``raw`` row;
        those after it wait for the next read (or are dropped if the feed stops
        first: see :meth:`run`)."""
        if not self._raw_cut:
            return
        from ._raw import encode_raw

        frames = self._raw_frames[: self._raw_cut]
        del self._raw_frames[: self._raw_cut]
        self._raw_cut = 0
        streams = {} if self._client is None else self._client.ws_streams()
        row = encode_raw(
            self.exchange, self.kind, self.symbols, self.raw_options(), frames, streams
        )
        self._add(self.raw_key(), row, None)

    def _add(self, key: DatasetKey, frame: pd.DataFrame, covered: Interval | None) -> None:
        if self._oldest is None:
            self._oldest = self.clock.monotonic()
        # frames come from websockets only, also when batched after the streams closed
        source = "live:ws" if self._ws_opened or key.kind == "raw" else "live:poll"
        self._pending.append(_Entry(next(self._seq), key, frame, covered, source))
        self._pending_rows += len(frame)
        # bound the buffer: drop the oldest rows not being written, and count them
        while self._pending_rows > self.buffer_rows and self._pending:
            first = self._pending[0]
            if first.seq <= self._inflight_max:
                break
            self._pending.popleft()
            self._pending_rows -= first.rows
            self.stats.rows_dropped += first.rows
            log.error(
                "%s: storage unavailable and the buffer (%d rows) is full: dropped %d rows of %s",
                self.name,
                self.buffer_rows,
                first.rows,
                first.key,
            )

    def _due(self) -> bool:
        if not self._pending and not self._raw_cut:
            return False
        if self._pending_rows >= self.batch_rows:
            return True
        return (
            self._oldest is not None and self.clock.monotonic() - self._oldest >= self.batch_seconds
        )

    async def _flush_loop(
        self, storage: DataCollectionStorage, on_write: WriteObserver | None
    ) -> None:
        attempt = 0
        tick = min(0.05, self.batch_seconds / 4)
        while True:
            if not self._due():
                await asyncio.sleep(tick)
                continue
            if await self._write_pending(storage, on_write):
                attempt = 0
            else:
                await asyncio.sleep(_WRITE_RETRY.delay(attempt))
                attempt += 1

    async def _write_pending(
        self, storage: DataCollectionStorage, on_write: WriteObserver | None = None
    ) -> bool:
        """One write of every pending key; True when all succeeded."""
        async with self._flush_lock:
            self._batch_raw()
            snapshot = list(self._pending)
            if not snapshot:
                return True
            self._inflight_max = snapshot[-1].seq
            self._oldest = self.clock.monotonic() if len(snapshot) < len(self._pending) else None
            by_key: dict[DatasetKey, list[_Entry]] = {}
            for e in snapshot:
                by_key.setdefault(e.key, []).append(e)
            written: set[int] = set()
            ok = True
            try:
                # one thread hop for the whole flush: a hop per dataset waits for the
                # loop each time, which under heavy flow starves the writer
                job = asyncio.ensure_future(
                    asyncio.to_thread(
                        _write_all,
                        storage,
                        by_key,
                        on_write,
                        self.stats.write_latency,
                        self._prepare_write,
                    )
                )
                cancelled = False
                while True:
                    try:
                        outcomes = await asyncio.shield(job)
                        break
                    except asyncio.CancelledError:
                        # the thread writes on regardless: wait for it and record what
                        # it stored, so the final flush neither loses nor rewrites rows
                        if job.cancelled():
                            raise
                        cancelled = True
                for key, group, exc in outcomes:
                    n = sum(e.rows for e in group)
                    if exc is None and key.kind == "raw":
                        self.stats.raw_frames += sum(int(e.frame["frames"].sum()) for e in group)
                    elif exc is None:
                        self.stats.rows_written += n
                        self.stats.last_write = self.clock.time_ms()
                    elif isinstance(exc, InvalidRequest):
                        # the frame itself is bad: retrying cannot help
                        self.stats.rows_dropped += n
                        self.stats.last_error = repr(exc)
                        log.error("%s: dropped %d invalid rows of %s: %s", self.name, n, key, exc)
                    else:
                        ok = False
                        self.stats.write_errors += 1
                        self.stats.last_error = f"storage: {exc!r}"
                        log.warning("%s: write of %s failed (will retry): %r", self.name, key, exc)
                        continue
                    written.update(e.seq for e in group)
                if cancelled:
                    raise asyncio.CancelledError
            finally:
                self._inflight_max = -1
                if written:
                    kept = deque(e for e in self._pending if e.seq not in written)
                    self._pending_rows = sum(e.rows for e in kept)
                    self._pending = kept
                if self._pending and self._oldest is None:
                    self._oldest = self.clock.monotonic()
            return ok


def _symbol_list(symbols: Sequence[str] | str) -> list[str]:
    syms = [symbols] if isinstance(symbols, str) else list(symbols)
    if not syms or not all(isinstance(s, str) and s.strip() for s in syms):
        raise InvalidRequest(f"symbols must be a non-empty list of symbols, got {symbols!r}")
    return syms


class _SymbolTasks:
    """A feed's per-symbol tasks, which symbols may join or leave while it runs."""

    def __init__(
        self, fn: Callable[[Any], Coroutine[Any, Any, None]], expand: Callable[[str], list[Any]]
    ) -> None:
        self._fn = fn
        self._expand = expand
        self._tasks: dict[str, list[asyncio.Task[None]]] = {}
        self._done: asyncio.Future[None] | None = None

    async def run(self, symbols: list[str]) -> None:
        self._done = asyncio.get_running_loop().create_future()
        for s in symbols:
            self.start(s)
        try:
            if self._tasks:
                await self._done
        finally:
            live = [t for ts in self._tasks.values() for t in ts]
            for t in live:
                t.cancel()
            await asyncio.gather(*live, return_exceptions=True)
            self._tasks.clear()

    def start(self, symbol: str) -> None:
        if symbol in self._tasks:
            return
        tasks = [asyncio.create_task(self._fn(item)) for item in self._expand(symbol)]
        self._tasks[symbol] = tasks
        for t in tasks:
            t.add_done_callback(self._ended)

    async def stop(self, symbol: str) -> None:
        tasks = self._tasks.pop(symbol, [])
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _ended(self, task: asyncio.Task[None]) -> None:
        done = self._done
        if done is None or done.done():
            return
        # a task cancelled from outside (a stream closed under it) ends like one that
        # returned; one that raised ends the feed, as in a TaskGroup
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            done.set_exception(exc)
        elif all(t.done() for ts in self._tasks.values() for t in ts):
            done.set_result(None)


#: What a collector makes of a frame just before it is written (``_prepare_write``).
_Prepare: TypeAlias = Callable[[DataCollectionStorage, DatasetKey, pd.DataFrame], pd.DataFrame]


def _write_all(
    storage: DataCollectionStorage,
    by_key: dict[DatasetKey, list[_Entry]],
    on_write: WriteObserver | None = None,
    latency: WriteLatency | None = None,
    prepare: _Prepare | None = None,
) -> list[tuple[DatasetKey, list[_Entry], BaseException | None]]:
    """Write each key's entries (in a worker thread) as one upsert that marks every
    interval they complete: one write per dataset however often the feed resynced.
    Returns ``(key, entries, error or None)`` for each key."""
    outcomes: list[tuple[DatasetKey, list[_Entry], BaseException | None]] = []
    # captured frames first: a crash between two writes leaves frames whose rows are
    # missing (a replay gives them back), never rows without their frames
    for key, entries in sorted(by_key.items(), key=lambda item: item[0].kind != "raw"):
        # raw frames are no rows: the supervisor's freshness, gaps and callbacks skip them
        observer = None if key.kind == "raw" else on_write
        try:
            _write_entries(storage, key, entries, observer, latency, prepare)
        except InvalidRequest as exc:
            if len(entries) == 1:
                outcomes.append((key, entries, exc))
                continue
            # some rows are bad: write entry by entry, to drop only the bad ones
            for e in entries:
                try:
                    _write_entries(storage, key, [e], observer, latency, prepare)
                except InvalidRequest as one:
                    outcomes.append((key, [e], one))
                except Exception as failed:  # the backend's own errors
                    outcomes.append((key, [e], failed))
                    break
                else:
                    outcomes.append((key, [e], None))
        except Exception as exc:  # the backend's own errors
            outcomes.append((key, entries, exc))
        else:
            outcomes.append((key, entries, None))
    return outcomes


def _write_entries(
    storage: DataCollectionStorage,
    key: DatasetKey,
    entries: list[_Entry],
    on_write: WriteObserver | None = None,
    latency: WriteLatency | None = None,
    prepare: _Prepare | None = None,
) -> None:
    frames = [e.frame for e in entries if len(e.frame)]
    covered = IntervalSet(e.covered for e in entries if e.covered is not None)
    if not frames:
        frame = entries[0].frame
    elif len(frames) == 1:
        frame = frames[0]
    else:
        frame = pd.concat(frames)
    if prepare is not None and len(frame):
        frame = prepare(storage, key, frame)
    t0 = time.perf_counter()
    # an empty set covers nothing; the latest entry's feed names the rows' lineage
    rows = storage.write(key, frame, covered=covered, source=entries[-1].source)
    if latency is not None:
        latency.observe(time.perf_counter() - t0)
    if on_write is not None:
        try:
            on_write(key, frame, covered, rows)
        except Exception:  # the rows are stored: a faulty observer must not rewrite them
            log.exception("write observer failed after writing %d rows of %s", rows, key)
