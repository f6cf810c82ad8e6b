"""Moved: the ``/api/v1`` contract is :mod:`mdcollect._api`, the input rules are
:mod:`mdcollect._rules`. These names stay importable from here for code that has not
moved yet; import them from :mod:`mdcollect._api`."""

from __future__ import annotations

from .._api import (
    DATE_PATTERN,
    DEFAULT_EXCHANGE,
    DEFAULT_EXCHANGES,
    DEFAULT_LIMIT,
    DEFAULT_TIMEFRAME,
    MAX_LIMIT,
    MAX_SYMBOL_LENGTH,
    MAX_SYMBOLS,
    TIMEFRAME_PATTERN,
    OhlcvQuery,
    SyncRequest,
    check_exchange,
    format_date,
    ohlcv_query,
    sync_request,
    sync_request_from_json,
)
from .._rules import MAX_PADDING_DAYS

__all__ = [
    "DATE_PATTERN",
    "DEFAULT_EXCHANGE",
    "DEFAULT_EXCHANGES",
    "DEFAULT_LIMIT",
    "DEFAULT_TIMEFRAME",
    "MAX_LIMIT",
    "MAX_PADDING_DAYS",
    "MAX_SYMBOLS",
    "MAX_SYMBOL_LENGTH",
    "TIMEFRAME_PATTERN",
    "OhlcvQuery",
    "SyncRequest",
    "check_exchange",
    "format_date",
    "ohlcv_query",
    "sync_request",
    "sync_request_from_json",
]
