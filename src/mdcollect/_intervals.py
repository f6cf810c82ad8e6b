"""Half-open time intervals ``[start, end)`` in ms and normalised sets of them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import overload

from attrs import field, frozen

from ._errors import InvalidRequest
from ._time import format_ms as _fmt

__all__ = ["Interval", "IntervalSet"]


def _int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        # numpy integers are accepted; floats and strings are not.
        try:
            import numpy as np

            if isinstance(value, np.integer):
                return int(value)
        except ImportError:  # pragma: no cover
            pass
        raise InvalidRequest(f"interval {name} must be an int of ms, got {value!r}")
    return value


def _int_start(value: object) -> int:
    return _int(value, "start")


def _int_end(value: object) -> int:
    return _int(value, "end")


@frozen(order=True)
class Interval:
    """A non-empty half-open range of time ``[start, end)`` in ms since the epoch.

    >>> Interval(0, 60_000).duration
    60000
    >>> 59_999 in Interval(0, 60_000), 60_000 in Interval(0, 60_000)
    (True, False)
    """

    start: int = field(converter=_int_start)
    end: int = field(converter=_int_end)

    def __attrs_post_init__(self) -> None:
        if self.end <= self.start:
            raise InvalidRequest(
                f"interval end {_fmt(self.end)} must be after start {_fmt(self.start)} "
                "(intervals are half-open [start, end) and never empty)"
            )

    @property
    def duration(self) -> int:
        """``end - start`` in ms."""
        return self.end - self.start

    def __contains__(self, ts: object) -> bool:
        if isinstance(ts, Interval):
            return self.start <= ts.start and ts.end <= self.end
        return isinstance(ts, int) and self.start <= ts < self.end

    def __repr__(self) -> str:
        return f"Interval({self.start}, {self.end})  # [{_fmt(self.start)}, {_fmt(self.end)})"

    def __str__(self) -> str:
        return f"[{_fmt(self.start)}, {_fmt(self.end)})"


IntervalLike = Interval | tuple[int, int]


def _as_interval(v: IntervalLike) -> Interval:
    if isinstance(v, Interval):
        return v
    try:
        start, end = v
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"expected an Interval or a (start, end) pair, got {v!r}") from exc
    return Interval(start, end)


class IntervalSet:
    """An immutable, normalised set of :class:`Interval` s: sorted, merged, non-empty.

    Touching or overlapping members merge, so equal sets compare equal however they
    were built. Supports ``|`` (union), ``-`` (difference), ``&`` (intersection),
    :meth:`contains`, :meth:`gaps`, :attr:`total`, iteration and ``len``.

    >>> s = IntervalSet([Interval(0, 10), Interval(10, 20), Interval(30, 40)])
    >>> list(s)
    [Interval(0, 20)  # ..., Interval(30, 40)  # ...]
    >>> (s - IntervalSet([Interval(5, 35)])).total
    10
    """

    __slots__ = ("_items",)

    def __init__(self, intervals: Iterable[IntervalLike] = ()) -> None:
        items = sorted(_as_interval(v) for v in intervals)
        merged: list[Interval] = []
        for iv in items:
            if merged and iv.start <= merged[-1].end:
                if iv.end > merged[-1].end:
                    merged[-1] = Interval(merged[-1].start, iv.end)
            else:
                merged.append(iv)
        self._items: tuple[Interval, ...] = tuple(merged)

    @classmethod
    def _from_normalised(cls, items: list[Interval]) -> IntervalSet:
        out = cls.__new__(cls)
        out._items = tuple(items)
        return out

    # -- persistence ---------------------------------------------------------------
    def to_list(self) -> list[list[int]]:
        """``[[start, end], ...]``, JSON-able; :meth:`from_list` reads it back."""
        return [[iv.start, iv.end] for iv in self._items]

    @classmethod
    def from_list(cls, data: Iterable[Iterable[int]]) -> IntervalSet:
        """Inverse of :meth:`to_list`."""
        return cls(Interval(*pair) for pair in data)

    # -- algebra -------------------------------------------------------------------
    def __or__(self, other: IntervalSet | Interval) -> IntervalSet:
        other = _as_set(other)
        return IntervalSet([*self._items, *other._items])

    def __and__(self, other: IntervalSet | Interval) -> IntervalSet:
        other = _as_set(other)
        out: list[Interval] = []
        a, b = self._items, other._items
        i = j = 0
        while i < len(a) and j < len(b):
            lo = max(a[i].start, b[j].start)
            hi = min(a[i].end, b[j].end)
            if lo < hi:
                out.append(Interval(lo, hi))
            if a[i].end < b[j].end:
                i += 1
            else:
                j += 1
        return IntervalSet._from_normalised(out)

    def __sub__(self, other: IntervalSet | Interval) -> IntervalSet:
        other = _as_set(other)
        out: list[Interval] = []
        b = other._items
        j = 0
        for iv in self._items:
            start = iv.start
            while j < len(b) and b[j].end <= start:
                j += 1
            k = j
            while k < len(b) and b[k].start < iv.end:
                if b[k].start > start:
                    out.append(Interval(start, b[k].start))
                start = max(start, b[k].end)
                if start >= iv.end:
                    break
                k += 1
            if start < iv.end:
                out.append(Interval(start, iv.end))
        return IntervalSet._from_normalised(out)

    def gaps(self, within: Interval | IntervalSet) -> IntervalSet:
        """The parts of ``within`` this set does not cover (``within - self``)."""
        return _as_set(within) - self

    def contains(self, item: int | Interval | IntervalSet) -> bool:
        """True when a timestamp, an interval, or every member of a set is covered."""
        if isinstance(item, IntervalSet):
            return not (item - self)
        if isinstance(item, Interval):
            return any(item in iv for iv in self._items)
        return any(item in iv for iv in self._items)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, int | Interval | IntervalSet):
            return self.contains(item)
        return False

    # -- properties ----------------------------------------------------------------
    @property
    def total(self) -> int:
        """Sum of the members' durations in ms."""
        return sum(iv.duration for iv in self._items)

    @property
    def start(self) -> int | None:
        """Start of the first member, or ``None`` when empty."""
        return self._items[0].start if self._items else None

    @property
    def end(self) -> int | None:
        """End of the last member, or ``None`` when empty."""
        return self._items[-1].end if self._items else None

    def __iter__(self) -> Iterator[Interval]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    @overload
    def __getitem__(self, i: int) -> Interval: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[Interval, ...]: ...
    def __getitem__(self, i: int | slice) -> Interval | tuple[Interval, ...]:
        return self._items[i]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, IntervalSet):
            return self._items == other._items
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._items)

    def __repr__(self) -> str:
        if not self._items:
            return "IntervalSet([])"
        return "IntervalSet([" + ", ".join(str(iv) for iv in self._items) + "])"


def _as_set(v: IntervalSet | Interval) -> IntervalSet:
    if isinstance(v, IntervalSet):
        return v
    if isinstance(v, Interval):
        return IntervalSet._from_normalised([v])
    raise TypeError(f"expected IntervalSet or Interval, got {type(v).__name__}")
