"""The ``/api/v1`` contract: what the data-collection service accepts and its client sends.

Both sides import this one module (the service :mod:`mdcollect.service` before doing
anything, the client :mod:`mdcollect.remote` before sending), so they cannot drift:
the limits, the defaults, the patterns of the OpenAPI document, and the checked
request types :class:`OhlcvQuery`, :class:`DataQuery` and :class:`SyncRequest`. The checks themselves are
the library's input rules (:mod:`mdcollect._rules`), with the API's own bounds on top:
a symbol is at most 50 characters, ``limit`` is 1..10000, ``exchange`` is one of an
allowed set, times lie in 1970..9999.

Which timeframes an exchange serves needs ccxt, which this module does not import (a
Lambda proxy that only forwards ``health`` never pays for it): the caller that has the
exchange stack (the service) passes that rule in as ``check_timeframe``; without it,
a timeframe must be one of ccxt's (:data:`mdcollect._time.CCXT_TIMEFRAMES`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from attrs import frozen

from ._errors import InvalidRequest
from ._keys import (
    CANDLE_KINDS,
    HISTORY_KINDS,
    KINDS,
    TIMEFRAME_KINDS,
    CandleKind,
    DatasetKey,
    HistoryKind,
    Kind,
)
from ._rules import (
    MAX_SYMBOLS,
    check_bounds,
    check_choice,
    check_choices,
    check_exchange_key,
    check_limit,
    check_padding,
    check_symbol,
    check_symbols,
    date_range,
    digits_as_ms,
)
from ._rules import check_timeframe as ccxt_timeframe
from ._time import DAY, DEFAULT_PADDING_DAYS, Timeframe, time_range

__all__ = [
    "AUDIT_PARAMS",
    "DATE_PATTERN",
    "DEFAULT_EXCHANGE",
    "DEFAULT_EXCHANGES",
    "DEFAULT_LIMIT",
    "DEFAULT_TIMEFRAME",
    "MAX_AUDIT_KEYS",
    "MAX_LIMIT",
    "MAX_SYMBOLS",
    "MAX_SYMBOL_LENGTH",
    "ROW_KINDS",
    "TIMEFRAME_PATTERN",
    "AuditQuery",
    "DataQuery",
    "DatasetsQuery",
    "OhlcvQuery",
    "SyncRequest",
    "TimeframeRule",
    "audit_query",
    "check_exchange",
    "data_query",
    "datasets_query",
    "format_date",
    "ohlcv_query",
    "sync_request",
    "sync_request_from_json",
]

#: Exchanges the service allows unless configured otherwise.
DEFAULT_EXCHANGES: Final = ("binance_futures", "bybit_futures", "okx_futures")
DEFAULT_EXCHANGE: Final = "binance_futures"
DEFAULT_TIMEFRAME: Final = "1h"
MAX_SYMBOL_LENGTH: Final = 50
DEFAULT_LIMIT: Final = 1000
MAX_LIMIT: Final = 10_000
#: The form of a timeframe in the OpenAPI document; which ones an exchange serves is
#: checked by the ``check_timeframe`` rule.
TIMEFRAME_PATTERN: Final = r"^[0-9]+[smhdwM]$"
DATE_PATTERN: Final = r"^(\d{8}|\d{4}-\d{2}-\d{2})$"
#: The kinds of history without a timeframe (``GET /api/v1/data``); the candle kinds
#: are read from ``GET /api/v1/ohlcv?kind=...``.
ROW_KINDS: Final[tuple[HistoryKind, ...]] = tuple(
    k for k in HISTORY_KINDS if k not in TIMEFRAME_KINDS
)

#: ``check_timeframe(timeframe, exchange)``: the timeframe parsed if ``exchange`` serves
#: it, else :class:`~mdcollect.InvalidRequest` (``ExchangeInfo.check_timeframe``).
TimeframeRule = Callable[[object, str], Timeframe]


def _ccxt_rule(timeframe: object, exchange: str) -> Timeframe:
    return ccxt_timeframe(timeframe)


@frozen
class OhlcvQuery:
    """A checked ``GET /api/v1/ohlcv``: ``[start, end)`` in ms (``None`` is open); ``kind``
    is which price's candles (``ohlcv``, or ``mark``, ``index``, ``premium``)."""

    symbol: str
    timeframe: str
    limit: int
    start: int | None
    end: int | None
    exchange: str
    kind: CandleKind = "ohlcv"

    def params(self) -> dict[str, str | int]:
        """Query parameters as the client sends them."""
        out: dict[str, str | int] = {
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "limit": self.limit,
            "exchange": self.exchange,
        }
        if self.start is not None:
            out["start"] = self.start
        if self.end is not None:
            out["end"] = self.end
        if self.kind != "ohlcv":  # sent when not the default, as sync's kinds
            out["kind"] = self.kind
        return out


