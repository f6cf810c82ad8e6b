"""The emulator server: every dialect on one loopback port, on a background thread."""

from __future__ import annotations

import asyncio
import atexit
import itertools
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import attrs
from aiohttp import web

from mdcollect.testing._faults import (
    ROW_FAULTS,
    Fault,
    FaultKind,
    Faults,
    Limit,
    RateLimiter,
)
from mdcollect.testing._lifecycle import Lifecycle
from mdcollect.testing._market import MarketSpec, SyntheticMarket
from mdcollect.testing._ws import WsControl
from mdcollect.testing.dialects import (
    DIALECTS,
    Ctx,
    Dialect,
    DialectError,
    Reply,
    Route,
    encode_body,
)

if TYPE_CHECKING:
    from mdcollect.exchanges import ExchangeClient
    from mdcollect.testing._process import EmulatorProcess

__all__ = ["ExchangeEmulator", "RequestRecord", "shared_emulator"]

log = logging.getLogger("mdcollect.testing")

_GATEWAY_BODY = "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} {reason}</h1></center>\r\n</body>\r\n</html>\r\n"
_GEO_BLOCK_MSG = (
    "Service unavailable from a restricted location according to 'b. Eligibility' in "
    "https://www.binance.com/en/terms. Please contact customer service if you believe you "
    "received this message in error."
)
_CLOUDFRONT_403 = (
    '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01 Transitional//EN">\n<HTML><HEAD><TITLE>ERROR'
    "</TITLE></HEAD><BODY><H1>403 ERROR</H1><H2>The request could not be satisfied.</H2>"
    '<HR noshade size="1px">The Amazon CloudFront distribution is configured to block '
    "access from your country.</BODY></HTML>"
)
_REASONS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Time-out",
}


@attrs.frozen
class RequestRecord:
    """One request the emulator received.

    ``exchange`` is the venue (``binance`` for both spot and USD-M), ``route`` the
    endpoint name (``klines``), ``params`` the query and form parameters as
    strings, ``status`` the HTTP status sent (0 when the connection was dropped
    or the client gave up), ``time`` wall-clock ms at arrival, ``fault`` the
    injected fault kind if any, ``weight`` the rate-limit weight charged.
    """

    exchange: str
    route: str
    method: str
    path: str
    params: dict[str, str]
    status: int
    time: int
    fault: str | None = None
    weight: int = 0


class _Drop(Exception):
    """Close the connection without answering."""


