"""``parquet://PATH``: portable Parquet files, partitioned by time, written atomically.

Layout under the root (every part is safe, see :mod:`mdcollect.storage._naming`)::

    ROOT/<exchange>/<kind>/<timeframe or ->/<encoded symbol>/
        2024-01.parquet        one file per time partition (see below)
        2024-02.parquet
        _coverage.json         {"version": 1, "coverage": [[start_ms, end_ms], ...],
                                "parts": ["2024-01", "2024-02"]}
        _info.json             for the catalog: {"version": 1, "parts": {"2024-01":
                                [rows, first_ms, last_ms, bytes], ...}, "last_write": ms,
                                "sources": [...]}
    ROOT/_points/<encoded key>/2024-01-01.jsonl   single points, one file per UTC day
    ROOT/.locks/               one lock file per dataset (flock), never deleted
    ROOT/.trash/               datasets being deleted (renamed away first)

Partitions are sized so that a year reads from a handful of files and a daily
append rewrites one small file: a UTC **year** per file for candles of 1h and
longer and for funding, a UTC **month** for candles from 1m to under 1h, a UTC
**day** for sub-minute candles, trades, tickers and order books.

Crash safety: every partition and coverage file is written to a temp file in
the same directory (``.tmp-*``), fsynced, then moved over the old one with
``os.replace``; the directory is fsynced after. Coverage is written after the
partitions it covers, and on delete it is cut before the rows, so a process
killed at any point leaves every file whole and coverage never ahead of the
rows. Readers only look at partition names, so stray temp files are invisible;
the next write of the dataset removes them. Writers of one dataset (threads or
processes) are serialised with :func:`~mdcollect.storage._locks.file_lock`;
readers take no lock.

Files lost or added by hand: ``_coverage.json`` lists the partitions that existed
when it was written; when one of them is gone (deleted, lost in a copy), the
coverage over its span is dropped on reading, so ``ensure`` fetches it again (a
partition whose rows were cut by hand is not noticed: counting every file's rows
on each ``coverage()`` would not be cheap). A file named like a partition that
is not a date (``2024-13.parquet``) is ignored, with a warning.

``_info.json`` is written after the partitions and before the coverage, each time a
write or delete changes them; a partition it does not list (or lists with another
size: a file replaced by hand, a write that died before its ``_info.json``) is
described from the file's own Parquet footer and timestamp column, so the catalog
stays right without reading the data of the other partitions.

Single points are appended to a per-day JSON-lines file (``ts<TAB>json``) and
fsynced; a torn last line (power loss) is ignored by readers and cut off by the
next append. The last line for a timestamp wins.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from attrs import Factory, define, frozen

from .._errors import InvalidRequest, StorageError
from .._intervals import Interval, IntervalSet
from .._keys import DatasetKey
from .._redact import redact
from .._schema import SCHEMAS, merge_frames
from .._time import HOUR, MINUTE, NS_PER_MS, index_ms
from ._base import (
    DataCollectionStorage,
    DatasetInfo,
    Stamp,
    _check_key,
    add_source,
    clip_range,
    frame_span,
)
from ._locks import file_lock
from ._naming import encode_name, key_name, key_parts, parse_key_name

__all__ = ["ParquetStorage"]

log = logging.getLogger("mdcollect.storage")

Unit = Literal["Y", "M", "D"]

_PART_RE: Final = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?\.parquet$")
_POINTS_RE: Final = re.compile(r"^(\d{4}-\d{2}-\d{2})\.jsonl$")
_SAFE_PART_RE: Final = re.compile(r"^[A-Za-z0-9_%-]+$")
_EXCHANGE_DIR_RE: Final = re.compile(r"^[a-z][a-z0-9_]*$")
_COVERAGE: Final = "_coverage.json"
_INFO: Final = "_info.json"
_TMP: Final = ".tmp-"
_POINTS_DIR: Final = "_points"
_LOCKS_DIR: Final = ".locks"
_TRASH_DIR: Final = ".trash"
_TS: Final = "timestamp"
_READ_ATTEMPTS: Final = 3


@frozen
class _Part:
    """One partition file and the half-open ms range its name stands for."""

    path: Path
    start: int
    end: int

    def overlaps(self, start: int | None, end: int | None) -> bool:
        return (end is None or self.start < end) and (start is None or self.end > start)


class ParquetStorage(DataCollectionStorage):
    """Parquet files under one directory, partitioned by time, with atomic writes.

    Open it by URL (``parquet:///abs/path`` or ``parquet://relative/path``) or
    directly; the directory is created if missing::

        >>> storage = open_storage("parquet:///data/md")
        >>> key = DatasetKey("binance", "BTC/USDT", "ohlcv", "1m")
        >>> storage.write(key, frame, covered=Interval(start, end))
        1440
        >>> storage.read(key, start, end, columns=["close"])  # reads only the months it needs

    ``compression`` is any Parquet codec pyarrow knows (``zstd`` by default:
    smallest files here and as fast to read as ``snappy``).
    """

    def __init__(self, root: str | os.PathLike[str], *, compression: str = "zstd") -> None:
        path = Path(root).expanduser()
        try:
            path = path.resolve()
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"cannot create parquet storage directory {str(path)!r}: {exc}"
            ) from exc
        if not path.is_dir():
            raise StorageError(f"parquet storage root {str(path)!r} is not a directory")
        self._root = path
        self._compression = compression
        self.url = f"parquet://{path}"

    @classmethod
    def from_url(cls, url: str) -> ParquetStorage:
        """Open from ``parquet:///absolute/path`` or ``parquet://relative/path``."""
        scheme, sep, rest = url.partition("://")
        if scheme.lower() != "parquet" or not sep:
            raise InvalidRequest(f"not a parquet storage URL: {redact(url)!r}")
        if not rest:
            raise InvalidRequest(
                f"parquet URL {redact(url)!r} names no directory; use parquet:///absolute/path "
                "or parquet://relative/path"
            )
        return cls(rest)

    @property
    def root(self) -> Path:
        """The directory everything is stored under."""
        return self._root

    # -- paths -------------------------------------------------------------------------
    def _dataset_dir(self, key: DatasetKey) -> Path:
        parts = key_parts(key)
        for part in parts:
            # encode_name guarantees this; checked again because a path outside the
            # root would be much worse than a refused key
            if not _SAFE_PART_RE.match(part):
                raise StorageError(f"unsafe storage name {part!r} for {key}")
        return self._root.joinpath(*parts)

    def _lock_path(self, name: str) -> Path:
        return self._root / _LOCKS_DIR / f"{name}.lock"

    # -- frames ------------------------------------------------------------------------
    def _write(
        self, key: DatasetKey, frame: pd.DataFrame, covered: IntervalSet | None, stamp: Stamp
    ) -> int:
        if len(frame) == 0 and covered is None:
            return 0
        directory = self._dataset_dir(key)
        with self._io(f"writing {key}"), file_lock(self._lock_path(key_name(key))):
            directory.mkdir(parents=True, exist_ok=True)
            _remove_temps(directory)
            created = False
            info = _load_info(directory)
            if len(frame):
                unit = _partition_unit(key)
                for label, part in _split(frame, unit):
                    path = directory / f"{label}.parquet"
                    if path.exists():
                        part = merge_frames(key.kind, _table_to_frame(pq.read_table(path)), part)
                    else:
                        created = True
                    self._write_parquet(path, part)
                    info.parts[label] = _part_info(path, part)
                # the renames must be durable before coverage can claim them
                _fsync_dir(directory)
            info.last_write = stamp.at
            info.sources = list(add_source(info.sources, stamp.source))
            _write_info(directory, info)
            state = _load_state(directory)
            old = _load_coverage(directory)  # without spans whose partition is gone
            new = old | covered if covered is not None else old
            # the coverage file also lists the partitions, to notice one that goes missing
            if (covered is not None or state is not None) and (
                state is None or new != state.coverage or created or state.parts is None
            ):
                _write_coverage(directory, new)
        log.debug("parquet: wrote %d rows to %s (covered %s)", len(frame), key, covered)
        return len(frame)

    def _read(
        self, key: DatasetKey, start: int | None, end: int | None, columns: list[str] | None
    ) -> pd.DataFrame:
        directory = self._dataset_dir(key)
        for attempt in range(_READ_ATTEMPTS):
            try:
                with self._io(f"reading {key}"):
                    parts = [p for p in _partitions(directory) if p.overlaps(start, end)]
                    if not parts:
                        return pd.DataFrame()
                    table = _load_table(key, parts, start, end, columns)
                return _table_to_frame(table)
            except StorageError as exc:
                # a partition removed between listing and reading (delete, or an
                # empty partition unlinked): list again
                if (
                    not isinstance(exc.__cause__, FileNotFoundError)
                    or attempt + 1 == _READ_ATTEMPTS
                ):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def coverage(self, key: DatasetKey | str) -> IntervalSet:
        """The ranges of ``key`` known to be complete (from its ``_coverage.json``)."""
        key = _check_key(key)
        with self._io(f"reading coverage of {key}"):
            return _load_coverage(self._dataset_dir(key))

    def _infos(self, keys: Sequence[DatasetKey]) -> dict[DatasetKey, DatasetInfo]:
        out = {}
        for key in keys:
            directory = self._dataset_dir(key)
            with self._io(f"reading the metadata of {key}"):
                if not directory.is_dir():
                    out[key] = DatasetInfo()
                    continue
                out[key] = _described(directory, _load_info(directory), _load_coverage(directory))
        return out

    def _keys(self) -> list[DatasetKey]:
        found: list[DatasetKey] = []
        with self._io("listing datasets"):
            for exchange in _subdirs(self._root):
                if not _EXCHANGE_DIR_RE.match(exchange.name):
                    continue  # _points, .locks, .trash, stray files
                for kind in _subdirs(exchange):
                    for tf in _subdirs(kind):
                        for sym in _subdirs(tf):
                            if not _has_dataset(sym):
                                continue
                            names = (exchange.name, kind.name, tf.name, sym.name)
                            key = parse_key_name(".".join(names))
                            if key is not None and key_parts(key) == names:
                                found.append(key)
        return found

    def _delete(self, key: DatasetKey, start: int | None, end: int | None) -> None:
        directory = self._dataset_dir(key)
        with self._io(f"deleting from {key}"), file_lock(self._lock_path(key_name(key))):
            if not directory.is_dir():
                return
            if start is None and end is None:
                self._delete_dir(directory)
                log.debug("parquet: deleted dataset %s", key)
                return
            _remove_temps(directory)
            # coverage first: it must never claim rows that are gone
            if (directory / _COVERAGE).exists():
                old = _load_coverage(directory)
                new = clip_range(old, start, end)
                if new != old:
                    _write_coverage(directory, new)
            lo = -(2**62) if start is None else start
            hi = 2**62 if end is None else end
            info = _load_info(directory)
            for part in _partitions(directory):
                if not part.overlaps(start, end):
                    continue
                label = _label(part)
                if lo <= part.start and part.end <= hi:
                    part.path.unlink()
                    info.parts.pop(label, None)
                    continue
                frame = _table_to_frame(pq.read_table(part.path))
                ms = index_ms(frame)
                keep = (ms < lo) | (ms >= hi)
                if keep.all():
                    continue
                if keep.any():
                    self._write_parquet(part.path, frame[keep])
                    info.parts[label] = _part_info(part.path, frame[keep])
                else:
                    part.path.unlink()
                    info.parts.pop(label, None)
            _fsync_dir(directory)
            _write_info(directory, info)
            state = _load_state(directory)
            if state is not None and state.parts != frozenset(
                _label(p) for p in _partitions(directory)
            ):
                _write_coverage(directory, state.coverage)  # the partitions left
        log.debug("parquet: deleted [%s, %s) from %s", start, end, key)

    def _delete_dir(self, directory: Path) -> None:
        trash = self._root / _TRASH_DIR
        trash.mkdir(exist_ok=True)
        for stale in trash.iterdir():  # left by a delete that was killed
            shutil.rmtree(stale, ignore_errors=True)
        grave = trash / uuid.uuid4().hex
        # one rename takes the whole dataset (rows and coverage) out of sight at once
        os.replace(directory, grave)
        _fsync_dir(directory.parent)
        shutil.rmtree(grave, ignore_errors=True)

    def _write_parquet(self, path: Path, frame: pd.DataFrame) -> None:
        table = _frame_to_table(frame)
        strings = [f.name for f in table.schema if pa.types.is_string(f.type)]
        encodings = {
            f.name: ("BYTE_STREAM_SPLIT" if pa.types.is_floating(f.type) else "DELTA_BINARY_PACKED")
            for f in table.schema
            if pa.types.is_floating(f.type)
            or pa.types.is_integer(f.type)
            or pa.types.is_timestamp(f.type)
        }

        def write(tmp: Path) -> None:
            pq.write_table(
                table,
                str(tmp),
                compression=self._compression,
                use_dictionary=strings or False,
                column_encoding=encodings or None,
            )

        _atomic_write(path, write)

    # -- single points -----------------------------------------------------------------
    def _points_dir(self, key: str) -> Path:
        return self._root / _POINTS_DIR / encode_name(key)

    def _store(self, key: str, payload: str, timestamp: int) -> None:
        directory = self._points_dir(key)
        day = np.datetime_as_string(np.datetime64(timestamp, "ms").astype("datetime64[D]"))
        path = directory / f"{day}.jsonl"
        line = f"{timestamp}\t{payload}\n".encode()
        with (
            self._io(f"storing point {key!r}"),
            file_lock(self._lock_path(f"{_POINTS_DIR}.{directory.name}")),
        ):
            directory.mkdir(parents=True, exist_ok=True)
            created = not path.exists()
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                _cut_torn_tail(fd)
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                _fsync_dir(directory)

    def _fetch(self, key: str, start: int, end: int) -> list[tuple[int, str]]:
        directory = self._points_dir(key)
        points: dict[int, str] = {}
        first_day = np.datetime64(start, "ms").astype("datetime64[D]")
        last_day = np.datetime64(end - 1, "ms").astype("datetime64[D]") if end > start else None
        with self._io(f"fetching points {key!r}"):
            if not directory.is_dir() or last_day is None:
                return []
            for entry in sorted(os.scandir(directory), key=lambda e: e.name):
                m = _POINTS_RE.match(entry.name)
                if m is None:
                    continue
                day = np.datetime64(m.group(1), "D")
                if not first_day <= day <= last_day:
                    continue
                try:
                    data = Path(entry.path).read_bytes()
                except FileNotFoundError:
                    continue
                for ts, payload in _parse_points(data, entry.path):
                    if start <= ts < end:
                        points[ts] = payload
        return sorted(points.items())

    # -- errors ------------------------------------------------------------------------
    @contextmanager
    def _io(self, what: str) -> Iterator[None]:
        try:
            yield
        except (OSError, pa.ArrowException) as exc:
            raise StorageError(
                f"parquet storage {str(self._root)!r}: {what} failed: {exc}"
            ) from exc
        except json.JSONDecodeError as exc:
            raise StorageError(
                f"parquet storage {str(self._root)!r}: {what} failed: corrupt coverage file: {exc}"
            ) from exc


# -- partitions ------------------------------------------------------------------------


def _partition_unit(key: DatasetKey) -> Unit:
    """Year for sparse series, month for minute candles, day for dense ones."""
    if key.kind in ("trades", "ticker", "orderbook", "funding_snapshot", "raw"):
        return "D"
    tf = key.tf
    if tf is None or tf.is_calendar or tf.ms >= HOUR:
        return "Y"  # funding, 1h and longer candles
    if tf.ms >= MINUTE:
        return "M"
    return "D"


def _split(frame: pd.DataFrame, unit: Unit) -> Iterator[tuple[str, pd.DataFrame]]:
    """Consecutive slices of a sorted frame, one per partition, with their labels."""
    index = frame.index
    assert isinstance(index, pd.DatetimeIndex)
    labels = index.asi8.astype("datetime64[ns]").astype(f"datetime64[{unit}]")
    cuts = [0, *(np.flatnonzero(labels[1:] != labels[:-1]) + 1).tolist(), len(frame)]
    for lo, hi in itertools.pairwise(cuts):
        yield str(np.datetime_as_string(labels[lo], unit=unit)), frame.iloc[lo:hi]


def _partitions(directory: Path) -> list[_Part]:
    """The dataset's partition files, in time order (temp files and others ignored)."""
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    parts = []
    for entry in entries:
        if _PART_RE.match(entry.name) is None:
            continue
        span = _label_span(entry.name.removesuffix(".parquet"))
        if span is None:
            # named like a partition but no date (2024-13.parquet): not ours, not read
            log.warning("parquet: ignoring %s: not a partition of this store", entry.path)
            continue
        parts.append(_Part(Path(entry.path), *span))
    parts.sort(key=lambda p: (p.start, p.end))
    return parts


def _label_span(label: str) -> tuple[int, int] | None:
    """The ms range ``[start, end)`` a partition label (``2024``, ``2024-01``,
    ``2024-01-05``) stands for; ``None`` when it is not a date."""
    m = _PART_RE.match(f"{label}.parquet")
    if m is None:
        return None
    unit: Unit = "D" if m.group(3) else "M" if m.group(2) else "Y"
    try:
        first = np.datetime64(label, unit)
    except ValueError:
        return None
    start = int(first.astype("datetime64[ms]").astype(np.int64))
    end = int((first + 1).astype("datetime64[ms]").astype(np.int64))
    return start, end


def _label(part: _Part) -> str:
    return part.path.name.removesuffix(".parquet")


def _has_dataset(directory: Path) -> bool:
    try:
        with os.scandir(directory) as it:
            return any(
                e.name == _COVERAGE
                or (_PART_RE.match(e.name) and _label_span(e.name.removesuffix(".parquet")))
                for e in it
            )
    except FileNotFoundError:
        return False


def _subdirs(directory: Path) -> list[Path]:
    try:
        with os.scandir(directory) as it:
            return [Path(e.path) for e in it if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []


# -- frames <-> arrow ----------------------------------------------------------------------


def _frame_to_table(frame: pd.DataFrame) -> pa.Table:
    index = frame.index
    assert isinstance(index, pd.DatetimeIndex)
    arrays: list[pa.Array] = [pa.array(index.as_unit("ns"), type=pa.timestamp("ns", tz="UTC"))]
    names = [_TS]
    for name in frame.columns:
        values = frame[name].to_numpy()
        arrays.append(
            pa.array(values, type=pa.string()) if values.dtype == object else pa.array(values)
        )
        names.append(str(name))
    return pa.Table.from_arrays(arrays, names=names)


def _table_to_frame(table: pa.Table) -> pd.DataFrame:
    stamps = table.column(_TS)
    if stamps.type != pa.timestamp("ns", tz="UTC"):
        stamps = stamps.cast(pa.timestamp("ns", tz="UTC"))
    frame: pd.DataFrame = table.drop_columns([_TS]).to_pandas()
    # from the int64 values: several times faster than to_pandas() on a tz-aware column
    ns = stamps.cast(pa.int64()).to_numpy().view("datetime64[ns]")
    frame.index = pd.DatetimeIndex(ns, dtype="datetime64[ns, UTC]", name=_TS)
    return frame


def _load_table(
    key: DatasetKey,
    parts: Sequence[_Part],
    start: int | None,
    end: int | None,
    columns: list[str] | None,
) -> pa.Table:
    """The rows of ``parts`` in ``[start, end)`` as one table (columns pushed down)."""
    tables = []
    for part in parts:
        with pq.ParquetFile(part.path) as pf:
            present = pf.schema_arrow.names
            wanted = None if columns is None else [_TS, *(c for c in columns if c in present)]
            table = pf.read(columns=wanted, use_pandas_metadata=False)
        if (start is not None and part.start < start) or (end is not None and part.end > end):
            table = _slice(table, start, end)
        tables.append(table)
    table = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")
    # an optional int column (ohlcv `trades`) is only kept when every row has it,
    # as merge_frames does within a partition
    schema = SCHEMAS[key.kind]
    drop = [
        c
        for c, dtype in schema.optional.items()
        if dtype == "int64" and c in table.column_names and table.column(c).null_count
    ]
    return table.drop_columns(drop) if drop else table


def _slice(table: pa.Table, start: int | None, end: int | None) -> pa.Table:
    ns = table.column(_TS).cast(pa.int64()).to_numpy()
    lo = 0 if start is None else int(np.searchsorted(ns, start * NS_PER_MS, side="left"))
    hi = len(ns) if end is None else int(np.searchsorted(ns, end * NS_PER_MS, side="left"))
    return table.slice(lo, hi - lo)


# -- coverage ------------------------------------------------------------------------------


@frozen
class _CoverageFile:
    """What ``_coverage.json`` holds: the coverage, and the partitions that existed when
    it was last written (``None`` in files written before they were recorded)."""

    coverage: IntervalSet
    parts: frozenset[str] | None


def _load_state(directory: Path) -> _CoverageFile | None:
    try:
        text = (directory / _COVERAGE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    data: Any = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("coverage"), list):
        raise json.JSONDecodeError("expected {'coverage': [[start, end], ...]}", text, 0)
    parts = data.get("parts")
    if parts is not None and (
        not isinstance(parts, list) or not all(isinstance(p, str) for p in parts)
    ):
        raise json.JSONDecodeError("expected 'parts' to be a list of partition names", text, 0)
    try:
        coverage = IntervalSet.from_list(data["coverage"])
    except (InvalidRequest, TypeError) as exc:
        raise json.JSONDecodeError(f"bad interval: {exc}", text, 0) from exc
    return _CoverageFile(coverage, None if parts is None else frozenset(parts))


def _load_coverage(directory: Path) -> IntervalSet:
    """The coverage of the dataset in ``directory``, minus the spans of partitions it was
    written with that are gone (a file deleted by hand): their rows are not there."""
    state = _load_state(directory)
    if state is None:
        return IntervalSet()
    coverage = state.coverage
    if state.parts is None or not coverage:
        return coverage
    missing = state.parts - {_label(p) for p in _partitions(directory)}
    for label in sorted(missing):
        span = _label_span(label)
        if span is None:
            continue
        lost = coverage & IntervalSet([Interval(*span)])
        if lost:
            log.warning(
                "parquet: %s is gone; its coverage %s is dropped (refetched by the next ensure)",
                directory / f"{label}.parquet",
                lost,
            )
            coverage = coverage - Interval(*span)
    return coverage


def _write_coverage(directory: Path, coverage: IntervalSet) -> None:
    parts = sorted(_label(p) for p in _partitions(directory))
    text = json.dumps({"version": 1, "coverage": coverage.to_list(), "parts": parts})
    _atomic_write(directory / _COVERAGE, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    _fsync_dir(directory)


# -- what the catalog shows: _info.json -----------------------------------------------------


@define
class _Info:
    """``_info.json``: per partition ``[rows, first_ms, last_ms, bytes]``, the last write
    (ms) and the sources seen."""

    parts: dict[str, list[int]] = Factory(dict)
    last_write: int | None = None
    sources: list[str] = Factory(list)


def _part_info(path: Path, frame: pd.DataFrame) -> list[int]:
    """``[rows, first_ms, last_ms, bytes]`` of a partition just written from ``frame``."""
    span = frame_span(frame)
    assert span is not None
    return [len(frame), span[0], span[1], path.stat().st_size]


def _load_info(directory: Path) -> _Info:
    try:
        data: Any = json.loads((directory / _INFO).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return _Info()
    except (json.JSONDecodeError, UnicodeDecodeError):
        log.warning("parquet: %s is not valid JSON; described from the files", directory / _INFO)
        return _Info()
    if not isinstance(data, dict):
        return _Info()
    parts = data.get("parts")
    return _Info(
        parts={
            str(label): [int(v) for v in row]
            for label, row in (parts.items() if isinstance(parts, dict) else ())
            if isinstance(row, list) and len(row) == 4
        },
        last_write=data.get("last_write") if isinstance(data.get("last_write"), int) else None,
        sources=[str(v) for v in data.get("sources") or () if isinstance(v, str)],
    )


def _write_info(directory: Path, info: _Info) -> None:
    text = json.dumps(
        {
            "version": 1,
            "parts": dict(sorted(info.parts.items())),
            "last_write": info.last_write,
            "sources": info.sources,
        }
    )
    _atomic_write(directory / _INFO, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _described(directory: Path, info: _Info, coverage: IntervalSet) -> DatasetInfo:
    """The catalog's view of a dataset: ``info`` for the partitions it describes (same
    size on disk), each other partition from its own footer and timestamp column."""
    rows, first, last, size = 0, None, None, 0
    for part in _partitions(directory):
        try:
            on_disk = part.path.stat().st_size
        except FileNotFoundError:
            continue  # deleted meanwhile
        known = info.parts.get(_label(part))
        if known is None or known[3] != on_disk:
            stamps = pq.read_table(part.path, columns=[_TS]).column(_TS)
            ns = stamps.cast(pa.timestamp("ns", tz="UTC")).cast(pa.int64()).to_numpy()
            if not len(ns):
                continue
            known = [len(ns), int(ns.min()) // NS_PER_MS, int(ns.max()) // NS_PER_MS, on_disk]
        rows += known[0]
        first = known[1] if first is None else min(first, known[1])
        last = known[2] if last is None else max(last, known[2])
        size += on_disk
    return DatasetInfo(
        rows=rows,
        first=first,
        last=last,
        coverage=coverage,
        last_write=info.last_write,
        sources=tuple(info.sources),
        bytes=size,
    )


# -- files ---------------------------------------------------------------------------------


def _atomic_write(path: Path, write: Any) -> None:
    """``write(tmp)`` to a temp file beside ``path``, fsync it, then rename it over ``path``."""
    tmp = path.with_name(f"{_TMP}{uuid.uuid4().hex}-{path.name}")
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_temps(directory: Path) -> None:
    """Remove temp files a killed writer left (callers hold the dataset's lock)."""
    with os.scandir(directory) as it:
        stale = [e.path for e in it if e.name.startswith(_TMP)]
    for path in stale:
        log.warning("parquet: removing %s left by an interrupted write", path)
        Path(path).unlink(missing_ok=True)


def _cut_torn_tail(fd: int) -> None:
    """Truncate a points file after its last complete line (a write torn by a crash)."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    data = os.pread(fd, size, 0)
    keep = data.rfind(b"\n") + 1
    log.warning("parquet: cutting a torn point record (%d bytes)", size - keep)
    os.ftruncate(fd, keep)


def _parse_points(data: bytes, where: str) -> Iterator[tuple[int, str]]:
    lines = data.split(b"\n")
    # the last element is empty when the file ends with a newline, else a torn record
    for raw in lines[:-1]:
        ts_text, tab, payload = raw.partition(b"\t")
        try:
            if not tab:
                raise ValueError("no tab")
            yield int(ts_text), payload.decode("utf-8")
        except ValueError:
            log.warning("parquet: skipping a corrupt point record in %s: %r", where, raw[:80])
