"""LiquidationsCollector against the emulator's liquidation streams (Binance USD-M
``forceOrder``, OKX ``liquidation-orders``, Bybit ``allLiquidation``): rows equal the
ground truth wherever coverage says so, and a reconnect leaves an honest hole."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from mdcollect import (
    DataCollectionStorage,
    DataCollector,
    DatasetKey,
    Interval,
    IntervalSet,
    InvalidRequest,
    ensure_data,
    open_storage,
)
from mdcollect.collectors import Backoff, LiquidationsCollector, ManualClock
from mdcollect.exchanges import liquidation_rows
from mdcollect.testing import ExchangeEmulator, MarketSpec

from .conftest import client, wait_until

VENUES = ["binance_futures", "okx_futures", "bybit_futures"]
PERPS = ["BTC/USDT:USDT", "ETH/USDT:USDT"]
FAST = {"batch_seconds": 0.1, "flush_timeout": 10.0}
COLUMNS = ["side", "price", "amount"]
HOUR = 3_600_000


@pytest.fixture(scope="module")
def emu() -> Iterator[ExchangeEmulator]:
    with ExchangeEmulator(seed=5, rate_limits=False) as e:
        yield e


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame[COLUMNS].astype({"side": object, "price": float, "amount": float})
    out = out.reset_index().sort_values(["timestamp", *COLUMNS], kind="stable")
    return out.reset_index(drop=True)


def check_against_truth(
    emu: ExchangeEmulator, store: DataCollectionStorage, key: DatasetKey
) -> int:
    """Every covered span holds exactly the emulator's liquidations; returns how many."""
    got_all = store.read(key)
    ids = pd.MultiIndex.from_arrays([got_all.index, got_all["id"]])
    assert not ids.duplicated().any(), got_all[ids.duplicated(keep=False)]
    n = 0
    for span in store.coverage(key):
        got = store.read(key, span.start, span.end)
        truth = emu.market.liquidations(key.exchange, key.symbol, span.start, span.end)
        pd.testing.assert_frame_equal(_sorted(got), _sorted(truth))
        n += len(got)
    return n


def covered_rows(store: DataCollectionStorage, key: DatasetKey) -> int:
    return sum(len(store.read(key, s.start, s.end)) for s in store.coverage(key))


@pytest.mark.slow  # a few seconds of stream per venue: Binance and OKX push one a second
@pytest.mark.parametrize("venue", VENUES)
async def test_rows_equal_the_truth_while_the_stream_is_up(
    emu: ExchangeEmulator, venue: str
) -> None:
    store = open_storage("memory://")
    cl = client(emu, venue)
    c = LiquidationsCollector(cl, PERPS, **FAST)  # type: ignore[arg-type]
    keys = [DatasetKey(venue, s, "liquidations") for s in PERPS]
    first_sub = len(emu.ws.subscriptions)
    try:
        async with DataCollector([c], store, max_silence=10) as dc:
            await wait_until(lambda: all(covered_rows(store, k) >= 2 for k in keys), 30)
            status = dc.status()["collectors"][c.name]
            health = dc.health()
    finally:
        await cl.close()
    assert status["state"] == "running" and health["is_healthy"], (status, health)
    subs = [s for s in emu.ws.subscriptions[first_sub:] if s.action == "subscribe"]
    for key in keys:
        assert check_against_truth(emu, store, key) >= 2
        (span,) = store.coverage(key)  # one connection, one span
        # never before the exchange took this symbol's subscription (OKX: one for all)
        market_id = key.symbol.split(":")[0].replace("/", "").lower()
        subscribed = min(
            s.time for s in subs if market_id in s.stream.lower() or s.stream.endswith(":SWAP")
        )
        assert span.start >= subscribed
    assert c.stats.rows_dropped == 0


@pytest.mark.slow  # a few seconds of stream on both sides of the drop
@pytest.mark.parametrize("venue", VENUES)
async def test_a_reconnect_leaves_an_honest_hole(emu: ExchangeEmulator, venue: str) -> None:
    store = open_storage("memory://")
    cl = client(emu, venue)
    sym = PERPS[0]
    key = DatasetKey(venue, sym, "liquidations")
    c = LiquidationsCollector(cl, [sym], **FAST)  # type: ignore[arg-type]
    dc = DataCollector([c], store, max_silence=10, restart_backoff=Backoff(0.3, 1.0))
    conns = len(emu.ws.connections)
    emu.ws.duplicate(0.5, venue=venue)  # and messages sent twice: stored once
    try:
        async with dc:
            await wait_until(lambda: covered_rows(store, key) >= 2, 30)
            assert emu.ws.drop(venue=venue) == 1
            await wait_until(lambda: len(store.coverage(key)) >= 2, 30)
            await wait_until(lambda: covered_rows(store, key) >= 4, 30)
            status = dc.status()["collectors"][c.name]
    finally:
        emu.ws.duplicate(0, venue=venue)
        await cl.close()
    assert status["restarts"] >= 1, status
    first, second = emu.ws.connections[conns : conns + 2]
    assert first.closed is not None
    resubscribed = min(
        s.time
        for s in emu.ws.subscriptions
        if s.connection == second.id and s.action == "subscribe"
    )
    coverage = store.coverage(key)
    # the hole covers the time the stream was down, and more (the push delay)
    assert coverage & IntervalSet([Interval(first.closed, resubscribed)]) == IntervalSet([])
    # rows on both sides equal the truth, none twice
    assert check_against_truth(emu, store, key) >= 4


