"""Exchange access through ccxt: the registry of exchange keys, the client, retries.

``exchange_info(key)`` tells what mdcollect knows about an exchange key (every
ccxt id, plus the aliases ``binance_futures``, ``bybit_futures``, ``okx_futures``
for USDT-margined perpetuals); ``ExchangeClient`` fetches one page of candles or
trades at a time as schema frames, retrying transient failures per a
``RetryPolicy``::

    from mdcollect.exchanges import ExchangeClient, RetryPolicy

    async with ExchangeClient("okx_futures", retry=RetryPolicy(max_attempts=3)) as client:
        frame = await client.fetch_ohlcv("BTC/USDT:USDT", "1h", since, until)

The parsers from ccxt's unified structures (tickers, books, funding rates,
trades, candles, open interest) to schema rows and frames are the public module
:mod:`mdcollect.exchanges.parsing`, re-exported here.

Retries and failures are logged on the ``mdcollect.exchanges`` logger.

Importing this package does not import ccxt or aiohttp (together about 0.6 s): the
registry and the parsers are loaded with it, the client, its HTTP session and its
retries on first use (a no-op ``mdcollect ensure`` never uses them).
"""

from typing import TYPE_CHECKING, Any

from . import parsing
from ._limiter import share_budgets_on_host
from ._registry import (
    ExchangeInfo,
    FundingHistory,
    OpenInterestHistory,
    PriceCandles,
    described_exchanges,
    exchange_info,
    exchange_keys,
    request_seconds,
)
from ._urls import redirect_urls
from .parsing import (
    book_row,
    candle_columns,
    contract_size,
    funding_history_rows,
    funding_row,
    funding_snapshot_row,
    liquidation_rows,
    ohlcv_frame,
    ohlcv_row,
    open_interest_rows,
    row_columns,
    rows_frame,
    ticker_row,
    trade_id,
    trade_rows,
    trades_frame,
)

if TYPE_CHECKING:
    from ._client import ExchangeClient, TradesPage
    from ._http import (
        ExchangeTotals,
        SessionStats,
        all_exchange_totals,
        exchange_totals,
        request_tally,
    )
    from ._retry import RetryPolicy

# Names whose modules import ccxt or aiohttp: loaded on first use.
_LAZY = {
    "ExchangeClient": "mdcollect.exchanges._client",
    "TradesPage": "mdcollect.exchanges._client",
    "ExchangeTotals": "mdcollect.exchanges._http",
    "SessionStats": "mdcollect.exchanges._http",
    "all_exchange_totals": "mdcollect.exchanges._http",
    "exchange_totals": "mdcollect.exchanges._http",
    "request_tally": "mdcollect.exchanges._http",
    "RetryPolicy": "mdcollect.exchanges._retry",
}

__all__ = [
    "ExchangeClient",
    "ExchangeInfo",
    "ExchangeTotals",
    "FundingHistory",
    "OpenInterestHistory",
    "PriceCandles",
    "RetryPolicy",
    "SessionStats",
    "TradesPage",
    "all_exchange_totals",
    "book_row",
    "candle_columns",
    "contract_size",
    "described_exchanges",
    "exchange_info",
    "exchange_keys",
    "exchange_totals",
    "funding_history_rows",
    "funding_row",
    "funding_snapshot_row",
    "liquidation_rows",
    "ohlcv_frame",
    "ohlcv_row",
    "open_interest_rows",
    "parsing",
    "redirect_urls",
    "request_seconds",
    "request_tally",
    "row_columns",
    "rows_frame",
    "share_budgets_on_host",
    "ticker_row",
    "trade_id",
    "trade_rows",
    "trades_frame",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mdcollect.exchanges' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
