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

Every collector reads time from a :class:`Clock` (the system clocks unless given
one); tests use a :class:`ManualClock` and advance it instead of sleeping.

Logs go to the ``mdcollect.collectors`` logger.
"""

from ._base import CollectorStats, DataSourceCollector, Message, Mode
from ._clock import SYSTEM_CLOCK, Clock, ManualClock, SystemClock, as_clock
from ._config import LiveConfig, load_collectors, load_config
from ._kinds import (
    FundingRateCollector,
    OHLCVCollector,
    OrderBookCollector,
    TickerCollector,
    TradesCollector,
)

__all__ = [
    "SYSTEM_CLOCK",
    "Clock",
    "CollectorStats",
    "DataSourceCollector",
    "FundingRateCollector",
    "LiveConfig",
    "ManualClock",
    "Message",
    "Mode",
    "OHLCVCollector",
    "OrderBookCollector",
    "SystemClock",
    "TickerCollector",
    "TradesCollector",
    "as_clock",
    "load_collectors",
    "load_config",
]
