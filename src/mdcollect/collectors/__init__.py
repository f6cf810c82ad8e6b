"""Live market data collectors: one kind, one exchange, many symbols each.

Every collector runs a feed (websockets through ``ccxt.pro``, or REST
polling) into a bounded queue drained in batches into a storage, keeping
rows through storage outages up to a bound and counting what it drops.

* :class:`TradesCollector` -- trades with their receipt time, and candles of
  many timeframes built from them (``candles=["1s", "1m"]``);
* :class:`OHLCVCollector` -- closed candles from the exchange;
* :class:`TickerCollector`, :class:`OrderBookCollector` (top-N snapshots),
  :class:`FundingRateCollector` (perpetuals).

>>> from mdcollect import DataCollector, open_storage
>>> from mdcollect.collectors import TradesCollector, TickerCollector
>>> collectors = [TradesCollector("binance", ["BTC/USDT"], candles=["1s", "1m"]),
...               TickerCollector("binance", ["BTC/USDT"], mode="poll", interval=5)]
>>> async with DataCollector(collectors, open_storage("memory://")) as dc:
...     await asyncio.sleep(60)
...     print(dc.status())

Logs go to the ``mdcollect.collectors`` logger.
"""

from ._base import CollectorStats, DataSourceCollector, Message, Mode
from ._config import LiveConfig, load_collectors, load_config
from ._kinds import (
    FundingRateCollector,
    OHLCVCollector,
    OrderBookCollector,
    TickerCollector,
    TradesCollector,
)

__all__ = [
    "CollectorStats",
    "DataSourceCollector",
    "FundingRateCollector",
    "LiveConfig",
    "Message",
    "Mode",
    "OHLCVCollector",
    "OrderBookCollector",
    "TickerCollector",
    "TradesCollector",
    "load_collectors",
    "load_config",
]
