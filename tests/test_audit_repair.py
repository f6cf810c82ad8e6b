"""``audit(..., repair=True)`` against the emulator through real ccxt: the bad spans are
deleted and refetched, and the request log shows only those windows; what the
exchange cannot give back stays in the report.

Defects are planted as in ``tests/test_audit.py``: through the backend's own
``_write`` on a fresh dataset (``storage.write`` refuses them).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mdcollect import DataCollectionStorage, DatasetKey, IntervalSet, ensure_data, open_storage
from mdcollect.audit import audit
from mdcollect.exchanges import ExchangeClient, RetryPolicy
from mdcollect.storage import Stamp
from mdcollect.testing import ExchangeEmulator

HOUR = 3_600_000
DAY = 24 * HOUR
NOW = 1_735_693_200_000  # 2025-01-01 01:00 UTC
T0 = 1_704_067_200_000  # 2024-01-01
LISTED = 1_577_836_800_000  # 2020-01-01: the emulator's markets are listed from then
KLINES = "/api/v3/klines"

#: The lineage of rows planted as is (the backend's own write: no checks, no sorting).
PLANTED = Stamp("planted", 0)


def _now() -> int:
    return NOW


@pytest.fixture
def emu() -> Iterator[ExchangeEmulator]:
    with ExchangeEmulator(rate_limits=False, clock=_now) as e:
        yield e


def client(emu: ExchangeEmulator, key: str = "binance") -> ExchangeClient:
    return ExchangeClient(
        key, base_url=emu.url, clock=_now, enableRateLimit=False,
        retry=RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.01),
    )  # fmt: skip


def replant(store: DataCollectionStorage, key: DatasetKey, frame: pd.DataFrame, cov: Any) -> None:
    """Replace ``key`` by ``frame`` as is, with coverage ``cov``."""
    store.delete(key)
    store._write(key, frame, IntervalSet(cov), PLANTED)


def klines(emu: ExchangeEmulator) -> list[dict[str, Any]]:
    return [dict(r.params) for r in emu.requests if r.path == KLINES]


@pytest.mark.parametrize("backend", ["memory", "parquet"])
def test_repair_refetches_exactly_the_bad_spans(
    emu: ExchangeEmulator, backend: str, tmp_path: Any
) -> None:
    store = open_storage("memory://" if backend == "memory" else f"parquet://{tmp_path}")
    c = client(emu)
    key = DatasetKey("binance", "BTC/USDT", "ohlcv", "1h")
    ensure_data(
        ["BTC/USDT"], "1h", "2024-01-01", "2024-01-10", c, padding_days=0, storage=store,
        progress=False, clock=_now,
    )  # fmt: skip
    good = store.read(key)
    assert len(good) == 240
    cov = store.coverage(key)
    bad = good.drop(good.index[50:55]).copy()
    row = bad.index.get_loc(good.index[120])
    bad.iloc[row, bad.columns.get_loc("high")] = bad["low"].iloc[row] - 1
    replant(store, key, bad, cov)

    before = audit(store)
    assert [(f.check, f.start, f.count) for f in before.findings] == [
        ("hole", T0 + 50 * HOUR, 5),
        ("invalid_ohlc", T0 + 120 * HOUR, 1),
    ]
    emu.clear_requests()
    report = audit(store, repair=True, exchange=c, clock=_now)
    # one request per bad span, bounded by the span (Binance's endTime is inclusive)
    asked = sorted((int(p["startTime"]), int(p["endTime"]) + 1) for p in klines(emu))
    assert asked == [(T0 + 50 * HOUR, T0 + 55 * HOUR), (T0 + 120 * HOUR, T0 + 121 * HOUR)]
    assert report.ok and report.findings == ()
    assert [(f.check, f.start) for f in report.repaired] == [
        ("hole", T0 + 50 * HOUR),
        ("invalid_ohlc", T0 + 120 * HOUR),
    ]
    pd.testing.assert_frame_equal(store.read(key), good)
    assert store.coverage(key) == cov
    store.close()


def test_what_the_exchange_does_not_have_stays_in_the_report(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    c = client(emu)
    key = DatasetKey("binance", "BTC/USDT", "ohlcv", "1h")
    ensure_data(
        ["BTC/USDT"], "1h", "2020-01-01", "2020-01-02", c, padding_days=0, storage=store,
        progress=False, clock=_now,
    )  # fmt: skip
    rows = store.read(key)
    assert int(rows.index[0].value // 1_000_000) == LISTED
    # coverage claims the day before the listing: 24 candles missing there
    replant(store, key, rows, [(LISTED - DAY, LISTED + 2 * DAY)])
    report = audit(store, repair=True, exchange=c, clock=_now)
    hole = [f for f in report.findings if f.check == "hole"]
    assert [(f.start, f.end, f.count) for f in hole] == [(LISTED - DAY, LISTED, 24)]
    assert not report.ok and report.repaired == ()
    pd.testing.assert_frame_equal(store.read(key), rows)


def test_repair_of_unsorted_and_duplicate_rows(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    c = client(emu)
    key = DatasetKey("binance", "BTC/USDT", "ohlcv", "1h")
    ensure_data(
        ["BTC/USDT"], "1h", "2024-01-01", "2024-01-02", c, padding_days=0, storage=store,
        progress=False, clock=_now,
    )  # fmt: skip
    good = store.read(key)
    cov = store.coverage(key)
    order = np.r_[0:10, 11, 10, 12:30, 29, 30:48]
    changed = good.iloc[order].copy()
    changed.iloc[30, changed.columns.get_loc("close")] += 1e-3  # the duplicate differs
    replant(store, key, changed, cov)
    assert sorted(f.check for f in audit(store).findings) == ["duplicate", "unsorted"]
    emu.clear_requests()
    report = audit(store, repair=True, exchange=c, clock=_now)
    assert report.ok, report
    assert sorted(int(p["startTime"]) for p in klines(emu)) == [T0 + 10 * HOUR, T0 + 29 * HOUR]
    pd.testing.assert_frame_equal(store.read(key), good)


def test_the_emulators_truth_audits_clean_across_kinds(emu: ExchangeEmulator) -> None:
    """Candles and the trades they come from, mark against last, and funding whose
    interval changes (the default ETH perpetual: 8-hourly, 4-hourly from 2024-06-01)."""
    store = open_storage("memory://")
    for key, symbol, kinds, tf, start, end in [
        ("binance", "BTC/USDT", ("ohlcv", "trades"), "1m", "2024-03-01", "2024-03-01"),
        ("binance_futures", "ETH/USDT:USDT", ("ohlcv", "mark", "funding"), "1h",
         "2024-05-25", "2024-06-05"),
    ]:  # fmt: skip
        report = ensure_data(
            [symbol], tf, start, end, client(emu, key), padding_days=0, storage=store,
            progress=False, clock=_now, kinds=kinds,
        )  # fmt: skip
        assert report.ok, report
    result = audit(store)
    assert len(result.datasets) == 5 and result.findings == (), result
    assert all(d.score == 1.0 for d in result.datasets)


def test_repair_of_trades_and_funding(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    ensure_data(
        ["BTC/USDT"], "1m", "2024-03-01", "2024-03-01", client(emu), padding_days=0,
        storage=store, progress=False, clock=_now, kinds=("trades",),
    )  # fmt: skip
    ensure_data(
        ["BTC/USDT:USDT"], "1h", "2024-01-01", "2024-01-10", client(emu, "binance_futures"),
        padding_days=0, storage=store, progress=False, clock=_now, kinds=("funding",),
    )  # fmt: skip
    trades_key = DatasetKey("binance", "BTC/USDT", "trades")
    funding_key = DatasetKey("binance_futures", "BTC/USDT:USDT", "funding")
    trades, funding = store.read(trades_key), store.read(funding_key)
    # a trade stored twice (its id at the next trade's time too), a settlement off the hour
    bad_trades = trades.copy()
    ids = bad_trades["id"].to_numpy(dtype=object)
    ids[101] = ids[100]
    bad_trades["id"] = ids
    off = funding.iloc[[3]].copy()
    off.index = off.index + pd.Timedelta(minutes=30)
    bad_funding = pd.concat([funding.iloc[:4], off, funding.iloc[4:]])
    replant(store, trades_key, bad_trades, store.coverage(trades_key))
    replant(store, funding_key, bad_funding, store.coverage(funding_key))
    checks = sorted((str(f.key), f.check) for f in audit(store).findings)
    assert checks == [(str(trades_key), "duplicate"), (str(funding_key), "funding_time")]
    emu.clear_requests()
    for key, exchange in [(trades_key, "binance"), (funding_key, "binance_futures")]:
        report = audit(store, [key], repair=True, clock=_now, exchange=client(emu, exchange))
        assert report.ok, report
        assert len(report.repaired) == 1
    pd.testing.assert_frame_equal(store.read(trades_key), trades)
    pd.testing.assert_frame_equal(store.read(funding_key), funding)
    # only the two spans were asked: the trade's millisecond (a page, then one from its
    # last trade, which proves the short page was not cut there), the settlement's
    asked = [
        r.path for r in emu.requests if r.path in ("/api/v3/aggTrades", "/fapi/v1/fundingRate")
    ]
    assert sorted(asked) == ["/api/v3/aggTrades", "/api/v3/aggTrades", "/fapi/v1/fundingRate"]


def test_a_span_the_exchange_refuses_keeps_its_finding_with_the_reason(
    emu: ExchangeEmulator,
) -> None:
    # OKX keeps funding history for 90 days: a hole in June 2024 cannot be refetched
    # on 2025-01-01; the finding stays, saying why
    store = open_storage("memory://")
    key = DatasetKey("okx_futures", "BTC/USDT:USDT", "funding")
    times = [T0 + 152 * DAY + i * 8 * HOUR for i in range(9)]
    index = pd.DatetimeIndex(pd.to_datetime(times, unit="ms", utc=True), name="timestamp")
    rows = pd.DataFrame({"rate": 1e-4, "mark_price": float("nan")}, index=index)
    store._write(key, rows.drop(rows.index[4]), IntervalSet([(times[0], times[-1] + 1)]), PLANTED)
    emu.clear_requests()
    report = audit(store, repair=True, clock=_now, exchange=client(emu, "okx_futures"))
    (hole,) = report.findings
    assert (hole.check, hole.start, hole.end) == ("hole", times[3], times[5])
    assert "not repaired: okx_futures keeps funding history for the last 90 days" in hole.detail
    assert not report.ok and report.repaired == ()
    assert [r.path for r in emu.requests if "funding" in r.path] == []
