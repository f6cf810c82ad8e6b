"""The audit's engine: its shapes and its checks, below the collectors' layer.

:func:`mdcollect.audit` (a use case, with repair through ``ensure``) and the
:class:`~mdcollect.DataCollector`'s scheduled audit (``audit_interval``) both run
:func:`audit_datasets`; the checks, the score and their reasons are documented in
:mod:`mdcollect.audit`. Every check works on numpy arrays of a dataset read once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from typing import Any, Final, Literal, get_args

import numpy as np
import pandas as pd
from attrs import field, frozen

from ._errors import InvalidRequest
from ._human import duration, plural
from ._intervals import Interval, IntervalSet
from ._keys import CANDLE_KINDS, HISTORY_KINDS, DatasetKey
from ._schema import _NON_NEGATIVE, _NOT_NAN
from ._time import Timeframe, format_ms, index_ms, ms_to_timestamp
from .aggregate import trades_to_ohlcv
from .backfill import FUNDING_PERIOD
from .exchanges import exchange_info
from .storage import DataCollectionStorage

__all__ = [
    "CHECKS",
    "JUMP_MADS",
    "MARK_BAND",
    "MAX_FINDINGS",
    "WARNING_CHECKS",
    "WARNING_WEIGHT",
    "ZERO_VOLUME_RUN",
    "AuditParams",
    "AuditReport",
    "Check",
    "DatasetAudit",
    "Finding",
    "Severity",
    "audit_datasets",
    "in_ranges",
    "repair_span",
    "score",
    "sorted_unique",
]

Check = Literal[
    "hole",
    "outside_coverage",
    "off_grid",
    "duplicate",
    "unsorted",
    "invalid_ohlc",
    "nan",
    "negative",
    "zero_volume_run",
    "price_jump",
    "trades_vs_candles",
    "mark_vs_last",
    "funding_time",
]
#: Every check the audit makes.
CHECKS: Final[tuple[Check, ...]] = get_args(Check)
Severity = Literal["error", "warning"]
#: The checks that find suspicious values rather than wrong ones: reported as
#: warnings, weighed :data:`WARNING_WEIGHT` in the score, never repaired. Rows outside
#: coverage are among them: coverage may lag data by design (a live collector's newest
#: rows, a write interrupted between rows and coverage), and ``ensure_data`` refetches
#: such a range when it is needed.
WARNING_CHECKS: Final[frozenset[Check]] = frozenset(
    {"zero_volume_run", "price_jump", "mark_vs_last", "outside_coverage"}
)
#: The weight of a row affected by a warning in the score (an error's is 1).
WARNING_WEIGHT: Final = 0.25
#: Default: a run of more zero-volume candles than this is suspicious (an hour of 1m).
ZERO_VOLUME_RUN: Final = 60
#: Default: a log return of close further than this many median absolute deviations
#: from the median is a suspicious jump.
JUMP_MADS: Final = 25.0
#: Default: a mark close further than this fraction from the last close is suspicious.
MARK_BAND: Final = 0.02
#: Findings per check and dataset; further runs are merged into the last one.
MAX_FINDINGS: Final = 1000

_FAR: Final = 2**62


@frozen
class Finding:
    """One problem of one dataset, with exact timestamps (ms, ``[start, end)``).

    ``count`` is the rows affected (for a hole, the rows missing); ``detail`` says it
    in a sentence with UTC times.
    """

    key: DatasetKey
    check: Check
    severity: Severity
    start: int
    end: int
    count: int
    detail: str

    @property
    def span(self) -> Interval:
        """``Interval(start, end)``."""
        return Interval(self.start, self.end)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (stable keys)."""
        return {
            "key": str(self.key),
            "check": self.check,
            "severity": self.severity,
            "start": self.start,
            "end": self.end,
            "count": self.count,
            "detail": self.detail,
        }


