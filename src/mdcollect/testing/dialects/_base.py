"""What a dialect is: routes, markets, limits and the venue's error format."""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, ClassVar, TypeVar

import attrs
import numpy as np

from mdcollect.testing._faults import Limit
from mdcollect.testing._market import Frame, MarketSpec, RawCandles, RawTrades, SyntheticMarket

__all__ = [
    "CallbackFeed",
    "Ctx",
    "Dialect",
    "DialectError",
    "Reply",
    "Route",
    "WsFeed",
    "WsSession",
    "find_market",
    "fmt",
    "fmt_col",
    "fmt_plain",
    "fmt_plain_col",
    "plain_candle_rows",
]

#: A rendered row (a list or a dict, as the venue writes it).
T = TypeVar("T")


@attrs.define
class Reply:
    """A handler's answer before faults: JSON-able body, status and extra headers."""

    body: Any
    status: int = 200
    headers: dict[str, str] = attrs.Factory(dict)


class DialectError(Exception):
    """Raised by handlers: answer with the venue's own error body."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.body)
        self.reply = reply


@attrs.define
class Ctx:
    """Everything a handler needs for one request."""

    market: SyntheticMarket
    venue: str
    params: Mapping[str, str]
    path: str
    #: Row fault for list endpoints: ``"duplicate"``, ``"overlap"``, ``"short"``,
    #: ``"empty"`` or None.
    row_fault: str | None = None
    #: The rate-limit budgets in force, by the dialect's bucket name (``"spot"``):
    #: what endpoints that announce the limits (Binance ``exchangeInfo``) report.
    limits: Mapping[str, Limit] = attrs.Factory(dict)

    @property
    def now(self) -> int:
        return self.market.now()

    def mangle(self, rows: list[Any], previous: Callable[[], Any | None]) -> list[Any]:
        """Apply a row fault to chronologically ordered rows (before venue ordering)."""
        if self.row_fault == "duplicate" and rows:
            mid = len(rows) // 2
            return [*rows[: mid + 1], rows[mid], *rows[mid + 1 :], rows[-1]]
        if self.row_fault == "overlap" and rows:
            prev = previous()
            return [prev, *rows] if prev is not None else [rows[0], *rows]
        if self.row_fault == "short" and len(rows) > 1:
            return rows[: len(rows) // 2]
        if self.row_fault == "empty":
            return []
        return rows

    def mangle_candles(
        self, rows: list[T], raw: RawCandles, render: Callable[[RawCandles], list[T]]
    ) -> list[T]:
        """:meth:`mangle` for a page of candles ``raw`` rendered as ``rows``: an overlap
        repeats the candle before the page, rendered the same way."""

        def previous() -> T | None:
            if not len(raw):
                return None
            first = int(raw.agg.start[0])
            prev = self.market.raw_candles_backward(
                self.venue, raw.spec.symbol, raw.frame, first - 1, 1
            )
            return render(prev)[0] if len(prev) else None

        return self.mangle(rows, previous)

    def mangle_trades(
        self,
        rows: list[T],
        raw: RawTrades,
        symbol: str,
        render: Callable[[RawTrades], list[T]],
    ) -> list[T]:
        """:meth:`mangle` for a page of ``symbol``'s trades ``raw`` rendered as ``rows``: an
        overlap repeats the trade before the page, rendered the same way."""

        def previous() -> T | None:
            if not len(raw):
                return None
            prev = self.market.raw_trades_backward(
                self.venue, symbol, before_id=int(raw.id[0]), limit=1
            )
            return render(prev)[0] if len(prev) else None

        return self.mangle(rows, previous)


Handler = Callable[[Ctx], Reply]


@attrs.frozen
class Route:
    """One endpoint: ``GET /api/v3/klines`` named ``klines``, its weight and bucket."""

    method: str
    path: str
    name: str
    handler: Handler
    #: Weight charged to ``bucket`` (a callable gets the query params).
    weight: int | Callable[[Mapping[str, str]], int] = 1
    bucket: str | None = None

    def weight_of(self, params: Mapping[str, str]) -> int:
        return self.weight(params) if callable(self.weight) else self.weight


class Dialect(abc.ABC):
    """A venue's REST dialect: subclass, fill the class data, register in ``dialects/__init__``.

    ``name`` is the venue (``"binance"``); ``aliases`` the ccxt ids and project keys
    served by it; ``fill_empty`` whether candles without trades are flat candles
    (True) or missing (False); ``limits`` the rate-limit buckets routes charge.
    """

    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    fill_empty: ClassVar[bool] = True
    #: Whether ignoring a 429 earns an HTTP 418 ban (Binance).
    bans: ClassVar[bool] = False
    limits: ClassVar[Mapping[str, Limit]] = {}
    #: The error kind a ``limit`` parameter out of range earns (Binance: ``bad_limit``).
    limit_error: ClassVar[str] = "bad_request"
    #: Whether a ``limit`` above the maximum is cut to it (OKX) rather than refused.
    limit_clamps: ClassVar[bool] = False
    #: Whether the venue lists spot markets only (Kraken, Coinbase): contract specs
    #: given for every venue skip it.
    spot_only: ClassVar[bool] = False

    @abc.abstractmethod
    def default_markets(self) -> Sequence[MarketSpec]:
        """The markets listed by default."""

    @abc.abstractmethod
    def routes(self) -> Sequence[Route]:
        """Every endpoint this dialect serves."""

    @abc.abstractmethod
    def error(self, kind: str, message: str = "", retry_after: float = 0.0) -> Reply:
        """The venue's error answer; ``kind`` is ``bad_symbol``, ``bad_request``,
        ``rate_limit``, ``ban`` or ``not_found``."""

    def used_weight_headers(
        self, bucket: str, used: int, limit: Limit, now_ms: int
    ) -> dict[str, str]:
        """Headers that report the weight ``used`` of ``limit`` in the current window
        (Binance ``X-MBX-USED-WEIGHT-1M``, Bybit ``X-Bapi-Limit-Status``); ``now_ms``
        is the wall clock. None by default (OKX and Kraken send none)."""
        return {}

    #: Websocket hosts served (the original host of the ccxt URL) -> market kind
    #: passed to :meth:`ws_session` (``"spot"``, ``"linear"``, ...).
    ws_hosts: ClassVar[Mapping[str, str]] = {}
    #: Seconds between the server's own ping frames per market kind (absent: the
    #: server never pings, the client must).
    ws_server_pings: ClassVar[Mapping[str, float]] = {}

    def ws_session(
        self, market: SyntheticMarket, kind: str, path: str, query: Mapping[str, str], conn_id: int
    ) -> WsSession | None:
        """The protocol state of a new websocket connection (None: path not served)."""
        return None

    # helpers for subclasses

    def fail(self, kind: str, message: str = "") -> DialectError:
        return DialectError(self.error(kind, message))

    def limit_param(self, ctx: Ctx, default: int, maximum: int) -> int:
        """The ``limit`` query parameter: ``default`` when absent, refused below 1, and
        above ``maximum`` cut to it or refused as the venue does (:attr:`limit_clamps`)."""
        limit = parse_int(ctx.params, "limit", self)
        if limit is None:
            return default
        if limit > maximum and self.limit_clamps:
            return maximum
        if limit <= 0 or limit > maximum:
            raise self.fail(self.limit_error, "limit")
        return limit


def fmt(units: int, decimals: int, out: int | None = None) -> str:
    """Render an integer in units of ``10**-decimals`` with ``out`` decimals (exact).

    >>> fmt(4351934, 2, 8)
    '43519.34000000'
    """
    if out is None:
        out = decimals
    if out < decimals:
        value = Decimal(units).scaleb(-decimals)
        return f"{value:.{out}f}"
    sign = "-" if units < 0 else ""
    q, r = divmod(abs(int(units)), 10**decimals)
    if out == 0:
        return f"{sign}{q}"
    frac = f"{r:0{decimals}d}" if decimals else ""
    return f"{sign}{q}.{frac}{'0' * (out - decimals)}"


def fmt_col(values: Any, decimals: int, out: int | None = None) -> list[str]:
    """:func:`fmt` over a column of integers (fast path for pages of rows)."""
    arr = np.asarray(values, dtype=np.int64)
    if out is None:
        out = decimals
    if len(arr) == 0:
        return []
    p = 10**decimals
    # A double carries ~15.9 significant digits: printing ``v / p`` with ``out``
    # decimals is exact while the value stays well below 10**(15 - out).
    if out >= decimals and int(arr.min()) >= 0 and int(arr.max()) < 4 * 10 ** (15 - out) * p:
        # Print only the ``decimals`` digits there are and append the zeros: the same
        # string, at half the cost of printing ``out`` digits.
        pad = "0" * (out - decimals)
        if pad and not decimals:
            pad = "." + pad
        pattern = f"%.{decimals}f{pad}"
        return [pattern % x for x in (arr / p).tolist()]
    return [fmt(v, decimals, out) for v in arr.tolist()]


def fmt_plain(units: int, decimals: int) -> str:
    """Shortest decimal form without trailing zeros (OKX/Bybit style ``"43300"``)."""
    s = fmt(units, decimals)
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


def fmt_plain_col(values: Any, decimals: int) -> list[str]:
    """:func:`fmt_plain` over a column."""
    return [s.rstrip("0").rstrip(".") if "." in s else s for s in fmt_col(values, decimals)]


def plain_candle_rows(raw: RawCandles, *more: list[str]) -> list[list[str]]:
    """Candle rows as OKX and Bybit write them: open time in ms, then open, high, low and
    close in plain decimals (:func:`fmt_plain`), then the venue's ``more`` columns."""
    a, decimals = raw.agg, raw.spec.price_decimals
    cols = zip(
        [str(t) for t in a.start.tolist()],
        fmt_plain_col(a.open, decimals),
        fmt_plain_col(a.high, decimals),
        fmt_plain_col(a.low, decimals),
        fmt_plain_col(a.close, decimals),
        *more,
        strict=True,
    )
    return [list(row) for row in cols]


