"""The ASGI app: the data-collection API on Starlette, served from a storage."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

import pandas as pd
from attrs import field, frozen

from .._errors import missing_extra

try:
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route
    from starlette.types import ASGIApp, Receive, Scope, Send
except ImportError as _exc:
    raise ImportError(missing_extra("mdcollect.service", "service", _exc)) from _exc

from .. import __version__
from .._api import (
    AUDIT_PARAMS,
    DEFAULT_EXCHANGES,
    AuditQuery,
    DataQuery,
    OhlcvQuery,
    SyncRequest,
    audit_query,
    check_exchange,
    collector_action,
    data_query,
    datasets_query,
    ohlcv_query,
    sync_request_from_json,
)
from .._errors import ExchangeError, InvalidRequest, MdcollectError, StorageError
from .._intervals import Interval
from .._keys import DatasetKey
from .._rules import positive
from .._schema import empty_frame
from .._time import DAY, Timeframe, index_ms, now_ms
from ..audit import AuditReport, audit_async
from ..catalog import catalog, records
from ..ensure import ensure_data_async
from ..exchanges import ExchangeClient, exchange_info
from ..storage import DataCollectionStorage, open_storage
from ._jobs import DEFAULT_MAX_JOBS, Jobs, JobsFull, error_status
from ._openapi import openapi_document
from ._page import PAGE_CSP, PAGE_DATASETS, PAGE_REFRESH, PAGE_WINDOW, DatasetCoverage, render_page

if TYPE_CHECKING:
    from types import FrameType

    from ..collectors import DataCollector

__all__ = [
    "DEFAULT_MAX_BODY",
    "DEFAULT_MAX_JOBS",
    "DEFAULT_SYNC_TIMEOUT",
    "ServiceOptions",
    "create_app",
    "serve",
]

log: Final = logging.getLogger("mdcollect.service")

DEFAULT_SYNC_TIMEOUT: Final = 25.0
DEFAULT_MAX_BODY: Final = 64 * 1024
DEFAULT_MAX_SYNC_CANDLES: Final = 50_000_000
_OPEN_PATHS: Final = frozenset({"/api/v1/health", "/openapi.json"})
_OHLCV_PARAMS: Final = frozenset(
    {"symbol", "timeframe", "limit", "start", "end", "exchange", "kind"}
)
_DATA_PARAMS: Final = frozenset({"kind", "symbol", "limit", "start", "end", "exchange"})
_JOB_ID_RE: Final = re.compile(r"^[0-9a-f]{32}$")
_DATASETS_PARAMS: Final = frozenset({"exchange", "symbol", "kind"})
#: The status page: a browser may send the API token as a Basic password there.
_PAGE_PATH: Final = "/"
_NO_PARAMS: Final = frozenset[str]()

ExchangeFactory = Callable[[str], ExchangeClient | str]


@frozen
class ServiceOptions:
    """The bounds of a service (the options of :func:`create_app`), each checked.

    >>> ServiceOptions(max_jobs=0)
    Traceback (most recent call last):
    ...
    mdcollect.InvalidRequest: max_jobs must be a positive integer, got 0
    """

    #: seconds a sync request waits before answering 202 with a job id
    sync_timeout: float = field(default=DEFAULT_SYNC_TIMEOUT, validator=positive())
    #: bytes of a request body at most
    max_body: int = field(default=DEFAULT_MAX_BODY, validator=positive())
    #: candles one sync may cover at most
    max_sync_candles: int = field(default=DEFAULT_MAX_SYNC_CANDLES, validator=positive())
    #: sync jobs running at once
    max_jobs: int = field(default=DEFAULT_MAX_JOBS, validator=positive(integer=True))


def _timeframe_served(timeframe: object, exchange: str) -> Timeframe:
    """The exchange's own timeframe rule (the client, without ccxt, checks ccxt's set)."""
    return exchange_info(exchange).check_timeframe(timeframe)


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class _BearerAuth:
    """Refuses requests without ``Authorization: Bearer <token>`` (401), but health."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in _OPEN_PATHS:
            given = b""
            for name, value in scope["headers"]:
                if name == b"authorization":
                    given = value
            scheme, _, token = given.partition(b" ")
            page = scope["path"] == _PAGE_PATH
            if page and scheme.lower() == b"basic":
                token = _basic_password(token)
                scheme = b"bearer"
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self._token):
                message = "missing bearer token" if not given else "wrong bearer token"
                # a browser asks for the page's password (the token, any user name)
                challenge = 'Basic realm="mdcollect", charset="UTF-8"' if page else "Bearer"
                response = _error(401, message, {"WWW-Authenticate": challenge})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _basic_password(credentials: bytes) -> bytes:
    """The password of HTTP Basic ``credentials`` (``b""`` when malformed)."""
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True)
    except binascii.Error:
        return b""
    return decoded.partition(b":")[2]


