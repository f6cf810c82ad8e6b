"""Lineage: live collectors record whether their rows came over websockets or polling."""

from __future__ import annotations

from mdcollect import DatasetKey, open_storage
from mdcollect.collectors import DataCollector, TickerCollector, TradesCollector
from mdcollect.testing import ExchangeEmulator

from .conftest import client, wait_until

FAST = {"batch_seconds": 0.2, "poll_interval": 0.2, "flush_timeout": 10.0}


async def test_live_rows_are_marked_ws_or_poll(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    cl = client(emu)
    trades = TradesCollector(cl, ["BTC/USDT"], mode="ws", **FAST)  # type: ignore[arg-type]
    ticker = TickerCollector(cl, ["ETH/USDT"], mode="poll", interval=0.2, **FAST)  # type: ignore[arg-type]
    ws_key = DatasetKey("binance", "BTC/USDT", "trades")
    poll_key = DatasetKey("binance", "ETH/USDT", "ticker")
    try:
        async with DataCollector([trades, ticker], store, max_silence=15):
            await wait_until(lambda: store.info(ws_key).rows and store.info(poll_key).rows, 30)
    finally:
        await cl.close()
    assert store.info(ws_key).sources == ("live:ws",)
    assert store.info(poll_key).sources == ("live:poll",)
