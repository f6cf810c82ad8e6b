"""The storage interface every backend implements, and the checks they share."""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any, Final, Self
from urllib.parse import unquote

import numpy as np
import pandas as pd
from attrs import evolve, field, frozen

from .._errors import InvalidRequest
from .._intervals import Interval, IntervalSet
from .._keys import KINDS, DatasetKey, Kind
from .._lease import Lease
from .._redact import redact, secrets_in
from .._schema import check_cadence, conform, normalize_frame
from .._time import NS_PER_MS, format_ms, now_ms

__all__ = ["DataCollectionStorage", "DatasetInfo", "Stamp"]

#: A source names where rows came from: ``backfill:binance klines``, ``live:ws``, ``import``.
_SOURCE_RE: Final = re.compile(r"[a-z][a-z0-9_]{0,31}(:[ -~]{1,120})?")
#: Distinct sources a dataset remembers (the oldest are forgotten first).
MAX_SOURCES: Final = 16


@frozen
class Stamp:
    """Who wrote, and when: what :meth:`DataCollectionStorage.write` hands its backend
    with the rows, for the dataset's :class:`DatasetInfo`."""

    source: str | None
    at: int


@frozen
class DatasetInfo:
    """What a backend keeps about one dataset beside its rows, updated by every write,
    so that :func:`mdcollect.catalog` never reads rows.

    ``rows`` stored, ``first``/``last`` the first and last row's time (ms; ``None``
    without rows), ``coverage``, ``last_write`` (wall clock, ms; ``None`` for data
    written before this was recorded), ``sources`` every source seen (oldest first,
    so the latest is ``sources[-1]``), ``bytes`` on disk (``None`` where the backend
    cannot tell cheaply).

    >>> storage.info(DatasetKey("binance", "BTC/USDT", "ohlcv", "1m"))  # doctest: +SKIP
    DatasetInfo(rows=1440, first=1704067200000, last=1704153540000, ...)
    """

    rows: int = 0
    first: int | None = None
    last: int | None = None
    coverage: IntervalSet = field(factory=IntervalSet)
    last_write: int | None = None
    sources: tuple[str, ...] = ()
    bytes: int | None = None

    @property
    def source(self) -> str | None:
        """The latest source, ``None`` if none was recorded."""
        return self.sources[-1] if self.sources else None

    def stamped(self, stamp: Stamp) -> DatasetInfo:
        """This info after a write stamped ``stamp`` (rows and times set by the backend)."""
        return evolve(self, last_write=stamp.at, sources=add_source(self.sources, stamp.source))


def add_source(sources: Iterable[str], source: str | None) -> tuple[str, ...]:
    """``sources`` with ``source`` moved (or added) to the end, at most :data:`MAX_SOURCES`."""
    seen = [s for s in sources if s != source]
    if source is not None:
        seen.append(source)
    return tuple(seen[-MAX_SOURCES:])


def frame_span(frame: pd.DataFrame) -> tuple[int, int] | None:
    """``(first, last)`` row times (ms) of a sorted, non-empty frame; ``None`` when empty."""
    if len(frame) == 0:
        return None
    assert isinstance(frame.index, pd.DatetimeIndex)
    ns = frame.index.asi8
    return int(ns[0]) // NS_PER_MS, int(ns[-1]) // NS_PER_MS


def _check_source(source: object) -> str | None:
    if source is None or (isinstance(source, str) and _SOURCE_RE.fullmatch(source)):
        return source
    raise InvalidRequest(
        f"source {source!r} is not valid; use a lowercase word (up to 32 characters), then optionally ':' and up to 120 "
        "printable characters, e.g. 'backfill:binance klines', 'live:ws', 'import'"
    )


