"""Column schemas per dataset kind, and the frame rules every backend shares.

A stored frame has a ``DatetimeIndex`` named ``timestamp`` (tz-aware UTC, ns
resolution, sorted) and the kind's columns with the kind's dtypes:

========== ============================================================ =============
kind       columns                                                      row identity
========== ============================================================ =============
ohlcv      open high low close volume (float64) [+ quote_volume,        timestamp
           trades int64, taker_buy_volume, taker_buy_quote_volume, vwap:
           where the source gives them, see below]
trades     id (str) price amount (float64) side ('buy'/'sell')          timestamp, id
           [+ received int64 ms: when mdcollect received it]
ticker     bid ask last bid_size ask_size (float64) [+ base_volume]     timestamp
orderbook  bid_px_0..N-1 bid_sz_.. ask_px_.. ask_sz_.. (float64)         timestamp
funding    rate (float64) [+ mark_price index_price]: one row per       timestamp
           settlement, at its funding time
funding_   rate (float64) [+ mark_price index_price, funding_time       timestamp
snapshot   int64 ms: the settlement the rate is for]: live updates
mark       as ohlcv: candles of the mark price                          timestamp
index      as ohlcv: candles of the index price                         timestamp
premium    as ohlcv: candles of the premium index (may be negative)     timestamp
open_      open_interest (float64: contracts, as ccxt's                 timestamp
interest   ``openInterestAmount``) [+ open_interest_value float64,
           quote]: one row per exchange period, at its start
liquida-   id (str) side ('buy'/'sell') price amount (float64)           timestamp, id
tions      [+ received int64 ms]: forced orders, live only
raw        id (str) frames (int64) data (str: the frames, compressed)   timestamp, id
           websocket frames, a batch a row; the symbol is the channel
========== ============================================================ =============

The optional candle columns are kept wherever the source has them: Binance klines
(quote volume, trade count, taker-buy base and quote volumes), Kraken OHLC
(``vwap``, trade count), OKX (``volCcyQuote``) and Bybit (``turnover``) quote
volumes, and candles built from trades (all five; ``vwap`` is NaN for a flat
candle without trades). Mark, index and premium candles keep none: their volume
fields are no trading. A dataset written without
them reads without them (absent, not zeros); rows appended from a source
without one of the float columns hold NaN there, so the column stays. The trade
count is an int64 and has no NaN: it is kept while every row has one, and
dropped from the dataset when rows without a count are merged in.

Several trades can share a millisecond, so trades are identified by
``(timestamp, id)`` and their index is sorted but not unique; liquidations too
(their ``id`` is the exchange's where it gives one, else derived from the event:
see :func:`mdcollect.exchanges.liquidation_rows`); every other kind has a unique
index.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Final

import numpy as np
import pandas as pd
from attrs import frozen

from ._errors import InvalidRequest
from ._intervals import Interval, IntervalSet
from ._keys import CANDLE_KINDS, Kind
from ._time import (
    CCXT_TIMEFRAMES,
    MAX_INDEX_MS,
    MIN_INDEX_MS,
    MIN_PLAUSIBLE_MS,
    NS_PER_MS,
    Timeframe,
    format_ms,
    index_ms,
    ms_to_index,
)

__all__ = [
    "SCHEMAS",
    "Schema",
    "check_cadence",
    "check_rows",
    "empty_frame",
    "merge_frames",
    "normalize_frame",
    "slice_frame",
]

_INT64_MAX: Final = np.iinfo(np.int64).max
_F = "float64"
_I = "int64"
_S = "str"


@frozen
class Schema:
    """Columns of one kind: ``required`` and ``optional`` map names to dtypes."""

    kind: Kind
    required: Mapping[str, str]
    optional: Mapping[str, str]
    row_id: str | None = None

    def columns(self, present: Sequence[str] | None = None) -> list[str]:
        """Schema column order, restricted to ``present`` when given."""
        cols = [*self.required, *self.optional]
        if present is None:
            return cols
        return [c for c in cols if c in present]

    def dtype(self, column: str) -> str:
        """Dtype name of ``column`` (orderbook levels are all float64)."""
        if self.kind == "orderbook":
            return _F
        return {**self.required, **self.optional}[column]


#: The optional candle columns, in the order stored: quote volume, trade count,
#: the taker-buy (aggressor buys) base and quote volumes, and the volume-weighted
#: average price (``quote_volume / volume``).
_CANDLE_OPTIONAL: Final = {
    "quote_volume": _F,
    "trades": _I,
    "taker_buy_volume": _F,
    "taker_buy_quote_volume": _F,
    "vwap": _F,
}

SCHEMAS: Final[dict[Kind, Schema]] = {
    "ohlcv": Schema(
        "ohlcv", {"open": _F, "high": _F, "low": _F, "close": _F, "volume": _F}, _CANDLE_OPTIONAL
    ),
    "trades": Schema(
        "trades",
        {"id": _S, "price": _F, "amount": _F, "side": _S},
        {"received": _I},
        row_id="id",
    ),
    "ticker": Schema(
        "ticker",
        {"bid": _F, "ask": _F, "last": _F, "bid_size": _F, "ask_size": _F},
        {"base_volume": _F},
    ),
    "orderbook": Schema("orderbook", {}, {}),
    "funding": Schema("funding", {"rate": _F}, {"mark_price": _F, "index_price": _F}),
    "funding_snapshot": Schema(
        "funding_snapshot",
        {"rate": _F},
        {"mark_price": _F, "index_price": _F, "funding_time": _I},
    ),
    # candles of the mark price, the index price and the premium index: the ohlcv columns
    **{
        kind: Schema(
            kind, {"open": _F, "high": _F, "low": _F, "close": _F, "volume": _F}, _CANDLE_OPTIONAL
        )
        for kind in ("mark", "index", "premium")
    },
    "open_interest": Schema("open_interest", {"open_interest": _F}, {"open_interest_value": _F}),
    # forced orders: several can share a millisecond, so identified as trades are
    "liquidations": Schema(
        "liquidations",
        {"id": _S, "side": _S, "price": _F, "amount": _F},
        {"received": _I},
        row_id="id",
    ),
    # websocket frames as captured (DataCollector(raw=True)): one row per batch of
    # frames, at the first frame's receipt time; ``data`` is the batch compressed
    # (mdcollect.collectors.decode_raw), ``id`` its digest (a rewrite is no duplicate)
    "raw": Schema("raw", {"id": _S, "frames": _I, "data": _S}, {}, row_id="id"),
}

_BOOK_RE: Final = re.compile(r"^(bid|ask)_(px|sz)_(\d+)$")
_SIDES: Final = frozenset({"buy", "sell"})


def _book_columns(depth: int) -> list[str]:
    return [
        f"{side}_{what}_{i}"
        for side in ("bid", "ask")
        for what in ("px", "sz")
        for i in range(depth)
    ]


def _check_book_columns(columns: Sequence[str]) -> list[str]:
    levels = []
    for c in columns:
        m = _BOOK_RE.match(c)
        if m is None:
            raise InvalidRequest(
                f"column {c!r} is not in the orderbook schema; allowed: "
                "bid_px_0..N-1, bid_sz_.., ask_px_.., ask_sz_.."
            )
        levels.append(int(m.group(3)))
    depth = max(levels, default=-1) + 1
    expected = _book_columns(depth)
    if depth == 0 or set(expected) != set(columns):
        missing = sorted(set(expected) - set(columns)) or ["bid_px_0", "ask_px_0"]
        raise InvalidRequest(
            f"orderbook frame must have bid_px_i, bid_sz_i, ask_px_i, ask_sz_i for every level "
            f"0..N-1; missing {missing}"
        )
    return expected


def empty_frame(kind: Kind, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """A zero-row frame of ``kind`` with the schema's dtypes."""
    schema = SCHEMAS[kind]
    cols = list(columns) if columns is not None else list(schema.required)
    index = pd.DatetimeIndex([], dtype="datetime64[ns, UTC]", name="timestamp")
    data = {c: pd.Series([], dtype=_pandas_dtype(schema.dtype(c))) for c in cols}
    return pd.DataFrame(data, index=index)


