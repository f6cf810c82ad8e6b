"""Time in mdcollect: ``int`` milliseconds since the Unix epoch, UTC, everywhere inside.

The one place for time: the ms constants (:data:`SECOND` .. :data:`WEEK`),
:class:`Timeframe` (parses ccxt's timeframe strings and aligns timestamps, weeks
to Monday, for one timestamp or a numpy array of them), :func:`to_ms` (user-facing
dates, ``datetime`` and ``pd.Timestamp`` to ms), and the conversions between ms
and the tz-aware UTC ``timestamp`` index users get (:func:`ms_to_index`,
:func:`index_ms`, :func:`ms_to_timestamp`). Other modules import these rather
than multiplying by ``1_000_000`` or calling ``pd.to_datetime(..., unit="ms")``.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from typing import Final

import numpy as np
import pandas as pd
from attrs import frozen
from numpy.typing import ArrayLike

from ._errors import InvalidRequest

__all__ = [
    "CCXT_TIMEFRAMES",
    "DAY",
    "DEFAULT_PADDING_DAYS",
    "HOUR",
    "MAX_INDEX_MS",
    "MINUTE",
    "MIN_INDEX_MS",
    "MIN_PLAUSIBLE_MS",
    "NS_PER_MS",
    "SECOND",
    "WEEK",
    "Timeframe",
    "check_ms",
    "end_ms",
    "format_ms",
    "index_ms",
    "is_bare_date",
    "ms_to_index",
    "ms_to_seconds",
    "ms_to_timestamp",
    "now_ms",
    "time_range",
    "time_zone",
    "to_ms",
]

#: Lengths in ms.
SECOND: Final = 1_000
MINUTE: Final = 60 * SECOND
HOUR: Final = 60 * MINUTE
DAY: Final = 24 * HOUR
WEEK: Final = 7 * DAY
#: Nanoseconds (pandas' and Arrow's unit) per ms.
NS_PER_MS: Final = 1_000_000
# 1970-01-01 was a Thursday; exchanges start weeks on Monday (1970-01-05).
_WEEK_ORIGIN: Final = 4 * DAY

#: The ms a ``datetime64[ns]`` index can hold: pandas' ``Timestamp.min`` .. ``max``,
#: years 1677 to 2262 (whole ms inside them).
MIN_INDEX_MS: Final = -(-pd.Timestamp.min.value // NS_PER_MS)
MAX_INDEX_MS: Final = pd.Timestamp.max.value // NS_PER_MS

#: Days ensured before a requested start by default (startup candles for indicators):
#: the one default of ``ensure_data``, ``mdcollect ensure``, the service and its client.
DEFAULT_PADDING_DAYS: Final = 30

#: A number of ms below this (1973-03-03 as ms, year 5138 as seconds) is taken for epoch
#: *seconds* passed where ms are expected, and refused rather than read as a 1970 time.
MIN_PLAUSIBLE_MS: Final = 100_000_000_000

_UNIT_MS: Final = {"s": SECOND, "m": MINUTE, "h": HOUR, "d": DAY, "w": WEEK}
#: The timeframes ccxt's unified API knows (exchanges support a subset).
CCXT_TIMEFRAMES: Final = (
    "1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h",
    "1d", "3d", "1w", "1M",
)  # fmt: skip
_TF_RE: Final = re.compile(r"([1-9][0-9]*)([smhdwM])")


@frozen(order=True)
class Timeframe:
    """A candle length such as ``1m`` or ``4h`` (ccxt's notation).

    Fixed timeframes are ``N`` seconds, minutes, hours, days or weeks; they align
    to the Unix epoch (weeks to Monday 00:00 UTC, as exchanges do). ``1M`` is the
    calendar month: it aligns to the first of the month and has no fixed
    :attr:`ms`, which raises rather than approximating.

    >>> tf = Timeframe.parse("15m")
    >>> tf.ms
    900000
    >>> tf.floor(1_700_000_123_456), tf.ceil(1_700_000_123_456)
    (1700000100000, 1700001000000)
    """

    amount: int
    unit: str

    @classmethod
    def parse(cls, value: str | Timeframe) -> Timeframe:
        """Parse ``"1m"``, ``"4h"``, ``"1d"``, ``"1M"``...; raise :class:`InvalidRequest` otherwise."""
        if isinstance(value, Timeframe):
            return value
        if not isinstance(value, str):
            raise InvalidRequest(f"timeframe must be a string such as '1m' or '1h', got {value!r}")
        # fullmatch: "$" alone would let "1h\n" through
        m = _TF_RE.fullmatch(value)
        if m is None:
            raise InvalidRequest(
                f"timeframe {value!r} is not valid; use a number and a unit s, m, h, d, w "
                f"or M, e.g. {', '.join(CCXT_TIMEFRAMES)}"
            )
        amount, unit = int(m.group(1)), m.group(2)
        if unit == "M" and amount != 1:
            raise InvalidRequest(
                f"timeframe {value!r} is not supported: only the calendar month '1M' is"
            )
        return cls(amount, unit)

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"

    @property
    def is_calendar(self) -> bool:
        """True for ``1M``, whose length varies with the month."""
        return self.unit == "M"

    @property
    def ms(self) -> int:
        """Length in milliseconds; :class:`InvalidRequest` for the calendar month."""
        if self.is_calendar:
            raise InvalidRequest("timeframe '1M' is a calendar month and has no fixed length")
        return self.amount * _UNIT_MS[self.unit]

    @property
    def origin(self) -> int:
        """The ms fixed candles are counted from: the epoch, or for weeks the first
        Monday (1970-01-05), as exchanges align them.

        >>> Timeframe.parse("1h").origin, Timeframe.parse("1w").origin
        (0, 345600000)
        """
        return _WEEK_ORIGIN if self.unit == "w" else 0

    def floor(self, ts: int) -> int:
        """Start of the candle containing ``ts``."""
        if self.is_calendar:
            d = dt.datetime.fromtimestamp(ts / 1000, tz=dt.UTC)
            return _dt_ms(d.replace(day=1, hour=0, minute=0, second=0, microsecond=0))
        step, origin = self.ms, self.origin
        return (ts - origin) // step * step + origin

    def floor_array(self, ts: np.ndarray) -> np.ndarray:
        """:meth:`floor` of every ms in an int array, vectorised (int64 out).

        >>> Timeframe.parse("1w").floor_array(np.array([1_704_067_200_000, 1_704_585_600_000]))
        array([1704067200000, 1704067200000])
        """
        ts = ts.astype(np.int64, copy=False)
        if self.is_calendar:
            months = ts.astype("datetime64[ms]").astype("datetime64[M]")
            return months.astype("datetime64[ms]").astype(np.int64)
        step, origin = self.ms, self.origin
        if origin:
            return (ts - origin) // step * step + origin
        return ts // step * step

    def ceil(self, ts: int) -> int:
        """Smallest candle start ``>= ts``."""
        f = self.floor(ts)
        return f if f == ts else self.add(f, 1)

    def add(self, ts: int, n: int) -> int:
        """``ts`` moved by ``n`` candles (``ts`` must be aligned for ``1M``)."""
        if self.is_calendar:
            d = dt.datetime.fromtimestamp(ts / 1000, tz=dt.UTC)
            months = d.year * 12 + (d.month - 1) + n
            return _dt_ms(d.replace(year=months // 12, month=months % 12 + 1))
        return ts + n * self.ms

    def count(self, start: int, end: int) -> int:
        """Number of candle starts in ``[start, end)``."""
        if end <= start:
            return 0
        first = self.ceil(start)
        if not self.is_calendar:
            return max(0, -(-(end - first) // self.ms))
        n = 0
        while first < end:
            first = self.add(first, 1)
            n += 1
        return n


def _dt_ms(d: dt.datetime) -> int:
    return int(d.timestamp() * 1000)


def ms_to_seconds(ms: float) -> float:
    """Milliseconds as seconds (for waits and rate windows).

    >>> ms_to_seconds(MINUTE)
    60.0
    """
    return ms / SECOND


def now_ms() -> int:
    """The current time in ms since the epoch."""
    return int(dt.datetime.now(tz=dt.UTC).timestamp() * 1000)


_DATE_RE: Final = re.compile(r"^\d{4}-?\d{2}-?\d{2}$")


def is_bare_date(value: object) -> bool:
    """True for a value that names a day and no time of day (``"2024-01-01"``, a ``date``)."""
    if isinstance(value, str):
        return bool(_DATE_RE.match(value.strip()))
    return isinstance(value, dt.date) and not isinstance(value, dt.datetime)


def time_zone(tz: object) -> dt.tzinfo:
    """The zone that naive dates and times are read in: ``None`` or ``"UTC"`` is UTC,
    else an IANA name (``"Europe/Berlin"``) or a ``tzinfo``.

    >>> time_zone("Asia/Tokyo").key
    'Asia/Tokyo'
    """
    if tz is None:
        return dt.UTC
    if isinstance(tz, dt.tzinfo):
        return tz
    if isinstance(tz, str) and tz.strip():
        name = tz.strip()
        if name.upper() in ("UTC", "Z"):
            return dt.UTC
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # "America": a folder
            pass
    raise InvalidRequest(
        f"tz {tz!r} is not a time zone; use an IANA name such as 'UTC', 'Europe/Berlin' "
        "or 'America/New_York' (a datetime.tzinfo in Python)"
    )


def to_ms(value: object, *, name: str = "time", tz: object = None) -> int:
    """Milliseconds since the epoch from an int (ms), ``datetime``, ``date``,
    ``pd.Timestamp``, or a string (``YYYYMMDD``, ``YYYY-MM-DD`` or ISO 8601).

    Naive datetimes, dates and strings without an offset are read in ``tz``
    (:func:`time_zone`: UTC by default); a value with an offset keeps it. An int that
    is plausibly epoch seconds (see :func:`check_ms`) is refused, never read as 1970.

    >>> to_ms("2024-01-01", tz="Europe/Berlin") == to_ms("2023-12-31T23:00")
    True
    """
    zone = time_zone(tz)
    if isinstance(value, bool):
        raise InvalidRequest(f"{name} must be a date or ms timestamp, got {value!r}")
    if isinstance(value, int | np.integer):
        return check_ms(int(value), name)
    if isinstance(value, str):
        s = value.strip()
        bare = bool(_DATE_RE.match(s))
        try:
            ts = pd.Timestamp(dt.datetime.strptime(s.replace("-", ""), "%Y%m%d") if bare else s)
        except (ValueError, OverflowError) as exc:
            raise InvalidRequest(
                f"{name} {value!r} is not a date; use YYYYMMDD, YYYY-MM-DD or ISO 8601"
            ) from exc
        return _ts_ms(ts, name, value, zone, day=bare)
    if isinstance(value, dt.datetime | pd.Timestamp):
        return _ts_ms(pd.Timestamp(value), name, value, zone)
    if isinstance(value, dt.date):
        day = pd.Timestamp(value.year, value.month, value.day)
        return _ts_ms(day, name, value, zone, day=True)
    raise InvalidRequest(
        f"{name} must be an int (ms), datetime, date or date string, got {type(value).__name__}"
    )


def check_ms(value: int, name: str = "time") -> int:
    """``value`` itself when it is plausibly ms since the epoch; :class:`InvalidRequest`
    when it looks like epoch seconds (``0 < |value| <`` :data:`MIN_PLAUSIBLE_MS`).

    >>> check_ms(1_704_067_200_000)
    1704067200000
    """
    if 0 < abs(value) < MIN_PLAUSIBLE_MS:
        raise InvalidRequest(
            f"{name} {value} looks like seconds since the epoch ({format_ms(value * 1000)} "
            f"if seconds, {format_ms(value)} if ms); pass milliseconds "
            f"({value * 1000}) or a date string / datetime"
        )
    return value


def end_ms(value: object, *, name: str = "end", tz: object = None) -> int:
    """An end bound in ms: a bare date means the end of that day (``"2024-01-31"`` is
    2024-02-01 00:00) in ``tz`` (a local day can last 23 or 25 hours); a time of day is
    an exclusive bound.

    >>> end_ms("2024-01-01") - to_ms("2024-01-01")
    86400000
    >>> end_ms("2024-03-31", tz="Europe/Berlin") - to_ms("2024-03-31", tz="Europe/Berlin")
    82800000
    """
    ms = to_ms(value, name=name, tz=tz)
    if not is_bare_date(value):
        return ms
    try:
        day = dt.datetime.fromtimestamp(ms / SECOND, tz=time_zone(tz)).date()
        return to_ms(day + dt.timedelta(days=1), name=name, tz=tz)
    except (OverflowError, OSError, ValueError):  # the last day a datetime holds (9999-12-31)
        return ms + DAY


def time_range(
    start: object, end: object, *, names: tuple[str, str] = ("start", "end"), tz: object = None
) -> tuple[int | None, int | None]:
    """``[start, end)`` in ms from user bounds (``None`` leaves that side open), by the
    one date rule of mdcollect: :func:`to_ms` for the start, :func:`end_ms` for the end.

    >>> time_range("2024-01-01", "2024-01-01")
    (1704067200000, 1704153600000)
    """
    lo = None if start is None else to_ms(start, name=names[0], tz=tz)
    hi = None if end is None else end_ms(end, name=names[1], tz=tz)
    if lo is not None and hi is not None and hi <= lo:
        raise InvalidRequest(
            f"{names[1]} {_as_given(end, hi)} must be after {names[0]} {_as_given(start, lo)}"
        )
    return lo, hi


def format_ms(ts: int) -> str:
    """A ms timestamp as people read it, UTC: ``2024-01-01``, ``2024-01-01 12:30:00``,
    ``2024-01-01 12:30:05.250``; the bare int when it is not a representable time."""
    try:
        d = dt.datetime.fromtimestamp(ts / 1000, tz=dt.UTC)
    except (OverflowError, OSError, ValueError):
        return str(ts)
    return (
        d.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3].removesuffix(" 00:00:00.000").removesuffix(".000")
    )


def _as_given(value: object, ms: int) -> str:
    # a person reads a date; an int of ms is shown as the time it stands for
    if isinstance(value, int):
        return format_ms(ms)
    return repr(value)


def _ts_ms(
    ts: pd.Timestamp, name: str, raw: object, zone: dt.tzinfo = dt.UTC, *, day: bool = False
) -> int:
    if pd.isna(ts):
        raise InvalidRequest(f"{name} {raw!r} is not a time (NaT)")
    if ts.tzinfo is None and day:
        # a day starts at its first instant: a midnight the clocks skip (Cairo, Havana)
        # is the first time that exists, one they repeat (the Azores) the earlier one
        ts = ts.tz_localize(zone, ambiguous=True, nonexistent="shift_forward")
    elif ts.tzinfo is None:
        try:
            ts = ts.tz_localize(zone, ambiguous="raise", nonexistent="raise")
        except Exception as exc:  # pandas raises pytz's NonExistent/AmbiguousTimeError
            raise InvalidRequest(
                f"{name} {raw!r} is not one time in {zone}: the clocks change then "
                f"({exc}); give it with an offset, e.g. '2024-10-27T02:30+01:00'"
            ) from None
    ts = ts.tz_convert("UTC")
    try:
        return int(ts.value // NS_PER_MS)
    except OverflowError:  # beyond pandas' ns range (year 9999): the datetime's own ms
        return _dt_ms(ts.to_pydatetime())


def ms_to_index(ms: ArrayLike) -> pd.DatetimeIndex:
    """ms ints as the index users get: tz-aware UTC, ns resolution, named ``timestamp``.

    :class:`InvalidRequest` for a value outside :data:`MIN_INDEX_MS` ..
    :data:`MAX_INDEX_MS` (years 1677 to 2262).

    >>> index = ms_to_index([1_704_067_200_000, 1_704_067_260_000])
    >>> index[-1], index.dtype, index.name
    (Timestamp('2024-01-01 00:01:00+0000', tz='UTC'), datetime64[ns, UTC], 'timestamp')
    """
    values = np.asarray(ms, dtype=np.int64)
    if len(values) and (values.min() < MIN_INDEX_MS or values.max() > MAX_INDEX_MS):
        bad = values[(values < MIN_INDEX_MS) | (values > MAX_INDEX_MS)][0]
        raise InvalidRequest(
            f"timestamp {bad} is out of range; allowed: ms from {MIN_INDEX_MS} to "
            f"{MAX_INDEX_MS} (years 1677 to 2262)"
        )
    # numpy's unit casts are 4x faster than pd.to_datetime(unit="ms") (aggregate's hot path)
    ns = values.astype("datetime64[ms]").astype("datetime64[ns]")
    return pd.DatetimeIndex(ns, name="timestamp").tz_localize("UTC")


def index_ms(index: pd.DatetimeIndex | pd.DataFrame | pd.Series) -> np.ndarray:
    """The int64 ms of a ``DatetimeIndex`` (or of a frame's or series' index).

    >>> index_ms(ms_to_index([1_704_067_200_000]))
    array([1704067200000])
    """
    idx = index if isinstance(index, pd.DatetimeIndex) else index.index
    assert isinstance(idx, pd.DatetimeIndex)
    return idx.as_unit("ns").asi8 // NS_PER_MS


def ms_to_timestamp(ms: int) -> pd.Timestamp:
    """One ms time as a tz-aware UTC ``pd.Timestamp`` (the inverse of :func:`to_ms`).

    >>> ms_to_timestamp(1_704_067_200_000)
    Timestamp('2024-01-01 00:00:00+0000', tz='UTC')
    """
    return pd.Timestamp(ms, unit="ms", tz="UTC")
