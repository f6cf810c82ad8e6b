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
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from .._errors import MdcollectError
from .._redact import redact
from ._client import DataCollectionClient
from ._metrics import LogEmitter, MetricsEmitter, emf_document
from ._settings import ProxySettings, metrics_namespace

__all__ = ["make_handler"]

log: Final = logging.getLogger("mdcollect.remote")

Handler = Callable[[Any, Any], dict[str, Any]]


def make_handler(
    *,
    namespace: str | None = None,
    settings: ProxySettings | None = None,
    client_factory: Callable[[], DataCollectionClient] | None = None,
    emitter: MetricsEmitter | None = None,
    clock: Callable[[], float] = time.perf_counter,
    timestamp: Callable[[], int] | None = None,
) -> Handler:
    """A Lambda handler, its settings read and checked now (a cold start), not per call.

    ``settings`` default to :meth:`ProxySettings.from_env() <ProxySettings.from_env>`:
    a bad ``REQUEST_TIMEOUT`` (or any other setting) raises
    :class:`~mdcollect.InvalidRequest` here. ``namespace`` overrides the settings'
    CloudWatch namespace prefix; the metrics go to ``NAMESPACE/DataProxy``.
    ``client_factory`` makes the client for one invocation (default: a
    :class:`DataCollectionClient` configured from the settings); ``emitter`` receives one
    EMF document per invocation (default :class:`~mdcollect.remote.LogEmitter`);
    ``clock`` measures latency in seconds; ``timestamp`` stamps the EMF documents (ms).

    >>> from mdcollect.remote import ListEmitter, make_handler
    >>> handler = make_handler(namespace="tradai", emitter=ListEmitter())
    >>> handler({"operation": "health"}, None)["statusCode"]
    200
    """
    config = settings if settings is not None else ProxySettings.from_env()
    cloudwatch = metrics_namespace(namespace if namespace is not None else config.namespace)
    environment = config.environment
    emit: MetricsEmitter = emitter if emitter is not None else LogEmitter()

    def from_settings() -> DataCollectionClient:
        return DataCollectionClient(
            config.service_url,
            timeout=config.request_timeout,
            max_retries=config.max_retries,
            api_token=config.api_token,
        )

    make_client = client_factory if client_factory is not None else from_settings
    log.info(
        "proxy ready: environment %s, service %s, timeout %ss, %d retries, metrics namespace %s",
        environment, redact(config.service_url), config.request_timeout, config.max_retries,
        cloudwatch,
    )  # fmt: skip

    def handler(event: Any, _context: Any) -> dict[str, Any]:
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
            with make_client() as client:
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
                namespace=cloudwatch,
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


def default_handler() -> Handler:
    """The AWS Lambda entry point, served as ``mdcollect.remote.lambda_handler``.

    Its settings (:class:`ProxySettings`: ``ENVIRONMENT``, ``DATA_COLLECTION_URL`` /
    ``SERVICE_DISCOVERY_NAMESPACE``, ``REQUEST_TIMEOUT``, ``MAX_RETRIES``,
    ``METRICS_NAMESPACE``, ``MDCOLLECT_API_TOKEN``) are read and checked once, when the
    Lambda runtime loads ``mdcollect.remote.lambda_handler`` (the cold start), so a bad
    value fails the cold start with a clear message instead of the first call; metrics
    go to the log as EMF. ``import mdcollect.remote`` alone reads nothing.
    """
    handler = make_handler()
    handler.__name__ = handler.__qualname__ = "lambda_handler"
    handler.__doc__ = default_handler.__doc__
    return handler
