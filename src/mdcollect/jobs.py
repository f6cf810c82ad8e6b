"""Backfill jobs from a file: the list of what must be stored, run from cron.

A jobs file is TOML. Each ``[[jobs]]`` entry names an exchange, its symbols (exact,
or patterns such as ``*/USDT:USDT`` matched against the exchange's markets), kinds,
timeframes and a range::

    storage = "arctic+lmdb:///data/md"      # optional, shared with [[collectors]]

    [[jobs]]
    exchange = "binance_futures"
    symbols = ["*/USDT:USDT"]               # exact symbols and/or patterns
    exclude = ["ETH/*"]                     # optional, removed from what matched
    kinds = ["ohlcv", "funding"]            # default ["ohlcv"]
    timeframes = ["1h", "1d"]               # default ["1h"]; for the candle kinds
    start = 2024-01-01                      # default 2020-01-01
    end = 2024-06-30                        # default: now (closed candles only)
    padding = 0                             # days before start, default 0

:func:`load_jobs` reads and checks a file (no request); :func:`~mdcollect.ensure_jobs` resolves
the patterns (one markets request per exchange that has some), ensures each dataset
once (entries naming the same dataset are merged) with :func:`~mdcollect.ensure_data`'s
engine, and returns its :class:`~mdcollect.EnsureReport`\\ s. Every bad field is an
:class:`~mdcollect.InvalidRequest` naming the file, the entry and the field, raised
before any request; ``mdcollect ensure --config FILE`` runs it from the command line.

The same file may hold the ``[[collectors]]`` (and top-level options) of ``mdcollect
collect``: each command reads its part and ignores the other's.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from attrs import frozen

from ._errors import InvalidRequest
from ._keys import TIMEFRAME_KINDS, DatasetKey, HistoryKind
from ._rules import check_bounds, check_padding, check_symbol
from ._rules import is_symbol_pattern as is_pattern
from ._time import time_range, to_ms
from .backfill import check_kinds
from .exchanges import exchange_info

__all__ = [
    "DEFAULT_START",
    "FIELDS",
    "Job",
    "JobsFile",
    "check_job",
    "is_pattern",
    "load_jobs",
    "read_jobs",
]

#: Where a job starts when its entry gives no ``start``.
DEFAULT_START: Final = "2020-01-01"
#: The fields of a ``[[jobs]]`` entry.
FIELDS: Final = (
    "name", "exchange", "symbols", "include", "exclude", "kinds", "timeframes", "start", "end",
    "padding",
)  # fmt: skip
_WHEN_RE: Final = re.compile(r"^(\d{8}|\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}.*)?)$")


@frozen
class Job:
    """One checked ``[[jobs]]`` entry (made by :func:`load_jobs`).

    ``symbols``, ``include`` and ``exclude`` may hold patterns (:func:`is_pattern`);
    ``start`` and ``end`` are ms (``end=None``: now, closed candles only); ``padding``
    is days ensured before ``start``; ``where`` names the entry in its file (``jobs.toml:
    jobs[1]``), or the job in messages about one made by hand.

    >>> [job] = load_jobs({"jobs": [{"exchange": "binance", "symbols": "*/USDT"}]})
    >>> job.kinds, job.timeframes, job.padding
    (('ohlcv',), ('1h',), 0)
    """

    exchange: str
    symbols: tuple[str, ...]
    kinds: tuple[HistoryKind, ...] = ("ohlcv",)
    timeframes: tuple[str, ...] = ("1h",)
    start: int = to_ms(DEFAULT_START)
    end: int | None = None
    padding: int = 0
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    name: str | None = None
    where: str = "Job"

    @property
    def has_patterns(self) -> bool:
        """True when resolving the symbols needs the exchange's markets."""
        return any(map(is_pattern, self.symbols + self.include))

    def resolve(self, markets: Iterable[str] = ()) -> list[str]:
        """The symbols this job names: ``symbols`` and ``include`` (patterns matched
        against ``markets``, sorted; exact symbols as given), minus ``exclude``.

        >>> job.resolve(["BTC/USDT", "ETH/USDT", "BTC/USDT:USDT"])
        ['BTC/USDT', 'ETH/USDT']
        """
        listed = list(markets)
        out: list[str] = []
        for field_name, values in (("symbols", self.symbols), ("include", self.include)):
            for value in values:
                if not is_pattern(value):
                    out.append(value)
                    continue
                matched = sorted(m for m in listed if fnmatch.fnmatchcase(m, value))
                if not matched:
                    raise InvalidRequest(
                        f"{self.where}.{field_name}: pattern {value!r} matches no active market "
                        f"of {self.exchange} ({len(listed)} listed, e.g. "
                        f"{', '.join(sorted(listed)[:5]) or 'none'})"
                    )
                out += matched
        kept = [
            s for s in dict.fromkeys(out)
            if not any(fnmatch.fnmatchcase(s, x) for x in self.exclude)
        ]  # fmt: skip
        if not kept:
            raise InvalidRequest(f"{self.where}.exclude: it removes every symbol the job names")
        return kept

    def datasets(self, symbols: Sequence[str]) -> list[DatasetKey]:
        """The datasets of ``symbols`` (resolved) for this job's kinds and timeframes."""
        return [
            DatasetKey(self.exchange, s, k, tf)
            for k in self.kinds
            for tf in (self.timeframes if k in TIMEFRAME_KINDS else (None,))
            for s in symbols
        ]


