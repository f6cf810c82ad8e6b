"""``ensure_data`` and ``load_ohlcv``: make sure candles are stored, fetch only what is missing.

>>> report = ensure_data(["BTC/USDT:USDT"], "1h", "2024-02-01", "2024-02-28")
>>> report.ok, report.requests
(True, 42)
>>> ensure_data(["BTC/USDT:USDT"], "1h", "2024-02-01", "2024-02-28").requests   # second call
0
>>> frame = load_ohlcv("BTC/USDT", "1h", "2024-01-01", "2024-01-31", exchange="binance")
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AsyncExitStack
from typing import Any, Final, TypeVar, overload

import pandas as pd
from attrs import define, field

from ._errors import InvalidRequest
from ._intervals import Interval, IntervalSet
from ._keys import DatasetKey
from ._sync import run_sync
from ._time import DAY, Timeframe, is_bare_date, now_ms, to_ms
from .backfill import BackfillJob, JobReport, Plan, TradesBackfill, make_job, plan_jobs, run_jobs
from .backfill._engine import initial_reports
from .exchanges import ExchangeClient, exchange_info
from .storage import DataCollectionStorage, default_storage, open_storage

__all__ = [
    "EnsureReport",
    "SymbolReport",
    "backfill_async",
    "ensure_data",
    "ensure_data_async",
    "load_ohlcv",
    "load_ohlcv_async",
]

MAX_SYMBOLS: Final = 50
_DATE_STR_RE: Final = re.compile(r"^(\d{8}|\d{4}-\d{2}-\d{2})$")

Exchange = str | ExchangeClient
Storage = DataCollectionStorage | str | None


@define
class SymbolReport:
    """One symbol's part of an :class:`EnsureReport`."""

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


@define
class EnsureReport:
    """What :func:`ensure_data` found and did, per symbol.

    ``requests`` counts every HTTP request made to the exchange (market loading
    and retries included); it is 0 when everything was already covered.
    ``plans`` is filled instead of fetching when ``dry_run`` was asked.
    """

    exchange: str
    timeframe: str
    required: Interval | None
    symbols: list[SymbolReport] = field(factory=list)
    requests: int = 0
    seconds: float = 0.0
    dry_run: bool = False
    plans: list[Plan] = field(factory=list)

    @property
    def ok(self) -> bool:
        """True when no window of any symbol failed."""
        return all(s.ok for s in self.symbols)

    @property
    def candles_fetched(self) -> int:
        """Candles written in this call, all symbols."""
        return sum(s.candles_fetched for s in self.symbols)

    def __getitem__(self, symbol: str) -> SymbolReport:
        for s in self.symbols:
            if s.symbol == symbol:
                return s
        raise KeyError(symbol)

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


T = TypeVar("T")


