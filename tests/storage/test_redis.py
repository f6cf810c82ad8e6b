"""RedisStorage beyond the conformance suite: layout, compaction, errors, concurrency.

Runs against real ``redis-server`` processes (the session fixture, or private ones
for tests that stop the server).
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis

from mdcollect import (
    DatasetKey,
    Interval,
    IntervalSet,
    InvalidRequest,
    StorageError,
    open_storage,
)
from mdcollect.storage.memory import MemoryStorage
from mdcollect.storage.redis import (
    COMPACT_CLOSED,
    COMPACT_SEGMENTS,
    RedisStorage,
    default_span,
)
from tests.conftest import DAY, MINUTE, T0, RedisServer, candles

KEY = DatasetKey("binance", "BTC/USDT", "ohlcv", "1m")
TKEY = DatasetKey("binance", "BTC/USDT", "trades")


@pytest.fixture
def server(redis_server: RedisServer) -> Iterator[RedisServer]:
    redis.Redis(port=redis_server.port).flushall()
    yield redis_server


@pytest.fixture
def raw(server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis(port=server.port)
    yield client
    client.close()


@pytest.fixture
def st(server: RedisServer) -> Iterator[RedisStorage]:
    storage = open_storage(server.url)
    assert isinstance(storage, RedisStorage)
    yield storage
    storage.close()


def _keys(raw: redis.Redis, pattern: str = "*") -> set[str]:
    return {k.decode() for k in raw.scan_iter(match=pattern)}


def _trades(ts: list[int], ids: list[str], price: float = 1.0) -> pd.DataFrame:
    n = len(ts)
    return pd.DataFrame(
        {
            "timestamp": ts,
            "id": ids,
            "price": [price + i for i in range(n)],
            "amount": [0.5] * n,
            "side": ["buy", "sell"] * (n // 2) + ["buy"] * (n % 2),
        }
    )


# -- URL and layout ---------------------------------------------------------------------------


def test_url_prefix_namespaces_keys_and_keys_ignores_foreign_ones(
    server: RedisServer, raw: redis.Redis
) -> None:
    raw.set("unrelated", b"x")
    raw.hset("other:ds:{binance.ohlcv.1m.BTC%2FUSDT}:meta", "span", 1)
    with (
        open_storage(server.url) as a,
        open_storage(server.url + "?prefix=t*[1]:") as b,  # glob characters in the prefix
    ):
        a.write(KEY, candles(T0, 10), covered=Interval(T0, T0 + 10 * MINUTE))
        other = DatasetKey("okx", "ETH/USDT", "ohlcv", "1h")
        b.write(other, candles(T0, 3, step=3_600_000))
        assert a.keys() == [KEY]
        assert b.keys() == [other]
        assert len(b.read(KEY)) == 0
        assert b.coverage(KEY) == IntervalSet()
    names = _keys(raw)
    assert names - {"unrelated"} - {n for n in names if n.startswith("other:")} == {
        n for n in names if n.startswith(("mdcollect:", "t*[1]:"))
    }
    assert "mdcollect:ds:{binance.ohlcv.1m.BTC%2FUSDT}:meta" in names
    assert any(n.startswith("t*[1]:ds:{okx.ohlcv.1h.ETH%2FUSDT}:") for n in names)


def test_bad_urls_are_refused(server: RedisServer) -> None:
    with pytest.raises(InvalidRequest, match="prefix"):
        open_storage(server.url + "?prefix=")
    with pytest.raises(InvalidRequest, match="compression"):
        open_storage(server.url + "?compression=gzip9")
    with pytest.raises(InvalidRequest, match="redis://HOST"):
        RedisStorage.from_url("redis:///0")


def test_days_of_minutes_land_in_daily_buckets(st: RedisStorage, raw: redis.Redis) -> None:
    assert default_span(KEY) == DAY
    st.write(KEY, candles(T0 - 30 * MINUTE, 3 * 1440), covered=Interval(T0, T0 + DAY))
    ds = "mdcollect:ds:{binance.ohlcv.1m.BTC%2FUSDT}"
    buckets = sorted(n for n in _keys(raw) if n.startswith(ds + ":b:"))
    starts = [T0 - DAY, T0, T0 + DAY, T0 + 2 * DAY]
    assert buckets == sorted(f"{ds}:b:{s}" for s in starts)
    assert [int(m) for m in raw.zrange(ds + ":idx", 0, -1)] == starts
    assert raw.hget(ds + ":meta", "span") == str(DAY).encode()
    assert raw.lrange(ds + ":cov", 0, -1) == [f"{T0} {T0 + DAY}".encode()]
    # reads that start or end inside a bucket
    out = st.read(KEY, T0 + 5 * MINUTE, T0 + DAY + 7 * MINUTE)
    assert len(out) == 1440 + 2


def test_stored_span_wins_over_the_default(st: RedisStorage, raw: redis.Redis) -> None:
    """A dataset keeps the bucket span of its first write even if defaults change."""
    ds = "mdcollect:ds:{binance.ohlcv.1m.BTC%2FUSDT}"
    raw.hset(ds + ":meta", "span", 3_600_000)
    frame = candles(T0, 180)
    st.write(KEY, frame)
    assert len([n for n in _keys(raw) if n.startswith(ds + ":b:")]) == 3
    pd.testing.assert_frame_equal(st.read(KEY), frame, check_freq=False)


# -- compaction and merging ---------------------------------------------------------------------


def test_live_bucket_compacts_after_many_appends(st: RedisStorage, raw: redis.Redis) -> None:
    now = int(time.time() * 1000) // DAY * DAY  # today's bucket: still open
    frame = candles(now, COMPACT_SEGMENTS + 5)
    for i in range(len(frame)):
        st.write(
            KEY, frame.iloc[i : i + 1], covered=Interval(now + i * MINUTE, now + (i + 1) * MINUTE)
        )
    ds = "mdcollect:ds:{binance.ohlcv.1m.BTC%2FUSDT}"
    assert int(raw.hget(ds + ":nseg", str(now))) == 6  # compacted at 32, then 5 more
    pd.testing.assert_frame_equal(st.read(KEY), frame, check_freq=False)
    assert list(st.coverage(KEY)) == [Interval(now, now + len(frame) * MINUTE)]
    assert raw.llen(ds + ":cov") < 64


def test_closed_bucket_compacts_sooner(st: RedisStorage, raw: redis.Redis) -> None:
    frame = candles(T0, COMPACT_CLOSED + 1)
    for i in range(len(frame)):
        st.write(KEY, frame.iloc[i : i + 1])
    ds = "mdcollect:ds:{binance.ohlcv.1m.BTC%2FUSDT}"
    assert int(raw.hget(ds + ":nseg", str(T0))) == 2
    pd.testing.assert_frame_equal(st.read(KEY), frame, check_freq=False)


def test_later_segments_win_also_for_trades_and_selected_columns(st: RedisStorage) -> None:
    st.write(TKEY, _trades([T0, T0, T0 + 1], ["1", "2", "3"], price=10.0))
    st.write(TKEY, _trades([T0, T0 + 2], ["2", "4"], price=20.0))  # replaces (T0, "2")
    st.write(TKEY, _trades([T0 + 1], ["3"], price=30.0))
    out = st.read(TKEY, columns=["price"])
    assert list(out.columns) == ["price"]
    assert out["price"].tolist() == [10.0, 20.0, 30.0, 21.0]
    assert st.read(TKEY)["id"].tolist() == ["1", "2", "3", "4"]


def test_optional_int_column_missing_in_some_segments(st: RedisStorage) -> None:
    """As merge_frames does: an optional int column kept only when every row has it."""
    mem = MemoryStorage()
    with_trades = candles(T0, 10).assign(trades=np.arange(10, dtype=np.int64))
    for s in (st, mem):
        s.write(KEY, with_trades)
        s.write(KEY, candles(T0 + DAY, 5))
        s.write(KEY, with_trades.iloc[:3].assign(close=1e9, high=1e9))  # a valid candle
    pd.testing.assert_frame_equal(st.read(KEY), mem.read(KEY))
    assert "trades" not in st.read(KEY).columns


@pytest.mark.parametrize("compression", [None, "lz4", "zstd"])
def test_compression_round_trips_and_mixes(server: RedisServer, compression: str | None) -> None:
    url = server.url + (f"?compression={compression}" if compression else "")
    frame = candles(T0, 3000)
    with open_storage(url) as a, open_storage(server.url + "?compression=lz4") as b:
        a.write(KEY, frame.iloc[:2000])
        b.write(KEY, frame.iloc[1500:])
        pd.testing.assert_frame_equal(a.read(KEY), frame, check_freq=False)
        pd.testing.assert_frame_equal(b.read(KEY), frame, check_freq=False)


def test_randomised_against_memory_backend(st: RedisStorage) -> None:
    """Random writes, deletes and reads give the same answers as the memory backend."""
    rng = random.Random(7)
    mem = MemoryStorage()
    keys = [KEY, DatasetKey("binance", "ETH/USDT", "ohlcv", "1h"), TKEY]
    for step in range(120):
        key = rng.choice(keys)
        op = rng.random()
        if op < 0.6:
            n = rng.choice([1, 5, 100, 2000])
            if key.kind == "trades":
                ts = sorted(T0 + rng.randrange(0, 3 * 3_600_000) for _ in range(n))
                frame = _trades(ts, [str(rng.randrange(50)) for _ in range(n)], price=step)
                cov = None
            else:
                step_ms = MINUTE if key.timeframe == "1m" else 3_600_000
                start = T0 + rng.randrange(0, 3000) * step_ms
                frame = candles(start, n, step=step_ms, seed=step)
                cov = Interval(start, start + n * step_ms)
            for s in (st, mem):
                s.write(key, frame, covered=cov)
        elif op < 0.7:
            lo = T0 + rng.randrange(0, 3000) * MINUTE
            hi = lo + rng.randrange(1, 3000) * MINUTE
            bounds = rng.choice([(lo, hi), (None, hi), (lo, None)])
            for s in (st, mem):
                s.delete(key, *bounds)
        else:
            lo = rng.choice([None, T0 + rng.randrange(0, 3000) * MINUTE])
            hi = None if lo is None else lo + rng.randrange(1, 5000) * MINUTE
            cols = rng.choice([None, ["price", "id"] if key.kind == "trades" else ["close"]])
            got, want = st.read(key, lo, hi, columns=cols), mem.read(key, lo, hi, columns=cols)
            pd.testing.assert_frame_equal(got, want, check_freq=False)
        assert st.coverage(key) == mem.coverage(key)
    for key in keys:
        pd.testing.assert_frame_equal(st.read(key), mem.read(key), check_freq=False)


# -- delete --------------------------------------------------------------------------------------


def test_delete_range_across_buckets(st: RedisStorage, raw: redis.Redis) -> None:
    frame = candles(T0, 5 * 1440)
    st.write(KEY, frame, covered=Interval(T0, T0 + 5 * DAY))
    lo, hi = T0 + DAY // 2, T0 + 3 * DAY + 10 * MINUTE  # partial, 2 whole, partial
    st.delete(KEY, lo, hi)
    ms = frame.index.asi8 // 1_000_000
    pd.testing.assert_frame_equal(st.read(KEY), frame[(ms < lo) | (ms >= hi)], check_freq=False)
    assert st.coverage(KEY) == IntervalSet([Interval(T0, lo), Interval(hi, T0 + 5 * DAY)])
    ds = "mdcollect:ds:{binance.ohlcv.1m.BTC%2FUSDT}"
    assert [int(m) for m in raw.zrange(ds + ":idx", 0, -1)] == [T0, T0 + 3 * DAY, T0 + 4 * DAY]
    st.delete(KEY, None, T0 + 4 * DAY)
    assert len(st.read(KEY)) == 1440
    st.delete(KEY, T0 + 4 * DAY, None)
    assert len(st.read(KEY)) == 0
    assert st.coverage(KEY) == IntervalSet()
    assert st.keys() == [KEY]  # like memory: the dataset stays listed until deleted


def test_delete_whole_dataset_removes_every_key(st: RedisStorage, raw: redis.Redis) -> None:
    st.write(KEY, candles(T0, 3 * 1440), covered=Interval(T0, T0 + 3 * DAY))
    st.write(TKEY, _trades([T0], ["1"]))
    st.store("BTC/USDT", 1, T0)
    st.delete(KEY)
    assert not _keys(raw, "mdcollect:ds:{binance.ohlcv.*")
    assert st.keys() == [TKEY]
    assert st.fetch("BTC/USDT", T0, T0 + 1) == [(T0, 1)]
    st.write(KEY, candles(T0, 5))  # and the dataset starts afresh
    assert len(st.read(KEY)) == 5


# -- points --------------------------------------------------------------------------------------


def test_points_with_equal_payloads_at_different_times(st: RedisStorage) -> None:
    st.store("k", {"same": True}, T0)
    st.store("k", {"same": True}, T0 + 1)
    st.store("k", "text with spaces", T0 + 2)
    st.store("k", -1, T0 - 5)
    assert st.fetch("k", T0 - 10, T0 + 10) == [
        (T0 - 5, -1),
        (T0, {"same": True}),
        (T0 + 1, {"same": True}),
        (T0 + 2, "text with spaces"),
    ]
    assert st.fetch("k", T0, T0) == []


# -- concurrency and fan-out ---------------------------------------------------------------------


def test_threads_sharing_one_storage_lose_nothing(st: RedisStorage) -> None:
    n, workers = 40, 4
    frame = candles(T0, n * workers)
    errors: list[BaseException] = []

    def work(w: int) -> None:
        try:
            for i in range(n):
                m = i * workers + w
                st.write(
                    KEY,
                    frame.iloc[m : m + 1],
                    covered=Interval(T0 + m * MINUTE, T0 + (m + 1) * MINUTE),
                )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    pd.testing.assert_frame_equal(st.read(KEY), frame, check_freq=False)
    assert list(st.coverage(KEY)) == [Interval(T0, T0 + n * workers * MINUTE)]


async def test_usable_from_asyncio_through_to_thread(st: RedisStorage) -> None:
    import asyncio

    frame = candles(T0, 20)
    await asyncio.gather(
        *(asyncio.to_thread(st.write, KEY, frame.iloc[i : i + 1]) for i in range(20))
    )
    out = await asyncio.to_thread(st.read, KEY)
    pd.testing.assert_frame_equal(out, frame, check_freq=False)


def test_writes_are_published_for_fan_out(st: RedisStorage, raw: redis.Redis) -> None:
    pubsub = raw.pubsub()
    pubsub.subscribe("mdcollect:ds:{binance.ohlcv.1m.BTC%2FUSDT}")
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"  # type: ignore[index]
    st.write(KEY, candles(T0, 3), covered=Interval(T0, T0 + 3 * MINUTE))
    msg = pubsub.get_message(timeout=5)
    assert msg is not None and msg["type"] == "message"
    assert json.loads(msg["data"]) == {
        "key": str(KEY),
        "start": T0,
        "end": T0 + 2 * MINUTE + 1,
        "rows": 3,
        "covered": [T0, T0 + 3 * MINUTE],
    }
    # a write completing several ranges lists them
    two = IntervalSet([Interval(T0, T0 + MINUTE), Interval(T0 + 2 * MINUTE, T0 + 3 * MINUTE)])
    st.write(KEY, candles(T0, 3), covered=two)
    msg = pubsub.get_message(timeout=5)
    assert msg is not None
    assert json.loads(msg["data"])["covered"] == [
        [T0, T0 + MINUTE],
        [T0 + 2 * MINUTE, T0 + 3 * MINUTE],
    ]
    assert st.coverage(KEY) == IntervalSet([Interval(T0, T0 + 3 * MINUTE)])
    pubsub.close()


def test_notices_carry_the_rows_when_asked(server: RedisServer, raw: redis.Redis) -> None:
    """``?publish_rows=N``: a write of at most N rows publishes them (a bot reacts without
    reading the store); a larger one says so and carries none."""
    st = open_storage(server.url + "?publish_rows=3")
    assert isinstance(st, RedisStorage) and st.publish_rows == 3
    pubsub = raw.pubsub()
    pubsub.psubscribe("mdcollect:ds:{binance.trades*")
    assert pubsub.get_message(timeout=5)["type"] == "psubscribe"  # type: ignore[index]
    trades = _trades([T0, T0 + 5, T0 + 9], ["a", "b", "c"], price=2.5)
    st.write(TKEY, trades)
    msg = pubsub.get_message(timeout=5)
    assert msg is not None
    notice = json.loads(msg["data"])
    assert notice["columns"] == ["timestamp", "id", "price", "amount", "side"]
    back = pd.DataFrame(notice["data"], columns=notice["columns"])
    assert back["timestamp"].tolist() == [T0, T0 + 5, T0 + 9]
    assert back["id"].tolist() == ["a", "b", "c"]
    assert back["price"].tolist() == trades["price"].tolist()
    st.write(TKEY, _trades([T0 + i for i in range(20, 24)], ["d", "e", "f", "g"]))
    msg = pubsub.get_message(timeout=5)
    assert msg is not None
    notice = json.loads(msg["data"])
    assert notice["data"] is None and notice["truncated"] is True and notice["rows"] == 4
    pubsub.close()
    st.close()
    with pytest.raises(InvalidRequest, match="publish_rows 'many' must be a whole number"):
        open_storage(server.url + "?publish_rows=many")


# -- errors and lifecycle -------------------------------------------------------------------------


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def test_server_down_raises_storage_error_and_recovers(own_server: RedisServer) -> None:
    with open_storage(own_server.url) as st:
        st.write(KEY, candles(T0, 5), covered=Interval(T0, T0 + 5 * MINUTE))
        own_server.stop()
        calls = [
            lambda: st.write(KEY, candles(T0, 5)),
            lambda: st.read(KEY),
            lambda: st.coverage(KEY),
            lambda: st.keys(),
            lambda: st.delete(KEY, T0, T0 + 1),
            lambda: st.store("p", 1, T0),
            lambda: st.fetch("p", T0, T0 + 1),
        ]
        for call in calls:
            with pytest.raises(StorageError, match=str(own_server.port)) as info:
                call()
            assert isinstance(info.value.__cause__, redis.exceptions.ConnectionError)
        own_server.start()  # same port; this server keeps nothing on disk
        st.write(KEY, candles(T0, 5), covered=Interval(T0, T0 + 5 * MINUTE))
        assert len(st.read(KEY)) == 5
        assert st.coverage(KEY) == IntervalSet([Interval(T0, T0 + 5 * MINUTE)])


def test_closed_storage_refuses_work(server: RedisServer) -> None:
    st = open_storage(server.url)
    st.close()
    st.close()  # idempotent
    with pytest.raises(StorageError, match="closed"):
        st.read(KEY)


def test_missing_redis_package_says_what_to_install(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(StorageError, match=r"pip install 'mdcollect\[redis\]'"):
        open_storage(server.url)
