"""Example user code, as README.md and docs/ show it: it must pass ``mypy --strict``.

Never run (``tests/typing/test_typing.py`` only type-checks it): each function is what a
notebook, a backtest pre-hook or a bot would write.
"""

from __future__ import annotations

import asyncio
from typing import assert_type

import pandas as pd

import mdcollect
from mdcollect import (
    DataCollectionStorage,
    DataCollector,
    DatasetKey,
    EnsureReport,
    ExchangeClient,
    Interval,
    IntervalSet,
    ensure_data,
    ensure_data_async,
    load,
    load_funding,
    load_funding_async,
    load_ohlcv,
    load_ohlcv_async,
    load_open_interest,
    load_open_interest_async,
    load_trades,
    open_storage,
)
from mdcollect.collectors import OHLCVCollector, OpenInterestCollector, TradesCollector
from mdcollect.ensure import backfill_async
from mdcollect.testing import ExchangeEmulator


def notebook() -> None:
    report = ensure_data(
        ["BTC/USDT:USDT"], "1h", "2024-02-01", "2024-02-28", exchange="binance_futures"
    )
    assert_type(report, EnsureReport)
    print(report.ok, report.requests, report["BTC/USDT:USDT"].candles_fetched)
    frame = load_ohlcv("BTC/USDT:USDT", "1h", "2024-02-01", "2024-02-28")
    assert_type(frame, pd.DataFrame)
    print(frame["close"].iloc[-1])
    frames = load_ohlcv(["BTC/USDT", "ETH/USDT"], "1h", "2024-01-01", "2024-01-07",
                        exchange="binance", emulate=True)  # fmt: skip
    assert_type(frames, dict[str, pd.DataFrame])
    print(frames["ETH/USDT"].index[0])


def perpetuals_backtest() -> None:
    report = ensure_data(["BTC/USDT:USDT", "ETH/USDT:USDT"], "8h", "2024-01-01", "2024-12-31",
                         kinds=("ohlcv", "funding"))  # fmt: skip
    print([s.candles_fetched for s in report.by_kind("funding")])
    funding = load_funding("BTC/USDT:USDT", "2024-01-01", "2024-12-31")
    assert_type(funding, pd.DataFrame)
    both = load_funding(["BTC/USDT:USDT", "ETH/USDT:USDT"], "2024-01-01", "2024-12-31")
    assert_type(both, dict[str, pd.DataFrame])
    candles = load("ohlcv", "BTC/USDT:USDT", "2024-01-01", "2024-12-31", timeframe="8h")
    assert_type(candles, pd.DataFrame)
    trades = load_trades(["BTC/USDT"], "2024-01-01", "2024-01-02", exchange="binance")
    assert_type(trades, dict[str, pd.DataFrame])
    print(funding["rate"].sum(), candles["close"].iloc[-1], len(both), len(trades))


async def perpetuals_backtest_async() -> None:
    funding = await load_funding_async("BTC/USDT:USDT", "2024-01-01", "2024-12-31")
    assert_type(funding, pd.DataFrame)
    print(funding["rate"].mean())


def storage_directly() -> None:
    storage = open_storage("parquet://md-data")
    assert_type(storage, DataCollectionStorage)
    key = DatasetKey("binance", "BTC/USDT", "ohlcv", "1m")
    index = pd.date_range("2024-01-01", periods=3, freq="1min", tz="UTC", name="timestamp")
    frame = pd.DataFrame({"open": [1.0, 2.0, 3.0], "high": [2.0, 3.0, 4.0],
                          "low": [0.5, 1.5, 2.5], "close": [2.0, 3.0, 3.5],
                          "volume": [10.0, 11.0, 12.0]}, index=index)  # fmt: skip
    rows: int = storage.write(key, frame, covered=Interval(1_704_067_200_000, 1_704_067_380_000))
    coverage: IntervalSet = storage.coverage(key)
    print(rows, [(iv.start, iv.end) for iv in coverage], storage.read(key).shape)


