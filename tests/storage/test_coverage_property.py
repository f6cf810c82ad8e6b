"""Property: coverage is never ahead of the rows, whatever happens, on every backend.

Random sequences of writes (with and without coverage), deletes, refused writes and
(on the persistent backends) writers killed with SIGKILL in the middle of a write
run against real backends. After every step, every candle of a covered span is
stored, with values that one of the writes touching it put there. A killed write
may or may not have happened; either way coverage must not claim its span unless
its rows are there.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mdcollect
from mdcollect import DataCollectionStorage, DatasetKey, Interval, InvalidRequest

from ..conftest import MINUTE, T0, candles

GRID = 90  # candles a dataset may hold: T0 + i minutes, 0 <= i < GRID
ROOT = Path(__file__).resolve().parents[2]

write_op = st.tuples(
    st.just("write"),
    st.integers(0, GRID - 1),  # first candle
    st.integers(1, 40),  # how many
    st.integers(0, 5),  # the values' version
    st.one_of(st.none(), st.tuples(st.integers(0, 40), st.integers(0, 40))),  # covered, trimmed
)
delete_op = st.tuples(st.just("delete"), st.integers(0, GRID), st.integers(1, 30))
refused_op = st.tuples(st.just("refused"), st.integers(0, GRID - 1))
kill_op = st.tuples(
    st.just("kill"), st.integers(0, GRID - 1), st.integers(1, 40), st.integers(0, 5),
    st.floats(0.0, 0.4),
)  # fmt: skip


class Model:
    """What each candle's close may be: the versions written to it (several after a
    kill, which may or may not have landed); an absent row is allowed unless a
    completed write stored it and no delete removed it since."""

    def __init__(self) -> None:
        self.possible: dict[int, set[float]] = defaultdict(set)

    def wrote(self, frame: pd.DataFrame, *, certain: bool) -> None:
        for ts, close in zip(_ms(frame.index), frame["close"], strict=True):
            if certain:
                self.possible[ts] = {float(close)}
            else:
                self.possible[ts].add(float(close))

    def deleted(self, lo: int, hi: int) -> None:
        for ts in [t for t in self.possible if lo <= t < hi]:
            del self.possible[ts]


def _ms(index: pd.DatetimeIndex) -> list[int]:
    return [int(t) for t in index.as_unit("ms").asi8]


def frame_for(first: int, n: int, version: int) -> pd.DataFrame:
    n = min(n, GRID - first)
    return candles(T0 + first * MINUTE, n, seed=version)


def check(store: DataCollectionStorage, key: DatasetKey, model: Model, step: object) -> None:
    rows = store.read(key)
    stored = dict(zip(_ms(rows.index), rows["close"].astype(float), strict=True))
    for iv in store.coverage(key):
        for ts in range(iv.start, iv.end, MINUTE):
            assert ts in stored, f"after {step}: coverage {iv} claims {ts}, which is not stored"
            assert stored[ts] in model.possible[ts], f"after {step}: {ts} has a value never written"


def apply(
    store: DataCollectionStorage, url: str, key: DatasetKey, model: Model, op: tuple[Any, ...]
) -> None:
    kind = op[0]
    if kind == "write":
        _, first, n, version, trim = op
        frame = frame_for(first, n, version)
        covered = None
        if trim is not None:
            lo, hi = first + trim[0], first + len(frame) - trim[1]
            covered = Interval(T0 + lo * MINUTE, T0 + hi * MINUTE) if hi > lo else None
        store.write(key, frame, covered=covered)
        model.wrote(frame, certain=True)
    elif kind == "delete":
        _, first, n = op
        lo, hi = T0 + first * MINUTE, T0 + (first + n) * MINUTE
        store.delete(key, lo, hi)
        model.deleted(lo, hi)
    elif kind == "refused":
        bad = frame_for(op[1], 3, 0).drop(columns=["volume"])  # not the ohlcv schema
        with pytest.raises(InvalidRequest):
            store.write(key, bad, covered=Interval(T0, T0 + GRID * MINUTE))
    elif kind == "kill":
        _, first, n, version, delay = op
        frame = frame_for(first, n, version)
        model.wrote(frame, certain=False)
        kill_writer(url, key, first, len(frame), version, delay)
    else:  # pragma: no cover
        raise AssertionError(op)


WRITER = """
import sys
sys.path.insert(0, {root!r})
import mdcollect
from mdcollect import DatasetKey, Interval
from tests.conftest import MINUTE, T0, candles
store = mdcollect.open_storage({url!r})
key = DatasetKey.parse({key!r})
frame = candles(T0 + {first} * MINUTE, {n}, seed={version})
covered = Interval(T0 + {first} * MINUTE, T0 + ({first} + {n}) * MINUTE)
print("ready", flush=True)
while True:  # the same write again and again, until killed
    store.write(key, frame, covered=covered)
"""


def kill_writer(url: str, key: DatasetKey, first: int, n: int, version: int, delay: float) -> None:
    code = textwrap.dedent(WRITER).format(
        root=str(ROOT), url=url, key=str(key), first=first, n=n, version=version
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.communicate(timeout=30)[1]
        time.sleep(delay)  # the kill lands at a random point of a write: that is the test
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)


def new_key() -> DatasetKey:
    return DatasetKey("prop", f"P{uuid.uuid4().hex[:8]}/USDT", "ohlcv", "1m")


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=st.lists(st.one_of(write_op, delete_op, refused_op), min_size=1, max_size=12))
def test_coverage_never_ahead_of_rows(storage_url: str, ops: list[tuple[Any, ...]]) -> None:
    key, model = new_key(), Model()
    with mdcollect.open_storage(storage_url) as store:
        for op in ops:
            apply(store, storage_url, key, model, op)
            check(store, key, model, op)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["parquet", "arctic_lmdb", "redis"])
@settings(
    max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=st.lists(st.one_of(write_op, delete_op, kill_op), min_size=2, max_size=6))
def test_coverage_never_ahead_of_rows_across_kills(
    storage_url: str, ops: list[tuple[Any, ...]]
) -> None:
    key, model = new_key(), Model()
    for op in ops:
        # a fresh handle after each step, as a restarted process would open it
        with mdcollect.open_storage(storage_url) as store:
            apply(store, storage_url, key, model, op)
            check(store, key, model, op)