class DataCollectionStorage(ABC):
    """Where mdcollect keeps market data: frames per :class:`DatasetKey`, plus coverage.

    * :meth:`write` upserts rows by timestamp (trades by ``(timestamp, id)``):
      nothing is ever duplicated and the last written value wins.
    * :meth:`coverage` is the set of ranges known complete. It grows only through
      ``write(..., covered=...)``, shrinks only through :meth:`delete`, and never
      claims a range whose rows are not stored (rows are written first).
    * :meth:`store` / :meth:`fetch` keep single JSON-able points under a string key.

    Backends are chosen by URL with :func:`mdcollect.open_storage`::

        >>> storage = open_storage("memory://")
        >>> key = DatasetKey("binance", "BTC/USDT", "ohlcv", "1m")
        >>> storage.write(key, frame, covered=Interval(start, end))
        1440
        >>> storage.read(key, start, end).shape
        (1440, 5)
    """

    # The URL as given, credentials and all: only for connecting, never shown.
    _raw_url: str = ""
    _secrets: frozenset[str] = frozenset()

    @property
    def url(self) -> str:
        """The URL this storage was opened with, credentials shown as ``***``.

        >>> open_storage("redis://app:pw@db:6379/0").url
        'redis://app:***@db:6379/0'
        """
        return redact(self._raw_url, self._secrets)

    @url.setter
    def url(self, raw: str) -> None:
        # backends assign the URL they were opened with; it stays private. A URL inside
        # it (``?lease=redis%3A%2F%2F%3Apw%40host``) carries credentials of its own.
        self._raw_url = raw
        self._secrets = secrets_in(raw) | secrets_in(unquote(raw))

    def shared_url(self) -> str:
        """The URL with its credentials, to open this same store in another process
        (a Dask worker of ``ensure_data(executor=...)``). Never show it: :attr:`url` is
        the one to show.

        >>> open_storage("redis://app:pw@db:6379/0").shared_url()
        'redis://app:pw@db:6379/0'
        """
        return self._raw_url

    def _redact(self, text: str) -> str:
        """``text`` (a message, a log line) with any credential of this storage's URL masked."""
        return redact(text, self._secrets)

    # -- frames ------------------------------------------------------------------
    def write(
        self,
        key: DatasetKey | str,
        frame: pd.DataFrame,
        *,
        covered: Interval | IntervalSet | None = None,
        source: str | None = None,
    ) -> int:
        """Upsert ``frame``'s rows into ``key``; then mark ``covered`` complete.

        ``frame`` has a UTC ``DatetimeIndex`` (or a ``timestamp`` column of ms ints)
        and the kind's columns. ``covered`` is one :class:`Interval`, or an
        :class:`IntervalSet` when the rows complete several separate ranges (one
        write instead of one per range). ``source`` is the rows' lineage, kept in
        the dataset's :meth:`info` (``"backfill:binance klines"``, ``"live:ws"``,
        ``"import"``). Returns the number of rows written.

        Rows no market produces are refused before anything is written
        (:class:`InvalidRequest` naming the first bad row, its time and value): NaN
        prices, negative prices or volumes, a high below the low, open or close (a
        low above them), candles off the key's timeframe grid, or a coarser
        timeframe's candles under the key with ``covered`` claiming the candles between
        them (see :func:`mdcollect._schema.check_rows` and ``check_cadence``).
        """
        key = _check_key(key)
        if covered is not None and not isinstance(covered, Interval | IntervalSet):
            raise InvalidRequest(
                "covered must be an Interval(start_ms, end_ms), an IntervalSet or None,"
                f" got {covered!r}"
            )
        stamp = Stamp(_check_source(source), now_ms())
        cov = IntervalSet([covered]) if isinstance(covered, Interval) else covered
        norm = normalize_frame(key.kind, frame, strict=True, timeframe=key.tf)
        check_cadence(key.kind, norm, key.tf, cov)
        return self._write(key, norm, cov or None, stamp)

    def _write_unchecked(
        self,
        key: DatasetKey | str,
        frame: pd.DataFrame,
        *,
        covered: Interval | IntervalSet | None = None,
    ) -> int:
        """Write ``frame`` without the value checks of :meth:`write`: **for tests only**,
        to plant the defects :func:`mdcollect.audit` must find (a high below the low,
        off-grid rows, NaN prices). The schema (columns, dtypes, a UTC index) is still
        enforced, and rows are still upserted, sorted and deduplicated; the lineage
        recorded is ``"unchecked"``.
        """
        key = _check_key(key)
        cov = IntervalSet([covered]) if isinstance(covered, Interval) else covered
        norm = normalize_frame(key.kind, frame, strict=False)
        return self._write(key, norm, cov or None, Stamp("unchecked", now_ms()))

    def info(self, key: DatasetKey | str) -> DatasetInfo:
        """What is known about ``key`` without reading its rows: rows, first and last
        row time, coverage, last write, sources (lineage), bytes. A dataset that does
        not exist has ``rows == 0`` and nothing else."""
        key = _check_key(key)
        return self._infos([key])[key]

    def infos(self, keys: Sequence[DatasetKey] | None = None) -> dict[DatasetKey, DatasetInfo]:
        """:meth:`info` of several datasets at once (every stored one by default), in as
        few backend calls as the backend allows."""
        wanted = self.keys() if keys is None else [_check_key(k) for k in keys]
        return self._infos(wanted)

    def read(
        self,
        key: DatasetKey | str,
        start: int | None = None,
        end: int | None = None,
        columns: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Rows of ``key`` with ``start <= timestamp < end``, sorted, in the kind's schema.

        A dataset that does not exist reads as an empty frame.
        """
        key = _check_key(key)
        start, end = _check_range(start, end, allow_open=True)
        if columns is not None:
            if isinstance(columns, str) or not all(isinstance(c, str) for c in columns):
                raise InvalidRequest(f"columns must be a list of column names, got {columns!r}")
            columns = list(columns)
        frame = self._read(key, start, end, columns)
        return conform(key.kind, frame, columns)

    def dataset_lease(self, key: DatasetKey) -> Lease | None:
        """A new lease that one process, on any machine, holds while it fills ``key``
        from an exchange (the backfill takes it, then reads coverage again: what another
        machine stored meanwhile is not fetched twice); ``None`` when the store needs
        none (an ArcticDB store on S3 has one with ``?lease=redis://...`` or ``?lease=s3``)."""
        return None

    @abstractmethod
    def coverage(self, key: DatasetKey | str) -> IntervalSet:
        """The ranges of ``key`` known to be complete."""

    def keys(self, *, exchange: str | None = None, kind: Kind | None = None) -> list[DatasetKey]:
        """Stored datasets, sorted, optionally filtered by exchange and kind."""
        if kind is not None and kind not in KINDS:
            raise InvalidRequest(f"kind {kind!r} is not valid; allowed: {', '.join(KINDS)}")
        found = [
            k
            for k in self._keys()
            if (exchange is None or k.exchange == exchange) and (kind is None or k.kind == kind)
        ]
        return sorted(set(found))

    def delete(
        self, key: DatasetKey | str, start: int | None = None, end: int | None = None
    ) -> None:
        """Remove rows in ``[start, end)`` and that range's coverage (all of it when unbounded)."""
        key = _check_key(key)
        start, end = _check_range(start, end, allow_open=True)
        self._delete(key, start, end)

    # -- single points (the original interface) -----------------------------------
    def store(self, key: str, value: Any, timestamp: int) -> None:
        """Keep one JSON-able ``value`` at ``timestamp`` (ms) under ``key``; replaces an equal timestamp."""
        _check_point_key(key)
        timestamp = _as_ms(timestamp, "timestamp")
        try:
            payload = json.dumps(value, allow_nan=False, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise InvalidRequest(f"value for {key!r} is not JSON-able: {exc}") from exc
        self._store(key, payload, timestamp)

    def fetch(self, key: str, start_time: int, end_time: int) -> list[tuple[int, Any]]:
        """Points of ``key`` with ``start_time <= timestamp < end_time``, sorted by time."""
        _check_point_key(key)
        lo, hi = _check_range(start_time, end_time, allow_open=False, allow_empty=True)
        assert lo is not None and hi is not None
        return [(ts, json.loads(p)) for ts, p in self._fetch(key, lo, hi)]

    # -- lifecycle -----------------------------------------------------------------
    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and handles; the storage is unusable afterwards."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # -- what backends implement ------------------------------------------------------
    @abstractmethod
    def _write(
        self, key: DatasetKey, frame: pd.DataFrame, covered: IntervalSet | None, stamp: Stamp
    ) -> int:
        """Upsert a normalised frame, then extend coverage (never an empty set), and
        update the dataset's :class:`DatasetInfo` (rows, first, last, ``stamp``); return
        rows written."""

    @abstractmethod
    def _infos(self, keys: Sequence[DatasetKey]) -> dict[DatasetKey, DatasetInfo]:
        """The :class:`DatasetInfo` of each of ``keys`` from metadata, never from rows
        (an empty one for a key not stored)."""

    @abstractmethod
    def _read(
        self, key: DatasetKey, start: int | None, end: int | None, columns: list[str] | None
    ) -> pd.DataFrame:
        """Rows in ``[start, end)`` (any column order/dtype; ``conform`` fixes them)."""

    @abstractmethod
    def _keys(self) -> list[DatasetKey]:
        """Every dataset key with rows or coverage."""

    @abstractmethod
    def _delete(self, key: DatasetKey, start: int | None, end: int | None) -> None:
        """Remove rows and coverage in the range."""

    @abstractmethod
    def _store(self, key: str, payload: str, timestamp: int) -> None:
        """Keep a JSON text at ``timestamp``."""

    @abstractmethod
    def _fetch(self, key: str, start: int, end: int) -> list[tuple[int, str]]:
        """JSON texts in ``[start, end)`` sorted by time."""


def _check_key(key: object) -> DatasetKey:
    if isinstance(key, DatasetKey):
        return key
    if isinstance(key, str):
        return DatasetKey.parse(key)
    raise InvalidRequest(f"expected a DatasetKey, got {type(key).__name__}: {key!r}")


def _check_point_key(key: object) -> None:
    if not isinstance(key, str) or not key or "\x00" in key:
        raise InvalidRequest(f"point key must be a non-empty string without NUL, got {key!r}")


def _as_ms(v: object, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer):
        raise InvalidRequest(f"{name} must be an int of ms since the epoch, got {v!r}")
    return int(v)


def _check_range(
    start: object, end: object, *, allow_open: bool, allow_empty: bool = False
) -> tuple[int | None, int | None]:
    lo = None if start is None and allow_open else _as_ms(start, "start")
    hi = None if end is None and allow_open else _as_ms(end, "end")
    if lo is not None and hi is not None and (hi < lo or (hi == lo and not allow_empty)):
        raise InvalidRequest(
            f"range end {format_ms(hi)} must be after start {format_ms(lo)} "
            "(ranges are half-open [start, end))"
        )
    return lo, hi


def clip_range(set_: IntervalSet, start: int | None, end: int | None) -> IntervalSet:
    """``set_`` minus ``[start, end)`` (open bounds reach to infinity)."""
    lo = start if start is not None else -(2**62)
    hi = end if end is not None else 2**62
    return set_ - Interval(lo, hi)
