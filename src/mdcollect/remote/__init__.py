"""Calling the data-collection service: HTTP clients and the Step Functions proxy.

Needs the ``remote`` extra (``pip install mdcollect[remote]``, httpx).
``import mdcollect`` does not import this package.

>>> from mdcollect.remote import DataCollectionClient
>>> with DataCollectionClient() as client:          # DATA_COLLECTION_URL or service discovery
...     answer = client.ensure_data(["BTC/USDT:USDT"], "1h", "20240201", "20240228")
...     candles = client.fetch_ohlcv("BTC/USDT:USDT", "1h", start="2024-01-02", limit=100)

``lambda_handler(event, context)`` is the AWS Lambda entry point of the proxy:
``{"operation": "ensure-data", "params": {...}}`` in, an envelope with status 200 out.
Retries and failures are logged on the ``mdcollect.remote`` logger, metrics as
CloudWatch EMF lines on ``mdcollect.remote.metrics``.
"""

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
from ._lambda import lambda_handler, make_handler
from ._metrics import ListEmitter, LogEmitter, MetricsEmitter, emf_document

__all__ = [
    "DEFAULT_EXCHANGES",
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "OPERATIONS",
    "AsyncDataCollectionClient",
    "DataCollectionClient",
    "InvalidRequest",
    "ListEmitter",
    "LogEmitter",
    "MetricsEmitter",
    "Operation",
    "RemoteError",
    "build_call",
    "default_backoff",
    "default_base_url",
    "emf_document",
    "lambda_handler",
    "make_handler",
]
