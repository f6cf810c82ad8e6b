"""IntervalSet algebra against a brute-force model: sets of integers on a small domain."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdcollect import Interval, IntervalSet, InvalidRequest

DOMAIN = 60

pairs = st.tuples(st.integers(0, DOMAIN - 1), st.integers(1, 12)).map(
    lambda p: (p[0], min(DOMAIN, p[0] + p[1]))
)
sets = st.lists(pairs, max_size=8).map(lambda ps: IntervalSet(Interval(a, b) for a, b in ps))


def points(s: IntervalSet) -> set[int]:
    return {t for iv in s for t in range(iv.start, iv.end)}


def from_points(pts: set[int]) -> IntervalSet:
    return IntervalSet(Interval(t, t + 1) for t in pts)


def assert_normalised(s: IntervalSet) -> None:
    items = list(s)
    for iv in items:
        assert iv.start < iv.end
    for a, b in itertools.pairwise(items):
        assert a.end < b.start, "members must be sorted, disjoint and not touching"


@settings(max_examples=300)
@given(sets, sets)
def test_union(a: IntervalSet, b: IntervalSet) -> None:
    u = a | b
    assert_normalised(u)
    assert points(u) == points(a) | points(b)


@settings(max_examples=300)
@given(sets, sets)
def test_difference(a: IntervalSet, b: IntervalSet) -> None:
    d = a - b
    assert_normalised(d)
    assert points(d) == points(a) - points(b)


@settings(max_examples=300)
@given(sets, sets)
def test_intersection(a: IntervalSet, b: IntervalSet) -> None:
    i = a & b
    assert_normalised(i)
    assert points(i) == points(a) & points(b)


@settings(max_examples=200)
@given(sets, pairs)
def test_gaps_within(a: IntervalSet, within: tuple[int, int]) -> None:
    w = Interval(*within)
    g = a.gaps(w)
    assert_normalised(g)
    assert points(g) == set(range(w.start, w.end)) - points(a)


@settings(max_examples=200)
@given(st.lists(pairs, max_size=10))
def test_normalisation_is_canonical(ps: list[tuple[int, int]]) -> None:
    s = IntervalSet(Interval(a, b) for a, b in ps)
    assert_normalised(s)
    # the same point set built one point at a time is the same value
    assert s == from_points(points(s))
    assert hash(s) == hash(from_points(points(s)))
    assert s.total == len(points(s))
    assert IntervalSet(reversed(list(s))) == s


@settings(max_examples=200)
@given(sets, st.integers(-2, DOMAIN + 2), pairs)
def test_contains(a: IntervalSet, t: int, p: tuple[int, int]) -> None:
    assert a.contains(t) == (t in points(a))
    assert (t in a) == (t in points(a))
    iv = Interval(*p)
    assert a.contains(iv) == (set(range(iv.start, iv.end)) <= points(a))


@given(sets)
def test_round_trip_through_list(a: IntervalSet) -> None:
    assert IntervalSet.from_list(a.to_list()) == a


def test_examples_and_repr() -> None:
    s = IntervalSet([Interval(0, 10), Interval(10, 20), Interval(30, 40)])
    assert list(s) == [Interval(0, 20), Interval(30, 40)]
    assert len(s) == 2 and s.start == 0 and s.end == 40
    assert [(iv.start, iv.end) for iv in s] == [(0, 20), (30, 40)]
    assert (s - Interval(5, 35)).total == 10
    assert IntervalSet([(0, 5)]) == IntervalSet([Interval(0, 5)])
    assert not IntervalSet()
    assert repr(IntervalSet()) == "IntervalSet([])"
    day = 86_400_000
    r = repr(IntervalSet([Interval(1_704_067_200_000, 1_704_067_200_000 + day)]))
    assert r == "IntervalSet([[2024-01-01, 2024-01-02)])"


def test_invalid_intervals() -> None:
    with pytest.raises(InvalidRequest, match="after start"):
        Interval(5, 5)
    with pytest.raises(InvalidRequest, match="int"):
        Interval(0.5, 3)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="pair"):
        IntervalSet([5])  # type: ignore[list-item]