@frozen
class DataQuery:
    """A checked ``GET /api/v1/data``: stored rows of a kind without a timeframe
    (:data:`ROW_KINDS`: ``trades``, ``funding``...) over ``[start, end)`` in ms."""

    kind: HistoryKind
    symbol: str
    limit: int
    start: int | None
    end: int | None
    exchange: str

    def params(self) -> dict[str, str | int]:
        """Query parameters as the client sends them."""
        out: dict[str, str | int] = {
            "kind": self.kind,
            "symbol": self.symbol,
            "limit": self.limit,
            "exchange": self.exchange,
        }
        if self.start is not None:
            out["start"] = self.start
        if self.end is not None:
            out["end"] = self.end
        return out


@frozen
class SyncRequest:
    """A checked ``POST /api/v1/sync`` body; dates are ``YYYY-MM-DD``; ``padding_days``
    more days before ``start_date`` are ensured (0 when the client padded already);
    ``kinds`` of history, as ``ensure_data(kinds=...)``."""

    symbols: tuple[str, ...]
    timeframe: str
    start_date: str
    end_date: str
    exchange: str
    padding_days: int
    kinds: tuple[HistoryKind, ...] = ("ohlcv",)

    def body(self) -> dict[str, Any]:
        """The JSON body as the client sends it."""
        return {
            "symbols": list(self.symbols),
            "timeframe": self.timeframe,
            "start_date": self.start_date,
            "end_date": self.end_date,
            "exchange": self.exchange,
            # always sent: the service pads a body without it by DEFAULT_PADDING_DAYS
            "padding_days": self.padding_days,
            # sent when not the default, so a service without kinds still understands it
            **({"kinds": list(self.kinds)} if self.kinds != ("ohlcv",) else {}),
        }

    @property
    def days(self) -> int:
        """Days the sync ensures, padding included.

        >>> sync_request(["BTC/USDT:USDT"], "1h", "2024-02-01", "2024-02-02").days
        32
        """
        lo, hi = date_range(self.start_date, self.end_date)
        return (hi - lo) // DAY + self.padding_days