def _pandas_dtype(name: str) -> str:
    return "object" if name == _S else name


def _to_index(frame: pd.DataFrame) -> pd.DatetimeIndex:
    if "timestamp" in frame.columns:
        col = frame["timestamp"]
        if pd.api.types.is_datetime64_any_dtype(col.dtype):
            idx = pd.DatetimeIndex(col)
        elif pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
            if col.isna().any():
                raise InvalidRequest("frame has NaN timestamps; every row needs a time")
            values = col.to_numpy()
            if values.dtype.kind == "c":
                raise InvalidRequest(f"timestamp column must hold ms ints, got dtype {col.dtype}")
            if values.dtype.kind == "f" and not np.all(np.mod(values, 1) == 0):
                at = _first(np.mod(values, 1) != 0)
                raise InvalidRequest(
                    f"timestamp column must hold whole milliseconds; row {at} has {values[at]!r}"
                )
            out_of_range = (values < MIN_INDEX_MS) | (values > MAX_INDEX_MS)
            if out_of_range.any():
                at = _first(out_of_range)
                raise InvalidRequest(
                    f"timestamp {values[at]} in row {at} is out of range; allowed: ms from "
                    f"{MIN_INDEX_MS} to {MAX_INDEX_MS} (years 1677 to 2262)"
                )
            return ms_to_index(values.astype("int64"))
        else:
            raise InvalidRequest(
                f"timestamp column must hold ms ints or UTC datetimes, got dtype {col.dtype}"
            )
    elif isinstance(frame.index, pd.DatetimeIndex):
        idx = frame.index
    elif len(frame) == 0:
        return pd.DatetimeIndex([], dtype="datetime64[ns, UTC]", name="timestamp")
    else:
        raise InvalidRequest(
            "frame needs a UTC DatetimeIndex or a 'timestamp' column of ms ints; "
            f"got index of type {type(frame.index).__name__}"
        )
    if idx.tz is None:
        raise InvalidRequest(
            "frame index is timezone-naive; localise it to UTC (index.tz_localize('UTC'))"
        )
    if str(idx.tz) not in ("UTC", "utc", "UTC+00:00"):
        raise InvalidRequest(
            f"frame index is in timezone {idx.tz}; convert it to UTC (index.tz_convert('UTC'))"
        )
    if idx.hasnans:
        raise InvalidRequest("frame has NaT timestamps; every row needs a time")
    try:
        return pd.DatetimeIndex(idx.tz_convert("UTC").as_unit("ns"), name="timestamp")
    except (OverflowError, pd.errors.OutOfBoundsDatetime) as exc:
        bad = (idx < pd.Timestamp.min.tz_localize("UTC")) | (
            idx > pd.Timestamp.max.tz_localize("UTC")
        )
        at = _first(np.asarray(bad))
        raise InvalidRequest(
            f"timestamp {idx[at]} in row {at} is out of range; allowed: "
            f"{pd.Timestamp.min} to {pd.Timestamp.max}"
        ) from exc


