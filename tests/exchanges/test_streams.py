"""``ExchangeClient.close_streams``: the next connection starts afresh (real ccxt.pro
against the emulator's websocket)."""

from __future__ import annotations

import asyncio
import time

from mdcollect.exchanges import ExchangeClient
from mdcollect.testing import ExchangeEmulator, MarketSpec


async def test_a_fresh_connection_hands_over_none_of_the_old_ones_rows() -> None:
    """Trades the old connection delivered but nobody read are not handed over by the
    next connection's first read: a collector restarting on the same client would
    otherwise take the time between them as covered, and lose the trades in it."""
    listed = int(time.time() * 1000) - 60_000
    spec = MarketSpec("BTC/USDT", 30_000.0, trades_per_minute=6000, listed=listed,
                      exchange="binance")  # fmt: skip
    async with ExchangeEmulator(seed=5, markets=[spec], rate_limits=False) as emu:
        client = ExchangeClient("binance", base_url=emu.url, enableRateLimit=False)
        try:
            first = await asyncio.wait_for(client.watch_trades_raw("BTC/USDT"), 20)
            read = len(first)
            cache = client.exchange.trades["BTC/USDT"]
            async with asyncio.timeout(20):  # the old connection delivers trades unread
                while True:
                    if len(cache) >= read + 5:
                        break
                    await asyncio.sleep(0.01)
            unread_last = cache[-1]["timestamp"]
            await client.close_streams()
            second = await asyncio.wait_for(client.watch_trades_raw("BTC/USDT"), 20)
        finally:
            await client.close()
    assert second
    # the new subscription delivers only trades after it was made
    assert min(t["timestamp"] for t in second) > unread_last, (
        [t["id"] for t in second][:5],
        unread_last,
    )
