"""``ensure_data`` and ``load_*``: make sure data is stored, fetch only what is missing.

Every kind of history (:data:`mdcollect.backfill.HISTORY_KINDS`: candles, trades,
funding settlements) goes through the same calls: ``ensure_data(..., kinds=...)``
and ``load(kind, ...)``, table-driven by :data:`mdcollect.backfill.JOBS`.

>>> report = ensure_data(["BTC/USDT:USDT"], "1h", "2024-02-01", "2024-02-28")
>>> report.ok, report.requests
(True, 42)
>>> ensure_data(["BTC/USDT:USDT"], "1h", "2024-02-01", "2024-02-28").requests   # second call
0
>>> frame = load_ohlcv("BTC/USDT", "1h", "2024-01-01", "2024-01-31", exchange="binance")
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from contextlib import AsyncExitStack
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias, TypeVar, overload

import pandas as pd
from attrs import define, evolve, field, frozen

from ._errors import ExchangeError, InvalidRequest
from ._human import duration, plural, ranges
from ._intervals import Interval, IntervalSet
from ._keys import DatasetKey
from ._logs import LogCallback, check_log_callback, forwarding_logs
from ._rules import MAX_SYMBOLS as MAX_SYMBOLS  # the input rules; kept importable from here
from ._rules import check_date as check_date
from ._rules import check_padding, check_symbols, date_range, required_range
from ._sync import run_sync
from ._time import DAY, DEFAULT_PADDING_DAYS, Timeframe, now_ms
from .backfill import (
    JOBS,
    TIMEFRAME_KINDS,
    BackfillJob,
    HistoryKind,
    JobReport,
    Plan,
    ProgressCallback,
    Strategy,
    check_kind,
    check_kinds,
    check_strategy,
    history_floor,
    initial_reports,
    plan_jobs,
    run_jobs,
)
from .exchanges import ExchangeInfo, exchange_info
from .jobs import Job, check_job, read_jobs
from .storage import (
    DataCollectionStorage,
    default_storage_url,
    emulated_storage_url,
    open_storage,
)

if TYPE_CHECKING:
    from .distributed import ClientSpec
    from .exchanges import ExchangeClient

__all__ = [
    "EnsureReport",
    "SymbolReport",
    "backfill_async",
    "ensure_data",
    "ensure_data_async",
    "ensure_jobs",
    "ensure_jobs_async",
    "load",
    "load_async",
    "load_funding",
    "load_funding_async",
    "load_ohlcv",
    "load_ohlcv_async",
    "load_trades",
    "load_trades_async",
]

log = logging.getLogger("mdcollect.ensure")

#: An exchange key (``"binance_futures"``, any ccxt id) or a client of your own.
Exchange: TypeAlias = "ExchangeClient | str"
#: A storage, a storage URL (``"memory://"``, ``"arctic+lmdb:///data/md"``...), or ``None``
#: for the default store.
Storage: TypeAlias = DataCollectionStorage | str | None


@define
class SymbolReport:
    """One symbol's part of an :class:`EnsureReport`.

    ``str()`` is its line of the summary; ``repr()`` stays short (counts, not ranges).
    """

    symbol: str
    key: DatasetKey
    required: Interval | None
    already_covered: IntervalSet
    missing: IntervalSet
    candles_fetched: int
    windows_failed: list[Interval]
    errors: list[str]
    requests: int
    seconds: float

    @property
    def ok(self) -> bool:
        """True when no window failed."""
        return not self.windows_failed

    @classmethod
    def _from_job(cls, job: JobReport) -> SymbolReport:
        return cls(
            job.key.symbol, job.key, job.required, job.already_covered, job.missing, job.rows,
            list(job.failed), list(job.errors), job.requests, job.seconds,
        )  # fmt: skip

    @property
    def _had(self) -> str:
        if not self.already_covered:
            return "nothing"
        return f"{duration(self.already_covered.total)} in {ranges(self.already_covered)}"

    @property
    def _state(self) -> str:
        if self.ok:
            return "ok"
        return f"FAILED {plural(len(self.windows_failed), 'window')}"

    def __str__(self) -> str:
        return (
            f"{self.key}: had {self._had}, fetched {plural(self.candles_fetched, 'row')} in "
            f"{plural(self.requests, 'request')} ({duration(self.seconds * 1000)}): {self._state}"
        )

    def __repr__(self) -> str:
        return (
            f"SymbolReport({self.key}, required={self.required}, "
            f"already_covered={_count(self.already_covered)}, missing={_count(self.missing)}, "
            f"candles_fetched={self.candles_fetched}, windows_failed={len(self.windows_failed)}, "
            f"requests={self.requests}, ok={self.ok})"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "symbol": self.symbol,
            "key": str(self.key),
            "required": None if self.required is None else [self.required.start, self.required.end],
            "already_covered": self.already_covered.to_list(),
            "missing": self.missing.to_list(),
            "candles_fetched": self.candles_fetched,
            "windows_failed": [[w.start, w.end] for w in self.windows_failed],
            "errors": list(self.errors),
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "ok": self.ok,
        }


def _count(ranges: IntervalSet) -> str:
    return f"<{plural(len(ranges), 'range')}, {duration(ranges.total)}>"


#: Windows listed per dataset in a dry run's summary (the rest are counted).
MAX_WINDOWS_SHOWN: Final = 20
#: Errors listed per symbol in the summary.
MAX_ERRORS_SHOWN: Final = 5


@define
class EnsureReport:
    """What :func:`ensure_data` found and did, per symbol.

    ``required`` is the range ensured, padding included (clipped to the last
    closed candle). ``requests`` counts every HTTP request made to the exchange
    (market loading and retries included); it is 0 when everything was already
    covered. ``plans`` is filled instead of fetching when ``dry_run`` was asked.

    ``str(report)`` is the summary the CLI prints (a dry run lists at most 20
    windows per dataset), a notebook shows a table (``_repr_html_``), and
    ``repr()`` stays a line whatever the size of the range.

    >>> report = ensure_data(["BTC/USDT"], "1h", "2024-01-01", "2024-01-31", exchange="binance")
    >>> print(report)
    binance 1h: ensured [2023-12-02, 2024-02-01) UTC (61 days)
      binance:ohlcv:1h:BTC/USDT: had nothing, fetched 1464 rows in 4 requests (1.2 s): ok
    1464 rows, 4 requests in 1.3 s: ok
    """

    exchange: str
    timeframe: str
    required: Interval | None
    symbols: list[SymbolReport] = field(factory=list)
    requests: int = 0
    seconds: float = 0.0
    dry_run: bool = False
    plans: list[Plan] = field(factory=list)
    kinds: tuple[str, ...] = ("ohlcv",)

    @property
    def ok(self) -> bool:
        """True when no window of any symbol failed."""
        return all(s.ok for s in self.symbols)

    def by_kind(self, kind: str) -> list[SymbolReport]:
        """The symbols' reports of one kind (``ensure_data(..., kinds=...)`` reports each
        symbol once per kind).

        >>> [s.requests for s in report.by_kind("funding")]
        [2]
        """
        if kind not in self.kinds:
            raise KeyError(f"{kind!r} was not ensured; kinds: {', '.join(self.kinds)}")
        return [s for s in self.symbols if s.key.kind == kind]

    @property
    def candles_fetched(self) -> int:
        """Candles written in this call, all symbols."""
        return sum(s.candles_fetched for s in self.symbols)

    def __getitem__(self, symbol: str) -> SymbolReport:
        """The report of ``symbol`` (of the first kind ensured; see :meth:`by_kind`)."""
        for s in self.symbols:
            if s.symbol == symbol:
                return s
        raise KeyError(symbol)

    @property
    def _required(self) -> str:
        if self.required is None:
            return "nothing yet (no candle of the range has closed)"
        return f"{self.required} UTC ({duration(self.required.duration)})"

    @property
    def _state(self) -> str:
        if self.dry_run:
            return "dry run, nothing fetched"
        failed = sum(not s.ok for s in self.symbols)
        return "ok" if not failed else f"FAILED for {plural(failed, 'symbol')}"

    def __str__(self) -> str:
        verb = "would ensure" if self.dry_run else "ensured"
        lines = [f"{self.exchange} {self.timeframe}: {verb} {self._required}"]
        if self.dry_run:
            lines += self._plan_lines()
            return "\n".join(lines)
        for s in self.symbols:
            lines.append(f"  {s}")
            lines += _bounded(s.errors, MAX_ERRORS_SHOWN)
        lines.append(
            f"{plural(self.candles_fetched, 'row')}, {plural(self.requests, 'request')} in "
            f"{duration(self.seconds * 1000)}: {self._state}"
        )
        return "\n".join(lines)

    def _plan_lines(self) -> list[str]:
        had = {s.key: s._had for s in self.symbols}
        lines, windows, seconds = [], 0, 0.0
        for plan in self.plans:
            windows += len(plan.windows)
            seconds += plan.seconds or 0.0
            missing = (
                f"{duration(plan.missing.total)} in {ranges(plan.missing)}"
                if plan.missing
                else "nothing"
            )
            lines.append(
                f"  {plan.key}: had {had.get(plan.key, 'nothing')}, missing {missing}: "
                f"{len(plan.windows)} window(s)"
            )
            lines += _bounded(plan.windows, MAX_WINDOWS_SHOWN)
        lines.append(
            f"{windows} window(s), at least {windows} page request(s) (+1 markets and +1 "
            f"listing request per symbol), about {duration(seconds * 1000)} at "
            f"{self.exchange}'s rate limit: {self._state}"
        )
        return lines

    def __repr__(self) -> str:
        plans = ""
        if self.dry_run:
            windows = sum(len(p.windows) for p in self.plans)
            plans = f", plans={len(self.plans)}, windows={windows}"
        return (
            f"EnsureReport({self.exchange} {self.timeframe}, required={self.required}, "
            f"symbols={len(self.symbols)}, ok={self.ok}, requests={self.requests}, "
            f"candles_fetched={self.candles_fetched}, seconds={self.seconds:.1f}, "
            f"dry_run={self.dry_run}{plans})"
        )

    def _repr_html_(self) -> str:
        """A table for notebooks: one row per symbol."""
        plans = {p.key: p for p in self.plans}
        rows = []
        for s in self.symbols:
            if self.dry_run:
                plan = plans.get(s.key)
                n = 0 if plan is None else len(plan.windows)
                state = f"dry run: {plural(n, 'window')} to fetch"
            else:
                state = s._state
            title = "; ".join(s.errors[:MAX_ERRORS_SHOWN])
            cells = (
                s.symbol,
                _required_cell(s.required),
                s._had,
                f"{s.candles_fetched:,}",
                f"{s.requests:,}",
            )
            rows.append(
                "<tr>"
                + "".join(f"<td>{escape(c)}</td>" for c in cells)
                + (f'<td title="{escape(title)}">' if title else "<td>")
                + f"{escape(state)}</td></tr>"
            )
        head = "".join(
            f"<th>{h}</th>"
            for h in ("symbol", "required (UTC)", "had", "fetched rows", "requests", "state")
        )
        caption = (
            f"{self.exchange} {self.timeframe}: ensured {self._required}; "
            f"{plural(self.requests, 'request')} in {duration(self.seconds * 1000)}: {self._state}"
        )
        return (
            '<table class="mdcollect-ensure-report">'
            f"<caption>{escape(caption)}</caption>"
            f"<thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (what the service returns)."""
        return {
            "exchange": self.exchange,
            "timeframe": self.timeframe,
            "required": None if self.required is None else [self.required.start, self.required.end],
            "ok": self.ok,
            "requests": self.requests,
            "candles_fetched": self.candles_fetched,
            "seconds": round(self.seconds, 3),
            "dry_run": self.dry_run,
            "kinds": list(self.kinds),
            "symbols": [s.to_dict() for s in self.symbols],
            "plans": [
                {
                    "key": str(p.key),
                    "missing": p.missing.to_list(),
                    "windows": [[w.start, w.end] for w in p.windows],
                }
                for p in self.plans
            ],
        }


