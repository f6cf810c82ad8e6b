"""The live FundingRateCollector's settled rates land in the ``funding`` dataset that
funding history fills, and agree with the history row for row."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from mdcollect import (
    DataCollectionStorage,
    DataCollector,
    DatasetKey,
    load_funding,
    open_storage,
)
from mdcollect.collectors import FundingRateCollector
from mdcollect.testing import ExchangeEmulator

from .conftest import client, wait_until

PERP = "BTC/USDT:USDT"
HOUR = 3_600_000
#: 2024-03-01 00:00 UTC, a settlement
START = 1_709_251_200_000
#: emulated ms per real second: a funding period (8 h) every 2 s
SPEED = 4 * HOUR


@pytest.fixture
def fast_emu() -> Iterator[ExchangeEmulator]:
    t0 = time.monotonic()
    with ExchangeEmulator(
        rate_limits=False, clock=lambda: START + int((time.monotonic() - t0) * SPEED)
    ) as e:
        yield e


@pytest.mark.parametrize("key", ["binance_futures", "okx_futures", "bybit_futures"])
async def test_live_settlements_agree_with_history_row_for_row(
    fast_emu: ExchangeEmulator, key: str
) -> None:
    emu = fast_emu
    store = open_storage("memory://")
    cl = client(emu, key)
    c = FundingRateCollector(cl, [PERP], mode="poll", interval=0.05)
    settled = DatasetKey(key, PERP, "funding")
    try:
        async with DataCollector([c], store, max_silence=15):
            await wait_until(lambda: len(store.read(settled)) >= 3, 30)
    finally:
        await cl.close()
    live = store.read(settled)
    snapshots = store.read(DatasetKey(key, PERP, "funding_snapshot"))
    assert len(snapshots) > len(live)  # every update is kept, in its own kind
    t = live.index.asi8 // 1_000_000
    # every settlement from the first the collector saw both sides of, none twice
    assert t[0] >= START and t[0] % (8 * HOUR) == 0 and set(np.diff(t).tolist()) == {8 * HOUR}
    assert live["mark_price"].isna().all()  # the live feed does not know the settlement's

    # the history of the same span, in another store: the same settlements and rates
    history_store = open_storage("memory://")
    lo, hi = int(t[0]), int(t[-1]) + 1
    now = emu.market.now()
    history = load_funding(
        PERP, lo, hi, exchange=client(emu, key), storage=history_store, progress=False,
        clock=lambda: now,
    )  # fmt: skip
    assert history.index.equals(live.index)
    np.testing.assert_array_equal(history["rate"].to_numpy(), live["rate"].to_numpy())

    # one truth: history fills the live rows' dataset without duplicating them
    merged = load_funding(
        PERP, lo, hi, exchange=client(emu, key), storage=store, progress=False, clock=lambda: now
    )
    assert merged.index.equals(live.index)
    np.testing.assert_array_equal(merged["rate"].to_numpy(), live["rate"].to_numpy())


@pytest.mark.parametrize("history_first", [True, False], ids=["history-live", "live-history"])
async def test_live_settlement_never_blanks_the_history_mark_price(history_first: bool) -> None:
    """One rule: a live settlement row only fills. History first then live keeps the
    history's mark price; live first then history gives the history's row."""
    settlement = START + 8 * HOUR
    now = [settlement + HOUR]
    key = DatasetKey("binance_futures", PERP, "funding")
    with ExchangeEmulator(rate_limits=False, clock=lambda: now[0]) as emu:

        def history(store: DataCollectionStorage) -> pd.DataFrame:
            return load_funding(
                PERP, settlement, settlement + 1, exchange=client(emu, "binance_futures"),
                storage=store, progress=False, clock=lambda: now[0],
            )  # fmt: skip

        expected = history(open_storage("memory://"))
        assert len(expected) == 1 and expected["mark_price"].notna().all()
        store = open_storage("memory://")
        if history_first:
            history(store)

        # the live collector sees the settlement announced, then the next one
        live_writes: list[pd.DataFrame] = []

        def observe(k: DatasetKey, frame: pd.DataFrame, covered: object, rows: int) -> None:
            if k == key:
                live_writes.append(frame)

        cl = client(emu, "binance_futures")
        c = FundingRateCollector(cl, [PERP], mode="poll", interval=0.05, batch_seconds=0.05)
        now[0] = settlement - HOUR
        task = asyncio.create_task(c.run(store, on_write=observe))
        try:
            await wait_until(lambda: c.stats.rows_written >= 1, 15)
            now[0] = settlement + HOUR
            await wait_until(lambda: live_writes, 15)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await cl.close()

        if not history_first:
            assert store.read(key)["mark_price"].isna().all()  # the live feed does not know it
            history(store)
        # the history's row, whichever came first
        pd.testing.assert_frame_equal(store.read(key), expected)