class ExchangeEmulator(Lifecycle):
    """Binance (spot, USD-M), OKX, Bybit, Kraken and Coinbase REST dialects on 127.0.0.1.

    Unmodified ccxt talks to it over HTTP once its URLs are redirected (see
    :meth:`ccxt` and :func:`mdcollect.exchanges._urls.redirect_urls`). Data comes from
    a deterministic :class:`SyntheticMarket` (``emu.market``) that tests use as
    ground truth; faults are switched with ``emu.faults``.

    Example::

        with ExchangeEmulator(seed=1) as emu:
            ex = emu.ccxt("binance", async_=False)
            candles = ex.fetch_ohlcv("BTC/USDT", "1m", since=1_700_000_000_000, limit=3)
            truth = emu.market.candles("binance", "BTC/USDT", "1m", 1_700_000_000_000, 1_700_000_180_000)
            assert candles == truth.to_list()
            assert emu.requests[-1].path == "/api/v3/klines"

    ``clock`` returns "now" in ms (default: wall clock). ``rate_limits`` is True
    (each venue's real limits), False, or a mapping ``{"binance.spot": Limit(100, 60)}``
    overriding some buckets (others keep their defaults).
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        markets: Iterable[MarketSpec] = (),
        clock: Callable[[], int] | None = None,
        rate_limits: bool | Mapping[str, Limit] = True,
        ban_seconds: float = 120.0,
        host: str = "127.0.0.1",
        port: int = 0,
        dialects: Sequence[str] | None = None,
    ) -> None:
        names = list(DIALECTS) if dialects is None else list(dialects)
        self._dialects: dict[str, Dialect] = {n: DIALECTS[n]() for n in names}
        self._aliases: dict[str, str] = {}
        for name, d in self._dialects.items():
            self._aliases[name] = name
            for alias in d.aliases:
                self._aliases[alias] = name
        self.market = SyntheticMarket(
            seed=seed,
            markets=markets,
            clock=clock,
            venues={n: d.default_markets() for n, d in self._dialects.items()},
            aliases=self._aliases,
            contract_venues=[n for n, d in self._dialects.items() if not d.spot_only],
            unfilled_venues=[n for n, d in self._dialects.items() if not d.fill_empty],
        )
        self.faults = Faults(seed, self._aliases)
        #: Websocket faults and logs (see :class:`WsControl`).
        self.ws = WsControl(self.market, self.venue, seed)
        self._ws_hosts: dict[str, tuple[Dialect, str]] = {
            host: (d, kind) for d in self._dialects.values() for host, kind in d.ws_hosts.items()
        }
        self.seed = seed
        self._limits: dict[str, Limit] = {}
        self._rate_limits_on = rate_limits is not False
        for name, d in self._dialects.items():
            for bucket, limit in d.limits.items():
                self._limits[f"{name}.{bucket}"] = limit
        if isinstance(rate_limits, Mapping):
            self._limits.update(rate_limits)
        self.limiter = RateLimiter(ban_seconds=ban_seconds)
        self._routes: dict[tuple[str, str], tuple[Dialect, Route]] = {}
        # paths with a ``{param}`` segment (Coinbase ``products/{product_id}/candles``)
        self._templates: list[tuple[str, re.Pattern[str], Dialect, Route]] = []
        for d in self._dialects.values():
            for route in d.routes():
                self._routes[(route.method, route.path)] = (d, route)
                if "{" in route.path:
                    self._templates.append((route.method, _template(route.path), d, route))
        self._host = host
        self._port = port
        self._requests: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None

    # -- lifecycle

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (only while running)."""
        if self._thread is None:
            raise RuntimeError(
                "ExchangeEmulator is not running; use it as a context manager or call start()"
            )
        return f"http://{self._host}:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    def start(self) -> ExchangeEmulator:
        """Start serving on a background thread (idempotent); returns self."""
        if self._thread is not None:
            return self
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve(ready))
            except BaseException as exc:  # reported to start()
                errors.append(exc)
                ready.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="mdcollect-emulator", daemon=True)
        self._thread.start()
        ready.wait()
        if errors:
            self._thread = None
            raise errors[0]
        log.info("exchange emulator listening on %s", self.url)
        return self

    async def _serve(self, ready: threading.Event) -> None:
        app = web.Application(client_max_size=1 << 20)
        app.on_response_prepare.append(_mark_response)
        app.router.add_route("GET", "/_ws/{host}/{tail:.*}", self._handle_ws)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5
        )
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port, reuse_address=True)
        await site.start()
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self._port = server.sockets[0].getsockname()[1]
        self._stopped = asyncio.Event()
        ready.set()
        try:
            await self._stopped.wait()
        finally:
            await self.ws.shutdown()
            await runner.cleanup()

    def stop(self) -> None:
        """Stop serving and join the thread (idempotent)."""
        thread, loop, stopped = self._thread, self._loop, self._stopped
        if thread is None:
            return
        if loop is not None and stopped is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stopped.set)
        thread.join(timeout=10)
        self._thread = None
        self._loop = None
        log.info("exchange emulator stopped")

    def _shut_down(self) -> None:
        self.stop()

    async def __aenter__(self) -> ExchangeEmulator:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    @classmethod
    def spawn(
        cls,
        *,
        port: int = 0,
        seed: int = 0,
        now: int | None = None,
        rate_limits: bool = True,
        extra_args: Sequence[str] = (),
    ) -> EmulatorProcess:
        """An emulator in a child process (``python -m mdcollect.testing``), for kill tests.

        Use it as a context manager; it exposes ``.url``, ``.pid``, ``.kill()``.
        """
        from mdcollect.testing._process import EmulatorProcess

        return EmulatorProcess(
            port=port, seed=seed, now=now, rate_limits=rate_limits, extra_args=extra_args
        )

    # -- requests log

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of the requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self._requests.clear()

    def _record(self, rec: RequestRecord) -> None:
        with self._lock:
            self._requests.append(rec)

    # -- convenience

    def venue(self, exchange: str) -> str:
        """The venue serving a ccxt id or alias (``binanceusdm`` -> ``binance``)."""
        return self._aliases.get(exchange, exchange)

    def ccxt(
        self, exchange_id: str, async_: bool = True, *, pro: bool = False, **config: Any
    ) -> Any:
        """A ccxt exchange redirected to this emulator (REST and websockets).

        ``exchange_id`` is a ccxt id (``binance``, ``binanceusdm``, ``okx``, ``bybit``,
        ``kraken``, ``coinbase``) or a project alias (``binance_futures``, ``okx_futures``,
        ``bybit_futures``: swap as default type). ``async_=True`` gives a
        ``ccxt.async_support`` instance, ``pro=True`` a ``ccxt.pro`` one whose
        ``watch_*`` methods use the emulator's websockets (close either with
        ``await ex.close()``).
        """
        import ccxt
        import ccxt.async_support as ccxt_async
        import ccxt.pro as ccxt_pro

        from mdcollect.exchanges import redirect_urls

        ccxt_id, defaults = _CCXT_ALIASES.get(exchange_id, (exchange_id, {}))
        module: Any = ccxt_pro if pro else ccxt_async if async_ else ccxt
        options = {**defaults, **config.pop("options", {})}
        exchange = getattr(module, ccxt_id)(
            {"enableRateLimit": False, **config, "options": options}
        )
        redirect_urls(exchange, self.url)
        return exchange

    def client(self, key: str, **config: Any) -> ExchangeClient:
        """An :class:`~mdcollect.exchanges.ExchangeClient` for exchange ``key`` (``binance``,
        ``binance_futures``, ``okx``...) talking to this emulator, marked as emulated:
        ``ensure_data`` and ``load_ohlcv`` then keep its synthetic data in the
        emulated store (:func:`~mdcollect.storage.emulated_storage_url`) unless given
        another storage, never in the real default store. ``config`` is passed to
        the client (ccxt options, ``retry=``...). Close it (``await client.close()``)
        or use it as an async context manager when you use it from async code.

        >>> with ExchangeEmulator() as emu:
        ...     client = emu.client("binance")
        ...     frame = mdcollect.load_ohlcv("BTC/USDT", "1h", "2024-01-01", "2024-01-02",
        ...                                  exchange=client)
        """
        from mdcollect.exchanges import ExchangeClient

        client = ExchangeClient(key, base_url=self.url, **config)
        client.emulated = True
        return client

    def set_clock(self, clock: Callable[[], int] | None) -> None:
        """Replace the market clock (None: wall clock)."""
        self.market._clock = clock

    # -- serving

    async def _handle_ws(self, request: web.Request) -> web.StreamResponse:
        host = request.match_info["host"].split(":")[0].lower()
        entry = self._ws_hosts.get(host)
        if entry is None or request.headers.get("Upgrade", "").lower() != "websocket":
            self._record(RequestRecord("", "ws", request.method, request.path, {}, 404, _now_ms()))
            return web.Response(status=404, text="Not Found")
        dialect, kind = entry
        return await self.ws.serve(request, dialect, kind, "/" + request.match_info["tail"])

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        arrived = int(time.time() * 1000)
        params: dict[str, str] = dict(request.query)
        if request.method in ("POST", "PUT", "DELETE") and request.can_read_body:
            try:
                params.update({k: str(v) for k, v in (await request.post()).items()})
            except Exception:  # a JSON body, not a form
                log.debug("ignoring non-form body for %s", request.path)
        entry = self._routes.get((request.method, request.path)) or self._match(
            request.method, request.path
        )
        if entry is None:
            return self._not_found(request, params, arrived)
        dialect, route = entry
        venue = dialect.name
        weight = route.weight_of(params) if route.bucket else 0
        fault: Fault | None = None
        recorded = False

        def record(status: int) -> None:
            nonlocal recorded
            if recorded:
                return
            recorded = True
            self._record(
                RequestRecord(
                    venue,
                    route.name,
                    request.method,
                    request.path,
                    params,
                    status,
                    arrived,
                    None if fault is None else fault.kind.value,
                    weight,
                )
            )

        bucket = f"{venue}.{route.bucket}" if route.bucket else venue
        try:
            banned = self.limiter.check_ban(bucket, dialect.bans)
            if banned is not None:
                until = int(time.time() * 1000 + banned[1] * 1000)
                if banned[0] == 429:
                    reply = dialect.error("rate_limit", "", banned[1])
                else:
                    reply = dialect.error("ban", str(until), banned[1])
                record(reply.status)
                return self._json(reply)
            fault = self.faults.pick(venue, route.name, request.path)
            row_fault: str | None = None
            if fault is not None:
                early = await self._early_fault(fault, dialect, bucket)
                if early is not None:
                    record(early.status)
                    return early
                if fault.kind in ROW_FAULTS:
                    row_fault = fault.kind.value
            headers: dict[str, str] = {}
            limit = self._limits.get(bucket)
            if self._rate_limits_on and limit is not None:
                allowed, used, retry = self.limiter.charge(bucket, limit, weight)
                headers = dialect.used_weight_headers(route.bucket or "", used, limit, _now_ms())
                if not allowed:
                    self.limiter.note_429(bucket, retry)
                    reply = dialect.error("rate_limit", "", retry)
                    reply.headers.update(headers)
                    record(reply.status)
                    return self._json(reply)
            ctx = Ctx(
                self.market, venue, params, request.path, row_fault, self._venue_limits(venue)
            )
            loop = asyncio.get_running_loop()
            try:
                reply = await loop.run_in_executor(None, route.handler, ctx)
            except DialectError as exc:
                reply = exc.reply
            reply.headers.update(headers)
            if fault is not None and fault.kind in (FaultKind.MALFORMED, FaultKind.TRUNCATED):
                return await self._broken(request, reply, fault, record)
            record(reply.status)
            return self._json(reply)
        except _Drop:
            record(0)
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError from None
        except asyncio.CancelledError:
            record(0)
            raise
        except Exception:
            log.exception("emulator handler failed for %s %s", request.method, request.path_qs)
            record(500)
            return web.Response(
                status=500,
                text=_GATEWAY_BODY.format(status=500, reason=_REASONS[500]),
                content_type="text/html",
            )

    async def _early_fault(
        self, fault: Fault, dialect: Dialect, bucket: str
    ) -> web.StreamResponse | None:
        kind = fault.kind
        if kind in (FaultKind.HTTP_500, FaultKind.HTTP_502, FaultKind.HTTP_503, FaultKind.HTTP_504):
            status = int(kind.value)
            return web.Response(
                status=status,
                text=_GATEWAY_BODY.format(status=status, reason=_REASONS[status]),
                content_type="text/html",
            )
        if kind is FaultKind.GEO_BLOCK:
            return web.json_response({"code": 0, "msg": _GEO_BLOCK_MSG}, status=451)
        if kind is FaultKind.FORBIDDEN:
            return web.Response(status=403, text=_CLOUDFRONT_403, content_type="text/html")
        if kind in (FaultKind.RATE_LIMIT, FaultKind.BAN):
            retry = _retry_after(fault.retry_after)
            if kind is FaultKind.RATE_LIMIT:
                self.limiter.note_429(bucket, fault.retry_after)
                reply = dialect.error("rate_limit", "", fault.retry_after)
            else:
                self.limiter.ban(bucket, fault.retry_after)
                until = int(time.time() * 1000 + fault.retry_after * 1000)
                reply = dialect.error("ban", str(until), fault.retry_after)
            # An injected 429/418 always says when to come back, whatever the venue.
            reply.headers.setdefault("Retry-After", retry)
            return self._json(reply)
        if kind in (FaultKind.SLOW, FaultKind.TIMEOUT):
            await asyncio.sleep(fault.seconds)
            return None
        if kind is FaultKind.DROP:
            raise _Drop
        return None

    async def _broken(
        self, request: web.Request, reply: Reply, fault: Fault, record: Callable[[int], None]
    ) -> web.StreamResponse:
        body = encode_body(reply.body)
        half = body[: max(1, len(body) // 2)]
        if fault.kind is FaultKind.MALFORMED:
            record(reply.status)
            return web.Response(
                status=reply.status,
                body=half,
                headers=reply.headers,
                content_type="application/json",
            )
        resp = web.StreamResponse(
            status=reply.status, headers={**reply.headers, "Content-Type": "application/json"}
        )
        resp.content_length = len(body)
        await resp.prepare(request)
        await resp.write(half)
        record(reply.status)
        raise _Drop

    def _match(self, method: str, path: str) -> tuple[Dialect, Route] | None:
        """The templated route ``path`` matches, if any."""
        for m, pattern, d, route in self._templates:
            if m == method and pattern.fullmatch(path):
                return d, route
        return None

    def _venue_limits(self, venue: str) -> dict[str, Limit]:
        """The budgets in force for ``venue``, by its own bucket names (none when off)."""
        if not self._rate_limits_on:
            return {}
        prefix = f"{venue}."
        return {b[len(prefix) :]: lim for b, lim in self._limits.items() if b.startswith(prefix)}

    def _not_found(
        self, request: web.Request, params: dict[str, str], arrived: int
    ) -> web.StreamResponse:
        d = _owner(self._dialects.values(), request.path)
        if d is not None:
            reply = d.error("not_found", request.path)
            self._record(
                RequestRecord(
                    d.name, "", request.method, request.path, params, reply.status, arrived
                )
            )
            return self._json(reply)
        self._record(RequestRecord("", "", request.method, request.path, params, 404, arrived))
        return web.Response(status=404, text="Not Found")

    @staticmethod
    def _json(reply: Reply) -> web.Response:
        return web.Response(
            status=reply.status,
            body=encode_body(reply.body),
            headers=reply.headers,
            content_type="application/json",
        )


#: Every answer names the emulator, so a client can tell synthetic data from real.
EMULATOR_HEADER = "X-Mdcollect-Emulator"


async def _mark_response(request: web.Request, response: web.StreamResponse) -> None:
    response.headers[EMULATOR_HEADER] = "1"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _retry_after(seconds: float) -> str:
    return str(max(1, int(-(-seconds // 1))))


def _template(path: str) -> re.Pattern[str]:
    """``/a/{id}/b`` -> a pattern matching ``/a/<one segment>/b``."""
    parts = re.split(r"\{[^/}]+\}", path)
    return re.compile("[^/]+".join(re.escape(p) for p in parts))


def _prefixes(d: Dialect) -> set[str]:
    return {"/".join(r.path.split("/")[:3]) for r in d.routes()}


def _owner(dialects: Iterable[Dialect], path: str) -> Dialect | None:
    """The dialect an unknown ``path`` belongs to: of those with a route under its first
    two segments (``/api/v3``), the one sharing the most leading segments with it
    (Coinbase's ``/api/v3/brokerage/...`` beside Binance's ``/api/v3/...``), the first
    on a tie; None when no dialect serves under them."""
    parts = path.split("/")
    best: Dialect | None = None
    most = 0
    for d in dialects:
        if not any(path.startswith(p) for p in _prefixes(d)):
            continue
        shared = max(_shared_segments(parts, r.path.split("/")) for r in d.routes())
        if shared > most:
            best, most = d, shared
    return best


def _shared_segments(a: list[str], b: list[str]) -> int:
    """How many leading path segments ``a`` and ``b`` share."""
    return sum(1 for _ in itertools.takewhile(lambda ab: ab[0] == ab[1], zip(a, b, strict=False)))


#: project aliases -> (ccxt id, default options)
_CCXT_ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "binance_futures": ("binanceusdm", {}),
    "okx_futures": ("okx", {"defaultType": "swap"}),
    "bybit_futures": ("bybit", {"defaultType": "swap", "defaultSubType": "linear"}),
}


_shared: ExchangeEmulator | None = None
_shared_lock = threading.Lock()


def shared_emulator() -> ExchangeEmulator:
    """The process-wide emulator behind ``emulate=True`` (and ``MDCOLLECT_EMULATE=1``):
    started on first use with the default markets and each venue's real rate limits,
    stopped when the interpreter exits.

    >>> shared_emulator().url
    'http://127.0.0.1:40123'
    """
    global _shared
    with _shared_lock:
        if _shared is None:
            emu = ExchangeEmulator().start()
            atexit.register(emu.stop)
            _shared = emu
        return _shared


def served_exchanges() -> tuple[str, ...]:
    """The exchange keys the emulator serves, sorted: each venue's name and the ccxt ids
    and project keys its dialect answers for (``binance_futures``, ``okx_futures``...).

    >>> "binance_futures" in served_exchanges() and "kucoin" not in served_exchanges()
    True
    """
    return tuple(sorted({k for name, d in DIALECTS.items() for k in (name, *d.aliases)}))