def parse_int(params: Mapping[str, str], name: str, dialect: Dialect) -> int | None:
    """An integer query parameter, or the venue's bad-request error."""
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        value = float(raw)
    except ValueError:
        raise dialect.fail(
            "bad_request", f"Illegal characters found in parameter '{name}'"
        ) from None
    if not math.isfinite(value):
        raise dialect.fail("bad_request", f"Illegal characters found in parameter '{name}'")
    return int(value)


def find_market(
    market: SyntheticMarket, venue: str, match: Callable[[MarketSpec], bool]
) -> MarketSpec | None:
    """The first market listed on ``venue`` that ``match`` accepts (None: no such market)."""
    for symbol in market.symbols(venue):
        spec = market.spec(venue, symbol)
        if match(spec):
            return spec
    return None


def frame_or_none(timeframe: str, offset: int = 0) -> Frame | None:
    try:
        return Frame.parse(timeframe, offset)
    except ValueError:
        return None


# --------------------------------------------------------------------------- websockets


class WsFeed(abc.ABC):
    """One subscribed stream: turns the market's progress into the venue's messages."""

    #: The venue's name of the stream (``btcusdt@trade``, ``trades:BTC-USDT``).
    name: str

    @abc.abstractmethod
    def poll(self, now: int) -> list[Any]:
        """JSON-able data messages due since the last poll (``now`` is the emulator clock)."""