# -- reading and checking a file -----------------------------------------------------------


def load_jobs(config: str | Path | Mapping[str, Any]) -> list[Job]:
    """The ``[[jobs]]`` of a jobs file (a TOML path, or a dict of the same shape), checked.

    No request is made: patterns stay patterns until :func:`ensure_jobs` resolves them.
    Any bad field raises :class:`~mdcollect.InvalidRequest` naming the file, the entry
    (``jobs[1]``, with its ``name``) and the field. The file's ``[[collectors]]`` and
    collection options are left to ``mdcollect collect``.

    >>> jobs = load_jobs("jobs.toml")
    >>> reports = ensure_jobs("jobs.toml")   # the file's storage; or ensure_jobs(jobs, storage=...)
    """
    return read_jobs(config).jobs


@frozen
class JobsFile:
    """What a jobs file holds for ``ensure``: its jobs and its ``storage`` (``None``: not
    given)."""

    jobs: list[Job]
    storage: str | None = None


def read_jobs(config: str | Path | Mapping[str, Any]) -> JobsFile:
    """The jobs and the ``storage`` of a jobs file (see :func:`load_jobs`)."""
    from .collectors import CONFIG_KEYS as COLLECTOR_KEYS  # the other part of a shared file

    data: Any
    if isinstance(config, str | Path):
        source = str(config)
        try:
            data = tomllib.loads(Path(config).read_text(encoding="utf-8"))
        except OSError as exc:
            raise InvalidRequest(f"cannot read jobs file {source!r}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise InvalidRequest(f"jobs file {source!r} is not valid TOML: {exc}") from exc
    else:
        source, data = "jobs config", config
    if not isinstance(data, Mapping):
        raise InvalidRequest(f"{source}: must be a table/dict, got {type(data).__name__}")
    allowed = {"jobs", *COLLECTOR_KEYS}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise InvalidRequest(f"{source}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    storage = data.get("storage")
    if storage is not None and not isinstance(storage, str):
        raise InvalidRequest(f"{source}: storage must be a storage URL string, got {storage!r}")
    entries = data.get("jobs")
    if not isinstance(entries, list) or not entries:
        raise InvalidRequest(
            f"{source}: jobs must be a non-empty list of tables ([[jobs]] entries), got {entries!r}"
        )
    return JobsFile([_entry(f"{source}: jobs[{i}]", e) for i, e in enumerate(entries)], storage)


def check_job(job: object) -> Job:
    """``job`` checked as :func:`load_jobs` checks an entry (a :class:`Job` made by hand
    may hold anything); :class:`~mdcollect.InvalidRequest` naming ``job.where`` and
    the field otherwise."""
    if not isinstance(job, Job):
        raise InvalidRequest(f"jobs must be Job objects (see load_jobs), got {job!r}")
    fields: dict[str, Any] = {
        "exchange": job.exchange, "symbols": list(job.symbols), "include": list(job.include),
        "exclude": list(job.exclude), "kinds": list(job.kinds), "start": job.start,
        "padding": job.padding,
    }  # fmt: skip
    if job.timeframes:
        fields["timeframes"] = list(job.timeframes)
    if job.end is not None:
        fields["end"] = job.end
    if job.name is not None:
        fields["name"] = job.name
    return _entry(job.where, fields, named=job.name is not None and job.where.endswith(")"))


def _entry(where: str, entry: object, *, named: bool = False) -> Job:
    if not isinstance(entry, Mapping):
        raise InvalidRequest(f"{where} must be a table, got {entry!r}")
    name = entry.get("name")
    if name is not None:
        if not isinstance(name, str):
            raise InvalidRequest(f"{where}.name must be a string, got {name!r}")
        where = where if named else f"{where} ({name!r})"
    unknown = sorted(set(entry) - set(FIELDS))
    if unknown:
        raise InvalidRequest(f"{where}: unknown field(s) {unknown}; allowed: {', '.join(FIELDS)}")

    def field(key: str, check: Callable[[Any], Any], default: Any = None) -> Any:
        try:
            return check(entry[key]) if key in entry else default
        except InvalidRequest as exc:
            raise InvalidRequest(f"{where}.{key}: {exc}") from exc

    if "exchange" not in entry:
        raise InvalidRequest(f"{where}.exchange is required: an exchange key such as 'binance'")
    exchange = field("exchange", _exchange)
    if "symbols" not in entry:
        raise InvalidRequest(
            f"{where}.symbols is required: symbols or patterns such as ['BTC/USDT', '*/USDT']"
        )
    symbols = field("symbols", lambda v: _symbols("symbols", v, empty=False))
    include = field("include", lambda v: _symbols("include", v, empty=True), ())
    exclude = field("exclude", lambda v: _symbols("exclude", v, empty=True), ())
    kinds = field("kinds", lambda v: check_kinds(_listed(v)), ("ohlcv",))
    info = exchange_info(exchange)
    candles = [k for k in kinds if k in TIMEFRAME_KINDS]
    if "timeframes" in entry and not candles:
        raise InvalidRequest(
            f"{where}.timeframes: kinds {list(kinds)} take no timeframe; only "
            f"{', '.join(TIMEFRAME_KINDS)} have one"
        )
    timeframes = field(
        "timeframes",
        lambda v: tuple(dict.fromkeys(str(info.check_timeframe(t)) for t in _nonempty(v))),
        ("1h",),
    )
    start = field("start", lambda v: check_bounds(to_ms(_when(v), name="start"), "start", v))
    start = to_ms(DEFAULT_START) if start is None else start
    end = field("end", lambda v: _end(start, v))
    padding = field("padding", lambda v: check_padding(v, "padding"), 0)
    return Job(
        exchange, symbols, kinds, timeframes if candles else (), start, end, padding,
        include, exclude, name, where,
    )  # fmt: skip


def _exchange(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"must be an exchange key such as 'binance', got {value!r}")
    exchange_info(value)  # InvalidRequest with close matches for unknown keys
    return value


def _listed(value: object) -> object:
    """A string as a list of one, as TOML writers often write one value."""
    return [value] if isinstance(value, str) else value


def _nonempty(value: object) -> list[object]:
    value = _listed(value)
    if not isinstance(value, list) or not value:
        raise InvalidRequest(f"must be a non-empty list, got {value!r}")
    return value


def _symbols(name: str, value: object, *, empty: bool) -> tuple[str, ...]:
    value = _listed(value)
    if not isinstance(value, list) or (not value and not empty):
        raise InvalidRequest(
            f"must be a {'' if empty else 'non-empty '}list of symbols or patterns such as "
            f"['BTC/USDT', '*/USDT:USDT'], got {value!r}"
        )
    out = []
    for s in value:
        if isinstance(s, str) and is_pattern(s):
            out.append(s)
        else:
            out.append(check_symbol(s))
    return tuple(dict.fromkeys(out))


def _when(value: object) -> object:
    """A TOML date or time, or a string ``YYYY-MM-DD``/``YYYYMMDD``/ISO 8601 (never an
    ambiguous ``01/02/2024``)."""
    if isinstance(value, str) and not _WHEN_RE.match(value.strip()):
        raise InvalidRequest(
            f"{value!r} is not a date; use a TOML date (2024-01-01), YYYY-MM-DD, YYYYMMDD or "
            "an ISO 8601 time (2024-01-01T06:00:00Z)"
        )
    return value


def _end(start: int, value: object) -> int:
    _, hi = time_range(start, _when(value))
    assert hi is not None
    return check_bounds(hi, "end", value)
