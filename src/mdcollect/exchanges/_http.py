"""The aiohttp session handed to ccxt, traced to see each response of each request.

ccxt keeps only ``exchange.last_response_headers``: one slot per exchange
instance, overwritten by whichever concurrent request finished last (and
``async with response`` may yield before ccxt raises). To read the status and
``Retry-After`` of *this* request, the session carries an aiohttp
``TraceConfig``; its callbacks run inside the task that made the request and
write into the :class:`ResponseRecord` that task put in a ``ContextVar``.
Concurrent calls run in separate tasks, so each sees its own response (ccxt's
``load_markets`` runs in a task of its own, which inherits the context). This
uses ccxt's ``session`` option and aiohttp's public tracing API.

ccxt swallows a body that is not valid JSON (``parse_json`` returns ``None``) and
its parsers then return garbage or an empty list: a silent gap. ccxt's hook
for parsing, ``on_json_response``, is wrapped per instance by
:func:`track_malformed_json` to flag the record, so the call is retried instead.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from types import SimpleNamespace
from typing import Any, Final

import aiohttp
from attrs import define

from .._backoff import parse_retry_after

__all__ = [
    "EMULATOR_HEADER",
    "ExchangeTotals",
    "ResponseRecord",
    "SessionStats",
    "all_exchange_totals",
    "current_record",
    "exchange_totals",
    "make_session",
    "parse_retry_after",
    "request_tally",
    "track_malformed_json",
]

#: The record of the call running in the current task, if any.
current_record: Final[ContextVar[ResponseRecord | None]] = ContextVar(
    "mdcollect_exchange_response", default=None
)


#: A per-task tally of HTTP requests: set a fresh one in a task (and the tasks it
#: starts) to count the requests made on its behalf across shared clients.
request_tally: Final[ContextVar[SessionStats | None]] = ContextVar(
    "mdcollect_request_tally", default=None
)


#: The header :class:`mdcollect.testing.ExchangeEmulator` puts on every answer.
EMULATOR_HEADER: Final = "X-Mdcollect-Emulator"


@define
class SessionStats:
    """Counts the HTTP requests a session started (retries included), and notes whether
    any answer came from the exchange emulator (synthetic data). ``totals``, when
    given, is the exchange's process-wide tally (:func:`exchange_totals`)."""

    requests: int = 0
    emulator: bool = False
    totals: ExchangeTotals | None = None


@define
class ExchangeTotals:
    """What every client of one exchange asked and met in this process: requests,
    retries, 429 and 418 answers, and seconds waited on ``Retry-After``. Read by
    metrics (:mod:`mdcollect.metrics`); counts only grow."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    banned: int = 0
    retry_after_seconds: float = 0.0


_TOTALS: Final[dict[str, ExchangeTotals]] = {}


def exchange_totals(key: str) -> ExchangeTotals:
    """The process-wide tally of exchange ``key`` (made on first use)."""
    return _TOTALS.setdefault(key, ExchangeTotals())


def all_exchange_totals() -> dict[str, ExchangeTotals]:
    """A snapshot of the tallies of every exchange a client was made for."""
    return dict(_TOTALS)


@define
class ResponseRecord:
    """Status and ``Retry-After`` of the last response seen in one call, and whether
    any response of the call was malformed JSON."""

    requests: int = 0
    status: int | None = None
    retry_after: float | None = None
    malformed: bool = False
    host: str | None = None


def _counter(stats: SessionStats) -> Callable[..., Awaitable[None]]:
    async def on_request_start(
        session: aiohttp.ClientSession,
        ctx: SimpleNamespace,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        stats.requests += 1
        if stats.totals is not None:
            stats.totals.requests += 1
        tally = request_tally.get()
        if tally is not None:
            tally.requests += 1

    return on_request_start


def _emulator_spotter(stats: SessionStats) -> Callable[..., Awaitable[None]]:
    async def on_request_end(
        session: aiohttp.ClientSession,
        ctx: SimpleNamespace,
        params: aiohttp.TraceRequestEndParams,
    ) -> None:
        if EMULATOR_HEADER in params.response.headers:
            stats.emulator = True
        totals = stats.totals
        if totals is not None:
            status = params.response.status
            if status == 429:
                totals.rate_limited += 1
            elif status == 418:
                totals.banned += 1

    return on_request_end


async def _on_request_start(
    session: aiohttp.ClientSession, ctx: SimpleNamespace, params: aiohttp.TraceRequestStartParams
) -> None:
    record = current_record.get()
    if record is not None:
        record.requests += 1
        record.status = None
        record.retry_after = None


async def _on_request_end(
    session: aiohttp.ClientSession, ctx: SimpleNamespace, params: aiohttp.TraceRequestEndParams
) -> None:
    record = current_record.get()
    if record is not None:
        record.status = params.response.status
        record.retry_after = parse_retry_after(params.response.headers.get("Retry-After"))
        record.host = params.url.host


def track_malformed_json(
    loads: Callable[[str], Any], on_body: Callable[[Any], None] | None = None
) -> Callable[[str], Any]:
    """Wrap ccxt's ``on_json_response`` to flag the current record when parsing fails,
    and hand each parsed body to ``on_body`` (a budget announced in it)."""

    def on_json_response(text: str) -> Any:
        try:
            body = loads(text)
        except ValueError:
            record = current_record.get()
            if record is not None:
                record.malformed = True
            raise
        if on_body is not None:
            on_body(body)
        return body

    return on_json_response


def _answer_observer(
    on_answer: Callable[[Mapping[str, str]], None],
) -> Callable[..., Awaitable[None]]:
    async def on_request_end(
        session: aiohttp.ClientSession,
        ctx: SimpleNamespace,
        params: aiohttp.TraceRequestEndParams,
    ) -> None:
        on_answer(params.response.headers)

    return on_request_end


def _trace_config(
    stats: SessionStats, on_answer: Callable[[Mapping[str, str]], None] | None = None
) -> aiohttp.TraceConfig:
    trace = aiohttp.TraceConfig()
    if on_answer is not None:
        trace.on_request_end.append(_answer_observer(on_answer))
    trace.on_request_start.append(_counter(stats))
    trace.on_request_start.append(_on_request_start)
    trace.on_request_end.append(_on_request_end)
    trace.on_request_end.append(_emulator_spotter(stats))
    return trace


@functools.cache
def _ssl_context(cafile: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cafile)


async def make_session(
    stats: SessionStats,
    *,
    verify: bool,
    cafile: str | None,
    trust_env: bool,
    on_answer: Callable[[Mapping[str, str]], None] | None = None,
) -> aiohttp.ClientSession:
    """A session like the one ccxt would open itself, plus the response trace;
    ``on_answer`` sees the headers of every answer (in the task that asked)."""
    ssl_option: ssl.SSLContext | bool = False
    if verify:
        # reading the CA bundle is file I/O: keep it off the event loop
        ssl_option = await asyncio.to_thread(_ssl_context, cafile)
    connector = aiohttp.TCPConnector(ssl=ssl_option)
    return aiohttp.ClientSession(
        connector=connector, trust_env=trust_env, trace_configs=[_trace_config(stats, on_answer)]
    )