def _required_cell(required: Interval | None) -> str:
    return "-" if required is None else f"{required} ({duration(required.duration)})"


T = TypeVar("T")


def _bounded(items: Sequence[object], limit: int) -> list[str]:
    """At most ``limit`` items, one a line, then how many more there are."""
    lines = [f"      {item}" for item in items[:limit]]
    if len(items) > limit:
        lines.append(f"      ... {len(items) - limit} more")
    return lines


async def releasing(exchange: object, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro``; then free a caller's client's HTTP session, whose loop ends with
    this sync call (the client stays usable in the next one)."""
    try:
        return await coro
    finally:
        client = _client(exchange)
        if client is not None:
            await client.release()


def _client(exchange: object) -> ExchangeClient | None:
    """``exchange`` if it is a client, else ``None``; an exchange key needs no ccxt
    (a no-op ensure never imports it)."""
    if isinstance(exchange, str):
        return None
    from .exchanges import ExchangeClient

    return exchange if isinstance(exchange, ExchangeClient) else None


# -- validation (before any request or write) -------------------------------------------


def check_timeframe(timeframe: object, exchange: str) -> Timeframe:
    """One of the timeframes ``exchange`` serves (``exchange_info(exchange).timeframes``:
    ``1w``, calendar ``1M``, ``1s`` on Binance spot...), spelt exactly as ccxt does;
    :class:`InvalidRequest` listing them otherwise, with "did you mean '1h'?" for
    a case mistake or a near miss."""
    return exchange_info(exchange).check_timeframe(timeframe)


def _exchange_key(exchange: object) -> str:
    client = _client(exchange)
    if client is not None:
        return client.key
    if not isinstance(exchange, str):
        raise InvalidRequest(
            f"exchange must be an exchange key or an ExchangeClient, got {exchange!r}"
        )
    exchange_info(exchange)  # InvalidRequest with close matches for unknown keys
    return exchange


# -- the operations ----------------------------------------------------------------------


def emulate_default(emulate: object) -> bool:
    """``emulate`` as given, or, when ``None``, the ``MDCOLLECT_EMULATE`` environment
    variable (``1``/``true``/``yes``/``on``): a notebook or bot run offline as written."""
    if emulate is None:
        return os.environ.get("MDCOLLECT_EMULATE", "").strip().lower() in ("1", "true", "yes", "on")
    if not isinstance(emulate, bool):
        raise InvalidRequest(f"emulate must be True, False or None, got {emulate!r}")
    return emulate


@define
class _Source:
    """Where one call's data comes from and goes to, settled before any request."""

    exchange: Exchange
    key: str
    store: DataCollectionStorage
    emulate: bool  # build a client of the shared emulator for ``key``
    real_default: bool  # ``store`` is the real default store

    async def client(self, stack: AsyncExitStack) -> ExchangeClient:
        """The exchange client, opened (and later closed) on ``stack`` unless the caller's."""
        from .exchanges import ExchangeClient

        if isinstance(self.exchange, ExchangeClient):
            return self.exchange
        if self.emulate:
            from .testing import shared_emulator

            emu = await asyncio.to_thread(shared_emulator)  # starts a server: off the loop
            return await stack.enter_async_context(emu.client(self.key))
        return await stack.enter_async_context(ExchangeClient(self.key))

    async def prepare(self, client: ExchangeClient) -> None:
        """Load the markets once for the whole call (an unreachable exchange fails here
        once, saying why, not once per symbol with retries each), and refuse to put
        emulated data in the real default store."""
        await client.load_markets()
        if self.real_default and client.emulated:
            raise InvalidRequest(
                f"{client!r} talks to the mdcollect exchange emulator; its synthetic data is "
                "not written to the real default store: pass emulate=True, a client from "
                "ExchangeEmulator.client(...), or storage=..."
            )


def _source(exchange: object, storage: Storage, emulate: bool | None) -> _Source:
    """Check ``exchange``, ``emulate`` and ``storage`` and open the store: emulated data
    goes to :func:`~mdcollect.storage.emulated_storage_url` unless a storage is given,
    never to the real default store."""
    key = _exchange_key(exchange)
    on = emulate_default(emulate)
    client = _client(exchange)
    client_emulated = client is not None and client.emulated
    if emulate is True and client is not None and not client_emulated:
        raise InvalidRequest(
            f"emulate=True takes an exchange key such as {key!r}, not the client {exchange!r} "
            "(or use ExchangeEmulator.client(...))"
        )
    emulated = client_emulated or (on and client is None)
    if on and client is None:
        from .testing import served_exchanges

        if key not in served_exchanges():
            raise InvalidRequest(
                f"exchange {key!r} is not served by the exchange emulator (emulate=True, "
                f"--emulate); it serves: {', '.join(served_exchanges())}"
            )
    if storage is None:
        store = open_storage(emulated_storage_url() if emulated else default_storage_url())
    else:
        store = open_storage(storage)
    real_default = store.url.rstrip("/") == default_storage_url().rstrip("/")
    if emulated and real_default:
        raise InvalidRequest(
            f"storage {store.url!r} is the real default store; data from the exchange emulator "
            "goes to another one (leave storage=None for the emulated store)"
        )
    source: Exchange = key if client is None else client
    return _Source(
        source, key, store, emulate=on and client is None,
        real_default=real_default,
    )  # fmt: skip


async def _open_source(exchange: object, storage: Storage, emulate: bool | None) -> _Source:
    # opening a store is I/O (ArcticDB waits for its library lock while another
    # process creates the library): off the loop, as every storage call
    return await asyncio.to_thread(_source, exchange, storage, emulate)


async def ensure_data_async(
    symbols: Sequence[str],
    timeframe: str = "1h",
    start_date: object = None,
    end_date: object = None,
    exchange: Exchange = "binance_futures",
    padding_days: int = DEFAULT_PADDING_DAYS,
    storage: Storage = None,
    *,
    progress: bool = True,
    progress_callback: ProgressCallback | None = None,
    concurrency: int = 4,
    dry_run: bool = False,
    strategy: Strategy = "auto",
    clock: Callable[[], int] | None = None,
    emulate: bool | None = None,
    tz: str | None = None,
    log_callback: LogCallback | None = None,
    kinds: Sequence[HistoryKind] = ("ohlcv",),
    executor: Any = None,
) -> EnsureReport:
    """Async :func:`ensure_data`."""
    if executor is not None:
        from .distributed import check_executor

        check_executor(executor)
    routed = check_log_callback(log_callback)
    wanted = check_kinds(kinds)
    key = _exchange_key(exchange)
    syms = check_symbols(symbols)
    tf = check_timeframe(timeframe, key)
    start, end = date_range(start_date, end_date, tz=tz)
    pad = check_padding(padding_days)
    lo, hi = start - pad * DAY, end
    with forwarding_logs(routed):
        return await _ensure(
            syms, tf, lo, hi, await _open_source(exchange, storage, emulate), progress=progress,
            progress_callback=progress_callback, concurrency=concurrency, dry_run=dry_run,
            strategy=strategy, clock=clock, kinds=wanted, unpadded=start, executor=executor,
        )  # fmt: skip


def _make_jobs(
    info: ExchangeInfo,
    syms: Sequence[str],
    tf: Timeframe,
    lo: int,
    hi: int,
    kinds: Sequence[HistoryKind],
    *,
    strategy: Strategy,
    now: int,
    unpadded: int | None,
) -> list[BackfillJob]:
    """The backfill jobs of ``syms`` x ``kinds`` over ``[lo, hi)``: making them checks
    them (depth limits, kinds the exchange serves...) without any request."""

    def start_of(kind: HistoryKind) -> int:
        # padding reaches back no further than the exchange keeps the kind (a valid
        # request stays valid); the caller's own start (``unpadded``) is never moved
        floor = None if unpadded is None else history_floor(info, kind, tf, now)
        if floor is None or unpadded is None:
            return lo
        return min(unpadded, max(lo, floor))

    return [JOBS[k](info, s, tf, start_of(k), hi, strategy, now) for k in kinds for s in syms]


async def _ensure(
    syms: list[str],
    tf: Timeframe,
    lo: int,
    hi: int,
    src: _Source,
    *,
    progress: bool,
    progress_callback: ProgressCallback | None,
    concurrency: int,
    dry_run: bool,
    strategy: Strategy,
    clock: Callable[[], int] | None,
    kinds: tuple[HistoryKind, ...] = ("ohlcv",),
    unpadded: int | None = None,
    executor: Any = None,
) -> EnsureReport:
    t0 = time.perf_counter()
    now = (clock or now_ms)()
    key, store = src.key, src.store
    given = _client(src.exchange)
    info = exchange_info(key) if given is None else given.info
    check_strategy(strategy)
    if executor is not None:
        from .distributed import check_shared_store

        check_shared_store(store)
    # every kind's jobs, made (and so checked: depth limits...) before any request
    jobs = _make_jobs(info, syms, tf, lo, hi, kinds, strategy=strategy, now=now, unpadded=unpadded)
    required = jobs[0].required(now)  # the first kind's range (each symbol needs the same)
    label = " + ".join(
        str(tf) if k == "ohlcv" else f"{k} {tf}" if k in TIMEFRAME_KINDS else k for k in kinds
    )
    report = EnsureReport(key, label, required, dry_run=dry_run, kinds=kinds)
    # Coverage first, read once: when nothing is missing, the exchange is asked nothing.
    initial = await asyncio.to_thread(initial_reports, jobs, store, now)
    if dry_run:
        report.plans = await plan_jobs(jobs, store, info, now=now)
    if dry_run or not any(r.missing for r in initial):
        if not dry_run:
            log.info("%s %s: all %d dataset(s) stored; nothing to fetch", key, label, len(jobs))
        report.symbols = [SymbolReport._from_job(r) for r in initial]
        report.seconds = time.perf_counter() - t0
        return report
    if executor is not None:
        from .distributed import run_on_cluster

        spec = await _cluster_spec(src)
        results, markets = await run_on_cluster(
            executor, jobs, initial, store, spec, now=now, progress=progress,
            progress_callback=progress_callback,
        )  # fmt: skip
        report.requests = markets + sum(r.requests for r in results)
        report.symbols = [SymbolReport._from_job(r) for r in results]
        report.seconds = time.perf_counter() - t0
        return report
    async with AsyncExitStack() as stack:
        client = await src.client(stack)
        before = client.request_count
        await src.prepare(client)
        results = await run_jobs(
            jobs, store, client, now=now, concurrency=concurrency, progress=progress,
            progress_callback=progress_callback, reports=initial,
        )  # fmt: skip
        report.requests = client.request_count - before
    report.symbols = [SymbolReport._from_job(r) for r in results]
    report.seconds = time.perf_counter() - t0
    return report


async def _cluster_spec(src: _Source) -> ClientSpec:
    """How the workers of ``executor=`` build their clients: like the caller's client, or
    pointed at this process's emulator (``emulate=True``), or at the exchange."""
    from .distributed import ClientSpec

    own = _client(src.exchange)
    if own is not None:
        spec = ClientSpec.of(own)
    elif src.emulate:
        from .testing import shared_emulator

        emu = await asyncio.to_thread(shared_emulator)  # workers reach it by its URL
        spec = ClientSpec(src.key, emu.url, emulated=True)
    else:
        spec = ClientSpec(src.key)
    if src.real_default and spec.emulated:
        raise InvalidRequest(
            f"{spec.key!r} at {spec.base_url} is the mdcollect exchange emulator; its "
            "synthetic data is not written to the real default store: pass storage=..."
        )
    return spec


async def backfill_async(
    symbols: Sequence[str],
    timeframe: str | None,
    start: object,
    end: object,
    exchange: Exchange = "binance_futures",
    storage: Storage = None,
    *,
    kind: HistoryKind = "ohlcv",
    strategy: Strategy = "auto",
    progress: bool = True,
    progress_callback: ProgressCallback | None = None,
    concurrency: int = 4,
    dry_run: bool = False,
    clock: Callable[[], int] | None = None,
    emulate: bool | None = None,
    tz: str | None = None,
    log_callback: LogCallback | None = None,
) -> EnsureReport:
    """Fill ``[start, end)`` of one kind of history for ``symbols``: candles
    (``kind="ohlcv"``), perpetuals' ``mark``, ``index`` or ``premium`` candles, raw
    trades (``"trades"``) or funding settlements (``"funding"``); like
    :func:`ensure_data` without padding, with any ccxt timeframe and the dates rule of
    :func:`load_ohlcv`. Other kinds are refused (:class:`InvalidRequest`, naming those
    allowed): they are collected live, not backfilled.

    >>> await backfill_async(["BTC/USDT:USDT"], "1h", "2024-01-01", "2024-02-01",
    ...                      exchange="binance_futures", kind="mark")
    """
    check_kind(kind)
    routed = check_log_callback(log_callback)
    key = _exchange_key(exchange)
    syms = check_symbols(symbols)
    if kind in TIMEFRAME_KINDS:
        if timeframe is None:
            raise InvalidRequest(f"a timeframe such as '1m' is required to backfill {kind} candles")
        tf = check_timeframe(timeframe, key)
    else:
        tf = Timeframe.parse("1m")
    lo, hi = required_range(start, end, tz=tz)
    with forwarding_logs(routed):
        return await _ensure(
            syms, tf, lo, hi, await _open_source(exchange, storage, emulate), progress=progress,
            progress_callback=progress_callback, concurrency=concurrency, dry_run=dry_run,
            strategy=strategy, clock=clock, kinds=(kind,),
        )  # fmt: skip


def ensure_data(
    symbols: Sequence[str],
    timeframe: str = "1h",
    start_date: object = None,
    end_date: object = None,
    exchange: Exchange = "binance_futures",
    padding_days: int = DEFAULT_PADDING_DAYS,
    storage: Storage = None,
    *,
    progress: bool = True,
    progress_callback: ProgressCallback | None = None,
    concurrency: int = 4,
    dry_run: bool = False,
    strategy: Strategy = "auto",
    clock: Callable[[], int] | None = None,
    emulate: bool | None = None,
    tz: str | None = None,
    log_callback: LogCallback | None = None,
    kinds: Sequence[HistoryKind] = ("ohlcv",),
    executor: Any = None,
) -> EnsureReport:
    """Make sure ``symbols``' candles (and other ``kinds`` of history) from
    ``start_date - padding_days`` to the end of ``end_date`` are stored; fetch exactly
    what coverage lacks.

    * ``symbols``: a non-empty list of at most 50 ccxt symbols, each containing ``/``.
    * ``timeframe``: one the exchange serves, as ccxt spells it (``1m``..``1d``, ``1w``,
      calendar ``1M``; ``1s`` on Binance spot).
    * ``start_date``, ``end_date``: ``YYYYMMDD``/``YYYY-MM-DD``/``datetime``/``pd.Timestamp``,
      ``end_date >= start_date``; the end date counts whole, clipped to the last
      closed candle.
    * ``exchange``: any registered key (``binance_futures``, ``okx``...) or an
      :class:`~mdcollect.exchanges.ExchangeClient`.
    * ``padding_days``: an int from 0 to 3650; the required range starts that many days
      before ``start_date`` (startup candles for indicators).
    * ``storage``: a storage or URL; ``None`` is :func:`default_storage`.
    * ``kinds``: the kinds of history to ensure, each over the same padded range:
      ``("ohlcv",)`` (the default), ``"trades"``, ``"funding"`` (one row per funding
      settlement of a perpetual), ``"mark"``, ``"index"``, ``"premium"`` (a perpetual's
      price candles at ``timeframe``, where the exchange serves them). The report has each symbol once per kind
      (:meth:`EnsureReport.by_kind`). An exchange that keeps less history than asked
      (OKX funding: 3 months) is refused with how far back it goes.
    * ``tz``: the time zone naive dates are read in (``"Europe/Berlin"``); UTC by
      default. ``"2024-01-01"`` in Berlin starts at 2023-12-31 23:00 UTC.
    * ``log_callback``: a function given each line this call logs (``"INFO
      mdcollect.backfill: ..."``: what is fetched, what was stored), for a host
      application's own log or UI; the ``logging`` handlers still get theirs.
    * ``executor``: a ``dask.distributed.Client`` (``pip install 'mdcollect[dask]'``) runs
      one task per dataset on the cluster's workers, each with its own exchange client,
      the workers of a host sharing one rate budget, progress reported here; the
      report is the one a local run gives. The store must be one every worker reaches
      (``arctic+s3://...?lease=redis://...``; a local path for a ``LocalCluster``), not
      ``memory://``. See the "Scaling out" page.

    Bad input raises :class:`InvalidRequest` before any request or write. A
    second identical call makes no exchange request. Works inside a running
    event loop (a Jupyter cell); in async code prefer :func:`ensure_data_async`.

    >>> report = ensure_data(["BTC/USDT:USDT"], "1h", "20240201", "20240228")
    >>> report.required   # 2024-01-02 .. 2024-02-29 (or now)
    >>> ensure_data(["BTC/USDT:USDT"], "1h", "20240201", "20240228", kinds=("ohlcv", "funding"))
    """
    return run_sync(
        releasing(
            exchange,
            ensure_data_async(
                symbols, timeframe, start_date, end_date, exchange, padding_days, storage,
                progress=progress, progress_callback=progress_callback, concurrency=concurrency,
                dry_run=dry_run, strategy=strategy, clock=clock, emulate=emulate, tz=tz, kinds=kinds,
                log_callback=log_callback, executor=executor,
            ),
        )
    )  # fmt: skip


# -- load_ohlcv -------------------------------------------------------------------------


@overload
async def load_ohlcv_async(
    symbols: str, timeframe: str, start: object, end: object, *,
    exchange: Exchange = ..., storage: Storage = ..., ensure: bool = ..., progress: bool = ...,
    clock: Callable[[], int] | None = ..., emulate: bool | None = ..., tz: str | None = ..., columns: Columns = ...,
) -> pd.DataFrame: ...  # fmt: skip
@overload
async def load_ohlcv_async(
    symbols: list[str] | tuple[str, ...], timeframe: str, start: object, end: object, *,
    exchange: Exchange = ..., storage: Storage = ..., ensure: bool = ..., progress: bool = ...,
    clock: Callable[[], int] | None = ..., emulate: bool | None = ..., tz: str | None = ..., columns: Columns = ...,
) -> dict[str, pd.DataFrame]: ...  # fmt: skip
async def load_ohlcv_async(
    symbols: str | list[str] | tuple[str, ...],
    timeframe: str,
    start: object,
    end: object,
    *,
    exchange: Exchange = "binance_futures",
    storage: Storage = None,
    ensure: bool = True,
    progress: bool = True,
    clock: Callable[[], int] | None = None,
    emulate: bool | None = None,
    tz: str | None = None,
    columns: Columns = "mdcollect",
) -> pd.DataFrame | dict[str, pd.DataFrame]:
    """Async :func:`load_ohlcv`."""
    rename = _column_names(columns)
    frames = await _load(
        "ohlcv", symbols, start, end, timeframe=timeframe, exchange=exchange, storage=storage,
        ensure=ensure, progress=progress, clock=clock, emulate=emulate, tz=tz,
    )  # fmt: skip
    if rename is None:
        return frames
    if isinstance(frames, pd.DataFrame):
        return frames[list(rename)].rename(columns=rename)
    return {s: f[list(rename)].rename(columns=rename) for s, f in frames.items()}


#: What ``load_ohlcv(columns=...)`` names the candle columns: ``"mdcollect"``, the
#: schema's (``open high low close volume`` + the optional ones stored); ``"backtesting"``, the
#: capitalised ``Open High Low Close Volume`` of backtesting.py and its kin.
Columns: TypeAlias = Literal["mdcollect", "backtesting"]
_COLUMNS: Final[dict[str, dict[str, str] | None]] = {
    "mdcollect": None,
    "backtesting": {c: c.capitalize() for c in ("open", "high", "low", "close", "volume")},
}


def _column_names(columns: object) -> dict[str, str] | None:
    if not isinstance(columns, str) or columns not in _COLUMNS:
        raise InvalidRequest(
            f"columns {columns!r} is not valid; allowed: {', '.join(map(repr, _COLUMNS))}"
        )
    return _COLUMNS[columns]


async def _load(
    kind: object,
    symbols: str | list[str] | tuple[str, ...],
    start: object,
    end: object,
    *,
    timeframe: str | None,
    exchange: Exchange,
    storage: Storage,
    ensure: bool,
    progress: bool,
    clock: Callable[[], int] | None,
    emulate: bool | None,
    tz: str | None = None,
) -> pd.DataFrame | dict[str, pd.DataFrame]:
    """What every ``load_*`` does: check, ensure ``[start, end)`` of ``kind``, read."""
    hk = check_kind(kind)
    single = isinstance(symbols, str)
    syms = check_symbols([symbols] if isinstance(symbols, str) else symbols)
    key = _exchange_key(exchange)
    if hk in TIMEFRAME_KINDS:
        if timeframe is None:
            raise InvalidRequest(f"a timeframe such as '1h' is required to load {hk!r}")
        tf: Timeframe | None = check_timeframe(timeframe, key)
    elif timeframe is not None:
        raise InvalidRequest(
            f"kind {hk!r} takes no timeframe (got {timeframe!r}); only "
            f"{', '.join(sorted(TIMEFRAME_KINDS))} have one"
        )
    else:
        tf = None
    lo, hi = required_range(start, end, tz=tz)
    src = await _open_source(exchange, storage, emulate)
    if ensure:
        report = await _ensure(
            syms, tf or Timeframe.parse("1m"), lo, hi, src, progress=progress,
            progress_callback=None, concurrency=4, dry_run=False, strategy="auto", clock=clock,
            kinds=(hk,),
        )  # fmt: skip
        if not report.ok:
            failed = [s for s in report.symbols if not s.ok]
            first = failed[0]
            reason = first.errors[0] if first.errors else "no reason given"
            raise ExchangeError(
                f"could not fetch {len(failed)} of {len(report.symbols)} symbol(s) "
                f"({', '.join(s.symbol for s in failed)}); {first.symbol}: {reason}",
                transient=True,
            )
    out = {}
    for s in syms:
        dataset = DatasetKey(key, s, hk, None if tf is None else str(tf))
        out[s] = await asyncio.to_thread(src.store.read, dataset, lo, hi)
    return out[syms[0]] if single else out


@overload
def load_ohlcv(
    symbols: str, timeframe: str, start: object, end: object, *,
    exchange: Exchange = ..., storage: Storage = ..., ensure: bool = ..., progress: bool = ...,
    clock: Callable[[], int] | None = ..., emulate: bool | None = ..., tz: str | None = ..., columns: Columns = ...,
) -> pd.DataFrame: ...  # fmt: skip
@overload
def load_ohlcv(
    symbols: list[str] | tuple[str, ...], timeframe: str, start: object, end: object, *,
    exchange: Exchange = ..., storage: Storage = ..., ensure: bool = ..., progress: bool = ...,
    clock: Callable[[], int] | None = ..., emulate: bool | None = ..., tz: str | None = ..., columns: Columns = ...,
) -> dict[str, pd.DataFrame]: ...  # fmt: skip
def load_ohlcv(
    symbols: str | list[str] | tuple[str, ...],
    timeframe: str,
    start: object,
    end: object,
    *,
    exchange: Exchange = "binance_futures",
    storage: Storage = None,
    ensure: bool = True,
    progress: bool = True,
    clock: Callable[[], int] | None = None,
    emulate: bool | None = None,
    tz: str | None = None,
    columns: Columns = "mdcollect",
) -> pd.DataFrame | dict[str, pd.DataFrame]:
    """Candles of one symbol (a DataFrame) or several (a dict of them) for ``[start, end)``.

    With ``ensure=True`` (the default) exactly that range is ensured first (no
    padding). A bare date as ``end`` means the end of that day, so
    ``start="2024-01-01", end="2024-01-01"`` at ``1h`` is 24 candles; a time of
    day is an exclusive bound. Frames have the ``ohlcv`` schema and a UTC
    ``timestamp`` index; ``columns="backtesting"`` names the columns ``Open High Low
    Close Volume``, as backtesting.py expects (``Backtest(load_ohlcv(...,
    columns="backtesting"), MyStrategy)``).

    >>> frame = load_ohlcv("BTC/USDT", "1h", "2024-01-01", "2024-01-01", exchange="binance")
    >>> len(frame)
    24
    """
    _column_names(columns)  # before anything: a bad value costs no request
    frames: Coroutine[Any, Any, pd.DataFrame | dict[str, pd.DataFrame]] = load_ohlcv_async(
        symbols, timeframe, start, end, exchange=exchange, storage=storage, ensure=ensure,
        progress=progress, clock=clock, emulate=emulate, tz=tz, columns=columns,
    )  # fmt: skip
    return run_sync(releasing(exchange, frames))


# -- load(kind, ...) and the other kinds ---------------------------------------------------


@overload
async def load_async(
    kind: HistoryKind, symbols: str, start: object, end: object, *,
    timeframe: str | None = ..., exchange: Exchange = ..., storage: Storage = ...,
    ensure: bool = ..., progress: bool = ..., clock: Callable[[], int] | None = ...,
    emulate: bool | None = ..., tz: str | None = ...,
) -> pd.DataFrame: ...  # fmt: skip
@overload
async def load_async(
    kind: HistoryKind, symbols: list[str] | tuple[str, ...], start: object, end: object, *,
    timeframe: str | None = ..., exchange: Exchange = ..., storage: Storage = ...,
    ensure: bool = ..., progress: bool = ..., clock: Callable[[], int] | None = ...,
    emulate: bool | None = ..., tz: str | None = ...,
) -> dict[str, pd.DataFrame]: ...  # fmt: skip
async def load_async(
    kind: HistoryKind,
    symbols: str | list[str] | tuple[str, ...],
    start: object,
    end: object,
    *,
    timeframe: str | None = None,
    exchange: Exchange = "binance_futures",
    storage: Storage = None,
    ensure: bool = True,
    progress: bool = True,
    clock: Callable[[], int] | None = None,
    emulate: bool | None = None,
    tz: str | None = None,
) -> pd.DataFrame | dict[str, pd.DataFrame]:
    """Async :func:`load`."""
    return await _load(
        kind, symbols, start, end, timeframe=timeframe, exchange=exchange, storage=storage,
        ensure=ensure, progress=progress, clock=clock, emulate=emulate, tz=tz,
    )  # fmt: skip


@overload
def load(
    kind: HistoryKind, symbols: str, start: object, end: object, *,
    timeframe: str | None = ..., exchange: Exchange = ..., storage: Storage = ...,
    ensure: bool = ..., progress: bool = ..., clock: Callable[[], int] | None = ...,
    emulate: bool | None = ..., tz: str | None = ...,
) -> pd.DataFrame: ...  # fmt: skip
@overload
def load(
    kind: HistoryKind, symbols: list[str] | tuple[str, ...], start: object, end: object, *,
    timeframe: str | None = ..., exchange: Exchange = ..., storage: Storage = ...,
    ensure: bool = ..., progress: bool = ..., clock: Callable[[], int] | None = ...,
    emulate: bool | None = ..., tz: str | None = ...,
) -> dict[str, pd.DataFrame]: ...  # fmt: skip
def load(
    kind: HistoryKind,
    symbols: str | list[str] | tuple[str, ...],
    start: object,
    end: object,
    *,
    timeframe: str | None = None,
    exchange: Exchange = "binance_futures",
    storage: Storage = None,
    ensure: bool = True,
    progress: bool = True,
    clock: Callable[[], int] | None = None,
    emulate: bool | None = None,
    tz: str | None = None,
) -> pd.DataFrame | dict[str, pd.DataFrame]:
    """Any kind of history (the candle kinds ``"ohlcv"``, ``"mark"``, ``"index"``,
    ``"premium"`` and ``"open_interest"`` with a ``timeframe``; ``"trades"``,
    ``"funding"``) of one symbol (a DataFrame) or several (a dict) for ``[start, end)``, ensured first
    like :func:`load_ohlcv` (``ensure=False`` reads only what is stored).

    A kind not in :data:`~mdcollect.backfill.HISTORY_KINDS` raises
    :class:`InvalidRequest` naming the allowed ones, before any request.

    >>> funding = load("funding", "BTC/USDT:USDT", "2024-01-01", "2024-12-31")
    >>> candles = load("ohlcv", "BTC/USDT:USDT", "2024-01-01", "2024-01-31", timeframe="1h")
    >>> mark = load("mark", "BTC/USDT:USDT", "2024-01-01", "2024-01-31", timeframe="1h")
    """
    frames: Coroutine[Any, Any, pd.DataFrame | dict[str, pd.DataFrame]] = _load(
        kind, symbols, start, end, timeframe=timeframe, exchange=exchange, storage=storage,
        ensure=ensure, progress=progress, clock=clock, emulate=emulate, tz=tz,
    )  # fmt: skip
    return run_sync(releasing(exchange, frames))


@overload
async def load_funding_async(
    symbols: str, start: object, end: object, *,
    exchange: Exchange = ..., storage: Storage = ..., ensure: bool = ..., progress: bool = ...,
    clock: Callable[[], int] | None = ..., emulate: bool | None = ..., tz: str | None = ...,
) -> pd.DataFrame: ...  # fmt: skip
@overload
async def load_funding_async(
    symbols: list[str] | tuple[str, ...], start: object, end: object, *,
    exchange: Exchange = ..., storage: Storage = ..., ensure: bool = ..., progress: bool = ...,
    clock: Callable[[], int] | None = ..., emulate: bool | None = ..., tz: str | None = ...,
) -> dict[str, pd.DataFrame]: ...  # fmt: skip
async def load_funding_async(
    symbols: str | list[str] | tuple[str, ...],
    start: object,
    end: object,
    *,
    exchange: Exchange = "binance_futures",
    storage: Storage = None,
    ensure: bool = True,
    progress: bool = True,
    clock: Callable[[], int] | None = None,
    emulate: bool | None = None,
    tz: str | None = None,
) -> pd.DataFrame | dict[str, pd.DataFrame]:
    """Async :func:`load_funding`."""
    return await _load(
        "funding", symbols, start, end, timeframe=None, exchange=exchange, storage=storage,
        ensure=ensure, progress=progress, clock=clock, emulate=emulate, tz=tz,
    )  # fmt: skip


@overload
def load_funding(
    symbols: str, start: object, end: object, *,
    exchange: Exchange = ..., storage: Storage = ..., ensure: bool = ..., progress: bool = ...,
    clock: Callable[[], int] | None = ..., emulate: bool | None = ..., tz: str | None = ...,
) -> pd.DataFrame: ...  # fmt: skip
@overload
def load_funding(
    symbols: list[str] | tuple[str, ...], start: object, end: object, *,
    exchange: Exchange = ..., storage: Storage = ..., ensure: bool = ..., progress: bool = ...,
    clock: Callable[[], int] | None = ..., emulate: bool | None = ..., tz: str | None = ...,
) -> dict[str, pd.DataFrame]: ...  # fmt: skip
def load_funding(
    symbols: str | list[str] | tuple[str, ...],
    start: object,
    end: object,
    *,
    exchange: Exchange = "binance_futures",
    storage: Storage = None,
    ensure: bool = True,
    progress: bool = True,
    clock: Callable[[], int] | None = None,
    emulate: bool | None = None,
    tz: str | None = None,
) -> pd.DataFrame | dict[str, pd.DataFrame]:
    """Funding settlements of one perpetual (a DataFrame) or several (a dict) in
    ``[start, end)``, ensured first (``ensure=False`` reads only what is stored).

    One row per settlement at its funding time: ``rate`` (paid by longs to shorts
    per period when positive), ``mark_price`` where the exchange gives it (Binance
    USD-M), ``index_price`` (NaN). Symbols whose interval changed (8 h to 4 h) have
    every settlement at its real time. Exchanges: ``binance_futures`` (back to the
    listing, 1000 a request), ``okx_futures`` (the last 3 months, 100 a request),
    ``bybit_futures`` (200 a request).

    >>> funding = load_funding("BTC/USDT:USDT", "2024-01-01", "2024-12-31")
    >>> len(funding)   # 3 a day
    1098
    """
    frames: Coroutine[Any, Any, pd.DataFrame | dict[str, pd.DataFrame]] = load_funding_async(
        symbols, start, end, exchange=exchange, storage=storage, ensure=ensure,
        progress=progress, clock=clock, emulate=emulate, tz=tz,
    )  # fmt: skip
    return run_sync(releasing(exchange, frames))


@overload
async def load_trades_async(
    symbols: str, start: object, end: object, *,
    exchange: Exchange = ..., storage: Storage = ..., ensure: bool = ..., progress: bool = ...,
    clock: Callable[[], int] | None = ..., emulate: bool | None = ..., tz: str | None = ...,
) -> pd.DataFrame: ...  # fmt: skip
@overload
async def load_trades_async(
    symbols: list[str] | tuple[str, ...], start: object, end: object, *,
    exchange: Exchange = ..., storage: Storage = ..., ensure: bool = ..., progress: bool = ...,
    clock: Callable[[], int] | None = ..., emulate: bool | None = ..., tz: str | None = ...,
) -> dict[str, pd.DataFrame]: ...  # fmt: skip
async def load_trades_async(
    symbols: str | list[str] | tuple[str, ...],
    start: object,
    end: object,
    *,
    exchange: Exchange = "binance_futures",
    storage: Storage = None,
    ensure: bool = True,
    progress: bool = True,
    clock: Callable[[], int] | None = None,
    emulate: bool | None = None,
    tz: str | None = None,
) -> pd.DataFrame | dict[str, pd.DataFrame]:
    """Async :func:`load_trades`."""
    return await _load(
        "trades", symbols, start, end, timeframe=None, exchange=exchange, storage=storage,
        ensure=ensure, progress=progress, clock=clock, emulate=emulate, tz=tz,
    )  # fmt: skip


@overload
def load_trades(
    symbols: str, start: object, end: object, *,
    exchange: Exchange = ..., storage: Storage = ..., ensure: bool = ..., progress: bool = ...,
    clock: Callable[[], int] | None = ..., emulate: bool | None = ..., tz: str | None = ...,
) -> pd.DataFrame: ...  # fmt: skip
@overload
def load_trades(
    symbols: list[str] | tuple[str, ...], start: object, end: object, *,
    exchange: Exchange = ..., storage: Storage = ..., ensure: bool = ..., progress: bool = ...,
    clock: Callable[[], int] | None = ..., emulate: bool | None = ..., tz: str | None = ...,
) -> dict[str, pd.DataFrame]: ...  # fmt: skip
def load_trades(
    symbols: str | list[str] | tuple[str, ...],
    start: object,
    end: object,
    *,
    exchange: Exchange = "binance_futures",
    storage: Storage = None,
    ensure: bool = True,
    progress: bool = True,
    clock: Callable[[], int] | None = None,
    emulate: bool | None = None,
    tz: str | None = None,
) -> pd.DataFrame | dict[str, pd.DataFrame]:
    """Trades of one symbol (a DataFrame) or several (a dict) in ``[start, end)``,
    ensured first (``ensure=False`` reads only what is stored); the ``trades`` schema.

    >>> trades = load_trades("BTC/USDT", "2024-01-01T00:00", "2024-01-01T01:00", exchange="binance")
    """
    frames: Coroutine[Any, Any, pd.DataFrame | dict[str, pd.DataFrame]] = load_trades_async(
        symbols, start, end, exchange=exchange, storage=storage, ensure=ensure,
        progress=progress, clock=clock, emulate=emulate, tz=tz,
    )  # fmt: skip
    return run_sync(releasing(exchange, frames))


@overload
async def load_open_interest_async(
    symbols: str, timeframe: str, start: object, end: object, *,
    exchange: Exchange = ..., storage: Storage = ..., ensure: bool = ..., progress: bool = ...,
    clock: Callable[[], int] | None = ..., emulate: bool | None = ..., tz: str | None = ...,
) -> pd.DataFrame: ...  # fmt: skip
@overload
async def load_open_interest_async(
    symbols: list[str] | tuple[str, ...], timeframe: str, start: object, end: object, *,
    exchange: Exchange = ..., storage: Storage = ..., ensure: bool = ..., progress: bool = ...,
    clock: Callable[[], int] | None = ..., emulate: bool | None = ..., tz: str | None = ...,
) -> dict[str, pd.DataFrame]: ...  # fmt: skip
async def load_open_interest_async(
    symbols: str | list[str] | tuple[str, ...],
    timeframe: str,
    start: object,
    end: object,
    *,
    exchange: Exchange = "binance_futures",
    storage: Storage = None,
    ensure: bool = True,
    progress: bool = True,
    clock: Callable[[], int] | None = None,
    emulate: bool | None = None,
    tz: str | None = None,
) -> pd.DataFrame | dict[str, pd.DataFrame]:
    """Async :func:`load_open_interest`."""
    return await _load(
        "open_interest", symbols, start, end, timeframe=timeframe, exchange=exchange,
        storage=storage, ensure=ensure, progress=progress, clock=clock, emulate=emulate, tz=tz,
    )  # fmt: skip


@overload
def load_open_interest(
    symbols: str, timeframe: str, start: object, end: object, *,
    exchange: Exchange = ..., storage: Storage = ..., ensure: bool = ..., progress: bool = ...,
    clock: Callable[[], int] | None = ..., emulate: bool | None = ..., tz: str | None = ...,
) -> pd.DataFrame: ...  # fmt: skip
@overload
def load_open_interest(
    symbols: list[str] | tuple[str, ...], timeframe: str, start: object, end: object, *,
    exchange: Exchange = ..., storage: Storage = ..., ensure: bool = ..., progress: bool = ...,
    clock: Callable[[], int] | None = ..., emulate: bool | None = ..., tz: str | None = ...,
) -> dict[str, pd.DataFrame]: ...  # fmt: skip
def load_open_interest(
    symbols: str | list[str] | tuple[str, ...],
    timeframe: str,
    start: object,
    end: object,
    *,
    exchange: Exchange = "binance_futures",
    storage: Storage = None,
    ensure: bool = True,
    progress: bool = True,
    clock: Callable[[], int] | None = None,
    emulate: bool | None = None,
    tz: str | None = None,
) -> pd.DataFrame | dict[str, pd.DataFrame]:
    """Open interest of one perpetual (a DataFrame) or several (a dict) at the exchange's
    period ``timeframe`` in ``[start, end)``, ensured first (``ensure=False`` reads only
    what is stored).

    One row per closed period, at its start: ``open_interest`` (contracts, ccxt's
    ``openInterestAmount``: base units on Binance and Bybit, OKX's contracts) and
    ``open_interest_value`` (quote; NaN on Bybit, which gives none). Periods:
    ``binance_futures`` 5m to 1d, the last 30 days only, 500 a request; ``okx_futures``
    5m (2 days), 1h (30 days), 1d (180 days), 100 a request; ``bybit_futures`` 5m to 1d
    back to the listing, 200 a request. A start older than the exchange keeps, or a
    period it does not keep, raises :class:`InvalidRequest` before any request.

    >>> oi = load_open_interest("BTC/USDT:USDT", "1h", "2024-12-01", "2024-12-07")
    >>> len(oi)   # 24 a day
    168
    """
    frames: Coroutine[Any, Any, pd.DataFrame | dict[str, pd.DataFrame]] = _load(
        "open_interest", symbols, start, end, timeframe=timeframe, exchange=exchange,
        storage=storage, ensure=ensure, progress=progress, clock=clock, emulate=emulate, tz=tz,
    )  # fmt: skip
    return run_sync(releasing(exchange, frames))


# -- ensure_jobs: a jobs file (mdcollect.jobs), each dataset once ------------------------------------------------------------------------------


@frozen
class _Dataset:
    """One dataset to ensure: its range (the span of every entry naming it) and the
    first entry that named it."""

    lo: int
    hi: int | None  # None: now
    unpadded: int
    where: str

    def merged(self, other: _Dataset) -> _Dataset:
        hi = None if self.hi is None or other.hi is None else max(self.hi, other.hi)
        return _Dataset(min(self.lo, other.lo), hi, min(self.unpadded, other.unpadded), self.where)


async def ensure_jobs_async(
    jobs: str | Path | Mapping[str, Any] | Sequence[Job],
    storage: Storage = None,
    *,
    clients: Mapping[str, ExchangeClient] | None = None,
    dry_run: bool = False,
    progress: bool = True,
    concurrency: int = 4,
    clock: Callable[[], int] | None = None,
    emulate: bool | None = None,
) -> list[EnsureReport]:
    """Async :func:`ensure_jobs`."""
    if isinstance(jobs, str | Path | Mapping):
        jobs_file = read_jobs(jobs)
        checked = jobs_file.jobs
        storage = jobs_file.storage if storage is None else storage
    elif isinstance(jobs, Sequence) and jobs:
        checked = [check_job(job) for job in jobs]  # a Job made by hand is checked too
    else:
        raise InvalidRequest(
            f"jobs must be a jobs file, a dict, or a non-empty list of Job (load_jobs), "
            f"got {jobs!r}"
        )
    given = dict(clients or {})
    now = (clock or now_ms)()
    async with AsyncExitStack() as stack:
        # every exchange's source (storage and emulation checked) before any request
        sources: dict[str, _Source] = {}
        for job in checked:
            if job.exchange not in sources:
                exchange: ExchangeClient | str = given.get(job.exchange, job.exchange)
                own = _client(exchange)
                if own is not None and own.key != job.exchange:
                    raise InvalidRequest(
                        f"clients[{job.exchange!r}] is {exchange!r}, a client of another "
                        f"exchange key; give one made for {job.exchange!r}"
                    )
                try:
                    src = await _open_source(exchange, storage, emulate)
                except InvalidRequest as exc:
                    raise InvalidRequest(f"{job.where}.exchange: {exc}") from exc
                storage = src.store  # one store for every exchange
                # one client per exchange for the whole run (no request until one is
                # needed): markets are loaded once, not once per group
                client = await src.client(stack)
                sources[job.exchange] = evolve(src, exchange=client, emulate=False)
        datasets = await _resolve(checked, sources)
        groups = _groups(datasets)
        _check(groups, sources, now)
        reports = []
        for (exchange_key, tf, lo, hi, unpadded, kinds), named in groups.items():
            src, symbols = sources[exchange_key], list(named)
            for i in range(0, len(symbols), MAX_SYMBOLS):
                chunk = symbols[i : i + MAX_SYMBOLS]
                try:
                    report = await _ensure(
                        chunk, tf, lo, now if hi is None else hi, src, progress=progress,
                        progress_callback=None, concurrency=concurrency, dry_run=dry_run,
                        strategy="auto", clock=lambda: now, kinds=kinds, unpadded=unpadded,
                    )  # fmt: skip
                except InvalidRequest as exc:  # a symbol the exchange does not list...
                    entries = ", ".join(dict.fromkeys(named[s] for s in chunk))
                    raise InvalidRequest(f"{entries}: {exc}") from exc
                reports.append(report)
    return reports


async def _resolve(jobs: list[Job], sources: dict[str, _Source]) -> dict[DatasetKey, _Dataset]:
    """Every job's datasets, patterns matched against its exchange's markets (loaded once
    per exchange, only where a pattern needs them), each dataset once."""
    markets: dict[str, list[str]] = {}
    out: dict[DatasetKey, _Dataset] = {}
    for job in jobs:
        listed: list[str] = []
        if job.has_patterns:
            if job.exchange not in markets:
                src = sources[job.exchange]
                own = _client(src.exchange)
                assert own is not None
                await src.prepare(own)
                loaded = await own.load_markets()
                markets[job.exchange] = [
                    s for s, m in loaded.items() if m.get("active") is not False
                ]
            listed = markets[job.exchange]
        symbols = job.resolve(listed)
        log.info("%s: %s -> %d symbol(s)", job.where, ", ".join(job.symbols), len(symbols))
        span = _Dataset(job.start - job.padding * DAY, job.end, job.start, job.where)
        for key in job.datasets(symbols):
            out[key] = out[key].merged(span) if key in out else span
    return out


_Group = tuple[str, Timeframe, int, int | None, int, tuple[HistoryKind, ...]]


def _groups(datasets: dict[DatasetKey, _Dataset]) -> dict[_Group, dict[str, str]]:
    """Datasets sharing an exchange, timeframe, range and kinds: one ``_ensure`` call each
    (one report), symbols in the order first named, each with the entry that named it."""
    by_symbol: dict[tuple[str, str | None, int, int | None, int, str], list[HistoryKind]] = {}
    named: dict[tuple[str, str | None, int, int | None, int, str], str] = {}
    for key, d in datasets.items():
        at = (key.exchange, key.timeframe, d.lo, d.hi, d.unpadded, key.symbol)
        by_symbol.setdefault(at, []).append(key.kind)  # type: ignore[arg-type]
        named.setdefault(at, d.where)
    groups: dict[_Group, dict[str, str]] = {}
    for at, kinds in by_symbol.items():
        exchange, tf, lo, hi, unpadded, symbol = at
        # kinds without a timeframe run at 1m, as backfill(kind=...) does
        group = (exchange, Timeframe.parse(tf or "1m"), lo, hi, unpadded, tuple(kinds))
        groups.setdefault(group, {})[symbol] = named[at]
    return groups


def _check(groups: dict[_Group, dict[str, str]], sources: dict[str, _Source], now: int) -> None:
    """Make every backfill job (which checks it: depth limits, kinds the exchange serves)
    before the first page request."""
    for (exchange, tf, lo, hi, unpadded, kinds), symbols in groups.items():
        client = _client(sources[exchange].exchange)
        assert client is not None
        for symbol, where in symbols.items():
            try:
                _make_jobs(client.info, [symbol], tf, lo, now if hi is None else hi, kinds,
                           strategy="auto", now=now, unpadded=unpadded)  # fmt: skip
            except InvalidRequest as exc:
                raise InvalidRequest(f"{where} ({exchange} {symbol}): {exc}") from exc


def ensure_jobs(
    jobs: str | Path | Mapping[str, Any] | Sequence[Job],
    storage: Storage = None,
    *,
    clients: Mapping[str, ExchangeClient] | None = None,
    dry_run: bool = False,
    progress: bool = True,
    concurrency: int = 4,
    clock: Callable[[], int] | None = None,
    emulate: bool | None = None,
) -> list[EnsureReport]:
    """Ensure every dataset a jobs file names; one :class:`~mdcollect.EnsureReport` per
    group of datasets sharing an exchange, timeframe, range and kinds (what
    ``mdcollect ensure --config`` prints; ``all(r.ok for r in reports)`` is its exit 0).

    * ``jobs``: a jobs file path (its ``storage`` is used unless ``storage`` is given),
      a dict of the same shape, or :func:`load_jobs`' list.
    * ``clients``: exchange key -> an :class:`~mdcollect.ExchangeClient` of your own
      (an emulator's, one with credentials); other keys get a client of their own.
    * ``dry_run``: plan only: each report lists its datasets, what is missing and the
      windows (requests) each needs; only the markets of exchanges whose entries have
      patterns are loaded.
    * ``storage``, ``progress``, ``concurrency``, ``clock``, ``emulate``: as
      :func:`~mdcollect.ensure_data`.

    Patterns match active markets; exact symbols are taken as written. A dataset named
    by several entries is ensured once, over the span from the earliest start (padding
    included) to the latest end. Bad input raises :class:`~mdcollect.InvalidRequest`
    naming the file, entry and field before any page request.

    >>> reports = ensure_jobs("jobs.toml")
    >>> all(r.ok for r in reports)
    True
    """
    coro: Coroutine[Any, Any, list[EnsureReport]] = ensure_jobs_async(
        jobs, storage, clients=clients, dry_run=dry_run, progress=progress,
        concurrency=concurrency, clock=clock, emulate=emulate,
    )  # fmt: skip
    return run_sync(_releasing(clients, coro))


async def _releasing(
    clients: Mapping[str, ExchangeClient] | None, coro: Coroutine[Any, Any, list[EnsureReport]]
) -> list[EnsureReport]:
    """Run ``coro``; then free the caller's clients' HTTP sessions, whose loop ends here."""
    try:
        return await coro
    finally:
        for client in (clients or {}).values():
            await client.release()
