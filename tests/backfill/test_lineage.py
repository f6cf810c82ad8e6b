"""Lineage: what each backfill strategy records as the source of the rows it writes."""

from __future__ import annotations

from typing import Any

from mdcollect import DatasetKey, catalog, ensure_data, open_storage
from mdcollect.exchanges import ExchangeClient, RetryPolicy
from mdcollect.testing import ExchangeEmulator


def client(emu: ExchangeEmulator, key: str, **kw: Any) -> ExchangeClient:
    return ExchangeClient(
        key, base_url=emu.url, enableRateLimit=False,
        retry=RetryPolicy(max_attempts=10, base_delay=0.001, max_delay=0.01), **kw,
    )  # fmt: skip


def test_each_strategy_names_where_its_rows_came_from(emu: ExchangeEmulator) -> None:
    store = open_storage("memory://")
    day = ("2024-01-01", "2024-01-01")
    for ex in ("binance", "kraken"):  # Kraken's candles come from its trades
        assert ensure_data(["BTC/USDT"], "1h", *day, client(emu, ex), 0, store, progress=False).ok
    perp = ["BTC/USDT:USDT"]
    assert ensure_data(perp, "1h", *day, client(emu, "binance_futures"), 0, store,
                       progress=False, kinds=("funding", "mark")).ok  # fmt: skip
    lineage = {
        (row.exchange, row.kind): row.lineage for row in catalog(store).itertuples(index=False)
    }
    assert lineage == {
        ("binance", "ohlcv"): "backfill:binance candles",
        ("kraken", "ohlcv"): "backfill:kraken trades->1h",
        ("binance_futures", "funding"): "backfill:binance_futures funding",
        ("binance_futures", "mark"): "backfill:binance_futures mark candles",
    }
    info = store.info(DatasetKey("binance", "BTC/USDT", "ohlcv", "1h"))
    assert info.rows == 24 and info.sources == ("backfill:binance candles",)
