"""``redis://HOST:PORT/DB``: a real Redis server, for live data and fan-out.

Needs the ``redis`` extra (``pip install mdcollect[redis]``) and a stock Redis >= 6.2;
no modules (RedisTimeSeries, RedisJSON) are used.

Layout
------
Every key lives under a prefix (``mdcollect:`` unless the URL says
``?prefix=...``). A dataset's name is :func:`~mdcollect.storage._naming.key_name`
of its key, inside a Redis Cluster hash tag so that all of a dataset's keys share
one slot::

    {prefix}ds:{NAME}:meta        hash    format version and bucket span (ms);
                                          its existence is what keys() lists
    {prefix}ds:{NAME}:idx         zset    bucket starts (score = member = start ms)
    {prefix}ds:{NAME}:b:START     string  the bucket's rows: appended segments
    {prefix}ds:{NAME}:nseg        hash    START -> segments in that bucket
    {prefix}ds:{NAME}:cov         list    covered intervals "start end" (union = coverage)
    {prefix}ds:{NAME}:nrows       hash    START -> rows in that bucket (exact while it has
                                          one segment; a sum, duplicates and all, after)
    {prefix}ds:{NAME}:ends        zset    "first"/"last": the first and last row (ms),
                                          kept by ZADD LT/GT; gone after a range delete
    {prefix}ds:{NAME}:src         zset    sources seen (lineage), score = last write ms
    {prefix}pt:POINTKEY           zset    single points of store()/fetch(), score = ts

Rows are cut into fixed, epoch-aligned time buckets (one UTC day of 1m candles,
one hour of trades/tickers/books, ...; the span is fixed per dataset at its first
write and kept in ``meta``). A bucket is a string of *segments*, each a 4-byte
little-endian length and an Arrow IPC stream of rows (``__ts`` int64 ns plus the
kind's columns). A write appends one segment to every bucket it touches with
``APPEND`` and adds the covered interval with ``RPUSH``, all in one ``MULTI``:
writers never read first, so concurrent writers (threads or processes) cannot lose
each other's rows and need no retries, and coverage commits with (never before) its
rows. Later segments win on read, which makes the commit order the "last write
wins" order. When a bucket has collected :data:`COMPACT_SEGMENTS` segments (or
:data:`COMPACT_CLOSED` once it lies wholly in the past: backfill, rewrites), the
writer that noticed merges it into one segment under ``WATCH`` (optimistic: if
someone appended meanwhile it simply tries again on a later write). Coverage lists
are compacted the same way. Deleting a range rewrites the partial buckets under
``WATCH`` (and subtracts coverage in the same transaction) with retries.

A bucket key that disappears behind mdcollect's back (``maxmemory`` eviction, a
``DEL`` by hand) would leave coverage claiming rows that are gone: ``coverage()``
checks that the covered buckets ``idx`` lists exist, and drops the span of a lost
one (from ``idx`` and the stored coverage), so ``ensure`` fetches it again.

A write larger than :data:`MAX_TRANSACTION_BYTES` of segments is split into
several transactions, the coverage in the last one (rows first, as always).

Reads take the bucket starts from ``idx`` with one ``ZRANGE BYSCORE`` and fetch the
buckets with pipelined ``MGET``; all segments are concatenated as Arrow tables and
converted to pandas once, and only when some bucket holds several segments are
the rows deduplicated (one stable sort; the last written row wins).

The catalog (:meth:`RedisStorage.info`) needs no rows either: a write adds its
rows per bucket to ``nrows``, its first and last row to ``ends`` and its source
and time to ``src`` and ``meta``, in the same ``MULTI`` and still without reading.
The rows of a bucket with several segments may overlap, so only those buckets
(usually the live one) are read and counted; a compaction or a range delete sets
the exact count again. ``bytes`` is not known (Redis does not tell it cheaply).

Every write also ``PUBLISH``-es a small JSON notice (``key``, ``start``, ``end``
in ms, ``rows``, ``covered``: ``[start, end]``, or a list of such pairs when the
write completed several ranges) on the channel ``{prefix}ds:{NAME}``, so live
consumers can fan out by subscribing instead of polling. With ``?publish_rows=N``
in the URL (opt-in), a notice also carries the rows themselves when the write has at
most ``N``: ``columns`` (``timestamp`` first, ms) and ``data`` (one list per row,
missing values as ``null``); a larger write says ``"data": null`` and
``"truncated": true``, and its rows are read from the store as usual.

Threads and asyncio
-------------------
One :class:`RedisStorage` may be shared by threads: every call takes its own
connection from redis-py's thread-safe pool (a pipeline is never shared). Async
code (live collectors) calls the sync API through ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import struct
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
import pandas as pd
import pyarrow as pa

from .._errors import InvalidRequest, StorageError, missing_extra
from .._intervals import Interval, IntervalSet
from .._keys import CANDLE_KINDS, DatasetKey, Kind
from .._redact import redact, secrets_in
from .._schema import SCHEMAS, normalize_frame, slice_frame
from .._time import DAY, HOUR, MINUTE, NS_PER_MS, Timeframe, index_ms, now_ms
from ._base import MAX_SOURCES, DataCollectionStorage, DatasetInfo, Stamp, _check_key, clip_range
from ._naming import key_name, parse_key_name

if TYPE_CHECKING:
    import redis as redis_mod

__all__ = ["COMPACT_CLOSED", "COMPACT_SEGMENTS", "RedisStorage", "default_span"]

log = logging.getLogger("mdcollect.storage")

#: A bucket holding this many segments is merged into one by the writer that noticed.
COMPACT_SEGMENTS: Final = 32
#: The same for a bucket wholly in the past (backfill, rewrites): fewer segments to read.
COMPACT_CLOSED: Final = 8
#: A coverage list this long is normalised back into its few intervals.
COMPACT_COVERAGE: Final = 64
#: One write transaction carries at most this many bytes of segments; a larger
#: write is split, with the coverage in the last transaction.
MAX_TRANSACTION_BYTES: Final = 64 * 1024 * 1024
#: Buckets fetched per MGET.
MGET_CHUNK: Final = 256
#: Attempts for optimistic (WATCH) read-modify-write transactions.
WATCH_ATTEMPTS: Final = 50
#: Layout version written into every dataset's meta hash.
FORMAT: Final = "1"

_TS: Final = "__ts"
_CODECS: Final = ("lz4", "zstd")
_LEN: Final = struct.Struct("<I")
_INF: Final = 2**62


def _import_redis() -> Any:
    try:
        import redis
    except ImportError as exc:
        raise StorageError(missing_extra("the redis:// storage", "redis", exc)) from exc
    return redis


def default_span(key: DatasetKey) -> int:
    """Bucket length in ms for a new dataset: about 1,000 to 10,000 rows when dense.
    Candles are the candle kinds (``ohlcv``, ``mark``, ``index``, ``premium``).

    ======================= =========
    candles 1s              1 hour
    candles 1m, 3m          1 day
    candles 5m .. 4h        30 days
    candles 6h or more, 1M  1000 days
    trades, ticker, book    1 hour
    funding_snapshot        1 hour
    funding                 30 days
    open_interest           30 days
    ======================= =========
    """
    if key.kind in CANDLE_KINDS:
        assert key.timeframe is not None
        tf = Timeframe.parse(key.timeframe)
        if tf.is_calendar:
            return 1000 * DAY
        if tf.ms < MINUTE:
            return HOUR
        if tf.ms <= 3 * MINUTE:
            return DAY
        if tf.ms <= 4 * HOUR:
            return 30 * DAY
        return 1000 * DAY
    if key.kind == "funding":
        return 30 * DAY
    if key.kind == "open_interest":  # 8,640 rows at 5m: the finest period there is
        return 30 * DAY
    return HOUR


# -- segments -------------------------------------------------------------------------------


def _columns(frame: pd.DataFrame) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    """``(timestamps as int64 ns, [(column, values), ...])`` of a normalised frame."""
    index = frame.index
    assert isinstance(index, pd.DatetimeIndex)
    return index.as_unit("ns").asi8, [(str(c), frame[c].to_numpy()) for c in frame.columns]


def _encode(
    ts_ns: np.ndarray,
    columns: list[tuple[str, np.ndarray]],
    options: pa.ipc.IpcWriteOptions | None = None,
) -> bytes:
    """One segment: length prefix + Arrow IPC stream of the rows."""
    arrays = [pa.array(ts_ns, type=pa.int64())]
    for _, values in columns:
        arrays.append(pa.array(values, type=pa.string() if values.dtype == object else None))
    table = pa.Table.from_arrays(arrays, names=[_TS, *[name for name, _ in columns]])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    body = sink.getvalue()
    return _LEN.pack(body.size) + bytes(body.to_pybytes())


def _encode_frame(frame: pd.DataFrame, options: pa.ipc.IpcWriteOptions | None = None) -> bytes:
    return _encode(*_columns(frame), options)


def _decode(raw: object) -> list[pa.Table]:
    """The Arrow tables of a bucket's segments, oldest first."""
    blob = _raw(raw)
    tables = []
    buf = pa.py_buffer(blob)
    pos, total = 0, len(blob)
    while pos < total:
        if pos + _LEN.size > total:
            raise StorageError("corrupt redis bucket: truncated segment header")
        (size,) = _LEN.unpack_from(blob, pos)
        pos += _LEN.size
        if pos + size > total:
            raise StorageError("corrupt redis bucket: truncated segment")
        tables.append(pa.ipc.open_stream(buf.slice(pos, size)).read_all())
        pos += size
    return tables


