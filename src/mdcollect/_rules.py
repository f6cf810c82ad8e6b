"""Input rules: the checks every public entry point applies to what a user passes.

One place for them, so the library, the CLI, the HTTP service and its client
refuse the same values with the same words. Every failure is an
:class:`~mdcollect.InvalidRequest` naming the bad value and what is allowed, raised
before any network call or write. This module does not import ccxt: the remote
client uses it without the exchange stack. The one rule that needs the exchange
(which timeframes it serves, ``ExchangeInfo.check_timeframe`` in
:mod:`mdcollect.exchanges`) is built on :func:`check_timeframe` here and passed in by
the callers that have an exchange.

* dates and ranges: :func:`check_date`, :func:`date_range` (``ensure_data``'s days),
  :func:`required_range` (``load_ohlcv``'s times, by :func:`mdcollect._time.time_range`),
  :func:`check_bounds`;
* symbols: :func:`check_symbol`, :func:`check_symbols`;
* :func:`check_padding`, :func:`check_limit`, :func:`check_timeframe`,
  :func:`check_exchange_key`, :func:`check_choice`, :func:`check_choices`.

Numbers (options of collectors, clients, the service) are checked with
:func:`check_number`, or, on attrs options classes, with the validators
:func:`positive` and :func:`non_negative`::

    @frozen
    class Options:
        batch_rows: int = field(default=1000, validator=positive(integer=True))
        poll_lag: float = field(default=0.0, validator=non_negative())
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

import pandas as pd

from ._errors import InvalidRequest
from ._time import CCXT_TIMEFRAMES, Timeframe, end_ms, time_range, to_ms

__all__ = [
    "MAX_PADDING_DAYS",
    "MAX_SYMBOLS",
    "check_bounds",
    "check_choice",
    "check_choices",
    "check_date",
    "check_exchange_key",
    "check_limit",
    "check_number",
    "check_padding",
    "check_symbol",
    "check_symbols",
    "check_timeframe",
    "date_range",
    "digits_as_ms",
    "is_symbol_pattern",
    "non_negative",
    "positive",
    "required_range",
]

#: Symbols one call may name (``ensure_data``, the service's sync).
MAX_SYMBOLS: Final = 50
#: Days of padding at most: ten years, the service's bound from the start; indicators
#: need weeks, and a much larger number is a mistake that soon reaches before 1970.
MAX_PADDING_DAYS: Final = 3650
# ms bounds of years 1970..9999: pandas and the backends hold every value in between
_MAX_MS: Final = 253_402_300_799_999
_DATE_STR_RE: Final = re.compile(r"^(\d{8}|\d{4}-\d{2}-\d{2})$")
_DIGITS_RE: Final = re.compile(r"^[0-9]{1,16}$")
_EXCHANGE_RE: Final = re.compile(r"^[a-z][a-z0-9_]*$")

Validator = Callable[[Any, Any, Any], None]


def check_number(
    name: str,
    value: object,
    *,
    integer: bool = False,
    minimum: float = 0.0,
    strict: bool = True,
    maximum: float | None = None,
) -> None:
    """Refuse ``value`` unless it is a number above ``minimum`` (``>=`` when not ``strict``).

    ``bool`` and NaN are never numbers here; ``integer`` asks for an ``int``.

    >>> check_number("batch_rows", 0, integer=True)
    Traceback (most recent call last):
    ...
    mdcollect.InvalidRequest: batch_rows must be a positive integer, got 0
    >>> check_number("poll_lag", 0.0, strict=False)
    """
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    ok = isinstance(value, kinds) and not isinstance(value, bool) and not math.isnan(value)  # type: ignore[arg-type]
    if ok:
        number = float(value)  # type: ignore[arg-type]
        ok = number > minimum if strict else number >= minimum
        if maximum is not None:
            ok = ok and number <= maximum
    if not ok:
        raise InvalidRequest(
            f"{name} must be {_allowed(integer, minimum, strict, maximum)}, got {value!r}"
        )


def _allowed(integer: bool, minimum: float, strict: bool, maximum: float | None) -> str:
    noun = "integer" if integer else "number"
    low = f"{minimum:g}"
    if maximum is not None:
        return f"{'an' if integer else 'a'} {noun} in {'(' if strict else '['}{low}, {maximum:g}]"
    if minimum == 0:
        return f"a positive {noun}" if strict else f"{'an' if integer else 'a'} {noun} >= 0"
    return f"{'an' if integer else 'a'} {noun} {'>' if strict else '>='} {low}"


def positive(*, integer: bool = False) -> Validator:
    """An attrs validator: the field must be a number > 0 (an ``int`` with ``integer``)."""

    def validate(_instance: Any, attribute: Any, value: Any) -> None:
        check_number(attribute.name, value, integer=integer)

    return validate


def non_negative(*, integer: bool = False, maximum: float | None = None) -> Validator:
    """An attrs validator: the field must be a number >= 0 (at most ``maximum``)."""

    def validate(_instance: Any, attribute: Any, value: Any) -> None:
        check_number(attribute.name, value, integer=integer, strict=False, maximum=maximum)

    return validate


# -- choices and names --------------------------------------------------------------------


def check_choice(name: str, value: object, allowed: Iterable[str]) -> str:
    """``value`` if it is one of ``allowed``.

    >>> check_choice("kind", "ohlcv", ("ohlcv", "trades"))
    'ohlcv'
    """
    allowed = tuple(allowed)
    if not isinstance(value, str) or value not in allowed:
        listed = ", ".join(repr(a) for a in allowed)
        raise InvalidRequest(f"{name} {value!r} is not valid; allowed: {listed}")
    return value


def check_choices(name: str, values: object, allowed: Iterable[str]) -> tuple[str, ...]:
    """A non-empty list or tuple of ``allowed`` values, without repeats, in the order given.

    >>> check_choices("kinds", ["ohlcv", "funding", "ohlcv"], ("ohlcv", "trades", "funding"))
    ('ohlcv', 'funding')
    """
    allowed = tuple(allowed)
    listed = ", ".join(allowed)
    if not isinstance(values, list | tuple):
        raise InvalidRequest(
            f"{name} must be a non-empty list or tuple such as {allowed[:1]!r}, got "
            f"{values!r}; allowed: {listed}"
        )
    if not values:
        raise InvalidRequest(f"{name} must not be empty; allowed: {listed}")
    singular = name[:-1] if name.endswith("s") else name
    return tuple(dict.fromkeys(check_choice(singular, v, allowed) for v in values))


def check_exchange_key(value: object) -> str:
    """The syntax of an exchange key (lowercase letters, digits, ``_``); which keys
    exist is :func:`mdcollect.exchanges.exchange_info`'s to say.

    >>> check_exchange_key("binance_futures")
    'binance_futures'
    """
    if not isinstance(value, str) or not _EXCHANGE_RE.match(value):
        raise InvalidRequest(
            f"exchange {value!r} is not a valid exchange key; use a ccxt id such as "
            "'binance' or an alias such as 'binance_futures' (lowercase letters, digits, _)"
        )
    return value


# -- symbols ------------------------------------------------------------------------------


def check_symbol(value: object, *, max_length: int | None = None) -> str:
    """A ccxt unified symbol: a string containing ``/`` (at most ``max_length`` long).

    >>> check_symbol("BTC/USDT:USDT")
    'BTC/USDT:USDT'
    """
    if not isinstance(value, str) or "/" not in value or "\x00" in value:
        raise InvalidRequest(
            f"symbol {value!r} is not valid: symbols are ccxt unified symbols containing '/', "
            "such as 'BTC/USDT' or 'BTC/USDT:USDT'"
        )
    if max_length is not None and len(value) > max_length:
        raise InvalidRequest(
            f"symbol {value[:60]!r} is {len(value)} characters long; at most {max_length}"
        )
    return value


def is_symbol_pattern(value: str) -> bool:
    """True for a symbol pattern (``*/USDT:USDT``, ``BTC/USD?``, ``[BE]TC/USDT``): shell
    wildcards, which no ccxt symbol contains; a jobs file resolves them against the
    exchange's markets (:func:`mdcollect.load_jobs`).

    >>> is_symbol_pattern("*/USDT:USDT"), is_symbol_pattern("BTC/USDT")
    (True, False)
    """
    return any(c in value for c in "*?[")


def check_symbols(value: object, *, max_length: int | None = None) -> list[str]:
    """A non-empty list of at most :data:`MAX_SYMBOLS` distinct symbols, each as
    :func:`check_symbol`.

    >>> check_symbols(["BTC/USDT", "ETH/USDT"])
    ['BTC/USDT', 'ETH/USDT']
    """
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise InvalidRequest(
            f"symbols must be a non-empty list of symbols such as ['BTC/USDT'], got {value!r}"
        )
    if not value:
        raise InvalidRequest("symbols must be a non-empty list; got an empty list")
    if len(value) > MAX_SYMBOLS:
        raise InvalidRequest(f"at most {MAX_SYMBOLS} symbols per call; got {len(value)}")
    out = [check_symbol(s, max_length=max_length) for s in value]
    if len(set(out)) != len(out):
        dup = sorted({s for s in out if out.count(s) > 1})
        raise InvalidRequest(f"symbols are listed twice: {dup}")
    return out


# -- timeframes ---------------------------------------------------------------------------


def check_timeframe(
    value: object,
    allowed: Sequence[str] = CCXT_TIMEFRAMES,
    *,
    by: str | None = None,
    unserved: Mapping[str, str] | None = None,
) -> Timeframe:
    """``value`` parsed, if it is one of ``allowed`` exactly as written (ccxt's spelling);
    otherwise :class:`~mdcollect.InvalidRequest` listing them, with the likely meaning
    of a case mistake or a near miss. ``by`` names who serves ``allowed`` (an exchange),
    ``unserved`` says why some timeframe is left out.

    >>> check_timeframe("1h")
    Timeframe(amount=1, unit='h')
    >>> check_timeframe("1H")
    Traceback (most recent call last):
    InvalidRequest: timeframe '1H' is not supported (did you mean '1h'?); allowed: 1s, ...
    """
    if isinstance(value, str) and value in allowed:
        return Timeframe.parse(value)
    where = f" by {by}" if by else ""
    if not allowed:
        raise InvalidRequest(
            f"timeframe {value!r} is not supported{where}: it serves no candles through ccxt"
        )
    listed = ", ".join(allowed)
    if not isinstance(value, str):
        raise InvalidRequest(
            f"timeframe must be a string such as '1h', got {value!r}; "
            f"allowed{f' for {by}' if by else ''}: {listed}"
        )
    why = (unserved or {}).get(value)
    reason = f" ({why})" if why else ""
    close = _close_timeframe(value, allowed)
    hint = f" (did you mean {close!r}?)" if close else ""
    raise InvalidRequest(
        f"timeframe {value!r} is not supported{where}{reason}{hint}; allowed: {listed}"
    )


_UNIT_WORDS: Final = {
    "s": ("s", "sec", "secs", "second", "seconds"),
    "m": ("min", "mins", "minute", "minutes"),
    "h": ("h", "hr", "hrs", "hour", "hours"),
    "d": ("d", "day", "days"),
    "w": ("w", "wk", "week", "weeks"),
    "M": ("mo", "mon", "month", "months"),
}
_UNIT_OF_WORD: Final = {w: u for u, words in _UNIT_WORDS.items() for w in words}
_SPELLED_RE: Final = re.compile(r"\s*([0-9]+)\s*([A-Za-z]+)\s*")


def _close_timeframe(value: str, allowed: Sequence[str]) -> str | None:
    """The timeframe ``value`` most likely meant: the same with its unit spelt as ccxt
    does (``1H``, ``1 hour``), the same length in another unit (``60m``), else a near
    miss; never minutes for months (``1m`` and ``1M`` are both valid)."""
    m = _SPELLED_RE.fullmatch(value)
    if m is not None:
        amount, word = int(m.group(1)), m.group(2)
        # a lone m or M is already ccxt's spelling: minute or month, never a case mistake
        unit = word if word in ("m", "M") else _UNIT_OF_WORD.get(word.lower())
        if unit is not None:
            if f"{amount}{unit}" in allowed:
                return f"{amount}{unit}"
            if unit != "M" and amount > 0:
                length = Timeframe(amount, unit).ms
                same = [
                    t for t in allowed if not t.endswith("M") and Timeframe.parse(t).ms == length
                ]
                if same:
                    return same[0]
    close = difflib.get_close_matches(value, allowed, n=1, cutoff=0.6)
    if close and {close[0][-1:], value.strip()[-1:]} != {"m", "M"}:
        return close[0]
    return None


# -- dates and ranges ---------------------------------------------------------------------


def check_date(value: object, name: str, *, tz: object = None) -> int:
    """``YYYYMMDD``, ``YYYY-MM-DD``, a ``datetime``/``date`` or ``pd.Timestamp``: its ms
    (naive ones read in ``tz``, UTC by default).

    >>> check_date("20240101", "start_date")
    1704067200000
    """
    if isinstance(value, str):
        if not _DATE_STR_RE.match(value.strip()):
            raise InvalidRequest(f"{name} {value!r} is not a date; use YYYYMMDD or YYYY-MM-DD")
        return to_ms(value, name=name, tz=tz)
    if isinstance(value, dt.date | pd.Timestamp):
        return to_ms(value, name=name, tz=tz)
    # the words of the service too, where a JSON body can only carry the string
    raise InvalidRequest(
        f"{name} must be a string YYYYMMDD or YYYY-MM-DD (in Python also a date, datetime "
        f"or pd.Timestamp), got {value!r}"
    )


def date_range(
    start: object,
    end: object,
    *,
    names: tuple[str, str] = ("start_date", "end_date"),
    tz: object = None,
) -> tuple[int, int]:
    """``[start, end)`` in ms from two dates (:func:`check_date`), both required; a bare
    date as ``end`` counts whole (the one end rule of :func:`mdcollect._time.end_ms`);
    naive values are read in ``tz`` (UTC by default).

    >>> date_range("2024-01-01", "2024-01-01")
    (1704067200000, 1704153600000)
    """
    if start is None or end is None:
        raise InvalidRequest(f"{names[0]} and {names[1]} are required (YYYYMMDD or YYYY-MM-DD)")
    lo = check_date(start, names[0], tz=tz)
    check_date(end, names[1], tz=tz)  # the words of this rule for a bad end
    hi = end_ms(end, name=names[1], tz=tz)
    if hi <= lo:
        raise InvalidRequest(
            f"{names[1]} {end!r} is before {names[0]} {start!r} or at it; "
            "the range [start, end) would be empty"
        )
    return lo, hi


def required_range(
    start: object,
    end: object,
    *,
    names: tuple[str, str] = ("start", "end"),
    tz: object = None,
) -> tuple[int, int]:
    """``[start, end)`` in ms by :func:`mdcollect._time.time_range` (dates, times, ms),
    both required: a bare date as ``end`` means the end of that day; a time of day is
    an exclusive bound; naive values are read in ``tz`` (UTC by default)."""
    lo, hi = time_range(start, end, names=names, tz=tz)
    if lo is None or hi is None:
        raise InvalidRequest(
            f"{names[0]} and {names[1]} are required (dates or times), got {start!r}, {end!r}"
        )
    return lo, hi


def digits_as_ms(value: object) -> object:
    """A string of digits (but 8: ``YYYYMMDD``) or an integral float as the int of ms it
    writes, as a query string carries ms; anything else as given.

    >>> digits_as_ms("1704067200000"), digits_as_ms("20240101")
    (1704067200000, '20240101')
    """
    if isinstance(value, str) and _DIGITS_RE.match(value.strip()) and len(value.strip()) != 8:
        return int(value.strip())
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def check_bounds(ms: int, name: str, value: object) -> int:
    """``ms`` if it lies in the years 1970..9999, the times every store holds."""
    if not 0 <= ms <= _MAX_MS:
        raise InvalidRequest(f"{name} {value!r} is out of range (1970-01-01 .. 9999-12-31)")
    return ms


# -- counts -------------------------------------------------------------------------------


def check_padding(value: object, name: str = "padding_days") -> int:
    """Days of padding: an int from 0 to :data:`MAX_PADDING_DAYS`.

    >>> check_padding(-1)
    Traceback (most recent call last):
    ...
    mdcollect.InvalidRequest: padding_days must be an integer in [0, 3650], got -1
    """
    check_number(name, value, integer=True, strict=False, maximum=MAX_PADDING_DAYS)
    return value  # type: ignore[return-value]


def check_limit(value: object, *, default: int, maximum: int) -> int:
    """An int (or a string of digits, as in a query) from 1 to ``maximum``; ``None`` is
    ``default``.

    >>> check_limit("500", default=1000, maximum=10_000)
    500
    """
    if value is None:
        return default
    n: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    elif isinstance(value, str) and _DIGITS_RE.match(value):
        n = int(value)
    if n is None or not 1 <= n <= maximum:
        raise InvalidRequest(f"limit {value!r} is not valid; use an integer from 1 to {maximum}")
    return n
