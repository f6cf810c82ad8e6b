"""``arctic+lmdb://`` and ``arctic+s3://``: ArcticDB, the embedded default and the S3 path.

Layout
------
One ArcticDB library, ``mdcollect``, holds every dataset:

* a dataset is the symbol :func:`~mdcollect.storage._naming.key_name` of its key
  (``binance.ohlcv.1m.BTC%2FUSDT``), parsed back for :meth:`ArcticStorage.keys`;
* single points (:meth:`~ArcticStorage.store`) live under ``pt.<encoded key>``,
  a frame of JSON texts (column ``v``) indexed by time, upserted like a dataset.

Every version of a dataset carries, in its ArcticDB metadata, the coverage and a
little bookkeeping (:class:`_Meta`). ``write``/``append``/``update`` take
``metadata=``, so rows and the coverage claiming them are one atomic version:
coverage can never get ahead of rows, even if the process dies mid-write.
``coverage()`` is one ``read_metadata`` (about 0.1 ms on LMDB).

Writes
------
* nothing stored yet: ``write``;
* the frame starts after the last stored row: ``append`` (the fast path);
* otherwise: read the frame's span ``[first, last]``, ``merge_frames`` (upsert by
  timestamp, trades by ``(timestamp, id)``), ``update`` that span;
* a different column set (an optional column appears or goes, another book depth):
  read all, merge, ``write``.

Every call prunes previous versions, so storage does not grow with the number of
writes. Each append adds a segment; the segments after the last full one (of
``_ROWS_PER_SEGMENT`` rows) are the *tail*, recorded as runs (first row, rows) in
the metadata. The tail is kept geometric, like a binary counter: a new segment is
merged (read back, rewritten by one ``update`` from the first merged row) with the
segments before it while the one before is not larger than what is being merged,
so each tail segment holds more rows than all later ones together; once the tail
and the new rows reach ``_ROWS_PER_SEGMENT``, all of it is rewritten as full
segments and a remainder. Hence, for appends of ``b`` rows:

* a read sees at most ``1 + log2(_ROWS_PER_SEGMENT / b)`` tail segments beside the
  full ones (a symbol of 365 daily appends reads as fast as one written at once);
* one write rewrites at most ``_ROWS_PER_SEGMENT`` stored rows besides its own,
  however large the symbol;
* a row is rewritten only when its segment at least doubles: at most
  ``1 + log2(_ROWS_PER_SEGMENT / b)`` times in all, so a collector appending a few
  rows at a time does not rewrite the tail every few writes.

Writes inside the tail, and range deletes, leave its runs unknown: the next append
rewrites the whole tail. Out-of-order writes that split segments of the body are
counted; past ``_BODY_FRAGMENTS`` the symbol is compacted with ``compact_data``.

Concurrency
-----------
Writers of one dataset are serialised across processes and threads with an
exclusive ``flock`` (:func:`~mdcollect.storage._locks.file_lock`): on LMDB the
lock files are in ``<root>/.locks/``; on S3 in a directory under the system temp
dir keyed by a hash of the endpoint, bucket and prefix. Writers of one S3
dataset on *different machines* are serialised only with a lease named in the URL:
``?lease=redis://HOST:PORT/DB`` (a Redis server all machines reach) or ``?lease=s3``
(an object per lease in the bucket itself, kept with S3's conditional writes);
without one, last writer wins. With a lease each write also holds the dataset's
write lease, and a backfill job holds the dataset's job lease while it fills it
(:meth:`ArcticStorage.dataset_lease`), so two machines never fetch the same rows.
Leases last ``?lease_ttl=`` seconds (15) unless renewed: a machine that dies
holding one delays the others by at most that. Readers take no lock.

One ``Arctic`` handle is shared per LMDB path (or S3 URI) in a process, because
LMDB does not support opening one environment twice in a process. ArcticDB's
per-process version cache is turned off (``VersionMap.ReloadInterval=0``): with
it, a process builds writes on versions another process already replaced.

Damaged files
-------------
Before an LMDB store is opened, every ``data.mdb`` under it is checked against its
LMDB meta pages (:func:`check_lmdb_file`): a truncated file (which would kill the
process with SIGBUS when a page past its end is read) or an empty one (which
would read as an empty store, every dataset uncovered) is a :class:`StorageError`
naming the file. Damage inside a file, or a file truncated while it is open,
cannot be seen this cheaply. Waits for a dataset's write lock are bounded
(:data:`~mdcollect.storage._locks.LOCK_TIMEOUT`).

A full disk: a write first checks the free space (twice the frame plus 8 MiB), so
a nearly full disk is a :class:`StorageError` before LMDB is touched. Should LMDB
still fail to commit, ArcticDB 6.x would free the transaction twice when its
handle is destroyed (SIGABRT, "double free or corruption", at the latest at exit):
that handle is kept alive and retired instead, and the store can be used again
from a new process. Nothing of the failed write is stored; coverage is not ahead.

A read-only file system: ArcticDB opens every LMDB environment read-write, so a
store on a read-only mount is read from a private copy of its ``data.mdb`` files
(in the temp dir, made once per process, removed at exit); writes are refused.

ArcticDB (6.x) holds the GIL during some S3 calls (``list_libraries``,
``get_library``, ``read_metadata``, ``list_symbols``, ``delete``): an S3 server
running as a thread of the *same* Python process (moto's ``ThreadedMotoServer``)
then deadlocks. Run such a server in its own process.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import hashlib
import logging
import os
import re
import shutil
import struct
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import parse_qsl, urlencode

import numpy as np
import pandas as pd
from arcticdb import Arctic, LibraryOptions
from arcticdb.config import set_config_int
from arcticdb.exceptions import ArcticException, KeyNotFoundException, NoDataFoundException
from attrs import evolve

from .._errors import InvalidRequest, StorageError
from .._intervals import IntervalSet
from .._keys import DatasetKey
from .._lease import Lease, RedisLease, S3Lease, held, redis_client
from .._redact import redact
from .._schema import merge_frames
from .._time import MAX_INDEX_MS, MIN_INDEX_MS, NS_PER_MS, index_ms, ms_to_timestamp
from ._base import (
    DataCollectionStorage,
    DatasetInfo,
    Stamp,
    _check_key,
    add_source,
    clip_range,
)
from ._locks import LOCK_TIMEOUT, file_lock
from ._naming import encode_name, key_name, parse_key_name

__all__ = ["ArcticStorage"]

log = logging.getLogger("mdcollect.storage")

#: The ArcticDB library every dataset lives in.
LIBRARY: Final = "mdcollect"
_POINT_PREFIX: Final = "pt."
#: 2: the tail's segments as ``runs`` (format 1 had their count only)
_META_FORMAT: Final = 2
#: Rows per ArcticDB segment (ArcticDB's default).
_ROWS_PER_SEGMENT: Final = 100_000
#: Segment splits tolerated in the body (out-of-order writes, deletes) before ``compact_data``.
_BODY_FRAGMENTS: Final = 64
_LMDB_OPTIONS: Final = frozenset({"map_size"})
#: ArcticDB's form of ``map_size`` (``convert_size_str_to_bytes``): 1 or more, then a unit.
_MAP_SIZE_RE: Final = re.compile(r"[1-9][0-9]*(KB|MB|GB|TB)")
_ONE_NS: Final = pd.Timedelta(1, "ns")

#: Up to this many symbols are sized one by one; more by one listing of the library.
_SIZES_ONE_BY_ONE: Final = 16

#: Attempts of a read that raced with another process pruning the version it found.
_READ_ATTEMPTS: Final = 5

Merge = Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame]
T = TypeVar("T")

# ArcticDB caches a symbol's version list per process for a while (2 s by default): a
# process would then read (and build writes on) a version another process has
# already replaced and pruned. Always reload it; on LMDB this costs microseconds.
set_config_int("VersionMap.ReloadInterval", 0)


# -- metadata kept in every version ----------------------------------------------------


@dataclass
class _Meta:
    """What each version of a symbol carries besides its rows.

    ``last`` is an upper bound (ns) of the stored index, ``None`` when no rows are
    stored (a symbol holding only coverage). ``tail`` is where the rows not yet
    rewritten into full segments start (ns); ``runs`` the tail's segments as
    ``[first row (ns), rows]``, oldest first, ``None`` when not known (then the next
    append rewrites the whole tail); ``body_fragments`` the segment splits before
    ``tail``.
    """

    coverage: IntervalSet = field(default_factory=IntervalSet)
    last: int | None = None
    columns: list[str] = field(default_factory=list)
    tail: int | None = None
    runs: list[list[int]] | None = None
    body_fragments: int = 0
    # for the catalog (DatasetInfo): rows stored and the exact [first, last] row (ns),
    # ``None`` when not known (a symbol written before they were kept, or a range
    # delete that died half way: then ArcticDB's description is asked); the wall
    # clock of the last write (ms) and the sources seen
    rows: int | None = None
    span: list[int] | None = None
    last_write: int | None = None
    sources: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": _META_FORMAT,
            "coverage": self.coverage.to_list(),
            "last": self.last,
            "columns": list(self.columns),
            "tail": self.tail,
            "runs": self.runs,
            "body_fragments": self.body_fragments,
            "rows": self.rows,
            "span": self.span,
            "last_write": self.last_write,
            "sources": list(self.sources),
        }

    def stamp(self, stamp: Stamp | None) -> None:
        if stamp is not None:
            self.last_write = stamp.at
            self.sources = list(add_source(self.sources, stamp.source))

    def info(self) -> DatasetInfo:
        span = self.span
        return DatasetInfo(
            rows=self.rows or 0,
            first=None if span is None else span[0] // NS_PER_MS,
            last=None if span is None else span[1] // NS_PER_MS,
            coverage=self.coverage,
            last_write=self.last_write,
            sources=tuple(self.sources),
        )

    @classmethod
    def from_dict(cls, data: object) -> _Meta:
        if not isinstance(data, dict):
            # a symbol written by something else: assume rows, no coverage, no tail
            return cls(last=2**63 - 1)
        return cls(
            coverage=IntervalSet.from_list(data.get("coverage") or ()),
            last=data.get("last"),
            columns=list(data.get("columns") or ()),
            tail=data.get("tail"),
            runs=[[int(t), int(n)] for t, n in runs]
            if isinstance(runs := data.get("runs"), list)
            else None,
            body_fragments=int(data.get("body_fragments") or 0),
            rows=data.get("rows"),
            span=[int(t) for t in span] if isinstance(span := data.get("span"), list) else None,
            last_write=data.get("last_write"),
            sources=[str(x) for x in data.get("sources") or ()],
        )


# -- shared Arctic handles ----------------------------------------------------------------


@dataclass
class _Handle:
    arctic: Arctic
    library: Any
    refs: int = 0


_HANDLES: dict[str, _Handle] = {}
_ORPHANS: list[_Handle] = []
_HANDLES_LOCK = threading.Lock()


def _after_fork_in_child() -> None:
    # An LMDB environment must not be used (nor closed) in a forked child: keep the
    # parent's handles alive but unreachable, and open fresh ones on demand.
    _ORPHANS.extend(_HANDLES.values())
    _HANDLES.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _library_options() -> LibraryOptions:
    return LibraryOptions(rows_per_segment=_ROWS_PER_SEGMENT, prune_previous_versions=True)


def _open_library(
    uri: str, lock_dir: Path, guard: Callable[[], contextlib.AbstractContextManager[Any]]
) -> tuple[Any, Any]:
    arctic = Arctic(uri)
    # creating the library is check-then-act: serialise it across processes, and with a
    # lease (``guard``) across machines: two creating it at once lose one's writes
    with file_lock(lock_dir / "_library.lock"), guard():
        if LIBRARY in arctic.list_libraries():
            return arctic, arctic.get_library(LIBRARY)
        log.info("creating ArcticDB library %r at %s", LIBRARY, redact(uri))
        return arctic, arctic.create_library(LIBRARY, _library_options())


def _acquire(
    cache_key: str,
    uri: str,
    lock_dir: Path,
    guard: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
) -> Any:
    with _HANDLES_LOCK:
        handle = _HANDLES.get(cache_key)
        if handle is None:
            owner, library = _open_library(uri, lock_dir, guard)
            handle = _HANDLES[cache_key] = _Handle(owner, library)
        handle.refs += 1
        return handle.library


def _release(cache_key: str) -> None:
    with _HANDLES_LOCK:
        handle = _HANDLES.get(cache_key)
        if handle is None:
            return
        handle.refs -= 1
        if handle.refs <= 0:
            del _HANDLES[cache_key]


# -- helpers ---------------------------------------------------------------------------------


@contextmanager
def _translated(what: str, secrets: frozenset[str] = frozenset()) -> Iterator[None]:
    """Re-raise ArcticDB and OS errors as :class:`StorageError` (cause chained), with
    any credential (of ``secrets``, or in a URL) the message would quote masked."""
    try:
        yield
    except (InvalidRequest, StorageError):
        raise
    except (ArcticException, OSError) as exc:
        raise StorageError(redact(f"ArcticDB could not {what}: {exc}", secrets)) from exc


def _retrying(read: Callable[[], T]) -> T:
    """Run ``read``, again if another process pruned the version it was reading."""
    for attempt in range(_READ_ATTEMPTS):
        try:
            return read()
        except KeyNotFoundException:
            if attempt == _READ_ATTEMPTS - 1:
                raise
            log.debug("read raced with a pruning writer; retrying")
    raise AssertionError("unreachable")


def _ns(frame: pd.DataFrame) -> np.ndarray[Any, np.dtype[np.int64]]:
    """The frame's DatetimeIndex as int64 ns."""
    index = frame.index
    assert isinstance(index, pd.DatetimeIndex)
    return index.asi8