def _first(mask: np.ndarray) -> int:
    return int(np.argmax(mask))


def normalize_frame(
    kind: Kind, frame: pd.DataFrame, *, strict: bool = False, timeframe: Timeframe | None = None
) -> pd.DataFrame:
    """Validate ``frame`` against ``kind``'s schema and return it normalised.

    The result has the ``timestamp`` index (UTC, ns), schema column order and
    dtypes, is sorted, and holds each row identity once (the last one wins).
    Raises :class:`InvalidRequest` naming the problem.

    ``strict`` (what :meth:`DataCollectionStorage.write` asks for) also checks the
    values: see :func:`check_rows`; ``timeframe`` is the candles' (``ohlcv``).
    """
    if not isinstance(frame, pd.DataFrame):
        raise InvalidRequest(f"expected a pandas DataFrame, got {type(frame).__name__}")
    schema = SCHEMAS[kind]
    index = _to_index(frame)
    data_cols = [c for c in frame.columns if c != "timestamp"]
    for c in data_cols:
        if not isinstance(c, str):
            raise InvalidRequest(f"column names must be strings, got {c!r}")
    if kind == "orderbook":
        cols = _check_book_columns(data_cols)
    else:
        missing = [c for c in schema.required if c not in data_cols]
        if missing:
            raise InvalidRequest(
                f"{kind} frame is missing column(s) {missing}; required: {list(schema.required)}"
            )
        unknown = [c for c in data_cols if c not in schema.required and c not in schema.optional]
        if unknown:
            raise InvalidRequest(
                f"column(s) {unknown} are not in the {kind} schema; allowed: {schema.columns()}"
            )
        cols = schema.columns(data_cols)
    out: dict[str, object] = {}
    for c in cols:
        out[c] = _coerce(frame[c], schema.dtype(c), c, kind)
    result = pd.DataFrame(out, index=index)
    if strict:
        ms_column = "timestamp" in frame.columns and pd.api.types.is_numeric_dtype(
            frame["timestamp"].dtype
        )
        check_rows(kind, result, timeframe, ms_column=ms_column)
    return _dedupe_sort(kind, result)


