"""mdcollect: cryptocurrency market data, collected, stored and guaranteed present.

>>> import mdcollect
>>> storage = mdcollect.open_storage("memory://")
>>> key = mdcollect.DatasetKey("binance", "BTC/USDT", "ohlcv", "1h")
"""

from ._errors import ExchangeError, InvalidRequest, MdcollectError, RemoteError, StorageError
from ._intervals import Interval, IntervalSet
from ._keys import DatasetKey
from ._time import Timeframe
from .storage import DataCollectionStorage, default_storage, open_storage

__version__ = "0.1.0.dev0"

__all__ = [
    "DataCollectionStorage",
    "DatasetKey",
    "ExchangeError",
    "Interval",
    "IntervalSet",
    "InvalidRequest",
    "MdcollectError",
    "RemoteError",
    "StorageError",
    "Timeframe",
    "__version__",
    "default_storage",
    "open_storage",
]
