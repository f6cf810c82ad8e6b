"""Metrics of the Lambda proxy as CloudWatch Embedded Metric Format (EMF) documents.

An emitter is any callable taking one EMF document (a JSON-able dict). The default,
:class:`LogEmitter`, writes it as one JSON line to the ``mdcollect.remote.metrics``
logger; in AWS Lambda that line lands in CloudWatch Logs, which extracts the metrics
(no AWS SDK, no extra request). :class:`ListEmitter` keeps documents for tests.

>>> doc = emf_document(
...     {"ProxyRequests": (1, "Count")}, {"Operation": "health", "Environment": "dev"},
...     timestamp=1_700_000_000_000,
... )
>>> doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
[['Operation', 'Environment']]
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any, Final, Literal, Protocol

__all__ = [
    "DEFAULT_NAMESPACE",
    "ListEmitter",
    "LogEmitter",
    "MetricsEmitter",
    "Unit",
    "emf_document",
]

DEFAULT_NAMESPACE: Final = "mdcollect/DataProxy"  # the proxy's, see ProxySettings
Unit = Literal["Count", "Milliseconds", "Seconds", "None"]

log: Final = logging.getLogger("mdcollect.remote.metrics")


class MetricsEmitter(Protocol):
    """Receives one EMF document per proxy invocation."""

    def __call__(self, document: Mapping[str, Any]) -> None: ...


def emf_document(
    metrics: Mapping[str, tuple[float, Unit]],
    dimensions: Mapping[str, str],
    *,
    namespace: str = DEFAULT_NAMESPACE,
    timestamp: int | None = None,
) -> dict[str, Any]:
    """An EMF document: the ``_aws`` metadata, then dimension and metric values."""
    doc: dict[str, Any] = {
        "_aws": {
            "Timestamp": int(time.time() * 1000) if timestamp is None else timestamp,
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [list(dimensions)],
                    "Metrics": [
                        {"Name": name, "Unit": unit} for name, (_, unit) in metrics.items()
                    ],
                }
            ],
        }
    }
    doc.update(dimensions)
    doc.update({name: value for name, (value, _) in metrics.items()})
    return doc


class LogEmitter:
    """Writes each document as one compact JSON line to a logger (INFO).

    >>> emitter = LogEmitter()                      # logger "mdcollect.remote.metrics"
    >>> emitter({"_aws": {...}, "ProxyRequests": 1})  # doctest: +SKIP
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger if logger is not None else log

    def __call__(self, document: Mapping[str, Any]) -> None:
        self.logger.info("%s", json.dumps(document, separators=(",", ":")))


class ListEmitter:
    """Keeps every document in :attr:`documents` (for tests).

    >>> emitter = ListEmitter()
    >>> emitter({"ProxyRequests": 1}); emitter.documents
    [{'ProxyRequests': 1}]
    """

    def __init__(self) -> None:
        self.documents: list[dict[str, Any]] = []

    def __call__(self, document: Mapping[str, Any]) -> None:
        self.documents.append(dict(document))