def with_an_emulator() -> None:
    with ExchangeEmulator() as emu:
        client = emu.client("binance")
        store = mdcollect.open_storage("memory://")
        report = ensure_data(["BTC/USDT"], "1h", "2024-01-01", "2024-01-31", exchange=client,
                             storage=store, padding_days=0, strategy="ohlcv")  # fmt: skip
        assert report.requests >= 0
        asyncio.run(client.close())


async def backtest_pre_hook() -> None:
    async with ExchangeClient("okx_futures") as client:
        report = await ensure_data_async(
            ["BTC/USDT:USDT"], "1h", "20240201", "20240228", exchange=client,
            storage="memory://", dry_run=True,
        )  # fmt: skip
        print([plan.requests for plan in report.plans])
        candles = await client.fetch_ohlcv("BTC/USDT:USDT", "1h", 1_704_067_200_000,
                                           1_704_153_600_000)  # fmt: skip
        print(len(candles))
    frame = await load_ohlcv_async("BTC/USDT", "1d", "2024-01-01", "2024-01-31",
                                   exchange="binance", storage=None, ensure=False)  # fmt: skip
    assert_type(frame, pd.DataFrame)
    trades = await backfill_async(["BTC/USDT"], None, "2024-01-01", "2024-01-02",
                                  exchange="binance", kind="trades")  # fmt: skip
    print(trades.ok)


async def bot() -> None:
    collectors = [
        OHLCVCollector("binance", ["BTC/USDT"], timeframes=["1m", "1h"]),
        TradesCollector("binance", "ETH/USDT", candles=["1m"]),
    ]
    async with DataCollector(collectors, "memory://") as collector:
        health = collector.health()
        print(health["is_healthy"], collector.status())


def coverage_picture_and_analytics() -> None:
    from matplotlib.figure import Figure

    from mdcollect import analytics

    storage = open_storage("parquet://md-data")
    fig = mdcollect.plot_coverage(storage, ["binance:ohlcv:1h:BTC/USDT"], "2024-01-01",
                                  "2024-01-31")  # fmt: skip
    assert_type(fig, Figure)
    fig.savefig("coverage.png")
    frames = load_ohlcv(["BTC/USDT", "ETH/USDT"], "1h", "2024-01-01", "2024-01-31",
                        exchange="binance", storage=storage)  # fmt: skip
    btc = frames["BTC/USDT"]
    vol: pd.Series = analytics.realized_volatility(btc, 24, method="garman_klass")
    profile: pd.DataFrame = analytics.volume_profile(btc)
    matrix: pd.DataFrame = analytics.correlation(frames, method="spearman")
    funding = load_funding("BTC/USDT:USDT", "2024-01-01", "2024-01-31", storage=storage)
    yearly: pd.Series = analytics.annualized_funding(funding)
    print(vol.iloc[-1], profile["share"].idxmax(), matrix, yearly.mean(),
          analytics.returns(btc, log=True).sum())  # fmt: skip


async def open_interest_beside_candles() -> None:
    oi = load_open_interest("BTC/USDT:USDT", "1h", "2024-12-01", "2024-12-07")
    assert_type(oi, pd.DataFrame)
    several = await load_open_interest_async(["BTC/USDT:USDT"], "5m", "2024-12-06", "2024-12-07")
    assert_type(several, dict[str, pd.DataFrame])
    same = load("open_interest", "BTC/USDT:USDT", "2024-12-01", "2024-12-07", timeframe="1h")
    collector = OpenInterestCollector("bybit_futures", ["BTC/USDT:USDT"], period="1h")
    keys: list[DatasetKey] = collector.keys()
    print(oi["open_interest"].iloc[-1], len(several), same.shape, keys)


def jobs_from_a_file() -> None:
    jobs = mdcollect.load_jobs("jobs.toml")
    assert_type(jobs, list[mdcollect.Job])
    reports = mdcollect.ensure_jobs(jobs, "parquet://md-data", dry_run=True)
    assert_type(reports, list[mdcollect.EnsureReport])
    again = mdcollect.ensure_jobs("jobs.toml")
    print([j.symbols for j in jobs], all(r.ok for r in reports + again))