def test_polling_is_refused_saying_why() -> None:
    with pytest.raises(InvalidRequest, match=r"nothing to poll.*websocket"):
        LiquidationsCollector("binance_futures", ["BTC/USDT:USDT"], mode="poll")


def test_ensure_data_refuses_liquidations_as_live_only(emu: ExchangeEmulator) -> None:
    before = len(emu.requests)
    with pytest.raises(InvalidRequest, match=r"live-only.*LiquidationsCollector"):
        ensure_data(
            ["BTC/USDT:USDT"], "1h", "2024-01-01", "2024-01-02", exchange=client(emu, VENUES[0]),
            storage=open_storage("memory://"), kinds=("ohlcv", "liquidations"), progress=False,
        )  # fmt: skip
    assert len(emu.requests) == before  # refused before any request


def test_liquidations_at_one_millisecond_do_not_overwrite_each_other(
    store: DataCollectionStorage,
) -> None:
    """Bybit pushes several forced orders of one instant; a redelivered one is stored
    once (every backend)."""
    key = DatasetKey("bybit_futures", "BTC/USDT:USDT", "liquidations")
    t = 1_739_502_302_929
    # ccxt's parse of {"T": t, "s": "BTCUSDT", "S": "Sell", "v": "0.2", "p": "96000.5"} and
    # a second one of the same millisecond ("S" is the liquidated position's side)
    ccxt = [
        {"timestamp": t, "side": "sell", "price": 96000.5, "contracts": 0.2},
        {"timestamp": t, "side": "buy", "price": 96010.0, "contracts": 0.05},
    ]
    rows = liquidation_rows(ccxt, None, t + 50, position_side=True)
    frame = pd.DataFrame.from_records(rows, columns=["timestamp", "id", "side", "price", "amount",
                                                     "received"])  # fmt: skip
    store.write(key, frame)
    store.write(key, frame.iloc[:1])  # the first one again, as after a reconnect
    got = store.read(key)
    assert len(got) == 2 and (got.index.asi8 // 1_000_000 == t).all()
    # a liquidated short (position side Sell) is a forced buy, and the reverse
    assert sorted(zip(got["side"], got["price"], strict=True)) == [
        ("buy", 96000.5), ("sell", 96010.0)
    ]  # fmt: skip
    np.testing.assert_array_equal(np.sort(got["amount"].to_numpy()), [0.05, 0.2])


async def test_a_quiet_stream_is_healthy_and_covered() -> None:
    """No liquidation while the stream is up is an answer ("none happened"), stored as
    coverage; on the supervisor's (injected) clock the collector stays healthy past the
    first-data grace, as its frames show the stream alive."""
    now = time.time() * 1000
    quiet = MarketSpec("BTC/USDT:USDT", 30_000.0, outages=[(int(now - HOUR), int(now + HOUR))])
    clock = ManualClock()
    with ExchangeEmulator(markets=[quiet], rate_limits=False) as emu:
        store = open_storage("memory://")
        cl = client(emu, "bybit_futures")
        key = DatasetKey("bybit_futures", "BTC/USDT:USDT", "liquidations")
        cl.ws_keepalive(0.3)  # pongs: the frames that show the stream alive
        c = LiquidationsCollector(cl, [key.symbol], **FAST)  # type: ignore[arg-type]
        try:
            async with DataCollector([c], store, max_silence=10_000, clock=clock) as dc:

                def covered_a_second() -> bool:
                    clock.advance(0.2)  # batches are written by age on the injected clock
                    return store.coverage(key).total >= 1_000

                await wait_until(covered_a_second, 30)
                clock.advance(dc.first_data_grace + 1)
                health = dc.health()
        finally:
            await cl.close()
    assert health["is_healthy"], health
    assert len(store.read(key)) == 0
    assert emu.market.liquidations("bybit", key.symbol, int(now - HOUR), int(now + HOUR)).empty