@frozen
class DatasetAudit:
    """The audit of one dataset: rows read, findings in time order, score in [0, 1]."""

    key: DatasetKey
    rows: int
    findings: tuple[Finding, ...]
    score: float

    @property
    def ok(self) -> bool:
        """True when no error-severity finding is left."""
        return not any(f.severity == "error" for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (stable keys)."""
        return {
            "key": str(self.key),
            "rows": self.rows,
            "score": self.score,
            "ok": self.ok,
            "findings": [f.to_dict() for f in self.findings],
        }


_FRAME_COLUMNS: Final = ("key", "check", "severity", "start", "end", "count", "detail")


@frozen
class AuditReport:
    """What :func:`audit` found, per dataset; ``repaired``: the findings a repair fixed.

    ``str(report)`` is the table the CLI prints, ``to_frame()`` one row per finding,
    ``to_dict()`` the CLI's and the service's JSON; a notebook shows an HTML table.

    >>> report = audit(storage)
    >>> report.ok
    False
    >>> report.to_frame()[["key", "check", "start", "count"]]
    """

    datasets: tuple[DatasetAudit, ...]
    repaired: tuple[Finding, ...] = field(default=())

    @property
    def findings(self) -> tuple[Finding, ...]:
        """Every finding, in key then time order."""
        return tuple(f for d in self.datasets for f in d.findings)

    @property
    def ok(self) -> bool:
        """True when no error-severity finding is left."""
        return all(d.ok for d in self.datasets)

    def to_frame(self) -> pd.DataFrame:
        """One row per finding: ``key check severity start end count detail``, the
        times as UTC timestamps."""
        rows = [f.to_dict() for f in self.findings]
        frame = pd.DataFrame(rows, columns=list(_FRAME_COLUMNS))
        for c in ("start", "end"):
            frame[c] = pd.to_datetime(
                pd.Series([ms_to_timestamp(int(v)) for v in frame[c]], dtype=object),
                utc=True,
            )
        return frame

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (stable keys): ``ok``, ``datasets``, ``repaired``."""
        return {
            "ok": self.ok,
            "datasets": [d.to_dict() for d in self.datasets],
            "repaired": [f.to_dict() for f in self.repaired],
        }

    def __str__(self) -> str:
        lines = []
        for d in self.datasets:
            errors = sum(1 for f in d.findings if f.severity == "error")
            warnings = len(d.findings) - errors
            state = (
                "ok"
                if not d.findings
                else f"{plural(errors, 'error')}, " + plural(warnings, "warning")
            )
            lines.append(f"{d.key}  rows={d.rows}  score={d.score:.4f}  {state}")
            lines += [f"    {f.severity:<7} {f.check:<17} {f.detail}" for f in d.findings]
        if self.repaired:
            lines.append(f"repaired {plural(len(self.repaired), 'finding')}:")
            lines += [f"    {f.check:<17} {f.detail}" for f in self.repaired]
        n = len(self.findings)
        lines.append(
            f"{plural(len(self.datasets), 'dataset')}, {plural(n, 'finding')}: "
            + ("ok" if self.ok else "PROBLEMS")
        )
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{c}</th>" for c in ("dataset", "rows", "score", *_FRAME_COLUMNS[1:]))
        body = []
        for d in self.datasets:
            cells = [escape(str(d.key)), str(d.rows), f"{d.score:.4f}"]
            if not d.findings:
                body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "<td>ok</td></tr>")
            for f in d.findings:
                more = [f.check, f.severity, format_ms(f.start), format_ms(f.end), str(f.count)]
                row = [*cells, *(escape(m) for m in more), escape(f.detail)]
                body.append("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
        state = "ok" if self.ok else "problems found"
        return (
            f"<p>audit of {plural(len(self.datasets), 'dataset')}: {state}</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        )


@frozen
class AuditParams:
    start: int | None
    end: int | None
    zero_volume_run: int
    jump_mads: float
    mark_band: float


# -- the checks (arrays in, findings out) -------------------------------------------------


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(first, last)`` positions of each run of True in ``mask``."""
    if not mask.any():
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    m = np.concatenate(([False], mask.astype(bool), [False]))
    edges = np.flatnonzero(m[1:] != m[:-1])
    return edges[0::2], edges[1::2] - 1


class _Findings:
    """Collects one dataset's findings."""

    def __init__(self, key: DatasetKey) -> None:
        self.key = key
        self.items: list[Finding] = []

    def add(self, check: Check, start: int, end: int, count: int, what: str) -> None:
        severity: Severity = "warning" if check in WARNING_CHECKS else "error"
        span = f"[{format_ms(start)}, {format_ms(end)}) UTC"
        self.items.append(
            Finding(self.key, check, severity, int(start), int(end), int(count), f"{what} {span}")
        )

    def runs(
        self,
        check: Check,
        mask: np.ndarray,
        ts: np.ndarray,
        width: int,
        what: str,
        *,
        min_length: int = 1,
    ) -> None:
        """One finding per run of consecutive flagged rows (rows ``ts``, each ``width``
        ms long), runs shorter than ``min_length`` rows left out."""
        first, last = _runs(mask)
        keep = (last - first + 1) >= min_length
        first, last = first[keep], last[keep]
        counts = last - first + 1  # a run is all flagged
        if len(first) > MAX_FINDINGS:  # a bounded report: the rest merge into the last
            merged = int(counts[MAX_FINDINGS - 1 :].sum())
            first, last = first[:MAX_FINDINGS], np.r_[last[: MAX_FINDINGS - 1], last[-1:]]
            counts = np.r_[counts[: MAX_FINDINGS - 1], merged]
        for a, b, n in zip(first.tolist(), last.tolist(), counts.tolist(), strict=True):
            lo, hi = int(ts[a : b + 1].min()), int(ts[a : b + 1].max()) + width
            self.add(check, lo, hi, n, f"{plural(n, 'row')} {what} in")


def in_ranges(ts: np.ndarray, cov: IntervalSet) -> np.ndarray:
    """Which of ``ts`` lie inside ``cov``."""
    if not cov:
        return np.zeros(len(ts), dtype=bool)
    starts = np.array([iv.start for iv in cov], dtype=np.int64)
    ends = np.array([iv.end for iv in cov], dtype=np.int64)
    i = np.searchsorted(starts, ts, side="right") - 1
    return (i >= 0) & (ts < ends[np.maximum(i, 0)])


def _member(values: np.ndarray, sorted_: np.ndarray) -> np.ndarray:
    """Which of ``values`` are in the sorted array ``sorted_`` (binary search: faster
    than ``np.isin``'s hashing or sorting for arrays that are sorted already)."""
    if not len(sorted_):
        return np.zeros(len(values), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_, values), len(sorted_) - 1)
    return np.asarray(sorted_[pos] == values, dtype=bool)


def _grid(tf: Timeframe, cov: IntervalSet) -> np.ndarray:
    """The candle times whose whole candle lies inside ``cov``."""
    parts = []
    for iv in cov:
        first = tf.ceil(iv.start)
        if tf.unit == "M":  # calendar months: no fixed length
            times = pd.date_range(ms_to_timestamp(first), ms_to_timestamp(iv.end), freq="MS")
            grid = index_ms(pd.DatetimeIndex(times))
            parts.append(grid[grid < iv.end][:-1] if len(grid) else grid)
        else:
            n = (iv.end - first) // tf.ms
            if n > 0:
                parts.append(first + tf.ms * np.arange(n, dtype=np.int64))
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def _width(key: DatasetKey) -> int:
    tf = key.tf
    return tf.ms if tf is not None and tf.unit != "M" else 1


def _check_structure(
    out: _Findings, key: DatasetKey, frame: pd.DataFrame, ts: np.ndarray, cov: IntervalSet
) -> tuple[pd.DataFrame, np.ndarray, int]:
    """Order, duplicates, coverage and grid; returns the rows sorted (stable) and the
    number of rows missing from holes."""
    width = _width(key)
    # storage.read hands back the stored order. ArcticDB refuses unsorted writes
    # (validate_index), so there rows cannot be out of order; Redis deduplicates the
    # segments of a bucket written more than once when it reads them; memory and
    # parquet show rows written in any order exactly so.
    down = np.zeros(len(ts), dtype=bool)
    if len(ts) > 1:
        down[1:] = ts[1:] < np.maximum.accumulate(ts)[:-1]
    if down.any():
        out.runs("unsorted", down, ts, width, "out of time order")
        order = np.argsort(ts, kind="stable")
        frame, ts = frame.iloc[order], ts[order]
    if key.kind == "trades":
        # an id twice is a duplicate whatever the times (hashing, no per-row Python)
        dup_mask = frame["id"].duplicated(keep=False).to_numpy()
        out.runs("duplicate", dup_mask, ts, 1, "with a duplicate trade id")
    else:
        same = np.zeros(len(ts), dtype=bool)
        if len(ts) > 1:
            eq = ts[1:] == ts[:-1]
            same[1:] |= eq
            same[:-1] |= eq
        out.runs("duplicate", same, ts, width, "sharing a timestamp")
    if key.kind in HISTORY_KINDS:  # snapshots (tickers, books) are never covered
        inside = in_ranges(ts, cov)
        out.runs("outside_coverage", ~inside, ts, width, "outside coverage")
    missing = 0
    tf = key.tf
    if key.kind in CANDLE_KINDS and tf is not None:
        off = np.asarray(tf.floor_array(ts) != ts, dtype=bool)
        out.runs("off_grid", off, ts, width, f"off the {tf} grid")
        grid = _grid(tf, cov)
        absent = ~_member(grid, ts[~off])
        missing = int(absent.sum())
        out.runs("hole", absent, grid, width, f"missing ({tf} candles)")
    elif key.kind == "funding":
        missing = _funding_holes(out, ts, cov)
    return frame, ts, missing


def _funding_holes(out: _Findings, ts: np.ndarray, cov: IntervalSet) -> int:
    """Stretches of coverage longer than any funding interval (8 h) without a settlement."""
    missing = 0
    for iv in cov:
        inner = ts[(ts >= iv.start) & (ts < iv.end)]
        edges = np.concatenate(([iv.start], inner, [iv.end]))  # sorted: duplicates gap 0
        gaps = np.diff(edges)
        for i in np.flatnonzero(gaps > FUNDING_PERIOD)[:MAX_FINDINGS].tolist():
            lo, hi = int(edges[i]), int(edges[i + 1])
            n = (hi - lo) // FUNDING_PERIOD
            missing += n
            out.add("hole", lo, hi, n, f"no funding settlement for {duration(hi - lo)}:")
    return missing


def _check_values(
    out: _Findings, key: DatasetKey, frame: pd.DataFrame, ts: np.ndarray, params: AuditParams
) -> None:
    """NaN, negatives, OHLC invariants, zero-volume runs, price jumps."""
    width = _width(key)
    kind = key.kind
    # one array per column: a multi-column to_numpy copies the block row by row
    arrays: dict[str, np.ndarray] = {}

    def col(name: str) -> np.ndarray:
        if name not in arrays:
            arrays[name] = frame[name].to_numpy(dtype=np.float64)
        return arrays[name]

    cols = [c for c in _NOT_NAN.get(kind, ()) if c in frame.columns]
    if cols:
        nan = np.zeros(len(ts), dtype=bool)
        for name in cols:
            nan |= np.isnan(col(name))
        out.runs("nan", nan, ts, width, f"with NaN in {'/'.join(cols)}")
    cols = [c for c in _NON_NEGATIVE.get(kind, ()) if c in frame.columns]
    if cols:
        neg = np.zeros(len(ts), dtype=bool)
        for name in cols:
            neg |= col(name) < 0
        out.runs("negative", neg, ts, width, f"negative in {'/'.join(cols)}")
    if kind not in CANDLE_KINDS:
        return
    o, h, lo, c = (col(k) for k in ("open", "high", "low", "close"))
    with np.errstate(invalid="ignore"):
        bad = (h < np.fmax(np.fmax(o, c), lo)) | (lo > np.fmin(np.fmin(o, c), h))
    out.runs("invalid_ohlc", bad, ts, width, "where high is not the max or low not the min")
    if kind == "ohlcv" and params.zero_volume_run > 0:
        zero = col("volume") == 0
        out.runs(
            "zero_volume_run", zero, ts, width,
            f"of zero volume (over {params.zero_volume_run} in a row)",
            min_length=params.zero_volume_run + 1,
        )  # fmt: skip
    if kind != "premium" and len(c) > 2:  # the premium index crosses zero
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.diff(np.log(c))
        finite = np.isfinite(r)
        if finite.sum() > 2:
            med = np.median(r[finite])
            mad = np.median(np.abs(r[finite] - med))
            if mad > 0:
                jump = np.zeros(len(c), dtype=bool)
                jump[1:] = finite & (np.abs(r - med) > params.jump_mads * mad)
                out.runs(
                    "price_jump", jump, ts, width,
                    f"with a close jumping over {params.jump_mads:g} MADs of log returns",
                )  # fmt: skip


def _check_trades_vs_candles(
    out: _Findings,
    key: DatasetKey,
    candles: pd.DataFrame,
    ts: np.ndarray,
    trades: pd.DataFrame,
    trades_cov: IntervalSet,
) -> None:
    """Stored candles against the candles of stored trades, where the trades are covered."""
    tf = key.tf
    assert tf is not None
    agg = trades_to_ohlcv(trades, tf, fill_empty=False)
    # only candles whose whole span the trades cover can be compared
    # only candles whose whole span lies in one covered member of the trades compare
    starts = np.array([iv.start for iv in trades_cov], dtype=np.int64)
    inside = in_ranges(ts, trades_cov) & in_ranges(ts + _width(key) - 1, trades_cov)
    a = np.searchsorted(starts, ts, side="right")
    inside &= a == np.searchsorted(starts, ts + _width(key) - 1, side="right")
    agg_ts = index_ms(agg)
    pos = np.searchsorted(agg_ts, ts)
    found = (pos < len(agg_ts)) & (agg_ts[np.minimum(pos, max(len(agg_ts) - 1, 0))] == ts)
    found &= inside
    cols = ["open", "high", "low", "close", "volume"]
    stored = candles[cols].to_numpy(dtype=np.float64)
    bad = np.zeros(len(ts), dtype=bool)
    if found.any():
        mine = agg[cols].to_numpy(dtype=np.float64)[pos[found]]
        diff = ~np.isclose(stored[found], mine, rtol=1e-9, atol=1e-12).all(axis=1)
        bad[np.flatnonzero(found)[diff]] = True
    # a covered candle with volume but no trade at all
    bad |= inside & ~found & (stored[:, 4] > 0)
    out.runs("trades_vs_candles", bad, ts, _width(key), "unlike the candles of the stored trades")


def _check_mark(
    out: _Findings, ts: np.ndarray, mark: pd.DataFrame, last: pd.DataFrame, band: float, width: int
) -> None:
    last_ts = index_ms(last)
    pos = np.searchsorted(last_ts, ts)
    ok = pos < len(last_ts)
    ok[ok] = last_ts[pos[ok]] == ts[ok]
    far = np.zeros(len(ts), dtype=bool)
    if ok.any():
        m = mark["close"].to_numpy(dtype=np.float64)[ok]
        lc = last["close"].to_numpy(dtype=np.float64)[pos[ok]]
        with np.errstate(invalid="ignore", divide="ignore"):
            far[ok] = np.abs(m / lc - 1) > band
    out.runs("mark_vs_last", far, ts, width, f"with the mark over {band:.2%} from the last close")


def _check_funding_times(out: _Findings, key: DatasetKey, ts: np.ndarray) -> None:
    try:
        how = exchange_info(key.exchange).funding
    except InvalidRequest:
        return  # an exchange mdcollect does not know: no settlement times to check
    if how is None:
        return
    off = ts % how.settles_on != 0
    out.runs(
        "funding_time", off, ts, 1,
        f"off {key.exchange}'s settlement times (whole multiples of {duration(how.settles_on)})",
    )  # fmt: skip


# -- one dataset --------------------------------------------------------------------------


def _clip(cov: IntervalSet, params: AuditParams) -> IntervalSet:
    lo = params.start if params.start is not None else -_FAR
    hi = params.end if params.end is not None else _FAR
    return cov & IntervalSet([Interval(lo, hi)])


def sorted_unique(frame: pd.DataFrame) -> pd.DataFrame:
    ms = index_ms(frame)
    if len(ms) > 1 and (np.diff(ms) <= 0).any():
        frame = frame.iloc[np.argsort(ms, kind="stable")]
        frame = frame[~frame.index.duplicated(keep="last")]
    return frame


def _audit_one(
    store: DataCollectionStorage, key: DatasetKey, params: AuditParams, stored: set[DatasetKey]
) -> DatasetAudit:
    # coverage first: rows are written before their coverage, so coverage read first
    # never claims a row the read that follows misses (a collector writing meanwhile)
    cov = _clip(store.coverage(key), params)
    frame = store.read(key, params.start, params.end)
    ts = index_ms(frame)
    out = _Findings(key)
    frame, ts, missing = _check_structure(out, key, frame, ts, cov)
    _check_values(out, key, frame, ts, params)
    if key.kind == "funding":
        _check_funding_times(out, key, ts)
    if key.kind == "ohlcv" and len(ts):
        trades_key = DatasetKey(key.exchange, key.symbol, "trades")
        if trades_key in stored:
            tcov = _clip(store.coverage(trades_key), params)
            lo, hi = int(ts.min()), int(ts.max()) + _width(key)
            tcov = tcov & IntervalSet([Interval(lo, hi)])
            if tcov:
                trades = store.read(trades_key, tcov.start, tcov.end)
                _check_trades_vs_candles(out, key, frame, ts, trades, tcov)
    if key.kind == "mark" and len(ts):
        last_key = DatasetKey(key.exchange, key.symbol, "ohlcv", key.timeframe)
        if last_key in stored:
            last = sorted_unique(store.read(last_key, int(ts.min()), int(ts.max()) + 1))
            _check_mark(out, ts, frame, last, params.mark_band, _width(key))
    findings = tuple(sorted(out.items, key=lambda f: (f.start, f.end, f.check)))
    return DatasetAudit(key, len(ts), findings, score(findings, len(ts) + missing))


def score(findings: Iterable[Finding], n: int) -> float:
    """``max(0, 1 - (E + W * WARNING_WEIGHT) / N)`` (module documentation)."""
    if n <= 0:
        return 1.0
    weighted = sum(f.count * (WARNING_WEIGHT if f.severity == "warning" else 1.0) for f in findings)
    return max(0.0, 1.0 - weighted / n)


def audit_datasets(
    store: DataCollectionStorage, keys: Sequence[DatasetKey] | None, params: AuditParams
) -> list[DatasetAudit]:
    stored = set(store.keys())
    todo = sorted(stored) if keys is None else list(keys)
    return [_audit_one(store, k, params, stored) for k in todo]


def repair_span(f: Finding) -> Interval:
    """The span to delete and refetch for a finding: whole candles for candle kinds."""
    tf = f.key.tf
    if tf is None:
        return f.span
    return Interval(tf.floor(f.start), max(tf.ceil(f.end), tf.floor(f.start) + 1))