class _Service:
    """The endpoints and what they share."""

    def __init__(
        self,
        storage: DataCollectionStorage,
        allowed_exchanges: tuple[str, ...],
        exchange_factory: ExchangeFactory | None,
        options: ServiceOptions,
        secured: bool,
    ) -> None:
        self.storage = storage
        self.allowed_exchanges = allowed_exchanges
        self.exchange_factory = exchange_factory
        self.sync_timeout = options.sync_timeout
        self.max_body = options.max_body
        self.max_sync_candles = options.max_sync_candles
        self.secured = secured
        self.jobs = Jobs(max_running=options.max_jobs)
        self.loop: asyncio.AbstractEventLoop | None = None  # the serving loop, once started
        self.started = time.monotonic()
        self.openapi = openapi_document(
            allowed_exchanges, version=__version__, secured=secured, max_body=options.max_body
        )
        #: the collectors this service runs (``mdcollect serve --collect``), if any
        self.collector: DataCollector | None = None

    # -- endpoints (plain functions run in the thread pool: storage calls block) -------------
    def health(self, request: Request) -> JSONResponse:
        return JSONResponse(
            {"status": "healthy", "service": "data-collection", "version": __version__}
        )

    def openapi_json(self, request: Request) -> JSONResponse:
        return JSONResponse(self.openapi)

    async def metrics(self, request: Request) -> Response:
        """The exchange, process and (``serve --collect``) collector metrics; read on the
        loop the collectors run on, as ``GET /api/v1/collectors`` reads their status."""
        from prometheus_client import CONTENT_TYPE_LATEST

        from ..metrics import metrics_text

        return Response(metrics_text(self.collector), media_type=CONTENT_TYPE_LATEST)

    def ohlcv(self, request: Request) -> JSONResponse:
        query = self._ohlcv_query(request)
        key = DatasetKey(query.exchange, query.symbol, query.kind, query.timeframe)
        step = Timeframe.parse(query.timeframe).ms * query.limit
        # a bounded read: the `limit` candle slots from start, else the last ones before end
        if query.start is not None:
            lo, hi = query.start, query.start + step
            if query.end is not None:
                hi = min(hi, query.end)
        else:
            hi = query.end if query.end is not None else now_ms()
            lo = max(0, hi - step)
        frame = self.storage.read(key, lo, hi)
        frame = frame.head(query.limit) if query.start is not None else frame.tail(query.limit)
        return JSONResponse(
            {
                "exchange": query.exchange,
                "symbol": query.symbol,
                "timeframe": query.timeframe,
                "kind": query.kind,
                **_rows(frame),
            }
        )

    def data(self, request: Request) -> JSONResponse:
        params = _query_params(request, _DATA_PARAMS)
        if "kind" not in params or "symbol" not in params:
            raise InvalidRequest(
                "the kind and symbol parameters are required, e.g. kind=funding&symbol=BTC/USDT:USDT"
            )
        query = data_query(**params, allowed_exchanges=self.allowed_exchanges)
        frame = self._read_rows(query)
        return JSONResponse(
            {"exchange": query.exchange, "symbol": query.symbol, "kind": query.kind, **_rows(frame)}
        )

    def symbols(self, request: Request) -> JSONResponse:
        keys = self.storage.keys(kind="ohlcv")
        datasets = [
            {
                "key": str(k),
                "exchange": k.exchange,
                "symbol": k.symbol,
                "timeframe": k.timeframe,
                "coverage": self.storage.coverage(k).to_list(),
            }
            for k in keys
        ]
        return JSONResponse({"symbols": sorted({k.symbol for k in keys}), "datasets": datasets})

    def status(self, request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "status": "ok",
                "version": __version__,
                "storage": self.storage.url,  # credentials masked
                "datasets": len(self.storage.keys()),
                "allowed_exchanges": list(self.allowed_exchanges),
                "auth": self.secured,
                "sync_timeout": self.sync_timeout,
                "max_jobs": self.jobs.max_running,
                "jobs": self.jobs.counts(),
                "uptime_seconds": round(time.monotonic() - self.started, 3),
            }
        )

    async def sync(self, request: Request) -> JSONResponse:
        body = await self._json_body(request)
        sync = sync_request_from_json(
            body, allowed_exchanges=self.allowed_exchanges, check_timeframe=_timeframe_served
        )
        self._check_size(sync)
        try:
            job, joined = self.jobs.submit(sync, lambda: self._ensure(sync))
        except JobsFull as exc:
            log.warning("sync refused: %s", exc)
            retry = None if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}
            return _error(503, str(exc), retry)
        if joined:
            log.info("sync joins the identical running job %s", job.id)
        else:
            log.info("sync job %s: %s", job.id, sync.body())
        await asyncio.wait([job.task], timeout=self.sync_timeout)
        if not job.task.done():
            job.background = True
            log.info("sync job %s continues in the background", job.id)
            return JSONResponse(job.to_dict(), status_code=202)
        if job.status == "failed":
            return _error(job.http_status, job.error or "failed")
        return JSONResponse(job.to_dict())

    async def sync_job(self, request: Request) -> JSONResponse:
        job_id = request.path_params["job_id"]
        job = self.jobs.get(job_id) if _JOB_ID_RE.match(job_id) else None
        if job is None:
            return _error(404, f"no sync job {job_id[:64]!r} (unknown, or forgotten)")
        return JSONResponse(job.to_dict())

    def datasets(self, request: Request) -> JSONResponse:
        params = _query_params(request, _DATASETS_PARAMS)
        query = datasets_query(**params)
        frame = catalog(self.storage, exchange=query.exchange, symbol=query.symbol, kind=query.kind)
        items = records(frame)
        return JSONResponse({"count": len(items), "datasets": items})

    async def audit(self, request: Request) -> JSONResponse:
        """``GET``: a read-only audit; ``POST`` or ``repair=true``: also repair, which
        changes the store, so only a service with an API token does it."""
        query = self._audit_query(request)
        repair = query.repair or request.method == "POST"
        if repair and not self.secured:
            return _error(
                403,
                "repair deletes and refetches rows: only a service started with an API token "
                "(MDCOLLECT_API_TOKEN) repairs; GET without repair=true audits read-only",
            )
        keys = [DatasetKey.parse(k) for k in query.keys] or None
        if keys is not None:
            stored = set(await asyncio.to_thread(self.storage.keys))
            missing = [str(k) for k in keys if k not in stored]
            if missing:  # an audit of nothing would answer ok with 0 rows
                return _error(
                    404,
                    f"no dataset {', '.join(map(repr, missing))} in {self.storage.url}; "
                    f"{len(stored)} dataset(s) stored; GET /api/v1/datasets lists them",
                )
        if not repair:
            report = await audit_async(self.storage, keys, query.start, query.end)
            return JSONResponse(report.to_dict())
        if keys is None:
            keys = await asyncio.to_thread(self.storage.keys)
        for key in keys:  # refetched only from the exchanges this service may use
            check_exchange(key.exchange, self.allowed_exchanges)
        datasets: list[Any] = []
        repaired: list[Any] = []
        for name in sorted({k.exchange for k in keys}):
            exchange = self.exchange_factory(name) if self.exchange_factory else name
            try:
                part = await audit_async(
                    self.storage, [k for k in keys if k.exchange == name], query.start,
                    query.end, repair=True, exchange=exchange,
                )  # fmt: skip
            finally:
                if isinstance(exchange, ExchangeClient):
                    await exchange.close()
            datasets += part.datasets
            repaired += part.repaired
        log.info("audit repaired %d finding(s)", len(repaired))
        return JSONResponse(AuditReport(tuple(datasets), tuple(repaired)).to_dict())

    async def collectors(self, request: Request) -> JSONResponse:
        """``DataCollector.status()`` of the collectors this service runs (on the loop
        they run on); ``collecting: false`` and none when it runs none."""
        _query_params(request, _NO_PARAMS)
        if self.collector is None:
            return JSONResponse({"collecting": False, "collectors": {}})
        return JSONResponse({"collecting": True, **self.collector.status()})

    async def control(self, request: Request) -> JSONResponse:
        """Restart, enable or disable one collector; only a service with an API token."""
        _query_params(request, _NO_PARAMS)
        act = collector_action(request.path_params["name"], request.path_params["action"])
        if not self.secured:
            return _error(
                403,
                "controlling collectors changes what is collected: only a service started "
                "with an API token (MDCOLLECT_API_TOKEN) does it; GET /api/v1/collectors reads",
            )
        dc = self.collector
        known = [] if dc is None else [c.name for c in dc.collectors]
        if dc is None or act.name not in known:
            return _error(404, f"no collector named {act.name[:100]!r}; this service runs: {known}")
        log.info("collector %s: %s by request", act.name, act.action)
        if act.action == "restart":
            await dc.restart(act.name)
        elif act.action == "enable":
            dc.enable(act.name)
        else:
            await dc.disable(act.name)
        return JSONResponse(
            {
                "name": act.name,
                "action": act.action,
                "collector": dc.status()["collectors"][act.name],
            }
        )

    def sync_jobs(self, request: Request) -> JSONResponse:
        """The sync jobs still kept (running, and finished ones for a while), oldest first."""
        _query_params(request, _NO_PARAMS)
        jobs = [j.to_dict() for j in self.jobs.list()]
        return JSONResponse({"count": len(jobs), "jobs": jobs})

    async def cancel_job(self, request: Request) -> JSONResponse:
        """Cancel a running sync job (token required): it stops at a window boundary, the
        writes it started complete, so coverage stays true; answers the cancelled job."""
        job_id = request.path_params["job_id"]
        if not self.secured:
            return _error(
                403,
                "cancelling a sync job needs a service started with an API token "
                "(MDCOLLECT_API_TOKEN)",
            )
        job = self.jobs.get(job_id) if _JOB_ID_RE.match(job_id) else None
        if job is None:
            return _error(404, f"no sync job {job_id[:64]!r} (unknown, or forgotten)")
        if job.status != "running":
            return _error(409, f"sync job {job.id} is already {job.status}; nothing to cancel")
        log.info("sync job %s: cancelled by request", job.id)
        await self.jobs.cancel(job)
        return JSONResponse(job.to_dict())

    async def page(self, request: Request) -> HTMLResponse:
        """The status page (see :mod:`._page`)."""
        status = None if self.collector is None else self.collector.status()
        now = now_ms()
        datasets, more = await asyncio.to_thread(self._page_datasets, now)
        html = render_page(
            version=__version__, storage=self.storage.url, collectors=status,
            datasets=datasets, more_datasets=more, jobs=[j.to_dict() for j in self.jobs.list()],
            now=now, refresh=PAGE_REFRESH,
        )  # fmt: skip
        headers = {"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-store"}
        return HTMLResponse(html, headers=headers)

    def _page_datasets(self, now: int) -> tuple[list[DatasetCoverage], int]:
        """The coverage of the last 24 h of the first :data:`PAGE_DATASETS` datasets, and
        how many more there are."""
        keys = sorted(self.storage.keys(), key=str)
        shown = [
            DatasetCoverage(str(k), self.storage.coverage(k) & Interval(now - PAGE_WINDOW, now))
            for k in keys[:PAGE_DATASETS]
        ]
        return shown, max(0, len(keys) - PAGE_DATASETS)

    def stopping(self) -> None:
        """The server is stopping: cancel the running sync jobs now (thread-safe), so that
        requests waiting for one answer at once instead of holding the shutdown."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.jobs.cancel_running)

    # -- helpers ------------------------------------------------------------------------
    def _ohlcv_query(self, request: Request) -> OhlcvQuery:
        params = _query_params(request, _OHLCV_PARAMS)
        if "symbol" not in params:
            raise InvalidRequest("the symbol parameter is required, e.g. symbol=BTC/USDT:USDT")
        return ohlcv_query(
            **params, allowed_exchanges=self.allowed_exchanges, check_timeframe=_timeframe_served
        )

    def _read_rows(self, query: DataQuery) -> pd.DataFrame:
        """The first ``limit`` rows from ``start`` (up to ``end``), else the last ``limit``
        before ``end`` (or now): read in spans doubling from a day, so that a year of
        trades is not read whole for a page of them."""
        key = DatasetKey(query.exchange, query.symbol, query.kind)
        forward = query.start is not None
        lo = query.start if query.start is not None else 0
        hi = query.end if query.end is not None else now_ms() + DAY
        frames: list[pd.DataFrame] = []
        rows, span, cursor = 0, DAY, lo if forward else hi
        while rows < query.limit and (cursor < hi if forward else cursor > lo):
            a, b = (cursor, min(hi, cursor + span)) if forward else (max(lo, cursor - span), cursor)
            part = self.storage.read(key, a, b)
            if len(part):
                frames.append(part)
                rows += len(part)
            cursor, span = (b if forward else a), span * 2
        if not frames:
            return empty_frame(query.kind)
        frame = pd.concat(frames if forward else frames[::-1])
        return frame.head(query.limit) if forward else frame.tail(query.limit)

    def _audit_query(self, request: Request) -> AuditQuery:
        keys: list[str] = []
        params: dict[str, str] = {}
        for name, value in request.query_params.multi_items():
            if name not in AUDIT_PARAMS:
                raise InvalidRequest(
                    f"unknown parameter {name[:50]!r}; allowed: {', '.join(AUDIT_PARAMS)}"
                )
            if name == "key":
                keys.append(value)
            elif name in params:
                raise InvalidRequest(f"parameter {name!r} is given more than once")
            else:
                params[name] = value
        return audit_query(keys, **params)

    async def _json_body(self, request: Request) -> Any:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            raise HTTPException(413, f"the body is {declared} bytes; at most {self.max_body}")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.max_body:
                raise HTTPException(413, f"the body is over {self.max_body} bytes")
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise InvalidRequest(f"the body is not valid JSON: {str(exc)[:200]}") from None

    def _check_size(self, sync: SyncRequest) -> None:
        candles = len(sync.symbols) * sync.days * (DAY // Timeframe.parse(sync.timeframe).ms)
        if candles > self.max_sync_candles:
            raise InvalidRequest(
                f"this sync covers about {candles} candles; at most {self.max_sync_candles} "
                "per request: split it by symbols or dates"
            )

    async def _ensure(self, sync: SyncRequest) -> dict[str, Any]:
        exchange = self.exchange_factory(sync.exchange) if self.exchange_factory else sync.exchange
        try:
            report = await ensure_data_async(
                list(sync.symbols), sync.timeframe, sync.start_date, sync.end_date, exchange,
                sync.padding_days, self.storage, progress=False, kinds=sync.kinds,
            )  # fmt: skip
        finally:
            if isinstance(exchange, ExchangeClient):
                await exchange.close()
        return report.to_dict()


def _query_params(request: Request, allowed: frozenset[str]) -> dict[str, str]:
    """The query parameters, each one of ``allowed`` and given once."""
    params: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name not in allowed:
            raise InvalidRequest(
                f"unknown parameter {name[:50]!r}; allowed: {', '.join(sorted(allowed))}"
            )
        if name in params:
            raise InvalidRequest(f"parameter {name!r} is given more than once")
        params[name] = value
    return params


def _rows(frame: pd.DataFrame) -> dict[str, Any]:
    """A frame as the API answers it: ``count``, ``columns`` (``timestamp`` first, ms)
    and ``data`` rows (missing values as null)."""
    stamps = index_ms(frame).tolist()
    values = frame.astype(object).where(frame.notna(), None).to_numpy().tolist()
    return {
        "count": len(frame),
        "columns": ["timestamp", *map(str, frame.columns)],
        "data": [[ts, *row] for ts, row in zip(stamps, values, strict=True)],
    }


async def _invalid(request: Request, exc: Exception) -> Response:
    return _error(400, str(exc))


async def _mapped(request: Request, exc: Exception) -> Response:
    status = error_status(exc)
    log.warning("%s %s: %s", request.method, request.url.path, exc)
    return _error(status, str(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(exc.status_code, str(exc.detail), exc.headers)


async def _internal(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return _error(500, "internal server error")


def create_app(
    storage: DataCollectionStorage | str,
    *,
    allowed_exchanges: Iterable[str] = DEFAULT_EXCHANGES,
    api_token: str | None = None,
    exchange_factory: ExchangeFactory | None = None,
    sync_timeout: float = DEFAULT_SYNC_TIMEOUT,
    max_body: int = DEFAULT_MAX_BODY,
    max_sync_candles: int = DEFAULT_MAX_SYNC_CANDLES,
    max_jobs: int = DEFAULT_MAX_JOBS,
    collector: DataCollector | None = None,
) -> Starlette:
    """The data-collection service as an ASGI app (Starlette).

    * ``storage``: a storage or URL the candles are served from and written to.
    * ``allowed_exchanges``: exchange keys requests may name (default the three
      USDT-perpetual aliases).
    * ``api_token``: requests but ``/api/v1/health`` and ``/openapi.json`` need
      ``Authorization: Bearer <token>``; ``None`` reads ``MDCOLLECT_API_TOKEN``, ``""``
      turns auth off.
    * ``exchange_factory(key)``: the exchange ``ensure_data`` uses for a sync (an
      :class:`~mdcollect.exchanges.ExchangeClient` is closed after the sync), e.g. one
      pointed at an :class:`~mdcollect.testing.ExchangeEmulator`.
    * ``sync_timeout``: seconds a sync request waits before answering 202 with a job id
      (the job goes on in the background).
    * ``max_body`` (bytes) and ``max_sync_candles`` bound what one request may ask.
    * ``max_jobs``: sync jobs running at once; one more is answered 503 with
      ``Retry-After``. A sync identical to a running one (same exchange, timeframe,
      dates, padding, set of symbols) joins it instead: same job id, same report, the
      exchange asked once. Syncs sharing a dataset fetch it one after the other.
    * ``collector``: a :class:`~mdcollect.DataCollector` (writing to the same storage)
      the app starts when it starts and stops, flushing, when it stops; its status is
      ``GET /api/v1/collectors`` and the page at ``/``, and with an API token
      ``POST /api/v1/collectors/{name}/restart|enable|disable`` controls it. The
      exchange clients its collectors use are closed after it stops (their sessions
      belong to the serving loop).

    ``GET /`` is a status page for people (collectors, the last 24 h of each dataset,
    sync jobs); with an API token a browser logs in with the token as password.

    Stopping the app (its lifespan) cancels running jobs and waits for them, boundedly;
    writes already started complete, so coverage stays true. Under a server other than
    :func:`serve`, a request still waiting for a job delays the stop up to ``sync_timeout``.

    >>> app = create_app("parquet:///data/md")
    >>> serve(app, host="127.0.0.1", port=8002)  # doctest: +SKIP
    """
    store = open_storage(storage)
    token = api_token if api_token is not None else os.environ.get("MDCOLLECT_API_TOKEN", "")
    allowed = tuple(allowed_exchanges)
    if not allowed or not all(isinstance(e, str) and e for e in allowed):
        raise InvalidRequest(f"allowed_exchanges must list exchange keys, got {allowed!r}")
    options = ServiceOptions(sync_timeout, max_body, max_sync_candles, max_jobs)
    svc = _Service(store, allowed, exchange_factory, options, bool(token))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        log.info("data-collection service up: storage %s", store.url)
        svc.loop = asyncio.get_running_loop()
        if collector is not None:
            await collector.start()
        try:
            yield
        finally:
            if collector is not None:
                await collector.stop()  # flushes what the collectors buffered
                # their sessions belong to this loop, which ends here
                clients = {id(c.client()): c.client() for c in collector.collectors}
                for client in clients.values():
                    await client.close()
            await svc.jobs.close()

    app = Starlette(
        routes=[
            Route("/api/v1/health", svc.health, methods=["GET"]),
            Route("/api/v1/ohlcv", svc.ohlcv, methods=["GET"]),
            Route("/api/v1/data", svc.data, methods=["GET"]),
            Route("/api/v1/symbols", svc.symbols, methods=["GET"]),
            Route("/api/v1/status", svc.status, methods=["GET"]),
            Route("/api/v1/sync", svc.sync, methods=["POST"]),
            Route("/api/v1/sync/{job_id}", svc.sync_job, methods=["GET"]),
            Route("/openapi.json", svc.openapi_json, methods=["GET"]),
            Route("/metrics", svc.metrics, methods=["GET"]),
            Route("/api/v1/datasets", svc.datasets, methods=["GET"]),
            Route("/api/v1/audit", svc.audit, methods=["GET", "POST"]),
            Route("/api/v1/collectors", svc.collectors, methods=["GET"]),
            Route("/api/v1/collectors/{name:path}/{action}", svc.control, methods=["POST"]),
            Route("/api/v1/sync", svc.sync_jobs, methods=["GET"]),
            Route("/api/v1/sync/{job_id}", svc.cancel_job, methods=["DELETE"]),
            Route(_PAGE_PATH, svc.page, methods=["GET"]),
        ],
        exception_handlers={
            InvalidRequest: _invalid,
            ExchangeError: _mapped,
            StorageError: _mapped,
            HTTPException: _http_error,
            Exception: _internal,
        },
        lifespan=lifespan,
    )
    if token:
        app.add_middleware(_BearerAuth, token=token)
    svc.collector = collector
    app.state.service = svc
    return app


def serve(
    app: Starlette, *, host: str = "127.0.0.1", port: int = 8002, log_level: str = "info"
) -> None:
    """Run an app of :func:`create_app` under uvicorn until SIGINT or SIGTERM.

    Unlike a bare ``uvicorn.run``, the signal cancels running sync jobs at once: a
    request waiting for one is answered 503 (the service is stopping) instead of
    holding the shutdown for up to ``sync_timeout``. Raises
    :class:`~mdcollect.MdcollectError` when the server cannot start (e.g. the port is
    taken).

    >>> serve(create_app("parquet:///data/md"), port=8002)  # doctest: +SKIP
    """
    try:
        import uvicorn
    except ImportError as exc:
        raise MdcollectError(missing_extra("mdcollect.service.serve", "service", exc)) from exc

    service: _Service = app.state.service

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            service.stopping()
            super().handle_exit(sig, frame)

    server = _Server(uvicorn.Config(app, host=host, port=port, log_level=log_level))
    # as uvicorn.run: after a graceful stop uvicorn re-raises the signal it caught
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        raise MdcollectError(f"the service did not start on {host}:{port} (see the log above)")
