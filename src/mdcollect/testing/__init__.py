"""Test helpers: real exchange REST dialects served on 127.0.0.1 from a synthetic market.

:class:`ExchangeEmulator` serves Binance (spot ``/api/v3``, USD-M ``/fapi/v1``),
OKX (``/api/v5``), Bybit (``/v5``), Kraken (``/0/public``) and Coinbase Advanced Trade
(``/api/v3/brokerage/market``) on one loopback port.
Unmodified ccxt talks to it over HTTP once its API URLs point there; the data
comes from a deterministic :class:`SyntheticMarket` that doubles as ground truth,
and :class:`Fault` switches on failures (5xx, 429/418, timeouts, dropped
connections, broken JSON, duplicated rows, short and empty pages). Perpetuals
also have mark-price, index-price and premium-index candles (Binance USD-M, OKX
mark and index, Bybit), derived from the market's own candles; their ground truth
is ``emu.market.price_candles(exchange, symbol, "mark", "1h", start, end)``.
Use it like moto for AWS::

    import ccxt
    from mdcollect.testing import ExchangeEmulator, Fault

    NOW = 1_700_000_000_000
    with ExchangeEmulator(seed=1, clock=lambda: NOW) as emu:
        ex = emu.ccxt("binance", async_=False)      # or redirect_urls(ex, emu.url)
        since = NOW - 86_400_000
        rows = ex.fetch_ohlcv("BTC/USDT", "1m", since=since, limit=1000)
        truth = emu.market.candles("binance", "BTC/USDT", "1m", since, since + 1000 * 60_000)
        assert rows == truth.to_list()

        emu.faults.add(Fault("503", route="klines", count=1))
        try:
            ex.fetch_ohlcv("BTC/USDT", "1m", since=since)
        except ccxt.ExchangeNotAvailable:
            pass
        assert emu.requests[-1].status == 503

Websockets (added in 0.2.0): Binance spot and USD-M market streams (trade,
aggTrade, kline, bookTicker, ticker, miniTicker, depth, markPrice) and OKX v5
public/business channels (trades, candle*, tickers, books, books5, bbo-tbt,
funding-rate, mark-price) push the same synthetic market live as the clock
passes: a trades subscription made at ``t`` delivers exactly
``emu.market.trades(symbol, t, now)``, once, in order; missed trades are never
replayed. ``emu.ccxt(id, pro=True)`` gives a redirected ``ccxt.pro`` instance
(ws URLs become ``ws://127.0.0.1:PORT/_ws/<original host>/<path>``), and
``emu.ws`` (:class:`WsControl`) switches websocket faults and logs connections::

    emu = ExchangeEmulator(markets=[MarketSpec("BTC/USDT", trades_per_minute=600)])
    async with emu:
        ex = emu.ccxt("binance", pro=True)
        trades = await ex.watch_trades("BTC/USDT")
        emu.ws.drop()                      # also silence(s), pause()/resume(),
        ...                                # send_malformed(n), duplicate(rate)
        assert len(emu.ws.connections) == 2
        await ex.close()

``python -m mdcollect.testing --port 8080 --seed 1`` serves until killed (first
stdout line: its URL); :class:`EmulatorProcess` wraps that for tests.
"""

from __future__ import annotations

from mdcollect.testing._emulator import (
    ExchangeEmulator,
    RequestRecord,
    served_exchanges,
    shared_emulator,
)
from mdcollect.testing._faults import Fault, FaultKind, Faults, Limit
from mdcollect.testing._market import DEFAULT_LISTING, Candles, MarketSpec, SyntheticMarket, Trades
from mdcollect.testing._process import EmulatorProcess
from mdcollect.testing._ws import WsConnection, WsControl, WsSubscription

__all__ = [
    "DEFAULT_LISTING",
    "Candles",
    "EmulatorProcess",
    "ExchangeEmulator",
    "Fault",
    "FaultKind",
    "Faults",
    "Limit",
    "MarketSpec",
    "RequestRecord",
    "SyntheticMarket",
    "Trades",
    "WsConnection",
    "WsControl",
    "WsSubscription",
    "served_exchanges",
    "shared_emulator",
]
