"""The Step Functions proxy: a Lambda handler that forwards one operation to the service.

Input ``{"operation": OP, "params": {...}}`` (``operation`` defaults to ``health``);
output, always::

    {"statusCode": 200,
     "body": {"success": true,
              "data": {"operation": OP, "result": RESULT},
              "environment": ENV}}

A failure (unknown operation, bad params, the service unreachable after retries, an
error answer) puts ``{"error": "..."}`` in ``RESULT`` and still answers 200, so the
Step Functions task does not fail and the state machine decides what to do.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from .._errors import MdcollectError
from .._redact import redact
from ._client import DataCollectionClient
from ._metrics import LogEmitter, MetricsEmitter, emf_document

__all__ = ["DEFAULT_ENVIRONMENT", "lambda_handler", "make_handler"]

log: Final = logging.getLogger("mdcollect.remote")

DEFAULT_ENVIRONMENT: Final = "dev"

Handler = Callable[[Any, Any], dict[str, Any]]


def _environment() -> str:
    return os.environ.get("ENVIRONMENT", "").strip() or DEFAULT_ENVIRONMENT


def make_handler(
    *,
    client_factory: Callable[[], DataCollectionClient] = DataCollectionClient,
    emitter: MetricsEmitter | None = None,
    clock: Callable[[], float] = time.perf_counter,
    timestamp: Callable[[], int] | None = None,
) -> Handler:
    """A Lambda handler with its collaborators replaced (for tests and custom wiring).

    ``client_factory`` makes the client for one invocation (its configuration comes
    from the environment by default); ``emitter`` receives one EMF document per
    invocation (default :class:`~mdcollect.remote.LogEmitter`); ``clock`` measures
    latency in seconds; ``timestamp`` stamps the EMF documents (ms).

    >>> from mdcollect.remote import ListEmitter, make_handler
    >>> handler = make_handler(emitter=ListEmitter())
    >>> handler({"operation": "health"}, None)["statusCode"]
    200
    """
    emit: MetricsEmitter = emitter if emitter is not None else LogEmitter()

    def handler(event: Any, context: Any) -> dict[str, Any]:
        environment = _environment()
        event = event if isinstance(event, Mapping) else {}
        operation = event.get("operation") or "health"
        params = event.get("params") or {}
        op_name = operation if isinstance(operation, str) else repr(operation)
        started = clock()
        failed = True
        try:
            if not isinstance(operation, str):
                raise MdcollectError(f"operation must be a string, got {operation!r}")
            if not isinstance(params, Mapping):
                raise MdcollectError(f"params must be an object, got {params!r}")
            with client_factory() as client:
                result: Any = client.request(operation, params)
            failed = False
        except MdcollectError as exc:
            log.warning("proxy %s failed: %s", op_name, exc)
            result = {"error": str(exc)}
        except Exception as exc:  # the Step Functions task must not fail; log the bug
            log.exception("proxy %s failed unexpectedly", op_name)
            result = {"error": redact(f"{type(exc).__name__}: {exc}")}
        latency_ms = round((clock() - started) * 1000, 3)
        emit(
            emf_document(
                {
                    "ProxyRequests": (1, "Count"),
                    "ProxyLatency": (latency_ms, "Milliseconds"),
                    "ProxyErrors": (1 if failed else 0, "Count"),
                },
                {"Operation": op_name, "Environment": environment},
                timestamp=None if timestamp is None else timestamp(),
            )
        )
        return {
            "statusCode": 200,
            "body": {
                "success": True,
                "data": {"operation": op_name, "result": result},
                "environment": environment,
            },
        }

    return handler


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """The AWS Lambda entry point (``mdcollect.remote.lambda_handler``).

    The service's address, timeout and retries come from ``DATA_COLLECTION_URL`` /
    ``SERVICE_DISCOVERY_NAMESPACE``, ``REQUEST_TIMEOUT`` and ``MAX_RETRIES``; the
    environment name from ``ENVIRONMENT``; metrics go to the log as EMF.

    >>> lambda_handler({"operation": "ensure-data", "params": {
    ...     "symbols": ["BTC/USDT:USDT"], "timeframe": "1h",
    ...     "start_date": "20240201", "end_date": "20240228"}}, None)["statusCode"]
    200
    """
    return _default_handler(event, context)


_default_handler: Final = make_handler()