# columns whose values are never negative (funding rates and premiums can be)
_CANDLE_SUMS: Final = (
    "volume",
    "quote_volume",
    "trades",
    "taker_buy_volume",
    "taker_buy_quote_volume",
)
_NON_NEGATIVE: Final = {
    "ohlcv": ("open", "high", "low", "close", *_CANDLE_SUMS, "vwap"),
    "trades": ("price", "amount"),
    "ticker": ("bid", "ask", "last", "bid_size", "ask_size", "base_volume"),
    "funding": ("mark_price", "index_price"),
    "funding_snapshot": ("mark_price", "index_price", "funding_time"),
    "mark": ("open", "high", "low", "close", *_CANDLE_SUMS, "vwap"),
    "index": ("open", "high", "low", "close", *_CANDLE_SUMS, "vwap"),
    "premium": _CANDLE_SUMS,
    "open_interest": ("open_interest", "open_interest_value"),
    "liquidations": ("price", "amount", "received"),
    "raw": ("frames",),
}
# columns that must have a value in every row (a ticker may lack a bid, a book a level)
_NOT_NAN: Final = {
    "ohlcv": ("open", "high", "low", "close", "volume"),
    "trades": ("price", "amount"),
    "funding": ("rate",),
    "funding_snapshot": ("rate",),
    # mark, index and premium candles have no volume on most exchanges (NaN)
    "mark": ("open", "high", "low", "close"),
    "index": ("open", "high", "low", "close"),
    "premium": ("open", "high", "low", "close"),
    "open_interest": ("open_interest",),
    "liquidations": ("price", "amount"),
}


