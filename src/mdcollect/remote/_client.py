"""HTTP clients of the data-collection service: :class:`DataCollectionClient` (sync) and
:class:`AsyncDataCollectionClient` (async), on httpx.

Both twins share one core, sans-IO: :class:`_Core` checks the inputs and builds the
request (:func:`build_call`), and its :meth:`_Core._exchange` generator holds the retry
protocol, yielding "send this request" and "sleep this long" steps. Each twin only
drives that generator with its own transport and sleep, so the rules (what is retried,
which error is raised) exist once; when to retry and how long to wait are the library's
one :class:`~mdcollect._backoff.RetryPolicy` (jittered, the service's ``Retry-After`` as
a floor).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import warnings
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Literal, Self, TypeAlias, get_args

import pandas as pd
from attrs import frozen

from .._errors import missing_extra

try:
    import httpx
except ImportError as _exc:
    raise ImportError(missing_extra("mdcollect.remote", "remote", _exc)) from _exc

from .._api import (
    DEFAULT_EXCHANGE,
    DEFAULT_EXCHANGES,
    DEFAULT_TIMEFRAME,
    data_query,
    datasets_query,
    ohlcv_query,
    sync_request,
)
from .._backoff import RetryPolicy, parse_retry_after
from .._errors import InvalidRequest, RemoteError
from .._keys import CandleKind, HistoryKind, Kind
from .._redact import redact, secrets_in
from .._rules import check_number
from .._time import DEFAULT_PADDING_DAYS

__all__ = [
    "OPERATIONS",
    "AsyncDataCollectionClient",
    "DataCollectionClient",
    "Operation",
    "default_base_url",
]

log: Final = logging.getLogger("mdcollect.remote")

Operation = Literal[
    "health",
    "fetch_ohlcv",
    "symbols",
    "status",
    "ensure-data",
    "fetch_data",
    "datasets",
    "sync_status",
]
#: The operations of the API, as the Lambda proxy names them (``Operation``'s values).
OPERATIONS: Final[tuple[Operation, ...]] = get_args(Operation)
DEFAULT_NAMESPACE: Final = "tradai.local"
DEFAULT_PORT: Final = 8002
DEFAULT_TIMEOUT: Final = 30.0
DEFAULT_MAX_RETRIES: Final = 2
#: The client's waits: 1, 2, 4... s (capped at 30), each drawn from its upper half.
_BASE_DELAY: Final = 1.0
_MAX_DELAY: Final = 30.0

_PARAMS: Final[Mapping[str, frozenset[str]]] = {
    "health": frozenset(),
    "symbols": frozenset(),
    "status": frozenset(),
    "fetch_ohlcv": frozenset({"symbol", "timeframe", "limit", "start", "end", "exchange", "kind"}),
    "fetch_data": frozenset({"kind", "symbol", "limit", "start", "end", "exchange"}),
    "ensure-data": frozenset(
        {"symbols", "timeframe", "start_date", "end_date", "exchange", "padding_days", "kinds"}
    ),
    "sync_status": frozenset({"job_id"}),
    "datasets": frozenset({"exchange", "symbol", "kind"}),
}


def default_base_url(namespace: str | None = None) -> str:
    """``DATA_COLLECTION_URL``, else ``http://data-collection.{SERVICE_DISCOVERY_NAMESPACE}:8002``
    (namespace default ``tradai.local``); with ``namespace``, the service in that namespace.

    >>> default_base_url()  # with no variable set
    'http://data-collection.tradai.local:8002'
    """
    if namespace is None:
        url = os.environ.get("DATA_COLLECTION_URL", "").strip()
        if url:
            return url
        namespace = os.environ.get("SERVICE_DISCOVERY_NAMESPACE", "").strip() or DEFAULT_NAMESPACE
    return f"http://data-collection.{namespace}:{DEFAULT_PORT}"


def _env_number(
    name: str, default: float, *, integer: bool = False, env: Mapping[str, str] | None = None
) -> float:
    raw = (os.environ if env is None else env).get(name, "").strip()
    if not raw:
        return default
    value: object
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = raw
    try:
        check_number(name, value, integer=integer, strict=not integer)
    except InvalidRequest as exc:
        raise InvalidRequest(f"environment variable {name}={raw!r} is not valid: {exc}") from None
    assert isinstance(value, int | float)
    return value


def _check_base_url(url: object) -> str:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise InvalidRequest(
            f"base_url {redact(url) if isinstance(url, str) else url!r} is not valid; "
            "use http://HOST:PORT or https://HOST:PORT"
        )
    return url.rstrip("/")


def _policy(max_retries: int) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=max_retries + 1, base_delay=_BASE_DELAY, max_delay=_MAX_DELAY, jitter="equal"
    )


def default_backoff(attempt: int) -> float:
    """Seconds before retry ``attempt`` (0-based): about 1, 2, 4, ... capped at 30, jittered.

    .. deprecated:: 0.1.0
       The clients take their waits from :class:`~mdcollect._backoff.RetryPolicy`; this
       returns its wait and is kept for code that passed it as ``backoff=``.
    """
    warnings.warn(
        "mdcollect.remote.default_backoff is deprecated: the clients retry with the "
        "library's jittered RetryPolicy by default (leave backoff=None)",
        DeprecationWarning,
        stacklevel=2,
    )
    return _policy(DEFAULT_MAX_RETRIES).delay(attempt + 1)


@frozen
class _Call:
    """One checked API request."""

    operation: str
    method: Literal["GET", "POST"]
    path: str
    params: Mapping[str, str | int] | None = None
    json: Mapping[str, Any] | None = None


def build_call(
    operation: str,
    params: Mapping[str, Any] | None = None,
    *,
    allowed_exchanges: Iterable[str] = DEFAULT_EXCHANGES,
) -> _Call:
    """Check ``params`` of ``operation`` and build its request (nothing is sent).

    >>> build_call("ensure-data", {"symbols": ["BTC/USDT:USDT"], "timeframe": "1h",
    ...            "start_date": "20240201", "end_date": "20240228"}).json["start_date"]
    '2024-01-02'
    """
    params = dict(params or {})
    allowed = _PARAMS.get(operation)
    if allowed is None:
        raise InvalidRequest(
            f"operation {operation!r} is not known; allowed: {', '.join(OPERATIONS)}"
        )
    unknown = sorted(str(k) for k in params if k not in allowed)
    if unknown:
        raise InvalidRequest(
            f"unknown parameter(s) {unknown} for {operation}; "
            f"allowed: {', '.join(sorted(allowed)) or 'none'}"
        )
    if operation in ("health", "symbols", "status"):
        return _Call(operation, "GET", f"/api/v1/{operation}")
    if operation == "fetch_ohlcv":
        if "symbol" not in params:
            raise InvalidRequest("fetch_ohlcv needs a symbol such as 'BTC/USDT:USDT'")
        query = ohlcv_query(**params, allowed_exchanges=allowed_exchanges)
        return _Call(operation, "GET", "/api/v1/ohlcv", params=query.params())
    if operation == "fetch_data":
        if "kind" not in params or "symbol" not in params:
            raise InvalidRequest("fetch_data needs a kind and a symbol such as 'BTC/USDT:USDT'")
        rows = data_query(**params, allowed_exchanges=allowed_exchanges)
        return _Call(operation, "GET", "/api/v1/data", params=rows.params())
    if operation == "ensure-data":
        if "symbols" not in params:
            raise InvalidRequest("ensure-data needs symbols, a list such as ['BTC/USDT:USDT']")
        params.setdefault("padding_days", DEFAULT_PADDING_DAYS)
        request = sync_request(**params, allowed_exchanges=allowed_exchanges, pad_client_side=True)
        return _Call(operation, "POST", "/api/v1/sync", json=request.body())
    if operation == "datasets":
        return _Call(operation, "GET", "/api/v1/datasets", params=datasets_query(**params).params())
    job_id = params.get("job_id")
    if not isinstance(job_id, str) or not job_id.isalnum() or len(job_id) > 64:
        raise InvalidRequest(f"job_id {job_id!r} is not valid; use the id the service returned")
    return _Call(operation, "GET", f"/api/v1/sync/{job_id}")


def ohlcv_frame(payload: Any, kind: Kind = "ohlcv") -> pd.DataFrame:
    """The service's rows JSON (``columns`` + ``data`` rows) as a frame of ``kind``
    (candles: ``ohlcv``)."""
    from .._schema import empty_frame, normalize_frame

    try:
        columns, rows = payload["columns"], payload["data"]
        if not rows:
            return empty_frame(kind)
        return normalize_frame(kind, pd.DataFrame(rows, columns=columns))
    except (KeyError, TypeError, ValueError, InvalidRequest) as exc:
        raise RemoteError(f"the service's {kind} response is malformed: {exc}") from exc


def datasets_frame(payload: Any) -> pd.DataFrame:
    """The service's catalog JSON (``datasets``) as :func:`mdcollect.catalog`'s frame."""
    from ..catalog import from_records

    try:
        items = payload["datasets"]
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise TypeError("datasets must be a list of objects")
        return from_records(items)
    except (KeyError, TypeError, ValueError, InvalidRequest) as exc:
        raise RemoteError(f"the service's datasets response is malformed: {exc}") from exc


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return response.text[:500] or response.reason_phrase


@frozen
class _Sleep:
    seconds: float


_Step: TypeAlias = httpx.Request | _Sleep
_Outcome: TypeAlias = httpx.Response | httpx.TransportError | None


class _Core:
    """What both twins share: configuration, request building, the retry protocol."""

    def __init__(
        self,
        base_url: str | None,
        timeout: float | None,
        max_retries: int | None,
        api_token: str | None,
        allowed_exchanges: Iterable[str],
        backoff: Callable[[int], float] | None,
    ) -> None:
        raw = _check_base_url(base_url if base_url is not None else default_base_url())
        self.base_url: str = redact(raw)
        # userinfo goes to basic auth, not into the URL httpx connects to and logs
        url = httpx.URL(raw)
        self._auth = httpx.BasicAuth(url.username, url.password) if url.userinfo else None
        self._base_url = str(url.copy_with(userinfo=b"")).rstrip("/")
        if timeout is None:
            timeout = _env_number("REQUEST_TIMEOUT", DEFAULT_TIMEOUT, integer=False)
        if max_retries is None:
            max_retries = int(_env_number("MAX_RETRIES", DEFAULT_MAX_RETRIES, integer=True))
        check_number("timeout", timeout)
        check_number("max_retries", max_retries, integer=True, strict=False)
        self.timeout: float = float(timeout)
        self.max_retries: int = max_retries
        self.allowed_exchanges: tuple[str, ...] = tuple(allowed_exchanges)
        #: attempts, waits and the Retry-After floor of every request
        self.retry: RetryPolicy = _policy(max_retries)
        #: the caller's schedule (``backoff(retry)``, 0-based) replacing the policy's waits
        self.backoff: Callable[[int], float] | None = backoff
        token = api_token if api_token is not None else os.environ.get("MDCOLLECT_API_TOKEN")
        self._headers: dict[str, str] = {"Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        # an error of httpx may quote a header or the URL: mask both credentials
        self._secrets = secrets_in(raw) | ({token} if token else set())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"

    def _call(self, operation: str, params: Mapping[str, Any] | None = None) -> _Call:
        return build_call(operation, params, allowed_exchanges=self.allowed_exchanges)

    def _exchange(
        self, call: _Call, http: httpx.Client | httpx.AsyncClient
    ) -> Generator[_Step, _Outcome, Any]:
        """Send ``call``, retrying 5xx, 429 and transport errors as :attr:`retry` says
        (at least the service's ``Retry-After``); return the decoded JSON."""
        request = http.build_request(
            call.method, call.path, params=call.params, json=call.json, headers=self._headers
        )
        attempt = 1
        while True:
            outcome = yield request
            assert outcome is not None
            if isinstance(outcome, httpx.Response) and not _transient(outcome.status_code):
                return self._decode(call, outcome)
            error = self._give_up(call, outcome, attempt)
            delay = self.retry.next_wait(attempt, error)
            if delay is None:
                cause = outcome if isinstance(outcome, httpx.TransportError) else None
                raise error from cause
            if self.backoff is not None:
                delay = max(float(self.backoff(attempt - 1)), error.retry_after or 0.0)
            log.warning(
                "%s %s: %s; retry %d/%d in %.1fs", call.method, call.path,
                redact(_describe(outcome), self._secrets), attempt, self.max_retries, delay,
            )  # fmt: skip
            attempt += 1
            yield _Sleep(delay)

    def _decode(self, call: _Call, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise RemoteError(
                f"{call.method} {call.path} failed with {response.status_code}: "
                f"{_error_message(response)}",
                status_code=response.status_code,
            )
        try:
            return response.json()
        except ValueError as exc:
            raise RemoteError(
                f"{call.method} {call.path}: the service answered {response.status_code} "
                f"with a body that is not JSON: {response.text[:200]!r}",
                status_code=response.status_code,
            ) from exc

    def _give_up(
        self, call: _Call, outcome: httpx.Response | httpx.TransportError, attempts: int
    ) -> RemoteError:
        where = f"{call.method} {self.base_url}{call.path}"
        if isinstance(outcome, httpx.Response):
            return RemoteError(
                f"{where} failed with {outcome.status_code} after {attempts} attempt(s): "
                f"{_error_message(outcome)}",
                status_code=outcome.status_code,
                transient=True,
                retry_after=parse_retry_after(outcome.headers.get("Retry-After")),
            )
        return RemoteError(
            f"{where}: the data-collection service is unreachable after {attempts} "
            f"attempt(s): {redact(_describe(outcome), self._secrets)}",
            transient=True,
        )


def _transient(status: int) -> bool:
    """5xx (the service is failing, starting or full) and 429 (too many requests)."""
    return status >= 500 or status == 429


def _describe(outcome: httpx.Response | httpx.TransportError) -> str:
    if isinstance(outcome, httpx.Response):
        return f"status {outcome.status_code}"
    return f"{type(outcome).__name__}: {outcome}" if str(outcome) else type(outcome).__name__


class DataCollectionClient(_Core):
    """Sync client of the data-collection service.

    ``base_url`` defaults to ``DATA_COLLECTION_URL``, else
    ``http://data-collection.{SERVICE_DISCOVERY_NAMESPACE}:8002``; ``timeout`` (seconds)
    to ``REQUEST_TIMEOUT`` or 30; ``max_retries`` to ``MAX_RETRIES`` or 2. 5xx and 429
    answers and transport errors (timeouts included) are retried after a
    jittered wait of up to 1, 2, 4... s (at least half of it, capped at 30 s), and never
    sooner than the service's ``Retry-After`` (one beyond 120 s is not waited for: the
    error is raised with its ``retry_after``); other 4xx answers never.
    ``backoff(retry)`` (0-based), when given, replaces the waits (``Retry-After``
    stays their floor). Inputs are checked before anything is sent
    (:class:`~mdcollect.InvalidRequest`); the service's errors raise
    :class:`~mdcollect.RemoteError` with its ``status_code``, message, ``transient``
    and ``retry_after``.

    >>> with DataCollectionClient("http://127.0.0.1:8002") as client:
    ...     client.health()["status"]
    ...     report = client.ensure_data(["BTC/USDT:USDT"], "1h", "20240201", "20240228")
    ...     candles = client.fetch_ohlcv("BTC/USDT:USDT", "1h", limit=24)
    'healthy'

    ``transport`` and ``sleep`` are for tests (an ``httpx.MockTransport``, a recorder).
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        api_token: str | None = None,
        allowed_exchanges: Iterable[str] = DEFAULT_EXCHANGES,
        backoff: Callable[[int], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, timeout, max_retries, api_token, allowed_exchanges, backoff)
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self._base_url, auth=self._auth, timeout=self.timeout, transport=transport
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def request(self, operation: str, params: Mapping[str, Any] | None = None) -> Any:
        """Run one API operation by name (one of :data:`OPERATIONS`: ``health``,
        ``fetch_ohlcv``, ``symbols``, ``status``, ``ensure-data``, ``fetch_data``,
        ``datasets``, ``sync_status``) and return the service's decoded JSON.

        >>> client.request("fetch_ohlcv", {"symbol": "BTC/USDT:USDT", "limit": 2})["count"]
        2
        """
        steps = self._exchange(self._call(operation, params), self._http)
        outcome: _Outcome = None
        while True:
            try:
                step = steps.send(outcome)
            except StopIteration as done:
                return done.value
            if isinstance(step, _Sleep):
                self._sleep(step.seconds)
                outcome = None
                continue
            try:
                outcome = self._http.send(step)
            except httpx.TransportError as exc:
                outcome = exc

    def health(self) -> dict[str, Any]:
        """``GET /api/v1/health``: ``{"status": "healthy", ...}``."""
        return dict(self.request("health"))

    def status(self) -> dict[str, Any]:
        """``GET /api/v1/status``: storage, datasets, allowed exchanges, sync jobs."""
        return dict(self.request("status"))

    def symbols(self) -> list[str]:
        """``GET /api/v1/symbols``: the symbols with stored candles."""
        return list(self.request("symbols")["symbols"])

    def fetch_ohlcv(
        self,
        symbol: str,
        timeframe: str = DEFAULT_TIMEFRAME,
        limit: int | None = None,
        start: object = None,
        end: object = None,
        exchange: str = DEFAULT_EXCHANGE,
        kind: CandleKind = "ohlcv",
    ) -> pd.DataFrame:
        """``GET /api/v1/ohlcv``: stored candles as an ``ohlcv`` frame (UTC ``timestamp`` index).

        ``start``/``end``: ms, dates or ISO times (a bare ``end`` date counts whole);
        ``limit`` 1..10000 (default 1000): the first candles from ``start``, else the latest.
        ``kind``: whose candles, ``ohlcv`` (last price) or on perpetuals ``mark``,
        ``index``, ``premium``.

        >>> client.fetch_ohlcv("BTC/USDT:USDT", "1h", limit=24, kind="mark")
        """
        return ohlcv_frame(self.request("fetch_ohlcv", _given(locals())))

    def fetch_data(
        self,
        kind: HistoryKind,
        symbol: str,
        limit: int | None = None,
        start: object = None,
        end: object = None,
        exchange: str = DEFAULT_EXCHANGE,
    ) -> pd.DataFrame:
        """``GET /api/v1/data``: stored rows of a kind without a timeframe (``funding``
        settlements, ``trades``) as a frame of that kind's schema; ``limit``, ``start``
        and ``end`` as :meth:`fetch_ohlcv`.

        >>> client.fetch_data("funding", "BTC/USDT:USDT", start="2024-01-01", end="2024-01-31")
        """
        return ohlcv_frame(self.request("fetch_data", _given(locals())), kind)

    def ensure_data(
        self,
        symbols: list[str],
        timeframe: str = DEFAULT_TIMEFRAME,
        start_date: object = None,
        end_date: object = None,
        exchange: str = DEFAULT_EXCHANGE,
        padding_days: int = DEFAULT_PADDING_DAYS,
        kinds: Sequence[HistoryKind] = ("ohlcv",),
    ) -> dict[str, Any]:
        """``POST /api/v1/sync``: make the service store the candles (and the other
        ``kinds`` of history, as ``ensure_data(kinds=...)``), start padded by
        ``padding_days`` (dates ``YYYYMMDD`` or ``YYYY-MM-DD``, sent as ``YYYY-MM-DD``).

        Returns the service's answer: ``status`` ``completed`` with the ensure
        ``report``, or ``running`` with a ``job_id`` (see :meth:`sync_status`) when
        the work outlasts the service's request timeout.
        """
        return dict(self.request("ensure-data", _given(locals())))

    def sync_status(self, job_id: str) -> dict[str, Any]:
        """``GET /api/v1/sync/{job_id}``: a background sync's status and report."""
        return dict(self.request("sync_status", {"job_id": job_id}))

    def datasets(
        self, exchange: str | None = None, symbol: str | None = None, kind: str | None = None
    ) -> pd.DataFrame:
        """``GET /api/v1/datasets``: the service's catalog, as :func:`mdcollect.catalog`
        returns it (one row per dataset), optionally filtered.

        >>> client.datasets(exchange="binance_futures", kind="funding")  # doctest: +SKIP
        """
        return datasets_frame(self.request("datasets", _filters(locals())))


class AsyncDataCollectionClient(_Core):
    """Async twin of :class:`DataCollectionClient` (same arguments and methods).

    >>> async with AsyncDataCollectionClient("http://127.0.0.1:8002") as client:
    ...     frame = await client.fetch_ohlcv("BTC/USDT:USDT", "1h", limit=24)
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        api_token: str | None = None,
        allowed_exchanges: Iterable[str] = DEFAULT_EXCHANGES,
        backoff: Callable[[int], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, timeout, max_retries, api_token, allowed_exchanges, backoff)
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=self._base_url, auth=self._auth, timeout=self.timeout, transport=transport
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def request(self, operation: str, params: Mapping[str, Any] | None = None) -> Any:
        """Async :meth:`DataCollectionClient.request`."""
        steps = self._exchange(self._call(operation, params), self._http)
        outcome: _Outcome = None
        while True:
            try:
                step = steps.send(outcome)
            except StopIteration as done:
                return done.value
            if isinstance(step, _Sleep):
                await self._sleep(step.seconds)
                outcome = None
                continue
            try:
                outcome = await self._http.send(step)
            except httpx.TransportError as exc:
                outcome = exc

    async def health(self) -> dict[str, Any]:
        """Async :meth:`DataCollectionClient.health`."""
        return dict(await self.request("health"))

    async def status(self) -> dict[str, Any]:
        """Async :meth:`DataCollectionClient.status`."""
        return dict(await self.request("status"))

    async def symbols(self) -> list[str]:
        """Async :meth:`DataCollectionClient.symbols`."""
        return list((await self.request("symbols"))["symbols"])

    async def fetch_ohlcv(
        self,
        symbol: str,
        timeframe: str = DEFAULT_TIMEFRAME,
        limit: int | None = None,
        start: object = None,
        end: object = None,
        exchange: str = DEFAULT_EXCHANGE,
        kind: CandleKind = "ohlcv",
    ) -> pd.DataFrame:
        """Async :meth:`DataCollectionClient.fetch_ohlcv`."""
        return ohlcv_frame(await self.request("fetch_ohlcv", _given(locals())))

    async def fetch_data(
        self,
        kind: HistoryKind,
        symbol: str,
        limit: int | None = None,
        start: object = None,
        end: object = None,
        exchange: str = DEFAULT_EXCHANGE,
    ) -> pd.DataFrame:
        """Async :meth:`DataCollectionClient.fetch_data`."""
        return ohlcv_frame(await self.request("fetch_data", _given(locals())), kind)

    async def ensure_data(
        self,
        symbols: list[str],
        timeframe: str = DEFAULT_TIMEFRAME,
        start_date: object = None,
        end_date: object = None,
        exchange: str = DEFAULT_EXCHANGE,
        padding_days: int = DEFAULT_PADDING_DAYS,
        kinds: Sequence[HistoryKind] = ("ohlcv",),
    ) -> dict[str, Any]:
        """Async :meth:`DataCollectionClient.ensure_data`."""
        return dict(await self.request("ensure-data", _given(locals())))

    async def sync_status(self, job_id: str) -> dict[str, Any]:
        """Async :meth:`DataCollectionClient.sync_status`."""
        return dict(await self.request("sync_status", {"job_id": job_id}))

    async def datasets(
        self, exchange: str | None = None, symbol: str | None = None, kind: str | None = None
    ) -> pd.DataFrame:
        """Async :meth:`DataCollectionClient.datasets`."""
        return datasets_frame(await self.request("datasets", _filters(locals())))


def _given(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """A method's arguments as operation params (``self`` dropped)."""
    return {k: v for k, v in arguments.items() if k != "self"}


def _filters(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """A method's filter arguments that were given (``None`` is no filter)."""
    return {k: v for k, v in _given(arguments).items() if v is not None}