def _to_frame(table: pa.Table) -> pd.DataFrame:
    """Arrow table with ``__ts`` ns -> frame with the ``timestamp`` UTC index."""
    ts = table.column(_TS).to_numpy()
    data = {
        name: table.column(name).to_numpy(zero_copy_only=False)
        for name in table.column_names
        if name != _TS
    }
    index = pd.DatetimeIndex(ts.view("datetime64[ns]"), name="timestamp").tz_localize("UTC")
    return pd.DataFrame(data, index=index)


def _assemble(
    kind: Kind, buckets: list[list[pa.Table]], columns: list[str] | None = None
) -> pd.DataFrame:
    """One sorted frame of the buckets' rows (buckets in time order; later segments win).

    ``columns`` may be applied here already (the caller selects them again).
    """
    tables = [t for b in buckets for t in b]
    if not tables:
        return pd.DataFrame()
    merge = any(len(b) > 1 for b in buckets)
    keyed = SCHEMAS[kind].row_id is not None
    if all(t.schema.equals(tables[0].schema) for t in tables):
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        if columns is not None and not (merge and keyed):
            table = table.select([_TS, *[c for c in columns if c in table.column_names]])
        frame = _to_frame(table)
    else:
        frame = _concat(kind, [_to_frame(t) for t in tables])
    return _dedupe(kind, frame) if merge else frame


