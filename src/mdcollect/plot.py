"""The coverage picture: what a store holds, one lane per dataset.

:func:`plot_coverage` draws, for each dataset, the ranges its coverage says are
complete, the holes (gaps in coverage between the first and last stored row, or
within the ``[start, end)`` asked for), and, given an audit report, its findings.
It returns a :class:`matplotlib.figure.Figure` built without pyplot (no global
state, nothing shown twice in a notebook) on the Agg canvas, so ``savefig`` works
without a display; a notebook shows it as an image (``_repr_png_``). matplotlib is the optional extra ``mdcollect[plot]``: importing
this module does not import it, calling :func:`plot_coverage` without it says how
to install it.

Lanes scale with the number of datasets: from 1 to 200 and more, the figure grows
taller, lanes and labels shrink, and no two labels overlap.
"""

from __future__ import annotations

import functools
import io
import logging
import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

import numpy as np

from ._errors import InvalidRequest, MdcollectError, missing_extra
from ._intervals import Interval, IntervalSet
from ._keys import DatasetKey
from ._time import index_ms, ms_to_index, time_range
from .storage import DataCollectionStorage, open_storage

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["COLORS", "plot_coverage"]

log = logging.getLogger("mdcollect.plot")

#: The colours of the picture: covered spans, holes, and audit findings by severity.
COLORS: Final = {
    "covered": "#2a9d8f",
    "hole": "#e63946",
    "error": "#5a189a",
    "warning": "#f4a261",
}
# Half-heights of the bars, in lanes: coverage and holes fill most of a lane, findings
# are a narrower band over its middle so that what lies under them stays visible.
_BAR: Final = 0.38
_FINDING: Final = 0.14
_MAX_LABELS_SHOWN: Final = 5


class _Finding(Protocol):
    """What the picture reads of an audit finding (``mdcollect.audit.Finding``)."""

    @property
    def key(self) -> object: ...
    @property
    def severity(self) -> str: ...
    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...


def plot_coverage(
    storage: DataCollectionStorage | str,
    keys: Iterable[DatasetKey | str] | DatasetKey | str | None = None,
    start: object = None,
    end: object = None,
    *,
    report: Any = None,
) -> Figure:
    """A picture of what ``storage`` holds: one lane per dataset, covered spans in
    :data:`COLORS` ``["covered"]``, holes in ``["hole"]``.

    ``keys`` are the datasets to draw (all stored ones by default, in the order
    given otherwise); ``start`` and ``end`` (dates, as everywhere in mdcollect: a bare
    ``end`` date includes that day) fix the time axis, and every part of
    ``[start, end)`` not covered is a hole. Without them each lane's holes are the
    gaps between its first and last stored row (or covered range). ``report`` (an
    :class:`mdcollect.audit.AuditReport`, or anything with ``.findings`` whose items
    have ``.key .severity .start .end``) marks each finding over its span in the
    colour of its severity (``"error"``, ``"warning"``).

    Needs matplotlib: ``pip install 'mdcollect[plot]'``.

    >>> fig = plot_coverage(storage, start="2024-01-01", end="2024-01-31")
    >>> fig.savefig("coverage.png")
    """
    mpl = _matplotlib()
    lo, hi = time_range(start, end)
    findings = _findings(report)
    with _opened(storage) as store:
        lanes = _lanes(store, keys)
        spans = [_span(store, key, lo, hi) for key in lanes]
        covers = [store.coverage(key) for key in lanes]
    by_key: dict[str, list[_Finding]] = {}
    for f in findings:
        by_key.setdefault(str(f.key), []).append(f)
    return _draw(mpl, store.url, lanes, spans, covers, by_key, lo, hi)


# -- inputs -------------------------------------------------------------------------------
def _matplotlib() -> Any:
    try:
        import matplotlib.dates
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.collections import PolyCollection
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
    except ImportError as exc:
        raise MdcollectError(missing_extra("plot_coverage", "plot", exc)) from exc
    return (matplotlib.dates, FigureCanvasAgg, Figure, Patch, PolyCollection)


class _opened:
    """The storage given, or one opened from a URL and closed afterwards."""

    def __init__(self, storage: object) -> None:
        if isinstance(storage, str):
            self.store, self.owned = open_storage(storage), True
        elif isinstance(storage, DataCollectionStorage):
            self.store, self.owned = storage, False
        else:
            raise InvalidRequest(
                f"storage must be a DataCollectionStorage or a storage URL such as "
                f"'memory://', got {type(storage).__name__}: {storage!r}"
            )

    def __enter__(self) -> DataCollectionStorage:
        return self.store

    def __exit__(self, *exc: object) -> None:
        if self.owned:
            self.store.close()


