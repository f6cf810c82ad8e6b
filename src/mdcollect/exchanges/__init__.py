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
"""

from . import parsing
from ._client import ExchangeClient, TradesPage
from ._http import (
    ExchangeTotals,
    SessionStats,
    all_exchange_totals,
    exchange_totals,
    request_tally,
)
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
from ._retry import RetryPolicy
from ._urls import redirect_urls
from .parsing import (
    book_row,
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
