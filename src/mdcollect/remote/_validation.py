"""The data-collection API's input rules, shared by the client (before sending) and the
service (before doing anything).

The rules that :func:`mdcollect.ensure_data` already enforces (symbols lists, dates,
timeframes supported by the exchange, padding) are reused from :mod:`mdcollect.ensure`;
this module adds the API's own bounds: a symbol is at most 50 characters, ``limit`` is
1..10000, ``exchange`` is one of an allowed set. Every failure is an
:class:`~mdcollect.InvalidRequest` whose message names the bad value.

``mdcollect.ensure`` imports ccxt (about 1.5 s), so it is imported on first use: a
Lambda proxy that only forwards ``health`` never pays for it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from attrs import frozen

from .._errors import InvalidRequest
from .._time import DAY, DEFAULT_PADDING_DAYS, check_ms, end_ms, format_ms, to_ms

__all__ = [
    "DEFAULT_EXCHANGE",
    "DEFAULT_EXCHANGES",
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "MAX_SYMBOLS",
    "MAX_SYMBOL_LENGTH",
    "TIMEFRAME_PATTERN",
    "OhlcvQuery",
    "SyncRequest",
    "check_exchange",
    "check_limit",
    "check_symbol",
    "ohlcv_query",
    "sync_request",
]

#: Exchanges the service allows unless configured otherwise.
DEFAULT_EXCHANGES: Final = ("binance_futures", "bybit_futures", "okx_futures")
DEFAULT_EXCHANGE: Final = "binance_futures"
DEFAULT_TIMEFRAME: Final = "1h"
MAX_SYMBOL_LENGTH: Final = 50
MAX_SYMBOLS: Final = 50
DEFAULT_LIMIT: Final = 1000
MAX_LIMIT: Final = 10_000
#: The form of a timeframe in the OpenAPI document; which ones an exchange serves is
#: checked by :func:`check_timeframe`.
TIMEFRAME_PATTERN: Final = r"^[0-9]+[smhdwM]$"
DATE_PATTERN: Final = r"^(\d{8}|\d{4}-\d{2}-\d{2})$"
MAX_PADDING_DAYS: Final = 3650
# ms bounds of years 1970..9999: pandas and the backends hold every value in between
_MAX_MS: Final = 253_402_300_799_999
_INT_RE: Final = re.compile(r"^[0-9]{1,16}$")


@frozen
class OhlcvQuery:
    """A checked ``GET /api/v1/ohlcv``: ``[start, end)`` in ms (``None`` is open)."""

    symbol: str
    timeframe: str
    limit: int
    start: int | None
    end: int | None
    exchange: str

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
        return out


@frozen
class SyncRequest:
    """A checked ``POST /api/v1/sync`` body; dates are ``YYYY-MM-DD``; ``padding_days``
    more days before ``start_date`` are ensured (0 when the client padded already)."""

    symbols: tuple[str, ...]
    timeframe: str
    start_date: str
    end_date: str
    exchange: str
    padding_days: int

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
        }


def check_exchange(value: object, allowed: Iterable[str] = DEFAULT_EXCHANGES) -> str:
    """One of ``allowed``.

    >>> check_exchange("okx_futures")
    'okx_futures'
    """
    allowed = tuple(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise InvalidRequest(f"exchange {value!r} is not allowed; allowed: {', '.join(allowed)}")
    return value


def check_symbol(value: object) -> str:
    """A string of at most 50 characters containing ``/``.

    >>> check_symbol("BTC/USDT:USDT")
    'BTC/USDT:USDT'
    """
    if not isinstance(value, str) or "/" not in value or "\x00" in value:
        raise InvalidRequest(
            f"symbol {value!r} is not valid: symbols are ccxt unified symbols containing '/', "
            "such as 'BTC/USDT' or 'BTC/USDT:USDT'"
        )
    if len(value) > MAX_SYMBOL_LENGTH:
        raise InvalidRequest(
            f"symbol {value[:60]!r} is {len(value)} characters long; at most {MAX_SYMBOL_LENGTH}"
        )
    return value


def check_symbols(value: object) -> tuple[str, ...]:
    """A non-empty list of at most 50 distinct symbols (each as :func:`check_symbol`)."""
    from ..ensure import check_symbols as ensure_symbols

    return tuple(check_symbol(s) for s in ensure_symbols(value))


def check_timeframe(value: object, exchange: str | None = None) -> str:
    """One of the exchange's timeframes (``1m``, ``1h``, ``1w``, calendar ``1M``...), by
    the library's one rule (:func:`mdcollect.ensure.check_timeframe`); the default
    exchange's when none is given."""
    from ..ensure import check_timeframe as ensure_timeframe

    return str(ensure_timeframe(value, exchange or DEFAULT_EXCHANGE))


def check_limit(value: object) -> int:
    """An int (or a string of digits, as in a query) from 1 to 10000; ``None`` is 1000.

    >>> check_limit("500"), check_limit(None)
    (500, 1000)
    """
    if value is None:
        return DEFAULT_LIMIT
    n: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    elif isinstance(value, str) and _INT_RE.match(value):
        n = int(value)
    if n is None or not 1 <= n <= MAX_LIMIT:
        raise InvalidRequest(f"limit {value!r} is not valid; use an integer from 1 to {MAX_LIMIT}")
    return n


