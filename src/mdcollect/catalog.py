"""What a store holds, one row per dataset, from metadata only: :func:`catalog`.

Every backend keeps, beside each dataset's rows, a :class:`~mdcollect.storage.DatasetInfo`
updated by every write (rows, first and last row, coverage, last write, the sources
the rows came from): the catalog reads those, never the rows, so it stays cheap for
thousands of datasets (``bench/catalog.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import pandas as pd

from ._intervals import Interval, IntervalSet
from ._keys import KINDS, DatasetKey, Kind
from ._rules import check_choice, check_exchange_key, check_symbol
from ._time import MAX_INDEX_MS, MIN_INDEX_MS, NS_PER_MS, ms_to_index
from .storage import DataCollectionStorage, DatasetInfo, open_storage

__all__ = ["COLUMNS", "catalog", "from_records", "records"]

#: The catalog's columns, in order (``ls --json`` and ``/api/v1/datasets`` use these names).
COLUMNS: Final = (
    "exchange",
    "symbol",
    "kind",
    "timeframe",
    "rows",
    "first",
    "last",
    "covered_from",
    "covered_to",
    "covered_fraction",
    "holes",
    "bytes",
    "last_write",
    "lineage",
    "sources",
)


def catalog(
    storage: DataCollectionStorage | str,
    *,
    exchange: str | None = None,
    symbol: str | None = None,
    kind: Kind | str | None = None,
) -> pd.DataFrame:
    """One row per stored dataset, optionally only those of ``exchange``, ``symbol``,
    ``kind``; built from each dataset's metadata, never from its rows.

    Columns (:data:`COLUMNS`): ``exchange symbol kind timeframe`` (``None`` for kinds
    without one); ``rows``; ``first`` and ``last``, the first and last row's time;
    ``covered_from`` and ``covered_to``, the bounds of the coverage; ``covered_fraction``
    of ``[first, end of last)`` that coverage claims complete; ``holes``, the uncovered
    ranges in that span; ``bytes`` on disk (``<NA>`` where the backend cannot tell:
    Redis); ``last_write`` (wall clock); ``lineage``, the source of the latest write
    (``"backfill:binance klines"``, ``"backfill:kraken trades->1m"``, ``"live:ws"``,
    ``"live:poll"``, ``"import"``; ``None`` if not recorded) and ``sources``, every
    source seen, oldest first. Times are tz-aware UTC ``Timestamp``s (``NaT`` when
    there is none).

    >>> storage = open_storage("memory://")
    >>> key = DatasetKey("binance", "BTC/USDT", "ohlcv", "1m")
    >>> storage.write(key, frame, covered=Interval(start, end), source="import")  # doctest: +SKIP
    >>> catalog(storage, exchange="binance")[["symbol", "rows", "lineage"]]  # doctest: +SKIP
         symbol  rows lineage
    0  BTC/USDT  1440  import
    """
    if exchange is not None:
        exchange = check_exchange_key(exchange)
    if symbol is not None:
        symbol = check_symbol(symbol)
    if kind is not None:
        kind = check_choice("kind", kind, KINDS)
    store = open_storage(storage)
    keys = [
        k
        for k in store.keys(exchange=exchange)
        if (symbol is None or k.symbol == symbol) and (kind is None or k.kind == kind)
    ]
    infos = store.infos(keys)
    return _frame([(k, infos[k]) for k in keys])


def _frame(entries: Sequence[tuple[DatasetKey, DatasetInfo]]) -> pd.DataFrame:
    return _table([_row(key, info) for key, info in entries])


def _table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The catalog frame of row dicts (times as ms or ``None``)."""
    out = pd.DataFrame(rows, columns=list(COLUMNS))
    for c in _TIMES:
        missing = np.array([r[c] is None for r in rows], dtype=bool)
        ms = np.array([0 if r[c] is None else r[c] for r in rows], dtype=np.int64)
        # coverage may reach past what a Timestamp can show (a range open to the future)
        times = ms_to_index(np.clip(ms, MIN_INDEX_MS, MAX_INDEX_MS))
        out[c] = pd.Series(times.where(~missing), dtype="datetime64[ns, UTC]")
    out["rows"] = out["rows"].astype("int64")
    out["holes"] = out["holes"].astype("int64")
    out["covered_fraction"] = out["covered_fraction"].astype("float64")
    out["bytes"] = out["bytes"].astype("Int64")
    return out


def _row(key: DatasetKey, info: DatasetInfo) -> dict[str, object]:
    cov = info.coverage
    fraction: float = float("nan")
    holes = 0
    if info.first is not None and info.last is not None:
        # the last row stands for its whole candle (a ms for other kinds)
        end = key.tf.ceil(info.last + 1) if key.tf is not None else info.last + 1
        span = Interval(info.first, max(end, info.first + 1))
        inside = cov & IntervalSet([span])
        fraction = inside.total / (span.end - span.start)
        holes = len(list(IntervalSet([span]) - cov))
    return {
        "exchange": key.exchange,
        "symbol": key.symbol,
        "kind": key.kind,
        "timeframe": key.timeframe,
        "rows": info.rows,
        "first": info.first,
        "last": info.last,
        "covered_from": cov.start if cov else None,
        "covered_to": cov.end if cov else None,
        "covered_fraction": fraction,
        "holes": holes,
        "bytes": info.bytes,
        "last_write": info.last_write,
        "lineage": info.source,
        "sources": info.sources,
    }


_TIMES: Final = ("first", "last", "covered_from", "covered_to", "last_write")


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The catalog as JSON-able dicts with stable keys: ``key`` (the dataset key's
    string form), then :data:`COLUMNS`; times as ms since the epoch (UTC), missing
    values as ``None``, ``sources`` a list. ``mdcollect ls --json`` prints these and
    ``GET /api/v1/datasets`` answers them.

    >>> records(catalog(open_storage("memory://")))
    []
    """
    out = []
    for row in frame.to_dict("records"):
        rec: dict[str, Any] = {
            "key": str(DatasetKey(row["exchange"], row["symbol"], row["kind"], row["timeframe"]))
        }
        for c in COLUMNS:
            v = row[c]
            if c in _TIMES:
                rec[c] = None if pd.isna(v) else int(pd.Timestamp(v).value // NS_PER_MS)
            elif c == "sources":
                rec[c] = list(v)
            elif c in ("rows", "holes", "bytes"):
                rec[c] = None if pd.isna(v) else int(v)
            elif c == "covered_fraction":
                rec[c] = None if pd.isna(v) else float(v)
            else:
                rec[c] = v
        out.append(rec)
    return out


def from_records(items: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """:func:`records` back into the catalog frame (what the remote client returns)."""
    rows = [
        {
            **{c: item.get(c) for c in COLUMNS},
            "sources": tuple(item.get("sources") or ()),
            "covered_fraction": float("nan")
            if item.get("covered_fraction") is None
            else item["covered_fraction"],
        }
        for item in items
    ]
    return _table(rows)