def _concat(kind: Kind, frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate frames whose columns differ, as :func:`merge_frames` would.

    An optional int column (``trades`` of ohlcv) missing from some rows is dropped.
    """
    out = pd.concat(frames)
    for col, dtype in SCHEMAS[kind].optional.items():
        if col in out.columns and dtype == "int64":
            if out[col].isna().any():
                out = out.drop(columns=[col])
            else:
                out[col] = out[col].astype("int64")
    return out


def _dedupe(kind: Kind, frame: pd.DataFrame) -> pd.DataFrame:
    """Keep the last row of each identity, sorted (the same rule as :func:`merge_frames`)."""
    if SCHEMAS[kind].row_id is not None:
        return normalize_frame(kind, frame)
    index = frame.index
    assert isinstance(index, pd.DatetimeIndex)
    ts = index.asi8
    # segments are sorted runs, so a stable sort is cheap; it keeps equal
    # timestamps in write order, and the last of each run wins
    order = np.argsort(ts, kind="stable")
    ordered = ts[order]
    last = np.ones(len(ordered), dtype=bool)
    last[:-1] = ordered[:-1] != ordered[1:]
    return frame.iloc[order[last]]


# -- the backend ------------------------------------------------------------------------------


class RedisStorage(DataCollectionStorage):
    """Market data in a Redis server: ``open_storage("redis://127.0.0.1:6379/0")``.

    ``?prefix=NAME:`` in the URL namespaces every key (default ``mdcollect:``);
    ``?compression=lz4`` (or ``zstd``) compresses new segments (about half the
    memory for real prices, a little slower to read; any segment is readable
    whatever the setting); other query parameters go to redis-py
    (``socket_timeout=...``, ...). The connection is lazy: a server that is down
    makes calls raise :class:`~mdcollect.StorageError` (with redis-py's error
    chained), and the same storage works again once the server is back.

    Safe to share between threads; see the module documentation for the layout.
    """

    def __init__(
        self,
        url: str,
        client: redis_mod.Redis,
        prefix: str = "mdcollect:",
        compression: str | None = None,
        publish_rows: int = 0,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.publish_rows = publish_rows
        self._ipc = pa.ipc.IpcWriteOptions(compression=compression)
        self._client = client
        self._redis: Any = _import_redis()
        self._closed = False
        self._spans: dict[DatasetKey, int] = {}

    @classmethod
    def from_url(cls, url: str) -> RedisStorage:
        """Open ``redis://[user:password@]HOST[:PORT][/DB][?prefix=P&...]``."""
        redis = _import_redis()
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("redis", "rediss") or not parts.hostname:
            raise InvalidRequest(
                f"redis storage URL {redact(url)!r} is not valid; "
                "use redis://HOST:PORT/DB[?prefix=NAME:]"
            )
        query = parse_qsl(parts.query, keep_blank_values=True)
        prefix = "mdcollect:"
        compression: str | None = None
        publish_rows = 0
        rest = []
        for name, value in query:
            if name == "prefix":
                if not value or "\x00" in value:
                    raise InvalidRequest(f"redis prefix {value!r} must be a non-empty string")
                prefix = value
            elif name == "compression":
                if value not in _CODECS or not pa.Codec.is_available(value):
                    raise InvalidRequest(
                        f"redis compression {value!r} is not available; allowed: "
                        + ", ".join(c for c in _CODECS if pa.Codec.is_available(c))
                    )
                compression = value
            elif name == "publish_rows":
                if not value.isdigit() or int(value) > 1_000_000:
                    raise InvalidRequest(
                        f"redis publish_rows {value!r} must be a whole number of rows from 0"
                        " (off) to 1000000"
                    )
                publish_rows = int(value)
            else:
                rest.append((name, value))
        client_url = urlunsplit(parts._replace(query=urlencode(rest)))
        retry = redis.retry.Retry(redis.backoff.ExponentialWithJitterBackoff(base=0.01, cap=0.5), 3)
        try:
            client = redis.Redis.from_url(
                client_url,
                socket_connect_timeout=5,
                socket_timeout=60,
                health_check_interval=30,
                retry=retry,
            )
        except ValueError as exc:
            message = f"redis storage URL {redact(url)!r} is not valid: {exc}"
            raise InvalidRequest(redact(message, secrets_in(url))) from exc
        return cls(url, client, prefix, compression, publish_rows)

    # -- plumbing ----------------------------------------------------------------------
    @contextlib.contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        if self._closed:
            raise StorageError(f"{self!r} is closed")
        try:
            yield
        except self._redis.exceptions.RedisError as exc:
            message = f"redis {what} failed on {self._where()}: {exc}"
            raise StorageError(self._redact(message)) from exc

    def _where(self) -> str:
        kw = self._client.connection_pool.connection_kwargs
        return f"{kw.get('host', '?')}:{kw.get('port', '?')}/{kw.get('db', 0)}"

    def _ds(self, key: DatasetKey) -> str:
        return f"{self.prefix}ds:{{{key_name(key)}}}"

    def _pt(self, key: str) -> str:
        return f"{self.prefix}pt:{key}"

    def _span(self, key: DatasetKey, ds: str) -> int:
        # A dataset's span is fixed at its first write; remember the stored one.
        span = self._spans.get(key)
        if span is None:
            raw = self._client.hget(f"{ds}:meta", "span")
            if raw is None:
                return default_span(key)
            span = self._spans[key] = _int(raw)
        return span

    # -- frames ------------------------------------------------------------------------
    def _write(
        self, key: DatasetKey, frame: pd.DataFrame, covered: IntervalSet | None, stamp: Stamp
    ) -> int:
        rows = len(frame)
        if rows == 0 and covered is None:
            return 0
        ds = self._ds(key)
        with self._guard(f"write of {key}"):
            span = self._span(key, ds)
            segments = list(self._segments(frame, span, self._ipc))
            batches: list[list[tuple[int, bytes, int]]] = [[]]
            size = 0
            for start, seg, n in segments:
                if size and size + len(seg) > MAX_TRANSACTION_BYTES:
                    batches.append([])
                    size = 0
                batches[-1].append((start, seg, n))
                size += len(seg)
            ends = (
                {"first": int(index_ms(frame)[0]), "last": int(index_ms(frame)[-1])} if rows else {}
            )
            to_compact: list[int] = []
            now = now_ms()
            cov_len = 0
            for i, batch in enumerate(batches):
                pipe = self._client.pipeline(transaction=True)
                pipe.hsetnx(f"{ds}:meta", "span", span)
                pipe.hsetnx(f"{ds}:meta", "format", FORMAT)
                for start, seg, _ in batch:
                    pipe.append(f"{ds}:b:{start}", seg)
                    pipe.hincrby(f"{ds}:nseg", str(start), 1)
                if batch:
                    pipe.zadd(f"{ds}:idx", {str(s): s for s, _, _ in batch})
                    for start, _, n in batch:
                        pipe.hincrby(f"{ds}:nrows", str(start), n)
                    pipe.zadd(f"{ds}:ends", {"first": ends["first"]}, lt=True)
                    pipe.zadd(f"{ds}:ends", {"last": ends["last"]}, gt=True)
                last = i == len(batches) - 1
                if last:
                    pipe.hset(f"{ds}:meta", "last_write", stamp.at)
                    if stamp.source is not None:
                        pipe.zadd(f"{ds}:src", {stamp.source: stamp.at})
                        pipe.zremrangebyrank(f"{ds}:src", 0, -MAX_SOURCES - 1)
                if last and covered is not None:
                    pipe.rpush(f"{ds}:cov", *(f"{iv.start} {iv.end}" for iv in covered))
                if last:
                    pipe.publish(ds, self._notice(key, frame, covered, self.publish_rows))
                results = pipe.execute()
                counts = results[3 : 2 + 2 * len(batch) : 2]
                to_compact += [
                    s
                    for (s, _, _), n in zip(batch, counts, strict=True)
                    if n >= (COMPACT_CLOSED if s + span <= now else COMPACT_SEGMENTS)
                ]
                if last and covered is not None:
                    cov_len = int(results[-2])
            log.debug("redis: wrote %d rows to %s in %d bucket(s)", rows, key, len(segments))
        # The rows are committed: housekeeping that fails is logged, not raised.
        try:
            for start in to_compact:
                self._compact_bucket(key, ds, start)
            if cov_len >= COMPACT_COVERAGE:
                self._compact_coverage(ds)
        except (self._redis.exceptions.RedisError, StorageError) as exc:
            log.warning("redis: compaction of %s failed (will retry later): %s", key, exc)
        return rows

    @staticmethod
    def _segments(
        frame: pd.DataFrame, span: int, options: pa.ipc.IpcWriteOptions
    ) -> Iterator[tuple[int, bytes, int]]:
        """``(bucket start, segment, rows)`` for each bucket the frame touches."""
        if len(frame) == 0:
            return
        ts_ns, columns = _columns(frame)
        buckets = (ts_ns // NS_PER_MS // span) * span
        cuts = np.flatnonzero(np.diff(buckets)) + 1
        bounds = [0, *cuts.tolist(), len(frame)]
        for lo, hi in itertools.pairwise(bounds):
            part = [(name, values[lo:hi]) for name, values in columns]
            yield int(buckets[lo]), _encode(ts_ns[lo:hi], part, options), hi - lo

    @staticmethod
    def _notice(
        key: DatasetKey, frame: pd.DataFrame, covered: IntervalSet | None, with_rows: int = 0
    ) -> str:
        first = last = None
        extra: dict[str, Any] = {}
        if len(frame):
            ms = index_ms(frame)
            first, last = int(ms[0]), int(ms[-1]) + 1
            if with_rows and len(frame) <= with_rows:
                values = frame.astype(object).where(frame.notna(), None).to_numpy().tolist()
                extra = {
                    "columns": ["timestamp", *map(str, frame.columns)],
                    "data": [[t, *row] for t, row in zip(ms.tolist(), values, strict=True)],
                }
            elif with_rows:
                extra = {"data": None, "truncated": True}
        return json.dumps(
            {
                "key": str(key),
                "start": first,
                "end": last,
                "rows": len(frame),
                # [start, end], or a list of them when the write completed several
                "covered": None
                if covered is None
                else [covered[0].start, covered[0].end]
                if len(covered) == 1
                else [[iv.start, iv.end] for iv in covered],
                **extra,
            }
        )

    def _compact_bucket(self, key: DatasetKey, ds: str, start: int) -> None:
        bkey = f"{ds}:b:{start}"
        with self._client.pipeline(transaction=True) as pipe:
            for _ in range(3):
                try:
                    pipe.watch(bkey)
                    blob = pipe.get(bkey)
                    if blob is None:
                        pipe.unwatch()
                        return
                    tables = _decode(blob)
                    merged = _assemble(key.kind, [tables])
                    pipe.multi()
                    pipe.set(bkey, _encode_frame(merged, self._ipc))
                    pipe.hset(f"{ds}:nseg", str(start), 1)
                    pipe.hset(f"{ds}:nrows", str(start), len(merged))
                    pipe.execute()
                    log.debug(
                        "redis: compacted %s bucket %d (%d segments)", key, start, len(tables)
                    )
                    return
                except self._redis.exceptions.WatchError:
                    continue
        log.debug("redis: compaction of %s bucket %d deferred (busy)", key, start)

    def _compact_coverage(self, ds: str) -> None:
        ckey = f"{ds}:cov"
        with self._client.pipeline(transaction=True) as pipe:
            for _ in range(3):
                try:
                    pipe.watch(ckey)
                    cov = _parse_coverage(pipe.lrange(ckey, 0, -1))
                    pipe.multi()
                    pipe.delete(ckey)
                    if cov:
                        pipe.rpush(ckey, *_dump_coverage(cov))
                    pipe.execute()
                    return
                except self._redis.exceptions.WatchError:
                    continue

    def _read(
        self, key: DatasetKey, start: int | None, end: int | None, columns: list[str] | None
    ) -> pd.DataFrame:
        ds = self._ds(key)
        with self._guard(f"read of {key}"):
            span = self._span(key, ds)
            lo: float | int = -math.inf if start is None else (start // span) * span
            hi: float | str = math.inf if end is None else f"({end}"
            starts = self._client.zrange(f"{ds}:idx", lo, hi, byscore=True)
            blobs: list[bytes | None] = []
            if starts:
                pipe = self._client.pipeline(transaction=False)
                keys = [f"{ds}:b:{_int(s)}" for s in starts]
                for i in range(0, len(keys), MGET_CHUNK):
                    pipe.mget(keys[i : i + MGET_CHUNK])
                for chunk in pipe.execute():
                    blobs.extend(chunk)
        buckets = [_decode(b) for b in blobs if b]
        if not buckets:
            return pd.DataFrame()
        frame = _assemble(key.kind, buckets, columns)
        out = slice_frame(frame, start, end)
        if columns is not None:
            out = out[[c for c in columns if c in out.columns]]
        return out

    def coverage(self, key: DatasetKey | str) -> IntervalSet:
        """The ranges of ``key`` known to be complete.

        A bucket that ``idx`` lists but that is gone (evicted under ``maxmemory``,
        deleted by hand) takes its span out of the coverage, here and in Redis, so the
        next ``ensure`` fetches it again. One ``EXISTS`` per 1,000 covered buckets.
        """
        key = _check_key(key)
        ds = self._ds(key)
        with self._guard(f"coverage of {key}"):
            with self._client.pipeline(transaction=True) as pipe:
                pipe.lrange(f"{ds}:cov", 0, -1)
                pipe.zrange(f"{ds}:idx", 0, -1)
                raw_cov, raw_starts = pipe.execute()
            coverage = _parse_coverage(raw_cov)
            if not coverage or not raw_starts:
                return coverage
            span = self._span(key, ds)
            lost = self._lost_buckets(ds, [_int(s) for s in raw_starts], span, coverage)
            if not lost:
                return coverage
            gone = IntervalSet([Interval(s, s + span) for s in lost])
            log.warning(
                "redis: %d bucket(s) of %s are gone (evicted or deleted); coverage %s dropped",
                len(lost),
                key,
                coverage & gone,
            )
            self._forget_buckets(ds, lost, gone)
            return coverage - gone

    def _lost_buckets(
        self, ds: str, starts: list[int], span: int, coverage: IntervalSet
    ) -> list[int]:
        """Covered buckets listed in ``idx`` whose key does not exist."""
        at = np.asarray(starts, dtype=np.int64)
        hit = np.zeros(len(at), dtype=bool)
        for iv in coverage:
            hit |= (at < iv.end) & (at + span > iv.start)
        covered = [int(s) for s in at[hit]]
        lost: list[int] = []
        for i in range(0, len(covered), MGET_CHUNK):
            chunk = covered[i : i + MGET_CHUNK]
            keys = [f"{ds}:b:{s}" for s in chunk]
            if self._client.exists(*keys) == len(keys):
                continue  # the usual case: all there, one command
            with self._client.pipeline(transaction=False) as pipe:
                for k in keys:
                    pipe.exists(k)
                lost.extend(s for s, n in zip(chunk, pipe.execute(), strict=True) if not n)
        return lost

    def _forget_buckets(self, ds: str, lost: list[int], gone: IntervalSet) -> None:
        """Remove lost buckets from ``idx`` and their spans from the stored coverage."""
        idx, ckey = f"{ds}:idx", f"{ds}:cov"
        with self._client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(idx, ckey, *(f"{ds}:b:{s}" for s in lost))
                if any(pipe.exists(f"{ds}:b:{s}") for s in lost):
                    return  # a writer brought one back: the next coverage() looks again
                cov = _parse_coverage(pipe.lrange(ckey, 0, -1)) - gone
                pipe.multi()
                pipe.zrem(idx, *(str(s) for s in lost))
                pipe.delete(ckey)
                if cov:
                    pipe.rpush(ckey, *_dump_coverage(cov))
                pipe.execute()
            except self._redis.exceptions.WatchError:
                log.debug("redis: a writer changed %s meanwhile; checked again next time", ds)

    def _infos(self, keys: Sequence[DatasetKey]) -> dict[DatasetKey, DatasetInfo]:
        # one pipelined round trip for every dataset's counters (a snapshot per command:
        # a write landing meanwhile shows in the next catalog), one for the buckets that
        # must be counted by reading them, then coverage() per dataset
        names = [self._ds(k) for k in keys]
        with self._guard("metadata of datasets"):
            with self._client.pipeline(transaction=False) as pipe:
                for ds in names:
                    pipe.zrange(f"{ds}:idx", 0, -1)
                    pipe.hgetall(f"{ds}:nseg")
                    pipe.hgetall(f"{ds}:nrows")
                    pipe.zrange(f"{ds}:ends", 0, -1, withscores=True)
                    pipe.zrange(f"{ds}:src", 0, -1)
                    pipe.hget(f"{ds}:meta", "last_write")
                replies = pipe.execute()
            plans = []
            for i, ds in enumerate(names):
                raw_starts, nseg, nrows, raw_ends, src, last_write = replies[6 * i : 6 * i + 6]
                starts = [_int(s) for s in raw_starts]
                segs = {_int(k): _int(v) for k, v in nseg.items()}
                counts = {_int(k): _int(v) for k, v in nrows.items()}
                # a bucket of several segments (or from before counts were kept) is read
                unsure = [s for s in starts if segs.get(s, 1) != 1 or s not in counts]
                ends = {_raw(m).decode(): int(v) for m, v in raw_ends}
                if "first" not in ends and starts:
                    unsure = sorted({*unsure, starts[0], starts[-1]})
                rows = sum(counts.get(s, 0) for s in starts if s not in unsure)
                plans.append((ds, unsure, ends, rows, src, last_write))
            wanted = [f"{ds}:b:{s}" for ds, unsure, *_ in plans for s in unsure]
            blobs: list[bytes | None] = []
            if wanted:
                with self._client.pipeline(transaction=False) as pipe:
                    for j in range(0, len(wanted), MGET_CHUNK):
                        pipe.mget(wanted[j : j + MGET_CHUNK])
                    for chunk in pipe.execute():
                        blobs.extend(chunk)
            out = {}
            at = 0
            for key, (_ds, unsure, ends, rows, src, last_write) in zip(keys, plans, strict=True):
                read_first = read_last = None
                for blob in blobs[at : at + len(unsure)]:
                    if not blob:
                        continue
                    frame = _assemble(key.kind, [_decode(blob)], [])
                    rows += len(frame)
                    if len(frame):
                        ms = index_ms(frame)
                        lo, hi = int(ms[0]), int(ms[-1])
                        read_first = lo if read_first is None else min(read_first, lo)
                        read_last = hi if read_last is None else max(read_last, hi)
                at += len(unsure)
                first, last = ends.get("first"), ends.get("last")
                if "first" not in ends:
                    first, last = read_first, read_last
                out[key] = DatasetInfo(
                    rows=rows,
                    first=first if rows else None,
                    last=last if rows else None,
                    coverage=self.coverage(key),
                    last_write=None if last_write is None else _int(last_write),
                    sources=tuple(_raw(m).decode("utf-8") for m in src),
                )
        return out

    def _keys(self) -> list[DatasetKey]:
        head = f"{self.prefix}ds:{{"
        tail = "}:meta"
        found = []
        with self._guard("listing of keys"):
            for raw in self._client.scan_iter(match=_glob_escape(head) + "*" + tail, count=1000):
                name = raw.decode("utf-8", "replace")
                if name.startswith(head) and name.endswith(tail):
                    key = parse_key_name(name[len(head) : -len(tail)])
                    if key is not None:
                        found.append(key)
        return found

    def _delete(self, key: DatasetKey, start: int | None, end: int | None) -> None:
        ds = self._ds(key)
        with self._guard(f"delete of {key}"):
            if start is None and end is None:
                self._delete_all(ds)
                self._spans.pop(key, None)
            else:
                self._delete_range(key, ds, start, end)
        log.debug("redis: deleted [%s, %s) of %s", start, end, key)

    def _delete_all(self, ds: str) -> None:
        idx = f"{ds}:idx"
        with self._client.pipeline(transaction=True) as pipe:
            for _ in range(WATCH_ATTEMPTS):
                try:
                    pipe.watch(idx)
                    starts = pipe.zrange(idx, 0, -1)
                    pipe.multi()
                    pipe.unlink(f"{ds}:cov")  # coverage first
                    pipe.unlink(f"{ds}:meta", idx, f"{ds}:nseg")
                    pipe.unlink(f"{ds}:nrows", f"{ds}:ends", f"{ds}:src")
                    for s in starts:
                        pipe.unlink(f"{ds}:b:{_int(s)}")
                    pipe.execute()
                    return
                except self._redis.exceptions.WatchError:
                    continue
        raise StorageError(f"redis delete of {ds} kept conflicting with other writers; try again")

    def _delete_range(self, key: DatasetKey, ds: str, start: int | None, end: int | None) -> None:
        span = self._span(key, ds)
        lo = -_INF if start is None else start
        hi = _INF if end is None else end
        idx, ckey = f"{ds}:idx", f"{ds}:cov"
        with self._client.pipeline(transaction=True) as pipe:
            for _ in range(WATCH_ATTEMPTS):
                try:
                    pipe.watch(idx, ckey)
                    starts = [
                        _int(s)
                        for s in pipe.zrange(idx, (lo // span) * span, f"({hi}", byscore=True)
                    ]
                    whole = [s for s in starts if s >= lo and s + span <= hi]
                    partial = [s for s in starts if not (s >= lo and s + span <= hi)]
                    if partial:
                        pipe.watch(*[f"{ds}:b:{s}" for s in partial])
                    cov = _parse_coverage(pipe.lrange(ckey, 0, -1))
                    kept: dict[int, pd.DataFrame] = {}
                    for s in partial:
                        blob = pipe.get(f"{ds}:b:{s}")
                        if blob:
                            frame = _assemble(key.kind, [_decode(blob)])
                            ms = index_ms(frame)
                            kept[s] = frame[(ms < lo) | (ms >= hi)]
                    pipe.multi()
                    # coverage first (same transaction): never claims the removed rows
                    new_cov = clip_range(cov, start, end)
                    if new_cov != cov:
                        pipe.delete(ckey)
                        if new_cov:
                            pipe.rpush(ckey, *_dump_coverage(new_cov))
                    for s in whole + [s for s in partial if s not in kept]:
                        pipe.unlink(f"{ds}:b:{s}")
                        pipe.zrem(idx, str(s))
                        pipe.hdel(f"{ds}:nseg", str(s))
                        pipe.hdel(f"{ds}:nrows", str(s))
                    for s, frame in kept.items():
                        if len(frame):
                            pipe.set(f"{ds}:b:{s}", _encode_frame(frame, self._ipc))
                            pipe.hset(f"{ds}:nseg", str(s), 1)
                            pipe.hset(f"{ds}:nrows", str(s), len(frame))
                        else:
                            pipe.unlink(f"{ds}:b:{s}")
                            pipe.zrem(idx, str(s))
                            pipe.hdel(f"{ds}:nseg", str(s))
                            pipe.hdel(f"{ds}:nrows", str(s))
                    if starts:  # the first or last row may be gone: found from the buckets
                        pipe.unlink(f"{ds}:ends")
                    pipe.execute()
                    return
                except self._redis.exceptions.WatchError:
                    continue
        raise StorageError(f"redis delete of {key} kept conflicting with other writers; try again")

    # -- single points -------------------------------------------------------------------
    def _store(self, key: str, payload: str, timestamp: int) -> None:
        pkey = self._pt(key)
        with self._guard(f"store of {key!r}"):
            pipe = self._client.pipeline(transaction=True)
            pipe.zremrangebyscore(pkey, timestamp, timestamp)
            pipe.zadd(pkey, {f"{timestamp} {payload}": timestamp})
            pipe.execute()

    def _fetch(self, key: str, start: int, end: int) -> list[tuple[int, str]]:
        with self._guard(f"fetch of {key!r}"):
            members = self._client.zrange(self._pt(key), start, f"({end}", byscore=True)
        out = []
        for raw in members:
            ts, _, payload = _raw(raw).decode("utf-8").partition(" ")
            out.append((int(ts), payload))
        return out

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        """Disconnect the connection pool; the storage is unusable afterwards."""
        if self._closed:
            return
        self._closed = True
        try:
            self._client.close()
            self._client.connection_pool.disconnect()
        except self._redis.exceptions.RedisError as exc:  # pragma: no cover
            log.debug("redis: error while closing %s: %s", self.url, exc)


def _parse_coverage(items: Sequence[object]) -> IntervalSet:
    pairs = []
    for raw in items:
        lo, hi = _raw(raw).split()
        pairs.append(Interval(int(lo), int(hi)))
    return IntervalSet(pairs)


def _dump_coverage(cov: IntervalSet) -> list[str]:
    return [f"{iv.start} {iv.end}" for iv in cov]


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


def _raw(value: object) -> bytes:
    """A reply as bytes (the client runs with ``decode_responses=False``)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise StorageError(f"unexpected reply from redis: {type(value).__name__}")


def _int(value: object) -> int:
    return int(_raw(value))
