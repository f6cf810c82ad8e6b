"""Durations and ranges as people read them (the report's units)."""

from __future__ import annotations

import pytest

from mdcollect import Interval, IntervalSet
from mdcollect._human import duration, plural, ranges

S, MIN, H, D = 1_000, 60_000, 3_600_000, 86_400_000
T2024 = 1_704_067_200_000


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0 s"),
        (-5, "0 s"),  # clocks step back; never a negative duration
        (63, "0.1 s"),
        (1 * S, "1 s"),
        (9_960, "10 s"),
        (42 * S, "42 s"),
        (59_600, "1 min"),  # rounds to a whole minute, not "60 s"
        (5 * MIN + 3 * S, "5 min 3 s"),
        (H - 400, "1 h"),  # not "60 min"
        (3 * H + 20 * MIN, "3 h 20 min"),
        (D - 1, "1 day"),
        (91 * D, "91 days"),  # the example: not "7862400s"
        (2 * D + 4 * H + 20 * MIN, "2 days 4 h"),
        (395 * D, "395 days"),
    ],
)
def test_duration(ms: float, text: str) -> None:
    assert duration(ms) == text


def test_plural() -> None:
    assert [plural(n, "window") for n in (0, 1, 2)] == ["0 windows", "1 window", "2 windows"]


def test_ranges_are_iso_utc_and_bounded() -> None:
    assert ranges(IntervalSet()) == "nothing"
    one = IntervalSet([Interval(T2024, T2024 + 31 * D)])
    assert ranges(one) == "[2024-01-01, 2024-02-01)"
    many = IntervalSet([Interval(T2024 + i * D, T2024 + i * D + H) for i in range(5)])
    assert ranges(many) == (
        "[2024-01-01, 2024-01-01 01:00:00), [2024-01-02, 2024-01-02 01:00:00), "
        "[2024-01-03, 2024-01-03 01:00:00) and 2 more ranges"
    )
    assert ranges(many, limit=4).endswith("and 1 more range")