def check_exchange(value: object, allowed: Iterable[str] = DEFAULT_EXCHANGES) -> str:
    """One of ``allowed``.

    >>> check_exchange("okx_futures")
    'okx_futures'
    """
    allowed = tuple(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise InvalidRequest(f"exchange {value!r} is not allowed; allowed: {', '.join(allowed)}")
    return value


def format_date(ms: int) -> str:
    """``YYYY-MM-DD`` of a ms timestamp (UTC)."""
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d")


def ohlcv_query(
    symbol: object,
    timeframe: object = DEFAULT_TIMEFRAME,
    limit: object = None,
    start: object = None,
    end: object = None,
    exchange: object = DEFAULT_EXCHANGE,
    kind: object = "ohlcv",
    *,
    allowed_exchanges: Iterable[str] = DEFAULT_EXCHANGES,
    check_timeframe: TimeframeRule = _ccxt_rule,
) -> OhlcvQuery:
    """Check the inputs of a candles request (client and service).

    ``start`` and ``end`` are ms (an int, or digits as in a query), dates or ISO 8601
    times, by the library's one rule (:func:`mdcollect._time.time_range`); ``kind`` is
    one of the candle kinds (:data:`~mdcollect._keys.CANDLE_KINDS`).

    >>> ohlcv_query("BTC/USDT:USDT", "1h", 24, "2024-01-01").params()["start"]
    1704067200000
    >>> ohlcv_query("BTC/USDT:USDT", "1h", kind="mark").params()["kind"]
    'mark'
    """
    candles: CandleKind = check_choice("kind", kind, CANDLE_KINDS)  # type: ignore[assignment]
    ex = check_exchange(exchange, allowed_exchanges)
    sym = check_symbol(symbol, max_length=MAX_SYMBOL_LENGTH)
    tf = check_timeframe(timeframe, ex)
    n = check_limit(limit, default=DEFAULT_LIMIT, maximum=MAX_LIMIT)
    lo, hi = _bounds(start, end)
    return OhlcvQuery(sym, str(tf), n, lo, hi, ex, candles)


def data_query(
    kind: object,
    symbol: object,
    limit: object = None,
    start: object = None,
    end: object = None,
    exchange: object = DEFAULT_EXCHANGE,
    *,
    allowed_exchanges: Iterable[str] = DEFAULT_EXCHANGES,
) -> DataQuery:
    """Check the inputs of a request for stored rows of a kind without a timeframe
    (client and service): ``kind`` one of :data:`ROW_KINDS`, the rest as
    :func:`ohlcv_query`.

    >>> data_query("funding", "BTC/USDT:USDT", 3, "2024-01-01").params()["start"]
    1704067200000
    """
    rows: HistoryKind = check_choice("kind", kind, ROW_KINDS)  # type: ignore[assignment]
    ex = check_exchange(exchange, allowed_exchanges)
    sym = check_symbol(symbol, max_length=MAX_SYMBOL_LENGTH)
    n = check_limit(limit, default=DEFAULT_LIMIT, maximum=MAX_LIMIT)
    lo, hi = _bounds(start, end)
    return DataQuery(rows, sym, n, lo, hi, ex)


def _bounds(start: object, end: object) -> tuple[int | None, int | None]:
    lo, hi = time_range(digits_as_ms(start), digits_as_ms(end))
    if lo is not None:
        check_bounds(lo, "start", start)
    if hi is not None:
        check_bounds(hi, "end", end)
    return lo, hi


def sync_request(
    symbols: object,
    timeframe: object = DEFAULT_TIMEFRAME,
    start_date: object = None,
    end_date: object = None,
    exchange: object = DEFAULT_EXCHANGE,
    padding_days: object = DEFAULT_PADDING_DAYS,
    kinds: object = ("ohlcv",),
    *,
    allowed_exchanges: Iterable[str] = DEFAULT_EXCHANGES,
    check_timeframe: TimeframeRule = _ccxt_rule,
    pad_client_side: bool = False,
) -> SyncRequest:
    """Check the inputs of an ensure-data request (client and service), by the rules of
    :func:`mdcollect.ensure_data`: the request covers the days from ``start_date``
    through ``end_date``.

    With ``pad_client_side`` (the client), the start moves back by ``padding_days``
    and the request carries no padding; the service receives the padded dates.

    >>> sync_request(["BTC/USDT:USDT"], "1h", "20240201", "20240228", padding_days=30,
    ...              pad_client_side=True).body()["start_date"]
    '2024-01-02'
    """
    wanted: tuple[HistoryKind, ...] = check_choices("kinds", kinds, HISTORY_KINDS)  # type: ignore[assignment]
    ex = check_exchange(exchange, allowed_exchanges)
    syms = check_symbols(symbols, max_length=MAX_SYMBOL_LENGTH)
    tf = check_timeframe(timeframe, ex)
    lo, hi = date_range(start_date, end_date)
    first, last = lo - lo % DAY, (hi - 1) - (hi - 1) % DAY  # the days [lo, hi) touches
    check_bounds(first, "start_date", start_date)
    check_bounds(last, "end_date", end_date)
    pad = check_padding(padding_days)
    if pad_client_side:
        first, pad = max(0, first - pad * DAY), 0
    return SyncRequest(tuple(syms), str(tf), format_date(first), format_date(last), ex, pad, wanted)


def sync_request_from_json(
    body: object,
    *,
    allowed_exchanges: Iterable[str] = DEFAULT_EXCHANGES,
    check_timeframe: TimeframeRule = _ccxt_rule,
) -> SyncRequest:
    """Check a decoded ``POST /api/v1/sync`` body (the service)."""
    if not isinstance(body, Mapping):
        raise InvalidRequest(
            f"the body must be a JSON object with symbols, timeframe, start_date, end_date; "
            f"got {type(body).__name__}"
        )
    known = {"symbols", "timeframe", "start_date", "end_date", "exchange", "padding_days", "kinds"}
    unknown = sorted(str(k)[:50] for k in body if k not in known)
    if unknown:
        raise InvalidRequest(f"unknown field(s) {unknown}; allowed: {', '.join(sorted(known))}")
    if "symbols" not in body:
        raise InvalidRequest("symbols is required: a non-empty list such as ['BTC/USDT:USDT']")
    return sync_request(
        body["symbols"],
        body.get("timeframe", DEFAULT_TIMEFRAME),
        body.get("start_date"),
        body.get("end_date"),
        body.get("exchange", DEFAULT_EXCHANGE),
        body.get("padding_days", DEFAULT_PADDING_DAYS),
        body.get("kinds", ["ohlcv"]),
        allowed_exchanges=allowed_exchanges,
        check_timeframe=check_timeframe,
    )


@frozen
class DatasetsQuery:
    """A checked ``GET /api/v1/datasets``: the catalog's filters (``None``: any)."""

    exchange: str | None = None
    symbol: str | None = None
    kind: Kind | None = None

    def params(self) -> dict[str, str]:
        """Query parameters as the client sends them (the filters given)."""
        given = {"exchange": self.exchange, "symbol": self.symbol, "kind": self.kind}
        return {k: v for k, v in given.items() if v is not None}


def datasets_query(
    exchange: object = None, symbol: object = None, kind: object = None
) -> DatasetsQuery:
    """Check the filters of a catalog request (client and service). Any exchange key is
    allowed (a store may hold exchanges the service does not fetch from).

    >>> datasets_query(exchange="binance", kind="ohlcv").params()
    {'exchange': 'binance', 'kind': 'ohlcv'}
    """
    ex = None if exchange is None else check_exchange_key(exchange)
    sym = None if symbol is None else check_symbol(symbol, max_length=MAX_SYMBOL_LENGTH)
    k: Kind | None = None if kind is None else check_choice("kind", kind, KINDS)  # type: ignore[assignment]
    return DatasetsQuery(ex, sym, k)


# -- GET/POST /api/v1/audit ------------------------------------------------------------------

#: The query parameters of ``/api/v1/audit`` (``key`` may repeat).
AUDIT_PARAMS: Final = ("key", "start", "end", "repair")
#: Dataset keys one audit request names at most (none: every stored dataset).
MAX_AUDIT_KEYS: Final = 100
_TRUE: Final = ("true", "1", "yes")
_FALSE: Final = ("false", "0", "no")


@frozen
class AuditQuery:
    """A checked ``/api/v1/audit`` query: dataset keys in their string form (none: every
    stored dataset), ``[start, end)`` in ms (``None`` is open), and whether to repair."""

    keys: tuple[str, ...]
    start: int | None
    end: int | None
    repair: bool

    def params(self) -> list[tuple[str, str | int]]:
        """Query parameters as a client sends them."""
        out: list[tuple[str, str | int]] = [("key", k) for k in self.keys]
        if self.start is not None:
            out.append(("start", self.start))
        if self.end is not None:
            out.append(("end", self.end))
        if self.repair:
            out.append(("repair", "true"))
        return out


def audit_query(
    keys: object = (), start: object = None, end: object = None, repair: object = False
) -> AuditQuery:
    """Check the inputs of an audit request: ``keys`` are dataset key strings
    (``binance:ohlcv:1m:BTC/USDT``), at most :data:`MAX_AUDIT_KEYS`; ``start`` and ``end``
    as in :func:`ohlcv_query`; ``repair`` a bool or ``true``/``false``.

    >>> audit_query(["binance:ohlcv:1m:BTC/USDT"], "2024-01-01", repair="true").repair
    True
    """
    if isinstance(keys, str):
        keys = [keys]
    if not isinstance(keys, list | tuple):
        raise InvalidRequest(f"key must be dataset key strings, got {keys!r}")
    if len(keys) > MAX_AUDIT_KEYS:
        raise InvalidRequest(f"at most {MAX_AUDIT_KEYS} keys per audit, got {len(keys)}")
    names = tuple(dict.fromkeys(str(DatasetKey.parse(k)) for k in keys))
    if isinstance(repair, str) and repair.strip().lower() in _TRUE + _FALSE:
        repair = repair.strip().lower() in _TRUE
    if not isinstance(repair, bool):
        raise InvalidRequest(f"repair {str(repair)[:50]!r} is not valid; allowed: true, false")
    lo, hi = time_range(digits_as_ms(start), digits_as_ms(end))
    if lo is not None:
        check_bounds(lo, "start", start)
    if hi is not None:
        check_bounds(hi, "end", end)
    return AuditQuery(names, lo, hi, repair)


# -- POST /api/v1/collectors/{name}/{action} ---------------------------------------------

#: What ``POST /api/v1/collectors/{name}/{action}`` may do to a running collector.
COLLECTOR_ACTIONS: Final = ("restart", "enable", "disable")
#: Characters of a collector name at most (names list the symbols they collect).
MAX_COLLECTOR_NAME: Final = 500


@frozen
class CollectorAction:
    """A checked control request: the collector's ``name`` and the ``action``."""

    name: str
    action: str


def collector_action(name: object, action: object) -> CollectorAction:
    """Check a control request of a collector (the service; whether the name is one of
    its collectors is the service's to say: 404 naming those it runs).

    >>> collector_action("binance:trades:BTC/USDT", "restart")
    CollectorAction(name='binance:trades:BTC/USDT', action='restart')
    """
    act = check_choice("action", action, COLLECTOR_ACTIONS)
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_COLLECTOR_NAME:
        shown = name[:50] + "..." if isinstance(name, str) and len(name) > 50 else name
        raise InvalidRequest(
            f"collector name {shown!r} is not valid; a collector's name, at most "
            f"{MAX_COLLECTOR_NAME} characters, e.g. 'binance:trades:BTC/USDT'"
        )
    return CollectorAction(name, act)