def check_rows(
    kind: Kind, frame: pd.DataFrame, timeframe: Timeframe | None, *, ms_column: bool = False
) -> None:
    """Refuse values no market produces, naming the first bad row (its position in
    ``frame`` and its time): NaN where a value is required, infinities, negative prices,
    sizes and counts, ``high < low``, times that are not whole milliseconds, candles off
    their timeframe's grid, and (``ms_column``: the times came as ms ints) epoch seconds.
    """
    assert isinstance(frame.index, pd.DatetimeIndex)
    ns = frame.index.asi8
    ms = ns // NS_PER_MS
    # (rows that are bad, what is wrong with row i)
    problems: list[tuple[np.ndarray, Callable[[int], str]]] = []
    if ms_column:
        problems.append(
            (
                (ms > 0) & (ms < MIN_PLAUSIBLE_MS),
                lambda i: (
                    f"its timestamp {ms[i]} looks like seconds since the epoch; "
                    f"pass milliseconds ({ms[i] * 1000})"
                ),
            )
        )
    problems.append((ns % NS_PER_MS != 0, lambda i: "its timestamp is not a whole millisecond"))
    if timeframe is not None and len(ms):
        if timeframe.is_calendar:
            grid = np.fromiter((timeframe.floor(int(t)) for t in ms), np.int64, len(ms))
            off = grid != ms
        else:  # vectorised: fixed candles start at floor(0) plus whole steps
            off = (ms - timeframe.floor(0)) % timeframe.ms != 0
        problems.append((off, lambda i: f"its timestamp is not the start of a {timeframe} candle"))
    not_nan = _NOT_NAN.get(kind, ())
    non_negative = _NON_NEGATIVE.get(kind, tuple(frame.columns) if kind == "orderbook" else ())
    for c in frame.columns:
        values = frame[c].to_numpy()
        if values.dtype.kind == "f":
            problems.append((np.isinf(values), _says(f"{c!r} is {{}}", values)))
            if c in not_nan:
                problems.append((np.isnan(values), _says(f"{c!r} is NaN")))
        if values.dtype.kind in "fi" and c in non_negative:
            problems.append((values < 0, _says(f"{c!r} is negative ({{}})", values)))
    if kind in CANDLE_KINDS:
        high, low = frame["high"].to_numpy(), frame["low"].to_numpy()
        problems.append((high < low, lambda i: f"'high' {high[i]} is below 'low' {low[i]}"))
        for c in ("open", "close"):
            price = frame[c].to_numpy()
            problems.append((high < price, _says(f"'high' {{}} is below {c!r} {{}}", high, price)))
            problems.append((low > price, _says(f"'low' {{}} is above {c!r} {{}}", low, price)))
    bad = [(_first(mask), why) for mask, why in problems if mask.any()]
    if bad:
        at, why = min(bad, key=lambda b: b[0])
        raise InvalidRequest(
            f"{kind} row {at} ({format_ms(int(ms[at]))}) is not valid: {why(at)}; "
            "nothing was written"
        )


def _says(text: str, *values: np.ndarray) -> Callable[[int], str]:
    # what is wrong with row i: ``text`` with that row's values in its ``{}``
    return lambda i: text.format(*(v[i] for v in values))


#: A frame of this many rows or more, all one coarser timeframe apart, is that
#: timeframe's candles under a finer key (fewer could be a sparse market).
_CADENCE_ROWS: Final = 3


def check_cadence(
    kind: Kind, frame: pd.DataFrame, timeframe: Timeframe | None, covered: IntervalSet | None
) -> None:
    """Refuse a coarser timeframe's candles written under a finer key *as complete*: rows
    all one coarser ccxt timeframe apart (a 1h frame under a 1m key) with ``covered``
    claiming the candles between them. Sparse rows whose coverage leaves the gaps out
    (each hour covered alone), or a sparse market's uneven gaps, are valid."""
    if timeframe is None or kind not in CANDLE_KINDS or not covered or len(frame) < 2:
        return
    assert isinstance(frame.index, pd.DatetimeIndex)
    ms = frame.index.asi8 // NS_PER_MS
    bad, why = _coarser_cadence(ms, timeframe)
    if not bad.any():
        return
    at = _first(bad)
    gap = Interval(int(ms[at - 1]) + timeframe.ms, int(ms[at]))
    if IntervalSet([gap]) - covered:
        return  # the gaps are not claimed: sparse rows, honestly covered
    raise InvalidRequest(
        f"{kind} row {at} ({format_ms(int(ms[at]))}) is not valid: {why(at)}, and the"
        f" write covers the {timeframe} candles between them; nothing was written"
    )


