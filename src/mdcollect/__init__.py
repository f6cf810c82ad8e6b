"""mdcollect: cryptocurrency market data, collected, stored and guaranteed present.

>>> import mdcollect
>>> storage = mdcollect.open_storage("memory://")
>>> key = mdcollect.DatasetKey("binance", "BTC/USDT", "ohlcv", "1h")
>>> report = mdcollect.ensure_data(["BTC/USDT"], "1h", "2024-01-01", "2024-01-31",
...                                exchange="binance", storage=storage)
"""

from typing import TYPE_CHECKING, Any

from ._errors import ExchangeError, InvalidRequest, MdcollectError, RemoteError, StorageError
from ._intervals import Interval, IntervalSet
from ._keys import DatasetKey
from ._time import Timeframe
from .catalog import catalog
from .storage import DataCollectionStorage, default_storage, open_storage

if TYPE_CHECKING:
    from .audit import AuditReport, audit, audit_async
    from .collectors import DataCollector, DataSourceCollector, ReplayReport, replay, replay_async
    from .ensure import (
        EnsureReport,
        ensure_data,
        ensure_data_async,
        ensure_jobs,
        ensure_jobs_async,
        load,
        load_async,
        load_funding,
        load_funding_async,
        load_ohlcv,
        load_ohlcv_async,
        load_open_interest,
        load_open_interest_async,
        load_trades,
        load_trades_async,
    )
    from .exchanges import ExchangeClient
    from .interop import export_freqtrade
    from .jobs import Job, load_jobs
    from .plot import plot_coverage

__version__ = "0.1.0.dev0"

# Names whose modules import ccxt (about 1.5 s): loaded on first use.
_LAZY = {
    "DataCollector": "mdcollect.collectors",
    "DataSourceCollector": "mdcollect.collectors",
    "EnsureReport": "mdcollect.ensure",
    "ensure_data": "mdcollect.ensure",
    "ensure_data_async": "mdcollect.ensure",
    "export_freqtrade": "mdcollect.interop",
    "load": "mdcollect.ensure",
    "load_async": "mdcollect.ensure",
    "load_funding": "mdcollect.ensure",
    "load_funding_async": "mdcollect.ensure",
    "load_ohlcv": "mdcollect.ensure",
    "load_ohlcv_async": "mdcollect.ensure",
    "load_open_interest": "mdcollect.ensure",
    "load_open_interest_async": "mdcollect.ensure",
    "load_trades": "mdcollect.ensure",
    "load_trades_async": "mdcollect.ensure",
    "ExchangeClient": "mdcollect.exchanges",
    "plot_coverage": "mdcollect.plot",  # matplotlib itself only when called
    "AuditReport": "mdcollect.audit",
    "audit": "mdcollect.audit",
    "audit_async": "mdcollect.audit",
    "Job": "mdcollect.jobs",
    "ensure_jobs": "mdcollect.ensure",
    "ensure_jobs_async": "mdcollect.ensure",
    "load_jobs": "mdcollect.jobs",
    "ReplayReport": "mdcollect.collectors",
    "replay": "mdcollect.collectors",
    "replay_async": "mdcollect.collectors",
}

__all__ = [
    "AuditReport",
    "DataCollectionStorage",
    "DataCollector",
    "DataSourceCollector",
    "DatasetKey",
    "EnsureReport",
    "ExchangeClient",
    "ExchangeError",
    "Interval",
    "IntervalSet",
    "InvalidRequest",
    "Job",
    "MdcollectError",
    "RemoteError",
    "ReplayReport",
    "StorageError",
    "Timeframe",
    "__version__",
    "audit",
    "audit_async",
    "catalog",
    "default_storage",
    "ensure_data",
    "ensure_data_async",
    "ensure_jobs",
    "ensure_jobs_async",
    "export_freqtrade",
    "load",
    "load_async",
    "load_funding",
    "load_funding_async",
    "load_jobs",
    "load_ohlcv",
    "load_ohlcv_async",
    "load_open_interest",
    "load_open_interest_async",
    "load_trades",
    "load_trades_async",
    "open_storage",
    "plot_coverage",
    "replay",
    "replay_async",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mdcollect' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
