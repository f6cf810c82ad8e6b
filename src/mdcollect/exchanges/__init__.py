"""Exchange access through ccxt: the registry of exchange keys, the client, retries.

``exchange_info(key)`` tells what mdcollect knows about an exchange key (every
ccxt id, plus the aliases ``binance_futures``, ``bybit_futures``, ``okx_futures``
for USDT-margined perpetuals); ``ExchangeClient`` fetches one page of candles or
trades at a time as schema frames, retrying transient failures per a
``RetryPolicy``::

    from mdcollect.exchanges import ExchangeClient, RetryPolicy

    async with ExchangeClient("okx_futures", retry=RetryPolicy(max_attempts=3)) as client:
        frame = await client.fetch_ohlcv("BTC/USDT:USDT", "1h", since, until)

Retries and failures are logged on the ``mdcollect.exchanges`` logger.
"""

from ._client import ExchangeClient, TradesPage
from ._http import SessionStats, request_tally
from ._registry import ExchangeInfo, exchange_info, exchange_keys, request_seconds
from ._retry import RetryPolicy
from ._urls import redirect_urls

__all__ = [
    "ExchangeClient",
    "ExchangeInfo",
    "RetryPolicy",
    "SessionStats",
    "TradesPage",
    "exchange_info",
    "exchange_keys",
    "redirect_urls",
    "request_seconds",
    "request_tally",
]