async def _releasing(exchange: object, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro``; then free a caller's client's HTTP session, whose loop ends with
    this sync call (the client stays usable in the next one)."""
    try:
        return await coro
    finally:
        if isinstance(exchange, ExchangeClient):
            await exchange.release()


# -- validation (before any request or write) -------------------------------------------


def check_symbols(symbols: object) -> list[str]:
    """A non-empty list of at most 50 strings, each containing ``/``."""
    if isinstance(symbols, str) or not isinstance(symbols, Sequence):
        raise InvalidRequest(
            f"symbols must be a non-empty list of symbols such as ['BTC/USDT'], got {symbols!r}"
        )
    if not symbols:
        raise InvalidRequest("symbols must be a non-empty list; got an empty list")
    if len(symbols) > MAX_SYMBOLS:
        raise InvalidRequest(f"at most {MAX_SYMBOLS} symbols per call; got {len(symbols)}")
    out = []
    for s in symbols:
        if not isinstance(s, str) or "/" not in s or "\x00" in s:
            raise InvalidRequest(
                f"symbol {s!r} is not valid: symbols are ccxt unified symbols containing '/', "
                "such as 'BTC/USDT' or 'BTC/USDT:USDT'"
            )
        out.append(s)
    if len(set(out)) != len(out):
        dup = sorted({s for s in out if out.count(s) > 1})
        raise InvalidRequest(f"symbols are listed twice: {dup}")
    return out


def check_timeframe(timeframe: object, exchange: str) -> Timeframe:
    """One of the timeframes ``exchange`` serves (``exchange_info(exchange).timeframes``:
    ``1w``, calendar ``1M``, ``1s`` on Binance spot...), spelt exactly as ccxt does;
    :class:`InvalidRequest` listing them otherwise, with "did you mean '1h'?" for
    a case mistake or a near miss."""
    return exchange_info(exchange).check_timeframe(timeframe)


def check_date(value: object, name: str) -> int:
    """``YYYYMMDD``, ``YYYY-MM-DD``, a ``datetime``/``date`` or ``pd.Timestamp``: ms of its start."""
    if isinstance(value, str):
        if not _DATE_STR_RE.match(value.strip()):
            raise InvalidRequest(f"{name} {value!r} is not a date; use YYYYMMDD or YYYY-MM-DD")
        return to_ms(value, name=name)
    if isinstance(value, dt.date | pd.Timestamp):
        return to_ms(value, name=name)
    raise InvalidRequest(
        f"{name} must be a date (YYYYMMDD, YYYY-MM-DD, datetime or pd.Timestamp), got {value!r}"
    )


def check_padding(padding_days: object) -> int:
    """An int >= 0."""
    if isinstance(padding_days, bool) or not isinstance(padding_days, int) or padding_days < 0:
        raise InvalidRequest(f"padding_days must be an integer >= 0, got {padding_days!r}")
    return padding_days


def _exchange_key(exchange: object) -> str:
    if isinstance(exchange, ExchangeClient):
        return exchange.key
    if not isinstance(exchange, str):
        raise InvalidRequest(
            f"exchange must be an exchange key or an ExchangeClient, got {exchange!r}"
        )
    exchange_info(exchange)  # InvalidRequest with close matches for unknown keys
    return exchange


# -- the operations ----------------------------------------------------------------------


def _storage(storage: Storage) -> DataCollectionStorage:
    if storage is None:
        return default_storage()
    return open_storage(storage)


async def _with_client(exchange: Exchange, stack: AsyncExitStack, **config: Any) -> ExchangeClient:
    if isinstance(exchange, ExchangeClient):
        return exchange
    return await stack.enter_async_context(ExchangeClient(exchange, **config))


async def ensure_data_async(
    symbols: Sequence[str],
    timeframe: str = "1h",
    start_date: object = None,
    end_date: object = None,
    exchange: Exchange = "binance_futures",
    padding_days: int = 30,
    storage: Storage = None,
    *,
    progress: bool = True,
    progress_callback: Callable[..., None] | None = None,
    concurrency: int = 4,
    dry_run: bool = False,
    strategy: str = "auto",
    clock: Callable[[], int] | None = None,
) -> EnsureReport:
    """Async :func:`ensure_data`."""
    key = _exchange_key(exchange)
    syms = check_symbols(symbols)
    tf = check_timeframe(timeframe, key)
    if start_date is None or end_date is None:
        raise InvalidRequest("start_date and end_date are required (YYYYMMDD or YYYY-MM-DD)")
    start = check_date(start_date, "start_date")
    end_day = check_date(end_date, "end_date")
    if end_day < start:
        raise InvalidRequest(f"end_date {end_date!r} is before start_date {start_date!r}")
    pad = check_padding(padding_days)
    lo, hi = start - pad * DAY, end_day + DAY
    return await _ensure(
        syms, tf, lo, hi, exchange, key, _storage(storage), progress=progress,
        progress_callback=progress_callback, concurrency=concurrency, dry_run=dry_run,
        strategy=strategy, clock=clock,
    )  # fmt: skip


async def _ensure(
    syms: list[str],
    tf: Timeframe,
    lo: int,
    hi: int,
    exchange: Exchange,
    key: str,
    store: DataCollectionStorage,
    *,
    progress: bool,
    progress_callback: Callable[..., None] | None,
    concurrency: int,
    dry_run: bool,
    strategy: str,
    clock: Callable[[], int] | None,
    kind: str = "ohlcv",
) -> EnsureReport:
    t0 = time.perf_counter()
    now = (clock or now_ms)()
    info = exchange.info if isinstance(exchange, ExchangeClient) else exchange_info(key)
    if strategy not in ("auto", "ohlcv", "trades"):
        raise InvalidRequest(
            f"strategy {strategy!r} is not valid; allowed: 'auto', 'ohlcv', 'trades'"
        )
    jobs: list[BackfillJob]
    if kind == "trades":
        jobs = [TradesBackfill(key, s, None, lo, hi) for s in syms]
    else:
        jobs = [make_job(info, s, tf, lo, hi, strategy=strategy, now=now) for s in syms]  # type: ignore[arg-type]
    required = jobs[0].required(now)  # every job needs the same range
    report = EnsureReport(key, str(tf) if kind == "ohlcv" else kind, required, dry_run=dry_run)
    # Coverage first, read once: when nothing is missing, the exchange is asked nothing.
    initial = await asyncio.to_thread(initial_reports, jobs, store, now)
    if dry_run:
        report.plans = await plan_jobs(jobs, store, info, now=now)
    if dry_run or not any(r.missing for r in initial):
        report.symbols = [SymbolReport._from_job(r) for r in initial]
        report.seconds = time.perf_counter() - t0
        return report
    async with AsyncExitStack() as stack:
        client = await _with_client(exchange, stack)
        before = client.request_count
        results = await run_jobs(
            jobs, store, client, now=now, concurrency=concurrency, progress=progress,
            progress_callback=progress_callback, reports=initial,
        )  # fmt: skip
        report.requests = client.request_count - before
    report.symbols = [SymbolReport._from_job(r) for r in results]
    report.seconds = time.perf_counter() - t0
    return report


async def backfill_async(
    symbols: Sequence[str],
    timeframe: str | None,
    start: object,
    end: object,
    exchange: Exchange = "binance_futures",
    storage: Storage = None,
    *,
    kind: str = "ohlcv",
    strategy: str = "auto",
    progress: bool = True,
    progress_callback: Callable[..., None] | None = None,
    concurrency: int = 4,
    dry_run: bool = False,
    clock: Callable[[], int] | None = None,
) -> EnsureReport:
    """Fill ``[start, end)`` of candles (``kind="ohlcv"``) or raw trades (``kind="trades"``)
    for ``symbols``; like :func:`ensure_data` without padding, with any ccxt timeframe
    and the dates rule of :func:`load_ohlcv`."""
    key = _exchange_key(exchange)
    syms = check_symbols(symbols)
    if kind not in ("ohlcv", "trades"):
        raise InvalidRequest(f"kind {kind!r} cannot be backfilled; allowed: 'ohlcv', 'trades'")
    if kind == "ohlcv":
        if timeframe is None:
            raise InvalidRequest("a timeframe such as '1m' is required to backfill candles")
        tf = check_timeframe(timeframe, key)
    else:
        tf = Timeframe.parse("1m")
    lo, hi = _bounds(start, end)
    return await _ensure(
        syms, tf, lo, hi, exchange, key, _storage(storage), progress=progress,
        progress_callback=progress_callback, concurrency=concurrency, dry_run=dry_run,
        strategy=strategy, clock=clock, kind=kind,
    )  # fmt: skip


def ensure_data(
    symbols: Sequence[str],
    timeframe: str = "1h",
    start_date: object = None,
    end_date: object = None,
    exchange: Exchange = "binance_futures",
    padding_days: int = 30,
    storage: Storage = None,
    *,
    progress: bool = True,
    progress_callback: Callable[..., None] | None = None,
    concurrency: int = 4,
    dry_run: bool = False,
    strategy: str = "auto",
    clock: Callable[[], int] | None = None,
) -> EnsureReport:
    """Make sure ``symbols``' candles from ``start_date - padding_days`` to the end of
    ``end_date`` are stored; fetch exactly what coverage lacks.

    * ``symbols``: a non-empty list of at most 50 ccxt symbols, each containing ``/``.
    * ``timeframe``: one the exchange serves, as ccxt spells it (``1m``..``1d``, ``1w``,
      calendar ``1M``; ``1s`` on Binance spot).
    * ``start_date``, ``end_date``: ``YYYYMMDD``/``YYYY-MM-DD``/``datetime``/``pd.Timestamp``,
      ``end_date >= start_date``; the end date counts whole, clipped to the last
      closed candle.
    * ``exchange``: any registered key (``binance_futures``, ``okx``...) or an
      :class:`~mdcollect.exchanges.ExchangeClient`.
    * ``padding_days``: an int >= 0; the required range starts that many days
      before ``start_date`` (startup candles for indicators).
    * ``storage``: a storage or URL; ``None`` is :func:`default_storage`.

    Bad input raises :class:`InvalidRequest` before any request or write. A
    second identical call makes no exchange request. Works inside a running
    event loop (a Jupyter cell); in async code prefer :func:`ensure_data_async`.

    >>> report = ensure_data(["BTC/USDT:USDT"], "1h", "20240201", "20240228")
    >>> report.required   # 2024-01-02 .. 2024-02-29 (or now)
    """
    return run_sync(
        _releasing(
            exchange,
            ensure_data_async(
                symbols, timeframe, start_date, end_date, exchange, padding_days, storage,
                progress=progress, progress_callback=progress_callback, concurrency=concurrency,
                dry_run=dry_run, strategy=strategy, clock=clock,
            ),
        )
    )  # fmt: skip


# -- load_ohlcv -------------------------------------------------------------------------


def _bounds(start: object, end: object) -> tuple[int, int]:
    """One rule everywhere: a bare date as ``end`` means the end of that day; a time of
    day is an exclusive bound."""
    lo = to_ms(start, name="start")
    hi = to_ms(end, name="end")
    if is_bare_date(end):
        hi += DAY
    if hi <= lo:
        raise InvalidRequest(f"end {end!r} must be after start {start!r}")
    return lo, hi


@overload
async def load_ohlcv_async(
    symbols: str, timeframe: str, start: object, end: object, *,
    exchange: Exchange = ..., storage: Storage = ..., ensure: bool = ..., progress: bool = ...,
    clock: Callable[[], int] | None = ...,
) -> pd.DataFrame: ...  # fmt: skip
@overload
async def load_ohlcv_async(
    symbols: list[str] | tuple[str, ...], timeframe: str, start: object, end: object, *,
    exchange: Exchange = ..., storage: Storage = ..., ensure: bool = ..., progress: bool = ...,
    clock: Callable[[], int] | None = ...,
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
) -> pd.DataFrame | dict[str, pd.DataFrame]:
    """Async :func:`load_ohlcv`."""
    single = isinstance(symbols, str)
    syms = check_symbols([symbols] if isinstance(symbols, str) else symbols)
    key = _exchange_key(exchange)
    tf = check_timeframe(timeframe, key)
    lo, hi = _bounds(start, end)
    store = _storage(storage)
    if ensure:
        report = await _ensure(
            syms, tf, lo, hi, exchange, key, store, progress=progress, progress_callback=None,
            concurrency=4, dry_run=False, strategy="auto", clock=clock,
        )  # fmt: skip
        if not report.ok:
            from ._errors import ExchangeError

            failed = {
                s.symbol: [str(w) for w in s.windows_failed] for s in report.symbols if not s.ok
            }
            raise ExchangeError(f"could not fetch every window: {failed}", transient=True)
    out = {}
    for s in syms:
        frame = store.read(DatasetKey(key, s, "ohlcv", str(tf)), lo, hi)
        out[s] = frame
    return out[syms[0]] if single else out


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
) -> Any:
    """Candles of one symbol (a DataFrame) or several (a dict of them) for ``[start, end)``.

    With ``ensure=True`` (the default) exactly that range is ensured first (no
    padding). A bare date as ``end`` means the end of that day, so
    ``start="2024-01-01", end="2024-01-01"`` at ``1h`` is 24 candles; a time of
    day is an exclusive bound. Frames have the ``ohlcv`` schema and a UTC
    ``timestamp`` index.

    >>> frame = load_ohlcv("BTC/USDT", "1h", "2024-01-01", "2024-01-01", exchange="binance")
    >>> len(frame)
    24
    """
    return run_sync(
        _releasing(
            exchange,
            load_ohlcv_async(
                symbols, timeframe, start, end, exchange=exchange, storage=storage, ensure=ensure,
                progress=progress, clock=clock,
            ),
        )
    )  # fmt: skip