def _set_tail(meta: _Meta, data: pd.DataFrame, before: list[list[int]]) -> None:
    """Set ``meta``'s tail for ``data`` written as segments from its first row after the
    tail runs ``before``: full segments join the body, the remainder is the last run."""
    ns = _ns(data)
    full = (len(data) // _ROWS_PER_SEGMENT) * _ROWS_PER_SEGMENT
    rest = [[int(ns[full]), len(data) - full]] if full < len(data) else []
    if before:
        meta.runs = before + rest
    else:
        meta.runs = rest
        meta.tail = rest[0][0] if rest else int(ns[-1]) + 1


def _ns_of(when: Any) -> int:
    """ns since the epoch of a datetime ArcticDB describes (naive means UTC)."""
    ts = pd.Timestamp(when)
    return int((ts.tz_localize("UTC") if ts.tzinfo is None else ts).value)


def _ts(ns: int) -> pd.Timestamp:
    return pd.Timestamp(ns, unit="ns", tz="UTC")


def _date_range(
    start: int | None, end: int | None
) -> tuple[pd.Timestamp | None, pd.Timestamp | None] | None:
    """ArcticDB's inclusive ``date_range`` for half-open ms ``[start, end)``; ``None``: empty."""
    if start is not None and end is not None and end <= start:
        return None
    # pandas' ns timestamps span 1677..2262: bounds outside are open ends
    if start is not None and start > MAX_INDEX_MS:
        return None
    if end is not None and end < MIN_INDEX_MS:
        return None
    lo = None if start is None or start < MIN_INDEX_MS else ms_to_timestamp(start)
    hi = None if end is None or end > MAX_INDEX_MS else ms_to_timestamp(end) - _ONE_NS
    return lo, hi


def _point_frame(payload: str, timestamp: int) -> pd.DataFrame:
    try:
        index = pd.DatetimeIndex([ms_to_timestamp(timestamp)], name="timestamp")
    except (OverflowError, ValueError) as exc:
        raise InvalidRequest(
            f"timestamp {timestamp} is outside the storable range (years 1678..2261)"
        ) from exc
    return pd.DataFrame({"v": np.array([payload], dtype=object)}, index=index)


def _merge_points(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    both = pd.concat([old, new])
    both = both[~both.index.duplicated(keep="last")]
    return both.sort_index(kind="stable")


def _parse_url(url: str) -> tuple[str, str, Path, str, LeaseMaker | None]:
    """``(arctic uri, handle cache key, lock dir, the URL as given, leases)`` for an
    ``arctic+...`` URL; ``leases`` makes the cross-machine leases of an S3 store with
    ``?lease=``."""
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    target, _, query = rest.partition("?")
    params = parse_qsl(query, keep_blank_values=True)
    if scheme == "arctic+lmdb":
        if not target:
            raise InvalidRequest(f"storage URL {redact(url)!r} needs a path: arctic+lmdb://PATH")
        unknown = [k for k, _ in params if k not in _LMDB_OPTIONS]
        if unknown:
            raise InvalidRequest(
                f"storage URL {redact(url)!r} has unknown option(s) {unknown}; allowed: map_size"
            )
        for k, v in params:
            if k == "map_size" and not _MAP_SIZE_RE.fullmatch(v):
                raise InvalidRequest(
                    f"map_size {v!r} is not valid; use a whole number and KB, MB, GB or TB "
                    "(e.g. map_size=500GB)"
                )
        root = Path(target).expanduser().resolve()
        uri = f"lmdb://{root}" + (f"?{urlencode(params)}" if params else "")
        return uri, f"lmdb:{root}", root / ".locks", url, None
    if scheme in ("arctic+s3", "arctic+s3s"):
        host, sep, bucket = target.partition(":")
        if not host or not sep or not bucket or "/" in bucket:
            raise InvalidRequest(
                f"storage URL {redact(url)!r} is not valid; use "
                f"{scheme}://HOST:BUCKET?port=N&access=KEY&secret=SECRET"
            )
        lease = [v for k, v in params if k == "lease"]
        ttls = [v for k, v in params if k == "lease_ttl"]
        params = [(k, v) for k, v in params if k not in ("lease", "lease_ttl")]
        # the rest of the query goes to ArcticDB exactly as written (not re-encoded)
        kept = "&".join(
            p for p in query.split("&") if p and not p.startswith(("lease=", "lease_ttl="))
        )
        uri = f"{scheme.removeprefix('arctic+')}://{target}" + (f"?{kept}" if kept else "")
        where = {k: v for k, v in params if k in ("port", "path_prefix", "region")}
        ident = f"{scheme}|{host}|{bucket}|{sorted(where.items())}"
        digest = hashlib.sha256(ident.encode()).hexdigest()[:24]
        lock_dir = Path(tempfile.gettempdir()) / "mdcollect-locks" / digest
        leases = None
        if ttls and not lease:
            raise InvalidRequest(f"storage URL {redact(url)!r} has lease_ttl but no lease=")
        if lease:
            ttl = _lease_ttl(ttls[-1]) if ttls else LEASE_TTL
            # named by bucket and prefix alone: machines that spell the endpoint
            # differently (s3 or s3s, a region given or not, an alias) share the leases
            prefix = dict(params).get("path_prefix", "").strip("/")
            ident = hashlib.sha256(f"{bucket}|{prefix}".encode()).hexdigest()[:24]
            leases = _lease_maker(url, lease[-1], scheme, host, bucket, dict(params), ident, ttl)
        return uri, uri, lock_dir, url, leases
    raise InvalidRequest(
        f"storage URL scheme {scheme!r} is not an ArcticDB one; use arctic+lmdb:// or arctic+s3://"
    )


#: Seconds a lease (a write's, a backfill job's) lasts without renewal, renewed every
#: third of it while held: how long others wait for a holder that died (``?lease_ttl=``).
LEASE_TTL: Final = 15.0


def _lease_ttl(text: str) -> float:
    try:
        ttl = float(text)
    except ValueError:
        ttl = float("nan")
    if not 0.5 <= ttl <= 3600:
        raise InvalidRequest(
            f"lease_ttl {text!r} is not valid; use seconds from 0.5 to 3600 (default 15)"
        )
    return ttl


@dataclass(frozen=True)
class LeaseMaker:
    """Makes the leases of one S3 store: ``make(name)``; ``where`` for people; ``close``
    frees the connection they share."""

    make: Callable[[str], Lease]
    where: str
    close: Callable[[], None] = lambda: None


def _lease_maker(
    url: str, spec: str, scheme: str, host: str, bucket: str, params: dict[str, str],
    digest: str, ttl: float,
) -> LeaseMaker:  # fmt: skip
    """The leases ``?lease=redis://HOST:PORT/DB`` (a Redis server) or ``?lease=s3`` (an
    object per lease in the store's own bucket, with conditional writes) name."""
    if spec.startswith(("redis://", "rediss://")):
        try:
            import redis  # noqa: F401 - the extra, checked before any lease is needed
        except ImportError:
            raise InvalidRequest(
                "?lease=redis://... needs the redis package: pip install 'mdcollect[redis]'"
            ) from None
        # one connection pool for every lease of this store (one per dataset otherwise)
        shared = redis_client(spec, max(0.1, ttl / 3))
        return LeaseMaker(
            lambda name: RedisLease(spec, f"{digest}:{name}", ttl, client=shared),
            f"redis {redact(spec)}",
            shared.close,
        )
    if spec == "s3":
        import boto3  # type: ignore[import-untyped]
        from botocore.config import Config  # type: ignore[import-untyped]

        secure = scheme == "arctic+s3s"
        port = params.get("port")
        endpoint = f"{'https' if secure else 'http'}://{host}" + (f":{port}" if port else "")
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=params.get("access") or None,
            aws_secret_access_key=params.get("secret") or None,
            region_name=params.get("region") or "us-east-1",
            # a call that cannot complete within a third of the ttl is as good as failed
            # (a renewal is retried while two thirds are left); botocore retries nothing
            config=Config(
                connect_timeout=max(0.1, ttl / 3), read_timeout=max(0.1, ttl / 3),
                retries={"total_max_attempts": 1}, s3={"addressing_style": "path"},
            ),
        )  # fmt: skip
        prefix = params.get("path_prefix", "").strip("/")
        folder = f"{prefix}/.mdcollect-leases" if prefix else ".mdcollect-leases"
        return LeaseMaker(
            lambda name: S3Lease(
                client, bucket, f"{folder}/{name}.json", ttl,
                where=f"s3 bucket {bucket} {folder}/{name}.json",
            ),
            f"s3 bucket {bucket}",
            getattr(client, "close", lambda: None),
        )  # fmt: skip
    raise InvalidRequest(
        f"lease {redact(spec)!r} in storage URL {redact(url)!r} is not valid; "
        "use lease=redis://HOST:PORT/DB or lease=s3"
    )


# -- LMDB files: what can be checked before ArcticDB maps them ---------------------------------

# LMDB 0.9 (64-bit): two meta pages at the start of data.mdb, each a 16-byte page header
# then MDB_meta: magic u32, version u32, address, mapsize, two 48-byte MDB_db records (the
# first one's md_pad is the page size), last_pg, txnid. The live meta has the larger txnid.
_LMDB_MAGIC: Final = 0xBEEFC0DE
_META_FORMAT_LMDB: Final = struct.Struct("<II8x8xI44x48xQQ")
_MIN_PAGE: Final = 512


def _lmdb_meta(head: bytes, offset: int) -> tuple[int, int, int] | None:
    """``(page size, last page, txnid)`` of the meta page at ``offset``, if it is one."""
    if len(head) < offset + 16 + _META_FORMAT_LMDB.size:
        return None
    magic, _version, psize, last_pg, txnid = _META_FORMAT_LMDB.unpack_from(head, offset + 16)
    if magic != _LMDB_MAGIC or psize < _MIN_PAGE or psize & (psize - 1):
        return None
    return psize, last_pg, txnid


def check_lmdb_file(path: Path) -> None:
    """Raise :class:`StorageError` naming ``path`` when it is not a whole LMDB file.

    ArcticDB maps ``data.mdb`` into memory: reading a page past the end of a truncated
    file kills the process with SIGBUS, and an empty file reads as an empty store (every
    dataset silently uncovered). Both are caught here, before the file is mapped, from
    the two meta pages. Damage *inside* the file (a page overwritten with other bytes)
    cannot be seen without reading every page; LMDB may then fail, or crash.
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(16 + _META_FORMAT_LMDB.size)
            first = _lmdb_meta(head, 0)
            second = None
            if first is not None:
                fh.seek(first[0])
                second = _lmdb_meta(fh.read(16 + _META_FORMAT_LMDB.size), 0)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StorageError(f"cannot read LMDB file {str(path)!r}: {exc}") from exc
    if size == 0:
        raise StorageError(
            f"LMDB file {str(path)!r} is empty (0 bytes): it was truncated or not copied; "
            "restore it from a backup (opening it would show an empty, uncovered store)"
        )
    if first is None:
        raise StorageError(
            f"LMDB file {str(path)!r} is not an LMDB database (its first page is not an LMDB "
            "meta page): it is corrupt or not ArcticDB's; restore it from a backup"
        )
    metas = [m for m in (first, second) if m is not None]
    psize, last_pg, _ = max(metas, key=lambda m: m[2])
    need = (last_pg + 1) * psize
    if size < need:
        raise StorageError(
            f"LMDB file {str(path)!r} is truncated: {size} bytes, but its last page ends at "
            f"{need}; restore it from a backup (reading it would crash the process with SIGBUS)"
        )


def _check_lmdb_root(root: Path) -> None:
    """:func:`check_lmdb_file` for every ArcticDB environment under an LMDB root."""
    try:
        envs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StorageError(f"cannot list LMDB store {str(root)!r}: {exc}") from exc
    for env in envs:
        check_lmdb_file(env / "data.mdb")


# -- a full disk -----------------------------------------------------------------------------------

# After LMDB fails to commit a write (a full disk: "mdb_txn_commit: Input/output error", or
# a full map), ArcticDB (6.x) frees the transaction twice when its handle is destroyed: the
# process dies with "double free or corruption" (SIGABRT), at the latest when it exits,
# after everything else went well. Two defences:
#
# * before a write, free space is checked (:func:`_check_space`), so a nearly full disk
#   is a StorageError before LMDB is touched, and the handle stays usable;
# * a handle that did fail a commit is never destroyed (one extra reference, leaked on
#   purpose; the failed transaction wrote nothing, and LMDB needs no close to stay
#   consistent) and no longer used: the process exits with its own status.
_BROKEN: dict[str, str] = {}
#: Free bytes a write leaves at least, beside twice the frame's size (LMDB copies pages).
_SPACE_MARGIN: Final = 8 * 2**20


def _check_space(root: Path, frame: pd.DataFrame, what: str) -> None:
    try:
        st = os.statvfs(root)
    except OSError:
        return  # not there yet: ArcticDB creates it, or says why not
    free = st.f_bavail * st.f_frsize
    need = 2 * int(frame.memory_usage(index=True, deep=True).sum()) + _SPACE_MARGIN
    if free < need:
        raise StorageError(
            f"cannot {what}: the disk of {root} is (nearly) full: {free:,} bytes free, and "
            f"this write of {len(frame):,} rows may need {need:,}; free some space and retry"
        )


def _poison(cache_key: str, reason: str) -> None:
    """Keep a handle whose LMDB commit failed alive for good, and out of use."""
    with _HANDLES_LOCK:
        handle = _HANDLES.get(cache_key)
        if handle is not None and cache_key not in _BROKEN:
            for obj in (handle.arctic, handle.library):
                ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))
        _BROKEN[cache_key] = reason
    log.error("LMDB failed to commit a write; this process no longer uses the store: %s", reason)


def _check_not_broken(cache_key: str, url: str) -> None:
    reason = _BROKEN.get(cache_key)
    if reason is not None:
        raise StorageError(
            f"{url} failed a write earlier in this process ({reason}); it can only be used "
            "again from a new process (what was written before is intact)"
        )


# -- read-only file systems ----------------------------------------------------------------------

# ArcticDB (6.x) cannot open LMDB read-only: it opens every environment read-write and
# begins a write transaction to create its tables (with MDB_RDONLY through the config
# "LMDBStorage.ExtraFlags" that transaction fails: "mdb_txn_begin: Permission denied").
# A store on a read-only file system is therefore read from a private copy of its
# data.mdb files, made once per process at first open; writes to it are refused.
_SNAPSHOTS: dict[Path, Path] = {}
_SNAPSHOTS_LOCK = threading.Lock()


def _is_read_only(root: Path) -> bool:
    """True when ``root`` exists on a file system mounted read-only (mode bits aside)."""
    try:
        return bool(os.statvfs(root).f_flag & os.ST_RDONLY)
    except FileNotFoundError:
        return False


def _snapshot(root: Path) -> Path:
    """A private writable copy of the LMDB store at ``root`` (one per process)."""
    with _SNAPSHOTS_LOCK:
        copy = _SNAPSHOTS.get(root)
        if copy is not None and copy.is_dir():
            return copy
        copy = Path(tempfile.mkdtemp(prefix="mdcollect-readonly-"))
        try:
            size = 0
            for env in sorted(root.iterdir()):
                data = env / "data.mdb"
                if env.name.startswith(".") or not data.is_file():
                    continue
                (copy / env.name).mkdir()
                shutil.copyfile(data, copy / env.name / "data.mdb")
                size += data.stat().st_size
        except BaseException:
            shutil.rmtree(copy, ignore_errors=True)
            raise
        log.info(
            "%s is on a read-only file system: reading a copy of it (%d bytes) in %s",
            root,
            size,
            copy,
        )
        _SNAPSHOTS[root] = copy
        return copy


def _lmdb_source(uri: str, cache_key: str, lock_dir: Path) -> tuple[str, str, Path, bool]:
    """Check an LMDB store's files; point a read-only one at its private copy.

    Returns ``(uri, handle cache key, lock dir, read_only)``.
    """
    root = lock_dir.parent
    _check_lmdb_root(root)
    if not _is_read_only(root):
        return uri, cache_key, lock_dir, False
    with _translated(f"copy the read-only store {root}"):
        copy = _snapshot(root)
    _, _, query = uri.partition("?")
    return (
        f"lmdb://{copy}" + (f"?{query}" if query else ""),
        f"lmdb-copy:{root}",
        copy / ".locks",
        True,
    )


@atexit.register
def _remove_snapshots() -> None:
    for copy in _SNAPSHOTS.values():
        shutil.rmtree(copy, ignore_errors=True)


# -- the backend -------------------------------------------------------------------------------


class ArcticStorage(DataCollectionStorage):
    """ArcticDB storage: ``arctic+lmdb://PATH`` (embedded) or ``arctic+s3://HOST:BUCKET?...``.

    >>> storage = open_storage("arctic+lmdb:///data/mdcollect")  # doctest: +SKIP
    >>> storage = open_storage(
    ...     "arctic+s3://s3.eu-west-1.amazonaws.com:my-bucket?aws_auth=true"
    ... )  # doctest: +SKIP

    LMDB options: ``?map_size=500GB`` (ArcticDB's default is large and sparse).
    S3 options are ArcticDB's (``port``, ``access``, ``secret``, ``region``,
    ``path_prefix``, ``aws_auth``...); ``arctic+s3s://`` uses HTTPS.

    Writers of one dataset are serialised across the processes of one machine;
    for S3, not across machines (see the module documentation).
    """

    def __init__(self, url: str) -> None:
        uri, cache_key, lock_dir, raw, leases = _parse_url(url)
        #: the cross-machine leases of an S3 store opened with ``?lease=``
        self._leases = leases
        self._write_leases: dict[str, Lease] = {}
        #: True when the store is on a read-only file system: it is read, never written
        self.read_only = False
        if uri.startswith("lmdb://"):
            uri, cache_key, lock_dir, self.read_only = _lmdb_source(uri, cache_key, lock_dir)
        self.url = raw  # kept private; self.url reads back redacted
        self._uri = uri
        self._cache_key = cache_key
        self._lock_dir = lock_dir
        self._pid = os.getpid()
        _check_not_broken(cache_key, self.url)
        with self._translated(f"open {self.url}"):
            self._library: Any = _acquire(cache_key, uri, lock_dir, self._library_guard)
        self._closed = False

    @classmethod
    def from_url(cls, url: str) -> ArcticStorage:
        """Open from an ``arctic+lmdb://``, ``arctic+s3://`` or ``arctic+s3s://`` URL."""
        return cls(url)

    def close(self) -> None:
        """Release this storage's share of the Arctic handle."""
        if not self._closed:
            self._closed = True
            self._library = None
            if self._pid == os.getpid():
                _release(self._cache_key)
            if self._leases is not None:
                self._write_leases.clear()
                self._leases.close()

    # -- plumbing ---------------------------------------------------------------------
    @property
    def _lib(self) -> Any:
        if self._closed:
            raise StorageError(f"{self!r} is closed")
        _check_not_broken(self._cache_key, self.url)
        if self._pid != os.getpid():  # forked: the parent's LMDB handle is unusable here
            with self._translated(f"reopen {self.url} after fork"):
                self._library = _acquire(
                    self._cache_key, self._uri, self._lock_dir, self._library_guard
                )
            self._pid = os.getpid()
        return self._library

    def _translated(self, what: str) -> contextlib.AbstractContextManager[None]:
        return _translated(what, self._secrets)

    def _library_guard(self) -> contextlib.AbstractContextManager[Any]:
        """The lease that serialises creating the library across machines (with ``?lease=``)."""
        if self._leases is None:
            return contextlib.nullcontext()
        lease = self._leases.make("library")
        return held(lease, timeout=LOCK_TIMEOUT, what="create the library", error=StorageError)

    @contextmanager
    def _locked(self, symbol: str) -> Iterator[None]:
        # the file lock serialises this machine's writers (threads and processes); a
        # lease, when the URL names one, those of every machine
        with file_lock(self._lock_dir / f"{symbol}.lock"):
            if self._leases is None:
                yield
                return
            lease = self._write_leases.get(symbol)
            if lease is None:
                lease = self._write_leases[symbol] = self._leases.make(f"write:{symbol}")
            with held(lease, timeout=LOCK_TIMEOUT, what=f"write {symbol}", error=StorageError):
                yield

    def dataset_lease(self, key: DatasetKey) -> Lease | None:
        """With ``?lease=``: a new lease on ``key`` for a backfill job (see the base class)."""
        if self._leases is None:
            return None
        return self._leases.make(f"job:{key_name(_check_key(key))}")

    def _meta(self, symbol: str) -> _Meta | None:
        try:
            item = _retrying(lambda: self._lib.read_metadata(symbol))
        except NoDataFoundException:
            return None
        return _Meta.from_dict(item.metadata)

    @staticmethod
    def _symbol(key: DatasetKey) -> str:
        return key_name(key)

    # -- frames -------------------------------------------------------------------------
    def _writable(self, what: str) -> None:
        if self.read_only:
            raise StorageError(
                f"cannot {what}: {self.url} is on a read-only file system (opened for reading)"
            )

    @contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """:func:`_translated` for writes; a failed LMDB commit retires the handle."""
        try:
            with self._translated(what):
                yield
        except StorageError as exc:
            if self._uri.startswith("lmdb://") and "mdb_" in str(exc):
                _poison(self._cache_key, str(exc.__cause__ or exc))
            raise

    def _write(
        self, key: DatasetKey, frame: pd.DataFrame, covered: IntervalSet | None, stamp: Stamp
    ) -> int:
        self._writable(f"write {key}")
        if self._uri.startswith("lmdb://") and len(frame):
            _check_space(self._lock_dir.parent, frame, f"write {key}")
        symbol = self._symbol(key)
        with self._writing(f"write {key}"), self._locked(symbol):
            meta = self._meta(symbol)
            old_cov = meta.coverage if meta is not None else IntervalSet()
            coverage = old_cov | covered if covered is not None else old_cov
            if len(frame) == 0:
                if covered is None or (meta is not None and coverage == old_cov):
                    return 0
                meta = meta or _Meta(columns=list(frame.columns), rows=0)
                meta.coverage = coverage
                meta.stamp(stamp)
                # the rows (if any) stay as they are; only coverage grows
                self._lib.write_metadata(symbol, meta.to_dict(), prune_previous_versions=True)
                return 0
            self._upsert(
                symbol, frame, meta, coverage, lambda a, b: merge_frames(key.kind, a, b), stamp
            )
        return len(frame)

    def _upsert(
        self,
        symbol: str,
        frame: pd.DataFrame,
        meta: _Meta | None,
        coverage: IntervalSet,
        merge: Merge,
        stamp: Stamp | None = None,
    ) -> None:
        """Upsert a normalised, sorted, non-empty frame with ``coverage`` in the same version
        (and the rows, span and ``stamp`` the catalog shows)."""
        lib = self._lib
        ns = _ns(frame)
        first, last = int(ns[0]), int(ns[-1])
        columns = list(frame.columns)
        if meta is None or meta.last is None or columns != meta.columns:
            if meta is not None and meta.last is not None:
                frame = merge(lib.read(symbol).data, frame)
                log.debug("%s: columns changed, rewrite %d rows", symbol, len(frame))
            else:
                log.debug("%s: write %d rows (new)", symbol, len(frame))
            all_ns = _ns(frame)
            new = _Meta(coverage, int(all_ns[-1]), list(frame.columns))
            new.rows, new.span = len(frame), [int(all_ns[0]), int(all_ns[-1])]
            if meta is not None:
                new.last_write, new.sources = meta.last_write, meta.sources
            new.stamp(stamp)
            _set_tail(new, frame, [])
            lib.write(symbol, frame, metadata=new.to_dict(), prune_previous_versions=True)
            return
        meta.coverage = coverage
        meta.stamp(stamp)
        if first > meta.last:
            meta.last = last
            if meta.rows is not None and meta.span is not None:
                meta.rows += len(frame)
                meta.span = [meta.span[0], last]
            self._append(symbol, frame, meta)
            return
        # overlapping or out of order: merge the span the frame touches, replace that span
        span = (_ts(first), _ts(last))
        old = lib.read(symbol, date_range=span).data
        merged = merge(old, frame) if len(old) else frame
        meta.last = max(meta.last, last)
        if meta.rows is not None and meta.span is not None:
            meta.rows += len(merged) - len(old)
            meta.span = [min(meta.span[0], first), max(meta.span[1], last)]
        if meta.tail is not None and first >= meta.tail:
            meta.runs = None  # the update re-slices the tail from ``first``
        else:
            meta.body_fragments += 2
        compact = meta.body_fragments > _BODY_FRAGMENTS
        if compact:
            # after compact_data every segment is (nearly) full: no tail left
            meta.body_fragments, meta.runs, meta.tail = 0, [], meta.last + 1
        log.debug("%s: update %d rows over %s..%s", symbol, len(merged), *span)
        lib.update(
            symbol, merged, date_range=span, metadata=meta.to_dict(), prune_previous_versions=True
        )
        if compact:
            # keeps this version's metadata; a crash before it only costs speed
            log.info("%s: compacting fragmented symbol", symbol)
            lib.compact_data(symbol, prune_previous_versions=True)

    def _append(self, symbol: str, frame: pd.DataFrame, meta: _Meta) -> None:
        """Append ``frame`` (after every stored row), merging tail segments (module doc)."""
        lib = self._lib
        first, rows = int(_ns(frame)[0]), len(frame)
        runs = meta.runs
        if runs is None or sum(n for _, n in runs) + rows >= _ROWS_PER_SEGMENT:
            keep = 0  # rewrite the whole tail (into full segments when it fills one)
        else:
            keep, merged = len(runs), rows
            while keep and runs[keep - 1][1] <= merged:
                keep -= 1
                merged += runs[keep][1]
        if runs is not None and keep == len(runs):
            runs.append([first, rows])
            log.debug("%s: append %d rows", symbol, rows)
            lib.append(symbol, frame, metadata=meta.to_dict(), prune_previous_versions=True)
            return
        if runs is not None and runs:
            start = runs[keep][0]
        else:
            start = meta.tail if meta.tail is not None else first
        old = lib.read(symbol, date_range=(_ts(start), None)).data
        data = pd.concat([old, frame]) if len(old) else frame
        _set_tail(meta, data, runs[:keep] if runs is not None else [])
        log.debug("%s: append %d rows, rewriting %d tail rows", symbol, rows, len(old))
        lib.update(
            symbol,
            data,
            date_range=(_ts(start), None),
            metadata=meta.to_dict(),
            prune_previous_versions=True,
        )

    def _read(
        self, key: DatasetKey, start: int | None, end: int | None, columns: list[str] | None
    ) -> pd.DataFrame:
        return self._read_symbol(self._symbol(key), start, end, columns, f"read {key}")

    def _read_symbol(
        self, symbol: str, start: int | None, end: int | None, columns: list[str] | None, what: str
    ) -> pd.DataFrame:
        dr = _date_range(start, end)
        if dr is None:
            return pd.DataFrame()
        date_range = None if dr == (None, None) else dr
        with self._translated(what):
            try:
                data = _retrying(
                    lambda: self._lib.read(symbol, date_range=date_range, columns=columns).data
                )
            except NoDataFoundException:
                return pd.DataFrame()
            except ArcticException:
                meta = self._meta(symbol)
                if meta is None or meta.last is None:  # deleted meanwhile, or coverage only
                    return pd.DataFrame()
                raise
        return data if isinstance(data, pd.DataFrame) else pd.DataFrame()

    def coverage(self, key: DatasetKey | str) -> IntervalSet:
        """The ranges of ``key`` known complete (one ``read_metadata``)."""
        key = _check_key(key)
        with self._translated(f"read the coverage of {key}"):
            meta = self._meta(self._symbol(key))
        return meta.coverage if meta is not None else IntervalSet()

    def _described(self, symbol: str) -> tuple[int, list[int] | None]:
        """Rows and ``[first, last]`` (ns) of a symbol from ArcticDB's own description."""
        desc = _retrying(lambda: self._lib.get_description(symbol))
        lo, hi = desc.date_range
        if not desc.row_count or lo is None or pd.isna(lo) or hi is None or pd.isna(hi):
            return int(desc.row_count or 0), None
        return int(desc.row_count), [_ns_of(lo), _ns_of(hi)]

    def _infos(self, keys: Sequence[DatasetKey]) -> dict[DatasetKey, DatasetInfo]:
        symbols = [self._symbol(k) for k in keys]
        out: dict[DatasetKey, DatasetInfo] = {}
        with self._translated("read dataset metadata"):
            items = _retrying(lambda: self._lib.read_metadata_batch(symbols)) if symbols else []
            for key, symbol, item in zip(keys, symbols, items, strict=True):
                if not hasattr(item, "metadata"):  # a DataError: not stored
                    out[key] = DatasetInfo()
                    continue
                meta = _Meta.from_dict(item.metadata)
                if meta.last is not None and (meta.rows is None or meta.span is None):
                    meta.rows, meta.span = self._described(symbol)
                out[key] = meta.info()
            sizes = self._sizes([self._symbol(k) for k in keys if out[k] != DatasetInfo()])
        return {k: evolve(i, bytes=sizes.get(self._symbol(k))) for k, i in out.items()}

    def _sizes(self, symbols: list[str]) -> dict[str, int]:
        """Compressed bytes of each symbol's keys (data, index, versions), from ArcticDB's
        key listing, not its data: one listing for many symbols (about 70 ms for 1,000
        on LMDB), else one per symbol. Empty when ArcticDB cannot tell."""
        if not symbols:
            return {}
        try:
            tools = self._lib.admin_tools()
            if len(symbols) > _SIZES_ONE_BY_ONE:
                raw = tools.get_sizes_by_symbol()
            else:
                raw = {s: tools.get_sizes_for_symbol(s) for s in symbols}
        except (ArcticException, AttributeError) as exc:  # an ArcticDB without admin tools
            log.debug("ArcticDB cannot tell the symbols' sizes: %s", exc)
            return {}
        return {
            str(s): sum(int(v.bytes_compressed) for v in kinds.values()) for s, kinds in raw.items()
        }

    def _keys(self) -> list[DatasetKey]:
        with self._translated("list datasets"):
            names = self._lib.list_symbols()
        keys = (parse_key_name(n) for n in names if not n.startswith(_POINT_PREFIX))
        return [k for k in keys if k is not None]

    def _delete(self, key: DatasetKey, start: int | None, end: int | None) -> None:
        self._writable(f"delete from {key}")
        symbol = self._symbol(key)
        with self._writing(f"delete from {key}"), self._locked(symbol):
            lib = self._lib
            if start is None and end is None:
                if lib.has_symbol(symbol):
                    lib.delete(symbol)
                return
            meta = self._meta(symbol)
            if meta is None:
                return
            coverage = clip_range(meta.coverage, start, end)
            dr = _date_range(start, end)
            rows_go = meta.last is not None and dr is not None
            if coverage != meta.coverage or rows_go:
                # coverage shrinks first: if we die before the rows go, it merely lags
                meta.coverage = coverage
                if meta.last is not None:
                    meta.body_fragments += 2
                    meta.runs = None  # the range may split tail segments too
                if rows_go:  # counted again once they are gone
                    meta.rows = meta.span = None
                lib.write_metadata(symbol, meta.to_dict(), prune_previous_versions=True)
            if rows_go:
                # keeps the metadata just written
                lib.delete_data_in_range(symbol, dr, prune_previous_versions=True)
                meta.rows, meta.span = self._described(symbol)
                lib.write_metadata(symbol, meta.to_dict(), prune_previous_versions=True)

    # -- single points --------------------------------------------------------------------
    def _store(self, key: str, payload: str, timestamp: int) -> None:
        self._writable(f"store a point under {key!r}")
        frame = _point_frame(payload, timestamp)
        symbol = _POINT_PREFIX + encode_name(key)
        with self._writing(f"store a point under {key!r}"), self._locked(symbol):
            meta = self._meta(symbol)
            self._upsert(symbol, frame, meta, IntervalSet(), _merge_points)

    def _fetch(self, key: str, start: int, end: int) -> list[tuple[int, str]]:
        symbol = _POINT_PREFIX + encode_name(key)
        data = self._read_symbol(symbol, start, end, None, f"fetch points of {key!r}")
        if len(data) == 0:
            return []
        ms = index_ms(data)
        return [(int(t), str(v)) for t, v in zip(ms, data["v"].to_numpy(), strict=True)]
