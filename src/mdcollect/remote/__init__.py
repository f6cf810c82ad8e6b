"""Calling the data-collection service: HTTP clients and the Step Functions proxy.

Needs the ``remote`` extra (``pip install mdcollect[remote]``, httpx).
``import mdcollect`` does not import this package.

>>> from mdcollect.remote import DataCollectionClient
>>> with DataCollectionClient() as client:          # DATA_COLLECTION_URL or service discovery
...     answer = client.ensure_data(["BTC/USDT:USDT"], "1h", "20240201", "20240228")
...     candles = client.fetch_ohlcv("BTC/USDT:USDT", "1h", start="2024-01-02", limit=100)

``lambda_handler(event, context)`` is the AWS Lambda entry point of the proxy:
``{"operation": "ensure-data", "params": {...}}`` in, an envelope with status 200 out.
It is made on first access (the Lambda cold start) from :class:`ProxySettings`, read
from the environment and checked then; ``make_handler(namespace=..., settings=...)``
makes one with other settings.
Retries and failures are logged on the ``mdcollect.remote`` logger, metrics as
CloudWatch EMF lines on ``mdcollect.remote.metrics``.
"""

import threading

from .._api import DEFAULT_EXCHANGES, DEFAULT_LIMIT, MAX_LIMIT
from .._errors import InvalidRequest, RemoteError
from ._client import (
    OPERATIONS,
    AsyncDataCollectionClient,
    DataCollectionClient,
    Operation,
    build_call,
    default_backoff,
    default_base_url,
)
from ._lambda import Handler, default_handler, make_handler
from ._metrics import ListEmitter, LogEmitter, MetricsEmitter, emf_document
from ._settings import METRICS_SUFFIX, ProxySettings, metrics_namespace

__all__ = [
    "DEFAULT_EXCHANGES",
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "METRICS_SUFFIX",
    "OPERATIONS",
    "AsyncDataCollectionClient",
    "DataCollectionClient",
    "InvalidRequest",
    "ListEmitter",
    "LogEmitter",
    "MetricsEmitter",
    "Operation",
    "ProxySettings",
    "RemoteError",
    "build_call",
    "default_backoff",
    "default_base_url",
    "emf_document",
    "make_handler",
    "metrics_namespace",
]

_entry_point: Handler | None = None
_entry_lock = threading.Lock()


def __getattr__(name: str) -> Handler:
    # the Lambda runtime looks ``lambda_handler`` up once, at the cold start: the
    # settings are read and checked then, not when a client user imports this package
    # (nor by ``from mdcollect.remote import *``: the name is not in ``__all__``)
    global _entry_point
    if name == "lambda_handler":
        with _entry_lock:
            if _entry_point is None:
                _entry_point = default_handler()
            return _entry_point
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