def _coarser_cadence(
    ms: np.ndarray, timeframe: Timeframe
) -> tuple[np.ndarray, Callable[[int], str]]:
    """Rows whose spacing shows candles of a coarser timeframe (a 1h frame under a 1m
    key): every row the same whole ccxt timeframe after the one before. The first row
    after the first such step is the bad one; a sparse market leaves uneven gaps."""
    bad = np.zeros(len(ms), dtype=bool)
    if timeframe.is_calendar or len(ms) < _CADENCE_ROWS:
        return bad, lambda i: ""
    times = ms
    steps = np.diff(times)
    if (steps <= 0).any():  # unsorted or repeated rows: the cadence of the distinct times
        times = np.unique(ms)
        steps = np.diff(times)
    if len(steps) < _CADENCE_ROWS - 1 or steps[0] <= timeframe.ms or (steps != steps[0]).any():
        return bad, lambda i: ""
    named = [
        tf
        for tf in CCXT_TIMEFRAMES
        if not Timeframe.parse(tf).is_calendar and Timeframe.parse(tf).ms == int(steps[0])
    ]
    if not named:
        return bad, lambda i: ""
    bad = ms == times[1]
    return (
        bad,
        lambda i: (
            f"every row is {named[0]} after the one before: {named[0]} candles under a "
            f"{timeframe} key (write them under a {named[0]} key)"
        ),
    )


def _coerce(series: pd.Series, dtype: str, name: str, kind: str) -> np.ndarray:
    values = series.to_numpy()
    if values.dtype.kind == "c" or (
        values.dtype == object and any(isinstance(v, complex | np.complexfloating) for v in values)
    ):
        at = _first(np.array([isinstance(v, complex | np.complexfloating) for v in values]))
        raise InvalidRequest(
            f"{kind} column {name!r} has the complex number {values[at]!r} in row {at}; "
            "allowed: real numbers"
        )
    if dtype == _F:
        try:
            return values.astype("float64")
        except (TypeError, ValueError) as exc:
            raise InvalidRequest(f"{kind} column {name!r} must be numeric ({exc})") from exc
    if dtype == _I:
        if series.isna().any():
            raise InvalidRequest(f"{kind} column {name!r} must be whole numbers without NaN")
        if values.dtype.kind in "uf" and len(values) and (values > _INT64_MAX).any():
            at = _first(values > _INT64_MAX)
            raise InvalidRequest(
                f"{kind} column {name!r} has {values[at]} in row {at}; allowed: integers up to "
                f"{_INT64_MAX}"
            )
        try:
            as_int = values.astype("int64")
        except (TypeError, ValueError) as exc:
            raise InvalidRequest(f"{kind} column {name!r} must be integers ({exc})") from exc
        if values.dtype.kind == "f" and not np.array_equal(as_int, values):
            raise InvalidRequest(f"{kind} column {name!r} must be whole numbers")
        return as_int
    # strings
    if series.isna().any():
        raise InvalidRequest(f"{kind} column {name!r} must not contain missing values")
    out = np.array([str(v) for v in values], dtype=object)
    if name == "side":
        bad = set(out) - _SIDES
        if bad:
            raise InvalidRequest(
                f"{kind} column 'side' has {sorted(bad)[:3]}; allowed: 'buy', 'sell'"
            )
    return out