def time_bound(value: object, name: str, *, is_end: bool = False) -> int | None:
    """ms from an int, a digits string (ms), a date or an ISO 8601 time; ``None`` stays.

    A bare date as an end bound means the end of that day (the rule of
    :func:`mdcollect.load_ohlcv`); a time of day is exclusive.
    """
    if value is None:
        return None
    if isinstance(value, str) and _INT_RE.match(value.strip()) and len(value.strip()) != 8:
        ms = int(value.strip())  # 8 digits is YYYYMMDD, not ms
    elif isinstance(value, float) and not isinstance(value, bool) and value.is_integer():
        ms = int(value)
    else:
        ms = end_ms(value, name=name) if is_end else to_ms(value, name=name)
    check_ms(ms, name)  # 1704067200 is a 2024 time in seconds, not a 1970 one in ms
    if not 0 <= ms <= _MAX_MS:
        raise InvalidRequest(f"{name} {value!r} is out of range (1970-01-01 .. 9999-12-31)")
    return ms


def format_date(ms: int) -> str:
    """``YYYY-MM-DD`` of a ms timestamp (UTC)."""
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d")


def check_date(value: object, name: str) -> int:
    """``YYYYMMDD``, ``YYYY-MM-DD``, a ``date``/``datetime``: ms of that day's start."""
    from ..ensure import check_date as ensure_date

    ms = ensure_date(value, name)
    if not 0 <= ms <= _MAX_MS:
        raise InvalidRequest(f"{name} {value!r} is out of range (1970-01-01 .. 9999-12-31)")
    return ms - ms % DAY


def ohlcv_query(
    symbol: object,
    timeframe: object = DEFAULT_TIMEFRAME,
    limit: object = None,
    start: object = None,
    end: object = None,
    exchange: object = DEFAULT_EXCHANGE,
    *,
    allowed_exchanges: Iterable[str] = DEFAULT_EXCHANGES,
) -> OhlcvQuery:
    """Check the inputs of a candles request (client and service).

    >>> ohlcv_query("BTC/USDT:USDT", "1h", 24, "2024-01-01").params()["start"]
    1704067200000
    """
    ex = check_exchange(exchange, allowed_exchanges)
    sym = check_symbol(symbol)
    tf = check_timeframe(timeframe, ex)
    n = check_limit(limit)
    lo = time_bound(start, "start")
    hi = time_bound(end, "end", is_end=True)
    if lo is not None and hi is not None and hi <= lo:
        raise InvalidRequest(
            f"end {end!r} ({format_ms(hi)}) must be after start {start!r} ({format_ms(lo)})"
        )
    return OhlcvQuery(sym, tf, n, lo, hi, ex)


def sync_request(
    symbols: object,
    timeframe: object = DEFAULT_TIMEFRAME,
    start_date: object = None,
    end_date: object = None,
    exchange: object = DEFAULT_EXCHANGE,
    padding_days: object = DEFAULT_PADDING_DAYS,
    *,
    allowed_exchanges: Iterable[str] = DEFAULT_EXCHANGES,
    pad_client_side: bool = False,
) -> SyncRequest:
    """Check the inputs of an ensure-data request (client and service).

    With ``pad_client_side`` (the client), the start moves back by ``padding_days``
    and the request carries no padding; the service receives the padded dates.

    >>> sync_request(["BTC/USDT:USDT"], "1h", "20240201", "20240228", padding_days=30,
    ...              pad_client_side=True).body()["start_date"]
    '2024-01-02'
    """
    from ..ensure import check_padding

    ex = check_exchange(exchange, allowed_exchanges)
    syms = check_symbols(symbols)
    tf = check_timeframe(timeframe, ex)
    if start_date is None or end_date is None:
        raise InvalidRequest("start_date and end_date are required (YYYYMMDD or YYYY-MM-DD)")
    lo = check_date(start_date, "start_date")
    hi = check_date(end_date, "end_date")
    if hi < lo:
        raise InvalidRequest(f"end_date {end_date!r} is before start_date {start_date!r}")
    pad = check_padding(padding_days)
    if pad > MAX_PADDING_DAYS:
        raise InvalidRequest(f"padding_days {pad} is too large; at most {MAX_PADDING_DAYS}")
    if pad_client_side:
        lo, pad = max(0, lo - pad * DAY), 0
    return SyncRequest(syms, tf, format_date(lo), format_date(hi), ex, pad)


def sync_request_from_json(
    body: object, *, allowed_exchanges: Iterable[str] = DEFAULT_EXCHANGES
) -> SyncRequest:
    """Check a decoded ``POST /api/v1/sync`` body (the service)."""
    if not isinstance(body, Mapping):
        raise InvalidRequest(
            f"the body must be a JSON object with symbols, timeframe, start_date, end_date; "
            f"got {type(body).__name__}"
        )
    known = {"symbols", "timeframe", "start_date", "end_date", "exchange", "padding_days"}
    unknown = sorted(str(k)[:50] for k in body if k not in known)
    if unknown:
        raise InvalidRequest(f"unknown field(s) {unknown}; allowed: {', '.join(sorted(known))}")
    if "symbols" not in body:
        raise InvalidRequest("symbols is required: a non-empty list such as ['BTC/USDT:USDT']")
    for name in ("start_date", "end_date"):
        if not isinstance(body.get(name), str):
            raise InvalidRequest(
                f"{name} must be a string YYYYMMDD or YYYY-MM-DD, got {body.get(name)!r}"
            )
    return sync_request(
        body["symbols"],
        body.get("timeframe", DEFAULT_TIMEFRAME),
        body["start_date"],
        body["end_date"],
        body.get("exchange", DEFAULT_EXCHANGE),
        body.get("padding_days", DEFAULT_PADDING_DAYS),
        allowed_exchanges=allowed_exchanges,
    )
