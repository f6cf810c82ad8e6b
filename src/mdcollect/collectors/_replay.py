"""``replay``: a captured day of websocket frames back through the same parsers into rows.

The frames of ``DatasetKey(exchange, channel, "raw")`` (see ``_raw.py``) are fed,
in receipt order, to the collector that captured them, rebuilt from the capture's
header (its kind, the union of its symbols, its kind options), whose exchange
client replays instead of connecting (:meth:`ExchangeClient.replaying`): each
frame takes ccxt's own path (decoding, the venue's ``handle_message``, the futures
``watch_*`` waits on), then the collector's (mdcollect's parsers, duplicates,
candles closing, coverage) into storage. The collector's clock reads the frame's
receipt time, the stamp live rows got. The capture marks where each live watch
returned; the frames between two marks are handed over at once and the reader
runs at the mark, so it finds what the live one found (one frame, or several when
it was behind), and the rows are those the live run stored. Exactly so with one
reader per connection; with several (many symbols), a reader may also run at
another's mark, earlier than it did live (its rows then split differently).

What the capture cannot hold is not replayed: rows a
:class:`~mdcollect.DataCollector` refilled from REST after a reconnect, and books
a venue starts from a REST snapshot (Binance's) rather than from its stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

import pandas as pd
from attrs import define, field

from .._errors import InvalidRequest, MdcollectError
from .._keys import DatasetKey
from .._rules import check_choice, check_number
from .._time import DAY, HOUR, format_ms, index_ms, to_ms
from ..storage import DataCollectionStorage, open_storage
from ._base import DataSourceCollector, WriteObserver
from ._kinds import (
    FundingRateCollector,
    OHLCVCollector,
    OrderBookCollector,
    TickerCollector,
    TradesCollector,
)
from ._raw import FrameMerger, RawBatch, decode_raw, raw_key

__all__ = ["REPLAY_CHANNELS", "ReplayReport", "replay", "replay_async"]

log: Final = logging.getLogger("mdcollect.collectors")

#: The channels a capture can be replayed from, and the collector each rebuilds.
REPLAY_CHANNELS: Final[dict[str, type[DataSourceCollector]]] = {
    "trades": TradesCollector,
    "ohlcv": OHLCVCollector,
    "ticker": TickerCollector,
    "orderbook": OrderBookCollector,
    "funding_snapshot": FundingRateCollector,
}


class _ReplayClock:
    """The receipt time of the frame being replayed, for both readings."""

    def __init__(self, start_ms: int) -> None:
        self.now = start_ms

    def monotonic(self) -> float:
        return self.now / 1000

    def time_ms(self) -> int:
        return self.now


@define
class ReplayReport:
    """What :func:`replay_async` did: the frames read and handed to ccxt, those whose
    connection the replayed collector never opened (``skipped``: another collector's
    stream on a shared client), and the rows written per dataset."""

    exchange: str
    channel: str
    start: int
    end: int
    frames: int = 0
    skipped: int = 0
    rows: dict[DatasetKey, int] = field(factory=dict)

    def __str__(self) -> str:
        written = ", ".join(f"{k}: {n}" for k, n in sorted(self.rows.items())) or "no rows"
        return (
            f"replayed {self.frames} frames of {self.exchange} {self.channel} on "
            f"{format_ms(self.start)[:10]} ({self.skipped} skipped): {written}"
        )


def _newest_capture(storage: DataCollectionStorage, exchange: str, channel: str) -> int:
    key = raw_key(exchange, channel)
    if key in storage.keys(kind="raw"):
        stamps = index_ms(storage.read(key, columns=["frames"]))
        if len(stamps):
            return int(stamps[-1])
    captured = sorted(k.symbol for k in storage.keys(exchange=exchange, kind="raw"))
    raise InvalidRequest(
        f"no raw capture of {exchange} {channel!r}; captured channels of {exchange}: "
        f"{captured or 'none'} (collect with raw=True)"
    )


def capture_heads(
    storage: DataCollectionStorage, exchange: str, channel: str, start: int, end: int
) -> list[RawBatch]:
    """The headers (no frames) of the batches ``exchange``'s ``channel`` captured in
    ``[start, end)``, read an hour at a time; :class:`~mdcollect.InvalidRequest` naming
    the captured channels and days when there are none."""
    key = raw_key(exchange, channel)
    heads: list[RawBatch] = []
    if key in storage.keys(kind="raw"):
        for lo in range(start, end, HOUR):
            heads += decode_raw(storage.read(key, lo, min(lo + HOUR, end)), heads_only=True)
    if not heads:
        captured = storage.keys(exchange=exchange, kind="raw")
        days = []
        if key in captured:
            stamps = storage.read(key, columns=["frames"]).index
            days = sorted({str(t.date()) for t in stamps})
        raise InvalidRequest(
            f"no raw capture of {exchange} {channel!r} on {format_ms(start)[:10]}; "
            f"captured channels of {exchange}: {sorted(k.symbol for k in captured) or 'none'}"
            + (f"; days of {channel!r}: {', '.join(days)}" if days else "")
        )
    return heads


async def replay_async(
    exchange: Any,
    channel: str,
    day: Any = None,
    *,
    storage: DataCollectionStorage | str,
    into: DataCollectionStorage | str | None = None,
    frame_timeout: float = 30.0,
) -> ReplayReport:
    """Replay the frames ``exchange``'s collector of ``channel`` captured on ``day``
    (``raw=True``) from ``storage`` into ``into`` (default: ``storage``): the rows the
    live run stored (see the module docstring). ``exchange`` is an exchange key or an
    :class:`~mdcollect.ExchangeClient`, used for the markets only (one request);
    ``day`` a date (``YYYY-MM-DD``, a ``date``; a time is floored to its UTC day;
    ``None``: the day of the newest capture).
    Nothing waits forever: a frame whose watchers do not return to the feed within
    ``frame_timeout`` seconds fails the replay.

    >>> report = await replay_async("binance", "trades", "2024-03-13", storage=store)
    >>> report.rows[DatasetKey("binance", "BTC/USDT", "trades")]
    48211
    """
    from ..exchanges import ExchangeClient

    channel = check_choice("channel", channel, REPLAY_CHANNELS)
    check_number("frame_timeout", frame_timeout)
    if isinstance(exchange, ExchangeClient):
        client, owned = exchange, False
    elif isinstance(exchange, str):
        client, owned = ExchangeClient(exchange, enableRateLimit=False), True
    else:
        raise InvalidRequest(
            f"exchange must be an exchange key or an ExchangeClient, got {exchange!r}"
        )
    if channel == "orderbook" and client.info.ws_book_rest_snapshot:
        if owned:
            await client.close()
        raise InvalidRequest(
            f"{client.key} order books cannot be replayed: ccxt starts them from a REST "
            "snapshot, which the capture does not hold (books replay from venues whose "
            "stream sends the snapshot, such as okx and bybit)"
        )
    async with contextlib.AsyncExitStack() as stack:
        if owned:
            stack.push_async_callback(client.close)
        src = _opened(stack, storage)
        dst = src if into is None else _opened(stack, into)
        if day is None:
            day = await asyncio.to_thread(_newest_capture, src, client.key, channel)
        start = to_ms(day, name="day") // DAY * DAY
        heads = await asyncio.to_thread(capture_heads, src, client.key, channel, start,
                                        start + DAY)  # fmt: skip
        report = ReplayReport(client.key, channel, start, start + DAY)
        await _replay(client, src, heads, dst, report, frame_timeout)
        return report
    raise AssertionError("unreachable")  # pragma: no cover


def _opened(stack: contextlib.AsyncExitStack, storage: DataCollectionStorage | str) -> Any:
    """``storage``, opened from its URL (and closed with ``stack``) when a string."""
    if isinstance(storage, DataCollectionStorage):
        return storage
    store = open_storage(storage)
    stack.callback(store.close)
    return store


def replay(
    exchange: Any,
    channel: str,
    day: Any = None,
    *,
    storage: DataCollectionStorage | str,
    into: DataCollectionStorage | str | None = None,
    frame_timeout: float = 30.0,
) -> ReplayReport:
    """The sync twin of :func:`replay_async` (works inside a running event loop too).

    >>> from mdcollect import replay
    >>> print(replay("binance", "trades", "2024-03-13", storage="arctic+lmdb:///data/md"))
    replayed 48211 frames of binance trades 2024-03-13 ...
    """
    from .._sync import run_sync

    return run_sync(
        replay_async(exchange, channel, day, storage=storage, into=into,
                     frame_timeout=frame_timeout)
    )  # fmt: skip


async def _replay(
    client: Any,
    source: DataCollectionStorage,
    heads: list[RawBatch],
    into: DataCollectionStorage,
    report: ReplayReport,
    frame_timeout: float,
) -> None:
    symbols = list(dict.fromkeys(s for b in heads for s in b.symbols))
    streams: dict[str, set[str]] = {}
    for b in heads:
        for path, hashes in b.streams.items():
            streams.setdefault(path, set()).update(hashes)
    key = raw_key(report.exchange, report.channel)

    async def frames() -> AsyncIterator[tuple[int, str, str]]:
        # an hour of rows at a time, each batch decoded when its first frame is due
        merger = FrameMerger()
        for lo in range(report.start, report.end, HOUR):
            merger.add(await asyncio.to_thread(source.read, key, lo, lo + HOUR))
            for frame in merger.until(lo + HOUR):
                yield frame
        for frame in merger.until(None):
            yield frame

    clock = _ReplayClock(report.start)
    collector = REPLAY_CHANNELS[report.channel](
        client, symbols, mode="ws", clock=clock, **dict(heads[0].options)
    )
    with client.replaying() as tap:
        await _feed(tap, collector, into, frames(), streams, clock, report, frame_timeout)


async def _feed(
    tap: Any,
    collector: DataSourceCollector,
    into: DataCollectionStorage,
    frames: AsyncIterator[tuple[int, str, str]],
    streams: dict[str, set[str]],
    clock: _ReplayClock,
    report: ReplayReport,
    frame_timeout: float,
) -> None:
    channel = report.channel
    run = asyncio.create_task(collector.run(into, on_write=_counter(report)))
    loop = asyncio.get_running_loop()

    async def until(what: str, ready: Callable[[], bool]) -> None:
        deadline = loop.time() + frame_timeout
        while not ready():
            if run.done():
                run.result()  # the collector's error, as is
                raise MdcollectError(f"replay of {channel}: the collector stopped {what}")
            if loop.time() > deadline:
                raise MdcollectError(
                    f"replay of {channel}: no progress in {frame_timeout:g} s {what}"
                )
            await asyncio.sleep(0)

    def watchers() -> int:
        tasks = collector._symbol_tasks
        return -1 if tasks is None else sum(len(t) for t in tasks._tasks.values())

    answered: set[str] = set()  # watches answered and not read yet
    try:
        await until("subscribing", lambda: 0 < watchers() <= len(tap.waiting()))
        async for received, path, text in frames:
            if not path:
                # a read mark: the live watch on ``text`` returned here, finding what the
                # frames since its answer brought; its reader reads now, and is back
                if text in answered:
                    answered.discard(text)
                    at = f"reading the frames up to {format_ms(received)}"
                    await until(at, lambda h=text: h in tap.waiting())  # type: ignore[misc]
                continue
            conn = _route(tap.connections(), path, streams.get(path, set()))
            if conn is None:
                report.skipped += 1
                continue
            clock.now = max(clock.now, received)
            answered.update(tap.deliver(conn, received, text))
            report.frames += 1
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)


def _route(conns: dict[str, Any], path: str, hashes: set[str]) -> Any:
    """The replay connection of a frame captured on ``path``: the one subscribed to the
    streams that connection was (a venue numbering its connections may number them
    otherwise this time), else the one at the same path; ``None`` when none is."""
    if hashes:
        found = [c for c in conns.values() if hashes & {str(h) for h in c.subscriptions}]
        if len(found) == 1:
            return found[0]
    return conns.get(path)


def _counter(report: ReplayReport) -> WriteObserver:
    def on_write(key: DatasetKey, frame: pd.DataFrame, covered: Any, rows: int) -> None:
        report.rows[key] = report.rows.get(key, 0) + rows

    return on_write