def _sort_key_ids(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Numeric ids of different lengths sort numerically by (length, text);
    # any other strings still get a deterministic total order.
    lengths = np.fromiter((len(s) for s in ids), dtype=np.int64, count=len(ids))
    return lengths, ids.astype(str)


def _dedupe_sort(kind: Kind, frame: pd.DataFrame) -> pd.DataFrame:
    if SCHEMAS[kind].row_id is None:
        if not frame.index.is_unique:
            frame = frame[~frame.index.duplicated(keep="last")]
        if not frame.index.is_monotonic_increasing:
            frame = frame.sort_index(kind="stable")
        return frame
    ts = index_ms(frame)
    ids = frame["id"].to_numpy()
    lengths, text = _sort_key_ids(ids)
    # keep the last occurrence of each (timestamp, id)
    order = np.lexsort((np.arange(len(frame))[::-1], text, lengths, ts))
    ts_o, len_o, text_o = ts[order], lengths[order], text[order]
    first = np.ones(len(order), dtype=bool)
    if len(order) > 1:
        first[1:] = (
            (ts_o[1:] != ts_o[:-1]) | (len_o[1:] != len_o[:-1]) | (text_o[1:] != text_o[:-1])
        )
    # lexsort put the last occurrence first within each group (reversed position key)
    keep = order[first]
    if len(keep) == len(frame) and np.all(np.diff(keep) > 0):
        return frame
    return frame.iloc[keep]


def merge_frames(kind: Kind, old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Upsert ``new`` (normalised) into ``old`` (normalised): ``new`` wins on equal identity."""
    if len(old) == 0:
        return new
    if len(new) == 0:
        return old
    cols = list(dict.fromkeys([*old.columns, *new.columns]))
    schema = SCHEMAS[kind]
    if kind != "orderbook":
        cols = schema.columns(cols)
    combined = pd.concat([old.reindex(columns=cols), new.reindex(columns=cols)])
    combined = _fill_optional(kind, combined)
    return _dedupe_sort(kind, combined)


def _fill_optional(kind: Kind, frame: pd.DataFrame) -> pd.DataFrame:
    # An optional int column absent from one side becomes NaN after concat: such
    # a column is only kept when every row has it.
    for c, dtype in SCHEMAS[kind].optional.items():
        if c in frame.columns and dtype == _I:
            if frame[c].isna().any():
                frame = frame.drop(columns=[c])
            else:
                frame[c] = frame[c].astype("int64")
    return frame


def slice_frame(frame: pd.DataFrame, start: int | None, end: int | None) -> pd.DataFrame:
    """Rows with ``start <= timestamp < end`` (either bound may be ``None``) of a sorted frame."""
    if start is None and end is None:
        return frame
    ms = index_ms(frame)
    lo = 0 if start is None else int(np.searchsorted(ms, start, side="left"))
    hi = len(ms) if end is None else int(np.searchsorted(ms, end, side="left"))
    return frame.iloc[lo:hi]


def conform(kind: Kind, frame: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Cast a frame read back from a backend to the schema's dtypes and column order."""
    schema = SCHEMAS[kind]
    if kind == "orderbook":
        present = [c for c in frame.columns if _BOOK_RE.match(str(c))]
        depth = max((int(_BOOK_RE.match(c).group(3)) for c in present), default=-1) + 1  # type: ignore[union-attr]
        cols = _book_columns(depth)
    else:
        cols = schema.columns(list(frame.columns))
    if not cols:
        cols = list(schema.required)
    if columns is not None:
        unknown = [c for c in columns if c not in cols]
        if unknown and len(frame):
            raise InvalidRequest(f"column(s) {unknown} are not stored; available: {cols}")
        cols = [c for c in columns if c in cols] if len(frame) else list(columns)
    if len(frame) == 0:
        return empty_frame(kind, cols)
    # a shallow copy: the backend's own frame is never modified, and nothing is
    # copied when it already has the schema's columns, dtypes and index
    out = frame.copy(deep=False) if list(frame.columns) == cols else frame.reindex(columns=cols)
    for c in cols:
        want = np.dtype(_pandas_dtype(schema.dtype(c)))
        if out[c].dtype != want:
            out[c] = out[c].astype(want)
    idx = out.index
    if not isinstance(idx, pd.DatetimeIndex):
        raise InvalidRequest("stored frame lost its DatetimeIndex")
    if idx.tz is None:
        idx = idx.tz_localize("UTC")
    if str(idx.tz) != "UTC" or idx.unit != "ns" or idx.name != "timestamp":
        out.index = pd.DatetimeIndex(idx.tz_convert("UTC").as_unit("ns"), name="timestamp")
    return out