def _findings(report: Any) -> list[_Finding]:
    if report is None:
        return []
    items = getattr(report, "findings", None)
    if items is None or isinstance(items, str | bytes):
        raise InvalidRequest(
            f"report must be an AuditReport (anything with .findings), got "
            f"{type(report).__name__}: {report!r}"
        )
    out = list(items)
    for f in out:
        missing = [a for a in ("key", "severity", "start", "end") if not hasattr(f, a)]
        if missing:
            raise InvalidRequest(
                f"report finding {f!r} has no {', '.join(missing)}; a finding needs "
                ".key .severity .start .end (ms)"
            )
        if f.severity not in ("error", "warning"):
            raise InvalidRequest(
                f"report finding severity {f.severity!r} is not valid; allowed: error, warning"
            )
        for name in ("start", "end"):
            value = getattr(f, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise InvalidRequest(
                    f"report finding {name} {value!r} is not valid; a finding's start and "
                    "end are ints of ms since the epoch"
                )
    return out


def _lanes(
    store: DataCollectionStorage, keys: Iterable[DatasetKey | str] | DatasetKey | str | None
) -> list[DatasetKey]:
    stored = store.keys()
    if keys is None:
        return stored
    if isinstance(keys, DatasetKey | str):
        keys = [keys]
    if not isinstance(keys, Iterable):
        raise InvalidRequest(
            f"keys must be a DatasetKey, a key string such as 'binance:ohlcv:1h:BTC/USDT', "
            f"or a list of them, got {type(keys).__name__}: {keys!r}"
        )
    out: list[DatasetKey] = []
    for k in keys:
        key = k if isinstance(k, DatasetKey) else DatasetKey.parse(k)
        if key not in stored:
            names = ", ".join(str(s) for s in stored[:_MAX_LABELS_SHOWN])
            more = "" if len(stored) <= _MAX_LABELS_SHOWN else ", ..."
            raise InvalidRequest(
                f"no dataset {str(key)!r} in {store.url}; stored: {names + more or 'none'}"
            )
        if key not in out:
            out.append(key)
    return out


def _span(
    store: DataCollectionStorage, key: DatasetKey, lo: int | None, hi: int | None
) -> Interval | None:
    """The range a lane shows: ``[lo, hi)``, an open side filled in from the rows and
    the coverage of ``key``; ``None`` when there is nothing to show."""
    if lo is not None and hi is not None:
        return Interval(lo, hi)
    cov = store.coverage(key)
    ts = index_ms(store.read(key, lo, hi, columns=[]))
    firsts = [v for v in (cov.start, int(ts[0]) if len(ts) else None) if v is not None]
    # a row stands for its candle, or for its own millisecond
    step = key.tf.ms if key.tf is not None and not key.tf.is_calendar else 1
    lasts = [v for v in (cov.end, int(ts[-1]) + step if len(ts) else None) if v is not None]
    first = lo if lo is not None else min(firsts, default=None)
    last = hi if hi is not None else max(lasts, default=None)
    if first is None or last is None or last <= first:
        return None
    return Interval(first, last)


# -- the picture ------------------------------------------------------------------------
def _layout(n: int, labels: Sequence[str]) -> tuple[float, float, float]:
    """``(font size in points, left margin, figure height)``, both in inches: lanes from
    0.4 in high (up to 36 datasets) down to 0.16 in (from 225), labels from 9 pt to 5 pt
    but always less than a lane high."""
    lane = min(0.4, max(0.16, 2.4 / math.sqrt(max(n, 1))))
    font = min(9.0, max(5.0, lane * 72 * 0.5))
    longest = max((len(s) for s in labels), default=10)
    left = 0.3 + longest * font * 0.62 / 72
    return font, left, _TOP + _BOTTOM + max(n, 1) * lane


_TOP: Final = 0.9  # inches: the title and the legend
_BOTTOM: Final = 0.55  # inches: the time axis
_WIDTH: Final = 12.0
_RIGHT: Final = 0.3  # inches
_MIN_PIXELS: Final = 2.0  # the narrowest part drawn


def _x(mdates: Any, ms: Sequence[int] | np.ndarray) -> np.ndarray:
    """ms as matplotlib's date numbers."""
    values = ms_to_index(np.asarray(ms, dtype=np.int64)).tz_convert(None).to_numpy()
    return np.asarray(mdates.date2num(values), dtype=float)


def _rects(mdates: Any, rows: list[tuple[int, int, float, float]], min_width: float) -> np.ndarray:
    """Rectangles ``(start ms, end ms, y0, y1)`` as the vertices a PolyCollection takes,
    each at least ``min_width`` wide (in date numbers) around its middle."""
    a = np.asarray(rows, dtype=float).reshape(-1, 4)
    x0 = _x(mdates, a[:, 0].astype(np.int64))
    x1 = _x(mdates, a[:, 1].astype(np.int64))
    narrow = (x1 - x0) < min_width
    middle = (x0 + x1) / 2
    x0 = np.where(narrow, middle - min_width / 2, x0)
    x1 = np.where(narrow, middle + min_width / 2, x1)
    y0, y1 = a[:, 2], a[:, 3]
    return np.stack([np.c_[x0, y0], np.c_[x0, y1], np.c_[x1, y1], np.c_[x1, y0]], axis=1)


def _draw(
    mpl: Any,
    url: str,
    lanes: list[DatasetKey],
    spans: list[Interval | None],
    covers: list[IntervalSet],
    findings: dict[str, list[_Finding]],
    lo: int | None,
    hi: int | None,
) -> Figure:
    mdates, canvas_cls, figure_cls, patch_cls, collection_cls = mpl
    labels = [str(k) for k in lanes]
    font, left, height = _layout(len(lanes), labels)
    width = max(_WIDTH, left + 6.0)
    fig: Figure = figure_cls(figsize=(width, height), dpi=100)
    canvas_cls(fig)  # Agg: savefig and buffer_rgba work without a display
    fig.subplots_adjust(
        left=left / width, right=1 - _RIGHT / width, top=1 - _TOP / height, bottom=_BOTTOM / height
    )
    ax: Axes = fig.add_subplot()
    hull: list[int] = []
    # one collection per colour (drawn in this order), not one artist per lane: 200
    # lanes draw in a fraction of a second
    rects: dict[str, list[tuple[int, int, float, float]]] = {c: [] for c in COLORS}
    for y, (key, span, cov) in enumerate(zip(lanes, spans, covers, strict=True)):
        if span is not None:
            shown = cov & span
            rects["covered"] += [(iv.start, iv.end, y - _BAR, y + _BAR) for iv in shown]
            rects["hole"] += [(iv.start, iv.end, y - _BAR, y + _BAR) for iv in shown.gaps(span)]
            hull += [span.start, span.end]
        for f in findings.get(str(key), []):
            s, e = int(f.start), max(int(f.end), int(f.start) + 1)
            rects[f.severity].append((s, e, y - _FINDING, y + _FINDING))
            hull += [s, e]
    ax.set_ylim(max(len(lanes), 1) - 0.5, -0.5)  # the first dataset on top
    # labels as plain texts rather than 200 tick objects (a third of the drawing time)
    ax.set_yticks([])
    beside = ax.get_yaxis_transform()  # x in axes fractions, y in lanes
    for y, label in enumerate(labels):
        ax.text(-0.006, y, label, transform=beside, ha="right", va="center", fontsize=font)
    min_width = 0.0
    if hull:
        first, last = (lo, hi) if lo is not None and hi is not None else (min(hull), max(hull))
        x_first, x_last = _x(mdates, [first, last])
        ax.set_xlim(x_first, x_last)
        # a hole of one candle in a year is a sliver of a pixel: draw every part at
        # least _MIN_PIXELS wide, so that it can be seen (holes are drawn over coverage)
        pixels = (width - left - _RIGHT) * fig.dpi
        min_width = (x_last - x_first) * _MIN_PIXELS / pixels
    else:
        ax.text(0.5, 0.5, "nothing stored", transform=ax.transAxes, ha="center", va="center")
        ax.set_xticks([])
    for what, rows in rects.items():
        if rows:
            verts = _rects(mdates, rows, min_width)
            ax.add_collection(collection_cls(verts, facecolors=COLORS[what], linewidths=0),
                              autolim=False)  # fmt: skip
    marked = {s for s in ("error", "warning") if rects[s]}
    locator = mdates.AutoDateLocator(tz="UTC")
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz="UTC"))
    ax.tick_params(axis="x", labelsize=8)
    ax.set_xlabel("UTC", fontsize=8)
    ax.grid(axis="x", color="#dddddd", linewidth=0.5)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    n = len(lanes)
    fig.suptitle(f"coverage of {n} dataset{'s' * (n != 1)} in {url}", fontsize=10,
                 y=1 - 0.12 / height, va="top")  # fmt: skip
    legend = [patch_cls(color=COLORS["covered"], label="covered"),
              patch_cls(color=COLORS["hole"], label="hole")]  # fmt: skip
    legend += [patch_cls(color=COLORS[s], label=f"audit {s}") for s in sorted(marked)]
    fig.legend(handles=legend, loc="upper center", ncols=len(legend), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 1 - 0.42 / height))  # fmt: skip
    # a notebook shows it as an image even when pyplot was never imported (IPython's
    # Figure formatter exists only once it was): one image either way
    setattr(fig, "_repr_png_", functools.partial(_png, fig))  # noqa: B010
    log.debug("drew the coverage of %d dataset(s) from %s", n, url)
    return fig


def _png(fig: Figure) -> bytes:
    """The figure as PNG bytes (Jupyter's ``_repr_png_``)."""
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()
