"""Durations and time ranges in the units a person reads: "91 days", "3 h 20 min".

Reports shown to users (``str()`` and ``_repr_html_`` of
:class:`~mdcollect.EnsureReport`, the CLI) render time through these helpers so
the same range reads the same everywhere. Dates are those of
:class:`~mdcollect.Interval`'s ``str()``: ISO, UTC.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._intervals import Interval, IntervalSet
from ._time import DAY, HOUR, MINUTE, SECOND

__all__ = ["duration", "plural", "ranges"]


def plural(n: int, word: str) -> str:
    """``1 window``, ``3 windows``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def duration(ms: float) -> str:
    """A length of time in at most two units: ``0.4 s``, ``42 s``, ``5 min 3 s``,
    ``3 h 20 min``, ``91 days``, ``2 days 4 h``.

    >>> duration(7_862_400_000)
    '91 days'
    >>> duration(12_000_000)
    '3 h 20 min'
    """
    ms = max(0.0, float(ms))
    if ms < 10 * SECOND:
        return f"{ms / SECOND:.1f} s".replace(".0 s", " s")
    total = round(ms / SECOND)  # whole seconds from here on
    if total < 60:
        return f"{total} s"
    if total < HOUR // SECOND:
        return _two(total // 60, "min", total % 60, "s")
    minutes = round(ms / MINUTE)
    if minutes < DAY // MINUTE:
        return _two(minutes // 60, "h", minutes % 60, "min")
    hours = round(ms / HOUR)
    return _two(hours // 24, "days", hours % 24, "h")


def _two(big: int, big_unit: str, small: int, small_unit: str) -> str:
    if big_unit == "days" and big == 1:
        big_unit = "day"
    return f"{big} {big_unit}" + (f" {small} {small_unit}" if small else "")


def ranges(intervals: IntervalSet | Iterable[Interval], limit: int = 3) -> str:
    """Up to ``limit`` ranges as ``[2024-01-01, 2024-02-01)`` (UTC), then how many more;
    ``nothing`` for none."""
    items = list(intervals)
    if not items:
        return "nothing"
    text = ", ".join(str(iv) for iv in items[:limit])
    if len(items) > limit:
        text += f" and {plural(len(items) - limit, 'more range')}"
    return text