class CallbackFeed(WsFeed):
    """A feed whose messages come from a callable ``poll(now) -> list``."""

    def __init__(self, name: str, poll: Callable[[int], list[Any]]) -> None:
        self.name = name
        self._poll = poll

    def poll(self, now: int) -> list[Any]:
        return self._poll(now)


class WsSession(abc.ABC):
    """One websocket connection's protocol state: its subscriptions and replies.

    The server calls :meth:`open` once, :meth:`receive` for every text frame and
    :meth:`poll` every tick, never concurrently. Replies are JSON-able objects or
    ``str`` (sent verbatim, e.g. OKX's ``"pong"``).
    """

    def __init__(self, market: SyntheticMarket, venue: str, kind: str, conn_id: int) -> None:
        self.market = market
        self.venue = venue
        self.kind = kind
        self.conn_id = conn_id
        self.feeds: dict[str, WsFeed] = {}
        #: ``(action, stream, time)`` subscription events not yet collected by the server.
        self.events: list[tuple[str, str, int]] = []

    def open(self, now: int) -> list[Any]:
        """Messages sent right after the handshake (streams named in the URL)."""
        return []

    @abc.abstractmethod
    def receive(self, text: str, now: int) -> list[Any]:
        """Handle one text frame; returns the replies (acks, errors, pongs)."""

    def poll(self, now: int) -> list[Any]:
        """Data messages of every feed due at ``now``."""
        out: list[Any] = []
        for feed in list(self.feeds.values()):
            out += feed.poll(now)
        return out

    def add(self, feed: WsFeed, now: int) -> None:
        """Subscribe ``feed`` (a second subscription to the same stream is a no-op)."""
        if feed.name not in self.feeds:
            self.feeds[feed.name] = feed
            self.events.append(("subscribe", feed.name, now))

    def remove(self, name: str, now: int) -> None:
        """Unsubscribe a stream by name."""
        if self.feeds.pop(name, None) is not None:
            self.events.append(("unsubscribe", name, now))
