"""The emulator's websocket side: connections, their pump loop, faults and logs.

Every connection runs two tasks on the emulator's loop: a reader (subscribe
frames, pings) and a pump that every :data:`TICK` seconds asks the dialect's
:class:`~mdcollect.testing.dialects.WsSession` for the messages due at the
emulator clock's "now" and sends them, after the faults switched on through
:class:`WsControl` (``emu.ws``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, Final, Literal, TypeVar

import attrs
from aiohttp import WSMsgType, web

from mdcollect.testing._market import SyntheticMarket
from mdcollect.testing.dialects import Dialect, WsSession

__all__ = ["TICK", "WsConnection", "WsControl", "WsSubscription"]

log = logging.getLogger("mdcollect.testing")

#: Seconds between two polls of a connection's feeds.
TICK: Final = 0.05

T = TypeVar("T")


@attrs.frozen
class WsConnection:
    """A snapshot of one websocket connection the emulator accepted.

    ``venue`` is the dialect (``binance``, ``okx``), ``market`` the endpoint kind
    (``spot``, ``linear``, ``public``, ``business``), ``path`` the path after the
    original host (``/ws/0``), ``opened``/``closed`` wall-clock ms (``closed`` is
    None while open), ``subscriptions`` the streams subscribed now (or at close),
    ``messages`` the data messages sent.
    """

    id: int
    venue: str
    market: str
    path: str
    opened: int
    closed: int | None
    subscriptions: tuple[str, ...]
    messages: int


@attrs.frozen
class WsSubscription:
    """One subscribe or unsubscribe: ``time`` is the emulator clock (ms) when it took effect.

    For a trade stream, the trades pushed start exactly at ``time``.
    """

    connection: int
    venue: str
    stream: str
    time: int
    action: Literal["subscribe", "unsubscribe"]


@attrs.define(eq=False)
class _Conn:
    id: int
    venue: str
    market: str
    path: str
    opened: int
    session: WsSession
    ws: web.WebSocketResponse
    request: web.Request
    closed: int | None = None
    messages: int = 0
    silent_until: float = 0.0
    venue_pings: float | None = None  # the venue's own ping interval (None: never)
    ping_every: float | None = None  # seconds between server pings now
    last_ping: float = attrs.Factory(time.monotonic)
    pings: int = 0
    backlog: list[Any] = attrs.Factory(list)
    lock: asyncio.Lock = attrs.Factory(asyncio.Lock)

    def snapshot(self) -> WsConnection:
        return WsConnection(
            self.id,
            self.venue,
            self.market,
            self.path,
            self.opened,
            self.closed,
            tuple(self.session.feeds),
            self.messages,
        )

    def abort(self) -> None:
        transport = self.request.transport
        if transport is not None:
            transport.abort()


@attrs.frozen
class _Filter:
    venue: str | None
    connection: int | None

    def matches(self, conn: _Conn) -> bool:
        return (self.venue is None or self.venue == conn.venue) and (
            self.connection is None or self.connection == conn.id
        )


class WsControl:
    """Websocket faults and logs of an :class:`ExchangeEmulator` (``emu.ws``).

    Every fault takes optional filters ``venue`` (a ccxt id or alias such as
    ``"binanceusdm"``, or a venue ``"binance"``) and ``connection`` (a
    :attr:`WsConnection.id`); without them it applies to every connection.
    Methods are thread-safe: call them from the test's thread or loop.

    Example::

        emu.ws.drop(venue="binance")           # abort Binance connections now
        emu.ws.silence(5)                      # open connections send nothing for 5 s
        emu.ws.pause(); emu.ws.resume()        # hold data, then deliver the backlog
        emu.ws.send_malformed(2)               # two truncated frames
        emu.ws.duplicate(0.1)                  # resend ~10 % of data messages
        assert len(emu.ws.connections) == 2    # the client reconnected once
    """

    def __init__(self, market: SyntheticMarket, venue_of: Callable[[str], str], seed: int) -> None:
        self._market = market
        self._venue_of = venue_of
        self._lock = threading.Lock()
        self._conns: dict[int, _Conn] = {}
        self._subs: list[WsSubscription] = []
        self._next_id = 1
        self._paused: list[_Filter] = []
        self._dup: list[tuple[_Filter, float]] = []
        self._malformed: list[list[Any]] = []  # [filter, remaining]
        self._pings: dict[str | None, float | None] = {}  # venue (None: all) -> seconds
        self._rng = random.Random(seed)
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- inspection

    @property
    def connections(self) -> list[WsConnection]:
        """Every connection accepted so far (open and closed), oldest first."""
        with self._lock:
            return [c.snapshot() for c in self._conns.values()]

    @property
    def open_connections(self) -> list[WsConnection]:
        """The connections still open."""
        return [c for c in self.connections if c.closed is None]

    @property
    def subscriptions(self) -> list[WsSubscription]:
        """Every subscribe/unsubscribe so far, oldest first."""
        with self._lock:
            return list(self._subs)

    async def wait_for_connections(
        self,
        n: int,
        timeout: float = 5.0,  # noqa: ASYNC109 (a plain deadline reads better here)
    ) -> list[WsConnection]:
        """Wait (in the caller's loop) until ``n`` connections were ever accepted."""
        deadline = time.monotonic() + timeout
        while len(conns := self.connections) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(conns)} websocket connections, expected {n}")
            await asyncio.sleep(0.02)
        return conns

    def clear(self) -> None:
        """Forget closed connections and the subscription log, and reset every fault."""
        with self._lock:
            self._conns = {k: c for k, c in self._conns.items() if c.closed is None}
            self._subs.clear()
        self.reset()

    # -- faults

    def _filter(self, venue: str | None, connection: int | None) -> _Filter:
        return _Filter(None if venue is None else self._venue_of(venue), connection)

    def _matching(self, flt: _Filter) -> list[_Conn]:
        with self._lock:
            return [c for c in self._conns.values() if c.closed is None and flt.matches(c)]

    def drop(self, *, venue: str | None = None, connection: int | None = None) -> int:
        """Abort matching open connections now (TCP reset, no close frame); returns how many."""
        conns = self._matching(self._filter(venue, connection))
        loop = self._loop
        if loop is not None and not loop.is_closed():
            for c in conns:
                loop.call_soon_threadsafe(c.abort)
        return len(conns)

    def silence(
        self, seconds: float, *, venue: str | None = None, connection: int | None = None
    ) -> int:
        """Matching open connections stay open but send nothing for ``seconds``.

        No data, no acks, no pongs; data due meanwhile is lost (as when a feed
        stalls). Connections opened later are not affected. Returns how many.
        """
        until = time.monotonic() + seconds
        conns = self._matching(self._filter(venue, connection))
        for c in conns:
            c.silent_until = until
        return len(conns)

    def pause(self, *, venue: str | None = None, connection: int | None = None) -> None:
        """Hold data messages of matching connections (also ones opened later) until :meth:`resume`.

        Acks and pongs are still sent, so the client sees a quiet but live feed.
        """
        with self._lock:
            self._paused.append(self._filter(venue, connection))

    def resume(self, *, venue: str | None = None, connection: int | None = None) -> None:
        """Undo :meth:`pause` (without filters: every pause); held data is then sent in order."""
        with self._lock:
            if venue is None and connection is None:
                self._paused.clear()
            else:
                flt = self._filter(venue, connection)
                self._paused = [f for f in self._paused if f != flt]

    def send_malformed(
        self, n: int = 1, *, venue: str | None = None, connection: int | None = None
    ) -> None:
        """Precede each of the next ``n`` data messages (of matching connections) by a truncated copy."""
        with self._lock:
            self._malformed.append([self._filter(venue, connection), n])

    def duplicate(
        self, rate: float, *, venue: str | None = None, connection: int | None = None
    ) -> None:
        """Send each data message of matching connections twice with probability ``rate`` (0: off)."""
        flt = self._filter(venue, connection)
        with self._lock:
            self._dup = [(f, r) for f, r in self._dup if f != flt]
            if rate > 0:
                self._dup.append((flt, rate))

    def server_pings(self, seconds: float | None, *, venue: str | None = None) -> None:
        """Send a ping frame every ``seconds`` on matching connections (None: never),
        in place of the venue's own interval (Binance: 20 s spot, 180 s USD-M; OKX
        never pings). Applies to open connections and ones opened later;
        :meth:`reset` restores the venues' intervals.
        """
        with self._lock:
            if venue is None:
                self._pings.clear()
            self._pings[None if venue is None else self._venue_of(venue)] = seconds
            for c in self._conns.values():
                c.ping_every = self._ping_interval(c)

    def _ping_interval(self, conn: _Conn) -> float | None:
        if conn.venue in self._pings:
            return self._pings[conn.venue]
        return self._pings.get(None, conn.venue_pings)

    def pings_sent(self, connection: int) -> int:
        """Server pings sent so far on one connection."""
        with self._lock:
            return self._conns[connection].pings

    def reset(self) -> None:
        """Switch every websocket fault off (pauses are resumed, silences end)."""
        with self._lock:
            self._pings.clear()
            self._paused.clear()
            self._dup.clear()
            self._malformed.clear()
            conns = list(self._conns.values())
        for c in conns:
            c.silent_until = 0.0
            c.ping_every = c.venue_pings

    # -- serving (emulator loop)

    async def shutdown(self, timeout: float = 1.0) -> None:  # noqa: ASYNC109
        """Abort every open connection and wait (briefly) for their handlers to finish."""
        with self._lock:
            conns = [c for c in self._conns.values() if c.closed is None]
        for c in conns:
            c.abort()
        deadline = time.monotonic() + timeout
        while any(c.closed is None for c in conns) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    async def serve(
        self, request: web.Request, dialect: Dialect, kind: str, path: str
    ) -> web.StreamResponse:
        """Run one websocket connection until it closes."""
        self._loop = asyncio.get_running_loop()
        with self._lock:
            conn_id = self._next_id
            self._next_id += 1
        session = dialect.ws_session(self._market, kind, path, dict(request.query), conn_id)
        if session is None:
            return web.Response(status=404, text="Not Found")
        ws = web.WebSocketResponse(autoping=False, max_msg_size=1 << 20)
        await ws.prepare(request)
        conn = _Conn(conn_id, dialect.name, kind, path, _ms(), session, ws, request)
        conn.venue_pings = dialect.ws_server_pings.get(kind)
        with self._lock:
            conn.ping_every = self._ping_interval(conn)
            self._conns[conn_id] = conn
        log.debug("ws connection %d opened: %s %s", conn_id, dialect.name, path)
        pump = asyncio.create_task(self._pump(conn))
        try:
            await self._send(conn, await self._run(conn, session.open, self._market.now()), False)
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    replies = await self._run(conn, session.receive, msg.data, self._market.now())
                    await self._send(conn, replies, False)
                elif msg.type == WSMsgType.PING:
                    if not self._silent(conn):
                        await ws.pong(msg.data)
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                    break
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionResetError):
                await pump
            conn.closed = _ms()
            log.debug("ws connection %d closed", conn_id)
        return ws

    async def _run(self, conn: _Conn, fn: Callable[..., T], *args: Any) -> T:
        async with conn.lock:
            result = await asyncio.get_running_loop().run_in_executor(None, fn, *args)
            self._collect_events(conn)
            return result

    def _collect_events(self, conn: _Conn) -> None:
        events, conn.session.events = conn.session.events, []
        if not events:
            return
        with self._lock:
            for action, stream, t in events:
                self._subs.append(
                    WsSubscription(conn.id, conn.venue, stream, t, action)  # type: ignore[arg-type]
                )

    def _silent(self, conn: _Conn) -> bool:
        return time.monotonic() < conn.silent_until

    def _paused_now(self, conn: _Conn) -> bool:
        with self._lock:
            return any(f.matches(conn) for f in self._paused)

    async def _pump(self, conn: _Conn) -> None:
        while not conn.ws.closed:
            await asyncio.sleep(TICK)
            msgs = await self._run(conn, conn.session.poll, self._market.now())
            if self._silent(conn):
                continue
            await self._ping_due(conn)
            if self._paused_now(conn):
                conn.backlog += msgs
                continue
            if conn.backlog:
                msgs, conn.backlog = conn.backlog + msgs, []
            await self._send(conn, msgs, True)

    async def _ping_due(self, conn: _Conn) -> None:
        """The server's own ping frame, when one is due (paused feeds ping too)."""
        every = conn.ping_every
        if every is not None and time.monotonic() - conn.last_ping >= every:
            conn.last_ping = time.monotonic()
            if not conn.ws.closed:
                await conn.ws.ping()
                conn.pings += 1

    async def _send(self, conn: _Conn, msgs: list[Any], data: bool) -> None:
        if not msgs or self._silent(conn) or conn.ws.closed:
            return
        for msg in msgs:
            text = msg if isinstance(msg, str) else json.dumps(msg, separators=(",", ":"))
            if data and self._take_malformed(conn):
                await conn.ws.send_str(text[: max(1, len(text) // 2)])
            await conn.ws.send_str(text)
            if data:
                conn.messages += 1
                if self._dup_now(conn):
                    await conn.ws.send_str(text)

    def _take_malformed(self, conn: _Conn) -> bool:
        with self._lock:
            for entry in self._malformed:
                if entry[1] > 0 and entry[0].matches(conn):
                    entry[1] -= 1
                    return True
        return False

    def _dup_now(self, conn: _Conn) -> bool:
        with self._lock:
            rate = max((r for f, r in self._dup if f.matches(conn)), default=0.0)
            return rate > 0 and self._rng.random() < rate


def _ms() -> int:
    return int(time.time() * 1000)
