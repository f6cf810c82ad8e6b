"""Raw websocket frames: captured where ccxt.pro reads them, and fed back for replay.

One hook serves every venue. ccxt.pro's connection (``ccxt...ws.client.Client``)
hands each text or binary frame, decompressed, to ``handle_text_or_binary_message``,
which decodes the JSON and calls the exchange's ``handle_message`` (the venue's
parser), which resolves the futures ``watch_*`` calls wait on with ``resolve``.
:class:`RawTap` wraps those three methods on each connection of one ccxt exchange:

* every frame goes to the sinks as ``(receipt ms, connection path, text)`` before
  ccxt parses it (the receipt time from the client's clock, or, replaying, the
  captured one);
* a ``watch_*`` call returning is marked in the same stream (:meth:`RawTap.read_done`),
  so a replay can hand over the frames a live read found together;
* the futures a frame resolves remember its receipt time, and the ``watch_*`` call a
  task made remembers which future it waited on, so :meth:`RawTap.received` tells a
  task the receipt time of the frame that woke it: the ``received`` stamp of live
  rows, the very number a replay of the frame gives.

:class:`ReplayConnection` is a connection that never touches the network: it
"connects" at once, sends nothing, and receives the frames :meth:`RawTap.deliver`
hands it, through the same ccxt methods a live frame takes.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import urlsplit

from ccxt.async_support.base.ws.client import Client

__all__ = ["RawSink", "RawTap", "ReplayConnection", "url_path"]

#: Receives one frame: ``(receipt ms, connection path, text)``.
RawSink = Callable[[int, str, str], None]

_HOOKED: Final = "_mdcollect_tap"

log: Final = logging.getLogger("mdcollect.exchanges")


def url_path(url: str) -> str:
    """The part of a websocket URL that names the stream, without scheme and host
    (a capture replays against another host: the emulator's, a proxy's).

    >>> url_path("wss://stream.binance.com:9443/ws/btcusdt@trade?x=1")
    '/ws/btcusdt@trade?x=1'
    """
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def _no_throttle(cost: Any = None) -> None:
    return None


class ReplayConnection(Client):  # type: ignore[misc]
    """A ccxt.pro connection fed by :meth:`RawTap.deliver` instead of a socket."""

    def connect(self, _session: Any, _backoff_delay: float = 0) -> Any:
        if not self.connected.done():
            self.isConnected = True
            self.connected.resolve(self.url)
        return self.connected

    async def send(self, message: Any) -> None:
        return None  # the captured frames already hold the exchange's answers

    def closed(self) -> bool:
        return False

    async def aiohttp_close(self) -> None:
        return None


class RawTap:
    """The frame hook of one ccxt exchange (see the module docstring).

    ``clock()`` stamps live frames (ms). With ``replay=True`` the exchange's
    connections are :class:`ReplayConnection` objects: nothing reaches the network.
    """

    def __init__(self, exchange: Any, clock: Callable[[], int], *, replay: bool = False) -> None:
        self._exchange = exchange
        self._clock = clock
        self.sinks: list[RawSink] = []
        self._current: int | None = None  # receipt ms of the frame being parsed
        self._resolved: list[str] = []  # message hashes the current frame resolved
        self._receipts: dict[str, int] = {}  # message hash -> frame that resolved it
        self._waits: weakref.WeakKeyDictionary[asyncio.Task[Any], str] = weakref.WeakKeyDictionary()
        self._last = 0  # receipt ms of the newest frame
        original = exchange.client

        def client(url: str) -> Any:
            if replay and url not in (exchange.clients or {}):
                exchange.open()
                exchange.clients = exchange.clients or {}
                exchange.clients[url] = ReplayConnection(
                    url, exchange.handle_message, exchange.on_error, exchange.on_close,
                    exchange.on_connected,
                    {"asyncio_loop": exchange.asyncio_loop, "throttle": _no_throttle},
                )  # fmt: skip
            conn = original(url)
            self._hook(conn)
            return conn

        exchange.client = client
        self._installed = client
        for conn in list((getattr(exchange, "clients", None) or {}).values()):
            self._hook(conn)

    def _hook(self, conn: Any) -> None:
        if getattr(conn, _HOOKED, None) is self:
            return
        setattr(conn, _HOOKED, self)
        handle, resolve, future = conn.handle_text_or_binary_message, conn.resolve, conn.future
        path = url_path(str(conn.url))

        def on_frame(data: Any) -> None:
            t = self._current if self._current is not None else self._clock()
            self._last = max(self._last, t)
            if self.sinks:
                text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
                self._tell(t, path, text)
            outer, self._current = self._current, t
            try:
                handle(data)
            finally:
                self._current = outer

        def on_resolve(result: Any, message_hash: Any) -> Any:
            if self._current is not None and message_hash in conn.futures:
                self._receipts[message_hash] = self._current
                self._resolved.append(message_hash)
            return resolve(result, message_hash)

        def on_future(message_hash: Any) -> Any:
            task = asyncio.current_task()
            if task is not None:
                self._waits[task] = message_hash
            return future(message_hash)

        conn.handle_text_or_binary_message = on_frame
        conn.resolve = on_resolve
        conn.future = on_future

    def read_done(self) -> None:
        """A ``watch_*`` call of the current task returned: tell the sinks where, as a
        *read mark* ``(receipt ms of the newest frame, "", message hash)``. A replay
        hands the frames between two marks over at once, as the live reader found them
        (several frames' updates in one read when it was behind)."""
        task = asyncio.current_task()
        message_hash = None if task is None else self._waits.get(task)
        if message_hash is None or not self.sinks:
            return
        self._tell(self._last, "", str(message_hash))

    def _tell(self, received: int, path: str, text: str) -> None:
        for sink in self.sinks:
            try:
                sink(received, path, text)
            except Exception:  # a faulty sink must not break the connection it taps
                log.exception("raw frame sink %r failed", sink)

    def received(self) -> int | None:
        """Receipt ms of the frame that resolved the ``watch_*`` call the current task
        returned from last; ``None`` when unknown (no frame of this tap did)."""
        task = asyncio.current_task()
        message_hash = None if task is None else self._waits.get(task)
        return None if message_hash is None else self._receipts.get(message_hash)

    def detach(self) -> None:
        """Stop tapping: the exchange opens ordinary connections again (those open now,
        hooked or replayed, are dropped: close them first)."""
        if self._exchange.__dict__.get("client") is self._installed:
            del self._exchange.client
        self._exchange.clients = {}

    # ------------------------------------------------------------------ replay

    def connections(self) -> dict[str, Any]:
        """The exchange's open connections by path."""
        return {url_path(str(u)): c for u, c in (self._exchange.clients or {}).items()}

    def streams(self) -> dict[str, list[str]]:
        """The ccxt subscription keys of each open connection, by path."""
        return {p: sorted(str(h) for h in c.subscriptions) for p, c in self.connections().items()}

    def waiting(self) -> set[str]:
        """Message hashes a ``watch_*`` call waits on now, on every connection."""
        return {
            h
            for c in (self._exchange.clients or {}).values()
            for h, f in c.futures.items()
            if not f.done()
        }

    def deliver(self, conn: Any, received: int, text: str) -> list[str]:
        """Hand ``text`` to ``conn`` as a frame received at ``received`` (ms), through
        ccxt's own decoding and the venue's parser; the message hashes it resolved."""
        self._resolved = []
        self._current = received
        conn.last_message_at = received
        try:
            conn.handle_text_or_binary_message(text)
        finally:
            self._current = None
        return self._resolved
