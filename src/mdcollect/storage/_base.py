"""The storage interface every backend implements, and the checks they share."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Self

import numpy as np
import pandas as pd

from .._errors import InvalidRequest
from .._intervals import Interval, IntervalSet
from .._keys import KINDS, DatasetKey, Kind
from .._redact import redact, secrets_in
from .._schema import conform, normalize_frame
from .._time import format_ms

__all__ = ["DataCollectionStorage"]


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
        return redact(self._raw_url)

    @url.setter
    def url(self, raw: str) -> None:
        # backends assign the URL they were opened with; it stays private
        self._raw_url = raw
        self._secrets = secrets_in(raw)

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
    ) -> int:
        """Upsert ``frame``'s rows into ``key``; then mark ``covered`` complete.

        ``frame`` has a UTC ``DatetimeIndex`` (or a ``timestamp`` column of ms ints)
        and the kind's columns. ``covered`` is one :class:`Interval`, or an
        :class:`IntervalSet` when the rows complete several separate ranges (one
        write instead of one per range). Returns the number of rows written.
        """
        key = _check_key(key)
        if covered is not None and not isinstance(covered, Interval | IntervalSet):
            raise InvalidRequest(
                "covered must be an Interval(start_ms, end_ms), an IntervalSet or None,"
                f" got {covered!r}"
            )
        cov = IntervalSet([covered]) if isinstance(covered, Interval) else covered
        norm = normalize_frame(key.kind, frame, strict=True, timeframe=key.tf)
        return self._write(key, norm, cov or None)

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
    def _write(self, key: DatasetKey, frame: pd.DataFrame, covered: IntervalSet | None) -> int:
        """Upsert a normalised frame, then extend coverage (never an empty set); return
        rows written."""

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
