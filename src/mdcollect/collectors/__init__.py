"""Live market data: collectors (one kind, one exchange, many symbols each) and
:class:`DataCollector`, the supervisor that runs them.

Every collector runs a feed (websockets through ``ccxt.pro``, or REST
polling) into a bounded queue drained in batches into a storage, keeping
rows through storage outages up to a bound and counting what it drops.

* :class:`TradesCollector` -- trades with their receipt time, and candles of
  many timeframes built from them (``candles=["1s", "1m"]``);
* :class:`OHLCVCollector` -- closed candles from the exchange;
* :class:`TickerCollector`, :class:`OrderBookCollector` (top-N snapshots),
  :class:`FundingRateCollector` (perpetuals);
* :class:`OpenInterestCollector` -- open interest of perpetuals, once a period.
* :class:`LiquidationsCollector` -- forced orders of perpetuals, websockets only.

With ``raw=True`` (a collector's, or :class:`DataCollector`'s for all) the
websocket frames are stored too (``raw`` kind, ``_raw``), and :func:`replay`
turns a captured day back into the same rows (``_replay``).

>>> from mdcollect import DataCollector, open_storage
>>> from mdcollect.collectors import TradesCollector, TickerCollector
>>> collectors = [TradesCollector("binance", ["BTC/USDT"], candles=["1s", "1m"]),
...               TickerCollector("binance", ["BTC/USDT"], mode="poll", interval=5)]
>>> async with DataCollector(collectors, open_storage("memory://")) as dc:
...     await asyncio.sleep(60)
...     print(dc.status())

:class:`DataCollector` (also ``mdcollect.DataCollector``) restarts crashed or
silent collectors with a :class:`Backoff`, reports their health and refills the
gaps a reconnect left. Every collector reads time from a :class:`Clock` (the
system clocks unless given one); tests use a :class:`ManualClock` and advance it
instead of sleeping.

The rooms: ``_base`` (the feed -> queue -> batch -> storage pipeline),
``_kinds`` (one collector per kind), ``_options`` (every option, checked),
``_config`` (TOML), ``_supervisor`` (``DataCollector``), ``_gaps`` (spotting and
refilling holes), ``_clock``, ``_lease`` (one leader among processes sharing a config
and a store: :class:`RedisLease`, :class:`FileLease`, :class:`Leadership`), ``_workers``
(:class:`CollectorWorkers`: a config's symbols sharded over processes, supervised as one).

Logs go to the ``mdcollect.collectors`` logger (the supervisor's to
``mdcollect.collector``).
"""

from .._backoff import Backoff
from ._alerts import Alert, WebhookAlerts
from ._base import (
    WRITE_BUCKETS,
    CollectorStats,
    DataSourceCollector,
    Message,
    Mode,
    WriteLatency,
    WriteObserver,
)
from ._clock import SYSTEM_CLOCK, Clock, ManualClock, SystemClock, as_clock
from ._config import (
    CONFIG_KEYS,
    LiveConfig,
    load_collectors,
    load_config,
    shard_config,
    shard_symbols,
)
from ._kinds import (
    FundingRateCollector,
    LiquidationsCollector,
    OHLCVCollector,
    OpenInterestCollector,
    OrderBookCollector,
    TickerCollector,
    TradesCollector,
)
from ._lease import (
    DEFAULT_TTL,
    FileLease,
    Leadership,
    Lease,
    LeaseError,
    RedisLease,
    default_lease,
    describe_holder,
    lease_name,
    parse_lease,
)
from ._raw import RawBatch, decode_raw, encode_raw, raw_key
from ._replay import REPLAY_CHANNELS, ReplayReport, replay, replay_async
from ._supervisor import DataCollector
from ._workers import CollectorWorkers

__all__ = [
    "CONFIG_KEYS",
    "DEFAULT_TTL",
    "REPLAY_CHANNELS",
    "SYSTEM_CLOCK",
    "WRITE_BUCKETS",
    "Alert",
    "Backoff",
    "Clock",
    "CollectorStats",
    "CollectorWorkers",
    "DataCollector",
    "DataSourceCollector",
    "FileLease",
    "FundingRateCollector",
    "Leadership",
    "Lease",
    "LeaseError",
    "LiquidationsCollector",
    "LiveConfig",
    "ManualClock",
    "Message",
    "Mode",
    "OHLCVCollector",
    "OpenInterestCollector",
    "OrderBookCollector",
    "RawBatch",
    "RedisLease",
    "ReplayReport",
    "SystemClock",
    "TickerCollector",
    "TradesCollector",
    "WebhookAlerts",
    "WriteLatency",
    "WriteObserver",
    "as_clock",
    "decode_raw",
    "default_lease",
    "describe_holder",
    "encode_raw",
    "lease_name",
    "load_collectors",
    "load_config",
    "parse_lease",
    "raw_key",
    "replay",
    "replay_async",
    "shard_config",
    "shard_symbols",
]
