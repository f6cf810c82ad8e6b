"""The service's OpenAPI 3.0 document, written by hand from the API's rules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._api import (
    COLLECTOR_ACTIONS,
    DATE_PATTERN,
    DEFAULT_LIMIT,
    MAX_AUDIT_KEYS,
    MAX_COLLECTOR_NAME,
    MAX_LIMIT,
    MAX_SYMBOL_LENGTH,
    MAX_SYMBOLS,
    ROW_KINDS,
    TIMEFRAME_PATTERN,
)
from .._keys import CANDLE_KINDS, HISTORY_KINDS, KINDS
from .._rules import MAX_PADDING_DAYS
from .._time import DEFAULT_PADDING_DAYS

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "invalid input; the message names the bad value",
        401: "missing or wrong bearer token",
        403: "not allowed by this service (repair needs a service with an API token)",
        404: "unknown job, collector or dataset (the message names it)",
        409: "the job is not running",
        413: "request body too large",
        502: "the exchange failed",
        503: "the storage failed",
    }
    return {str(c): _json(_ERROR, text[c]) for c in codes}


def openapi_document(
    exchanges: Sequence[str], *, version: str, secured: bool, max_body: int
) -> dict[str, Any]:
    """The document for a service allowing ``exchanges`` (``secured``: bearer auth on)."""
    symbol = {
        "type": "string",
        "minLength": 3,
        "maxLength": MAX_SYMBOL_LENGTH,
        "pattern": "/",
        "example": "BTC/USDT:USDT",
    }
    exchange = {"type": "string", "enum": list(exchanges), "default": exchanges[0]}
    timeframe = {"type": "string", "pattern": TIMEFRAME_PATTERN, "default": "1h", "example": "1h"}
    date = {"type": "string", "pattern": DATE_PATTERN, "example": "2024-02-01"}
    bound = {
        "description": "ms since the epoch, YYYYMMDD, YYYY-MM-DD or ISO 8601 "
        "(a bare end date counts whole)",
        "schema": {"type": "string", "example": "2024-01-02"},
    }
    security: list[dict[str, list[str]]] = [{"bearer": []}] if secured else []
    auth_errors = (401,) if secured else ()

    def op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {"summary": summary, "security": security, "responses": responses, **extra}

    candles = {
        "type": "object",
        "required": ["exchange", "symbol", "timeframe", "count", "columns", "data"],
        "properties": {
            "exchange": {"type": "string"},
            "symbol": {"type": "string"},
            "timeframe": {"type": "string"},
            "kind": {"type": "string", "enum": list(CANDLE_KINDS)},
            "count": {"type": "integer"},
            "columns": {"type": "array", "items": {"type": "string"}},
            "data": {"type": "array", "items": {"type": "array", "items": {}}},
        },
    }
    rows = {
        "type": "object",
        "required": ["exchange", "symbol", "kind", "count", "columns", "data"],
        "properties": {
            "exchange": {"type": "string"},
            "symbol": {"type": "string"},
            "kind": {"type": "string", "enum": list(ROW_KINDS)},
            "count": {"type": "integer"},
            "columns": {"type": "array", "items": {"type": "string"}},
            "data": {"type": "array", "items": {"type": "array", "items": {}}},
        },
    }
    limit = {
        "name": "limit",
        "in": "query",
        "schema": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_LIMIT,
            "default": DEFAULT_LIMIT,
        },
    }
    sync_body = {
        "type": "object",
        "required": ["symbols", "start_date", "end_date"],
        "additionalProperties": False,
        "properties": {
            "symbols": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_SYMBOLS,
                "uniqueItems": True,
                "items": symbol,
            },
            "timeframe": timeframe,
            "start_date": date,
            "end_date": date,
            "exchange": exchange,
            "padding_days": {
                "type": "integer",
                "minimum": 0,
                "maximum": MAX_PADDING_DAYS,
                "default": DEFAULT_PADDING_DAYS,
            },
            "kinds": {
                "type": "array",
                "minItems": 1,
                "items": {"type": "string", "enum": list(HISTORY_KINDS)},
                "default": ["ohlcv"],
                "description": "kinds of history to ensure, each over the padded range",
            },
        },
        "example": {
            "symbols": ["BTC/USDT:USDT"],
            "timeframe": "1h",
            "start_date": "2024-01-02",
            "end_date": "2024-02-28",
            "exchange": exchanges[0],
        },
    }
    job = {"$ref": "#/components/schemas/SyncJob"}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "mdcollect data-collection service",
            "version": version,
            "description": "Candles served from a mdcollect storage; POST /api/v1/sync "
            f"makes sure a range is stored. Request bodies are at most {max_body} bytes.",
        },
        "paths": {
            "/api/v1/health": {
                "get": {
                    "summary": "Liveness (never needs a token)",
                    "security": [],
                    "responses": {"200": _json({"type": "object"}, "healthy")},
                }
            },
            "/api/v1/ohlcv": {
                "get": op(
                    "Stored candles of one symbol",
                    {"200": _json(candles, "candles"), **_errors(400, *auth_errors, 503)},
                    parameters=[
                        {"name": "symbol", "in": "query", "required": True, "schema": symbol},
                        {"name": "timeframe", "in": "query", "schema": timeframe},
                        limit,
                        {"name": "start", "in": "query", **bound},
                        {"name": "end", "in": "query", **bound},
                        {"name": "exchange", "in": "query", "schema": exchange},
                        {
                            "name": "kind",
                            "in": "query",
                            "description": "whose candles: last price (ohlcv), or on "
                            "perpetuals the mark price, index price or premium index",
                            "schema": {
                                "type": "string",
                                "enum": list(CANDLE_KINDS),
                                "default": "ohlcv",
                            },
                        },
                    ],
                )
            },
            "/api/v1/data": {
                "get": op(
                    "Stored rows of one symbol of a kind without a timeframe (trades, "
                    "funding settlements): the first limit from start, else the latest",
                    {"200": _json(rows, "rows"), **_errors(400, *auth_errors, 503)},
                    parameters=[
                        {
                            "name": "kind",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string", "enum": list(ROW_KINDS)},
                        },
                        {"name": "symbol", "in": "query", "required": True, "schema": symbol},
                        limit,
                        {"name": "start", "in": "query", **bound},
                        {"name": "end", "in": "query", **bound},
                        {"name": "exchange", "in": "query", "schema": exchange},
                    ],
                )
            },
            "/metrics": {
                "get": op(
                    "Prometheus metrics: exchange requests, retries, 429/418 and "
                    "Retry-After waits per exchange; the process's CPU and memory",
                    {
                        "200": {
                            "description": "the Prometheus text format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        **_errors(*auth_errors),
                    },
                )
            },
            "/api/v1/symbols": {
                "get": op(
                    "Symbols with stored candles, and their datasets",
                    {"200": _json({"type": "object"}, "symbols"), **_errors(*auth_errors, 503)},
                )
            },
            "/api/v1/status": {
                "get": op(
                    "Storage, datasets, allowed exchanges and sync jobs",
                    {"200": _json({"type": "object"}, "status"), **_errors(*auth_errors, 503)},
                )
            },
            "/api/v1/sync": {
                "get": op(
                    "The sync jobs kept (running ones, finished ones for an hour), oldest first",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["count", "jobs"],
                                "properties": {
                                    "count": {"type": "integer", "minimum": 0},
                                    "jobs": {"type": "array", "items": job},
                                },
                            },
                            "the jobs",
                        ),
                        **_errors(400, *auth_errors),
                    },
                ),
                "post": op(
                    "Ensure candles are stored (ensure_data); background when slow; "
                    "an identical running sync is joined, not repeated",
                    {
                        "200": _json(job, "done: the ensure report"),
                        "202": _json(job, "still running in the background: poll its job"),
                        **_errors(400, *auth_errors, 413, 502),
                        "503": {
                            **_json(
                                _ERROR,
                                "the storage failed; or max_jobs sync jobs are running (a "
                                "request identical to a running one joins it instead): retry "
                                "after Retry-After seconds; or the service is stopping",
                            ),
                            "headers": {
                                "Retry-After": {
                                    "description": "seconds to wait before retrying (when full)",
                                    "schema": {"type": "integer", "minimum": 1},
                                }
                            },
                        },
                    },
                    requestBody={
                        "required": True,
                        "content": {"application/json": {"schema": sync_body}},
                    },
                ),
            },
            "/api/v1/datasets": {
                "get": op(
                    "The catalog: one entry per stored dataset (rows, first/last, coverage, "
                    "holes, bytes, last write, lineage), from metadata; filterable",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["count", "datasets"],
                                "properties": {
                                    "count": {"type": "integer", "minimum": 0},
                                    "datasets": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Dataset"},
                                    },
                                },
                            },
                            "the datasets",
                        ),
                        **_errors(400, *auth_errors, 503),
                    },
                    parameters=[
                        {
                            "name": "exchange",
                            "in": "query",
                            "schema": {
                                "type": "string",
                                "pattern": "^[a-z][a-z0-9_]*$",
                                "maxLength": 64,
                                "example": "binance",
                            },
                        },
                        {"name": "symbol", "in": "query", "schema": symbol},
                        {
                            "name": "kind",
                            "in": "query",
                            "schema": {"type": "string", "enum": list(KINDS)},
                        },
                    ],
                )
            },
            "/api/v1/sync/{job_id}": {
                "delete": _cancel_job(op, job, auth_errors),
                "get": op(
                    "A sync job's status and report",
                    {"200": _json(job, "the job"), **_errors(*auth_errors, 404)},
                    parameters=[
                        {
                            "name": "job_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "maxLength": 64},
                        }
                    ],
                ),
            },
            "/api/v1/audit": _audit_path(op, bound, auth_errors),
            **_collector_paths(op, auth_errors),
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                },
                "Dataset": {
                    "type": "object",
                    "description": "one catalog entry; times in ms since the epoch (UTC)",
                    "required": ["key", "exchange", "symbol", "kind", "rows", "sources"],
                    "properties": {
                        "key": {"type": "string"},
                        "exchange": {"type": "string"},
                        "symbol": {"type": "string"},
                        "kind": {"type": "string"},
                        "timeframe": {"type": "string", "nullable": True},
                        "rows": {"type": "integer", "minimum": 0},
                        "first": {"type": "integer", "nullable": True},
                        "last": {"type": "integer", "nullable": True},
                        "covered_from": {"type": "integer", "nullable": True},
                        "covered_to": {"type": "integer", "nullable": True},
                        "covered_fraction": {"type": "number", "nullable": True},
                        "holes": {"type": "integer", "minimum": 0},
                        "bytes": {"type": "integer", "nullable": True},
                        "last_write": {"type": "integer", "nullable": True},
                        "lineage": {"type": "string", "nullable": True},
                        "sources": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "SyncJob": {
                    "type": "object",
                    "required": ["job_id", "status", "background"],
                    "properties": {
                        "job_id": {"type": "string"},
                        "status": {
                            "type": "string",
                            "enum": ["running", "completed", "failed", "cancelled"],
                        },
                        "background": {"type": "boolean"},
                        "joined": {
                            "type": "integer",
                            "description": "identical requests that joined this running job",
                        },
                        "message": {"type": "string"},
                        "request": {"type": "object"},
                        "report": {"type": "object", "nullable": True},
                        "error": {"type": "string", "nullable": True},
                    },
                },
            },
        },
    }


def _audit_path(op: Any, bound: dict[str, Any], auth_errors: tuple[int, ...]) -> dict[str, Any]:
    """``/api/v1/audit``: GET audits read-only (``repair=true`` repairs too), POST repairs;
    repairing needs a service with an API token (403 otherwise)."""
    finding = {
        "type": "object",
        "required": ["key", "check", "severity", "start", "end", "count", "detail"],
        "properties": {
            "key": {"type": "string"},
            "check": {"type": "string"},
            "severity": {"type": "string", "enum": ["error", "warning"]},
            "start": {"type": "integer", "description": "ms, first affected timestamp"},
            "end": {"type": "integer", "description": "ms, exclusive end of the span"},
            "count": {"type": "integer"},
            "detail": {"type": "string"},
        },
    }
    report = {
        "type": "object",
        "required": ["ok", "datasets", "repaired"],
        "properties": {
            "ok": {"type": "boolean", "description": "no error-severity finding left"},
            "datasets": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["key", "rows", "score", "ok", "findings"],
                    "properties": {
                        "key": {"type": "string"},
                        "rows": {"type": "integer"},
                        "score": {"type": "number", "minimum": 0, "maximum": 1},
                        "ok": {"type": "boolean"},
                        "findings": {"type": "array", "items": finding},
                    },
                },
            },
            "repaired": {"type": "array", "items": finding},
        },
    }
    params = [
        {
            "name": "key",
            "in": "query",
            "description": "dataset key, repeatable (none: every stored dataset)",
            "schema": {"type": "string", "example": "binance_futures:ohlcv:1h:BTC/USDT:USDT"},
        },
        {"name": "start", "in": "query", **bound},
        {"name": "end", "in": "query", **bound},
    ]
    repair = {
        "name": "repair",
        "in": "query",
        "description": "delete what is wrong and refetch exactly those spans (needs the token)",
        "schema": {"type": "string", "enum": ["true", "false"], "default": "false"},
    }
    responses = {"200": _json(report, "the audit report"), **_errors(400, *auth_errors, 403, 404)}
    return {
        "get": op(
            f"Audit stored rows (at most {MAX_AUDIT_KEYS} keys): holes, duplicates, bad "
            "candles, cross-kind checks, a score per dataset",
            {**responses, **_errors(502, 503)},
            parameters=[*params, repair],
        ),
        "post": op(
            "Audit and repair: delete the bad spans, refetch them, audit again",
            {**responses, **_errors(502, 503)},
            parameters=params,
        ),
    }


def _cancel_job(op: Any, job: dict[str, Any], auth_errors: tuple[int, ...]) -> dict[str, Any]:
    """``DELETE /api/v1/sync/{job_id}``: cancel a running job (needs the token)."""
    cancel: dict[str, Any] = op(
        "Cancel a running sync job: it stops at a window boundary, the writes it started "
        "complete (coverage stays true); needs a service with an API token",
        {"200": _json(job, "the cancelled job"), **_errors(*auth_errors, 403, 404, 409)},
        parameters=[
            {
                "name": "job_id",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "maxLength": 64},
            }
        ],
    )
    return cancel


def _collector_paths(op: Any, auth_errors: tuple[int, ...]) -> dict[str, Any]:
    """The collectors a service runs (``mdcollect serve --collect``): their status, and
    restart/enable/disable by name (needs the token: 403 otherwise)."""
    status = {
        "type": "object",
        "required": ["collecting", "collectors"],
        "properties": {
            "collecting": {"type": "boolean", "description": "this service runs collectors"},
            "collectors": {
                "type": "object",
                "description": "per collector name: state, rows_per_second, lag_seconds, "
                "reconnects, connection_uptime, restarts, last error, issues...",
                "additionalProperties": {"type": "object"},
            },
            "is_healthy": {"type": "boolean"},
            "process": {"type": "object"},
        },
    }
    return {
        "/api/v1/collectors": {
            "get": op(
                "The status of the collectors this service runs (DataCollector.status())",
                {"200": _json(status, "the status"), **_errors(400, *auth_errors)},
            )
        },
        "/api/v1/collectors/{name}/{action}": {
            "post": op(
                "Restart, enable or disable one collector by name (needs the token)",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["name", "action", "collector"],
                            "properties": {
                                "name": {"type": "string"},
                                "action": {"type": "string", "enum": list(COLLECTOR_ACTIONS)},
                                "collector": {"type": "object"},
                            },
                        },
                        "done; the collector's status",
                    ),
                    **_errors(400, *auth_errors, 403, 404),
                },
                parameters=[
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "description": "the collector's name (it may hold '/', as symbols do)",
                        "schema": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": MAX_COLLECTOR_NAME,
                            "example": "binance:trades:BTC/USDT",
                        },
                    },
                    {
                        "name": "action",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "enum": list(COLLECTOR_ACTIONS)},
                    },
                ],
            )
        },
    }
