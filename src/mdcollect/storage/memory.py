"""``memory://``: an in-process backend for tests and notebooks."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pandas as pd
from attrs import evolve

from .._intervals import IntervalSet
from .._keys import DatasetKey
from .._schema import merge_frames, slice_frame
from ._base import DataCollectionStorage, DatasetInfo, Stamp, clip_range, frame_span


class MemoryStorage(DataCollectionStorage):
    """Keeps everything in dicts of this process; gone when the object is.

    >>> storage = open_storage("memory://")
    """

    def __init__(self) -> None:
        self.url = "memory://"
        self._frames: dict[DatasetKey, pd.DataFrame] = {}
        self._coverage: dict[DatasetKey, IntervalSet] = {}
        # last write and sources; rows, first and last come from the frame itself
        self._stamps: dict[DatasetKey, DatasetInfo] = {}
        self._points: dict[str, dict[int, str]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str) -> MemoryStorage:
        """Open from ``memory://``."""
        return cls()

    def _write(
        self, key: DatasetKey, frame: pd.DataFrame, covered: IntervalSet | None, stamp: Stamp
    ) -> int:
        with self._lock:
            if len(frame) or covered is not None:
                self._stamps[key] = self._stamps.get(key, DatasetInfo()).stamped(stamp)
            old = self._frames.get(key)
            if len(frame) or old is not None:
                merged = frame if old is None else merge_frames(key.kind, old, frame)
                self._frames[key] = merged
            if covered is not None:
                self._coverage[key] = self._coverage.get(key, IntervalSet()) | covered
        return len(frame)

    def _read(
        self, key: DatasetKey, start: int | None, end: int | None, columns: list[str] | None
    ) -> pd.DataFrame:
        with self._lock:
            frame = self._frames.get(key)
        if frame is None:
            return pd.DataFrame()
        out = slice_frame(frame, start, end)
        if columns is not None:
            out = out[[c for c in columns if c in out.columns]]
        return out.copy()

    def coverage(self, key: DatasetKey | str) -> IntervalSet:
        from ._base import _check_key

        with self._lock:
            return self._coverage.get(_check_key(key), IntervalSet())

    def _infos(self, keys: Sequence[DatasetKey]) -> dict[DatasetKey, DatasetInfo]:
        out = {}
        with self._lock:
            for key in keys:
                frame = self._frames.get(key)
                info = self._stamps.get(key, DatasetInfo())
                span = frame_span(frame) if frame is not None else None
                out[key] = evolve(
                    info,
                    rows=0 if frame is None else len(frame),
                    first=span[0] if span else None,
                    last=span[1] if span else None,
                    coverage=self._coverage.get(key, IntervalSet()),
                    bytes=None,  # no disk
                )
        return out

    def _keys(self) -> list[DatasetKey]:
        with self._lock:
            return [*self._frames, *self._coverage]

    def _delete(self, key: DatasetKey, start: int | None, end: int | None) -> None:
        with self._lock:
            if start is None and end is None:
                self._frames.pop(key, None)
                self._coverage.pop(key, None)
                self._stamps.pop(key, None)
                return
            frame = self._frames.get(key)
            if frame is not None:
                inside = slice_frame(frame, start, end).index
                self._frames[key] = frame[~frame.index.isin(inside)]
            if key in self._coverage:
                self._coverage[key] = clip_range(self._coverage[key], start, end)

    def _store(self, key: str, payload: str, timestamp: int) -> None:
        with self._lock:
            self._points.setdefault(key, {})[timestamp] = payload

    def _fetch(self, key: str, start: int, end: int) -> list[tuple[int, str]]:
        with self._lock:
            points = dict(self._points.get(key, {}))
        return sorted((ts, p) for ts, p in points.items() if start <= ts < end)
