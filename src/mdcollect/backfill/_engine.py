"""The loop every backfill strategy shares: windows, retries, progress, cancel, resume.

A job knows *what* to fetch (its dataset, the range it needs, how to fetch one
window); the engine decides *which* windows: exactly ``required - coverage``.
Each window is written with ``covered=`` the range actually confirmed, so a
crash, a cancellation or a failed window leaves coverage true, and the next run
resumes from it.
"""

from __future__ import annotations

import asyncio
import collections
import importlib
import logging
import math
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd
from attrs import define, field

from .._errors import ExchangeError, InvalidRequest, StorageError, first_leaf, missing_extra
from .._human import ranges
from .._intervals import Interval, IntervalSet
from .._keys import DatasetKey
from .._lease import held_async
from .._time import check_ms, format_ms
from ..storage import DataCollectionStorage

if TYPE_CHECKING:
    from ..exchanges import ExchangeClient, ExchangeInfo

log = logging.getLogger("mdcollect.backfill")

#: Seconds a job waits for another machine filling the same dataset (it then fetches
#: only what that one left missing): long enough for a year of minute candles.
JOB_LEASE_WAIT: float = 3 * 3600.0

ProgressCallback = Callable[["BackfillJob", int, int], None]


@define
class JobReport:
    """What one job did: the range it needed, what was there, what it fetched and failed."""

    key: DatasetKey
    required: Interval | None
    already_covered: IntervalSet = field(factory=IntervalSet)
    missing: IntervalSet = field(factory=IntervalSet)
    rows: int = 0
    windows: int = 0
    failed: list[Interval] = field(factory=list)
    errors: list[str] = field(factory=list)
    requests: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no window failed."""
        return not self.failed


@define
class Chunk:
    """Rows fetched for a window and the range they prove complete."""

    frame: pd.DataFrame
    confirmed: Interval | None


class BackfillJob(ABC):
    """One dataset to fill over ``[start, end)``; subclasses say how to fetch a window."""

    key: DatasetKey
    start: int
    end: int

    def __init__(self, key: DatasetKey, start: int, end: int) -> None:
        start, end = check_ms(start, "backfill start"), check_ms(end, "backfill end")
        if end <= start:
            raise InvalidRequest(
                f"backfill end {format_ms(end)} must be after start {format_ms(start)}"
            )
        self.key, self.start, self.end = key, start, end

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key}, {Interval(self.start, self.end)})"

    @abstractmethod
    def required(self, now: int) -> Interval | None:
        """The range this job must cover, clipped to what can be complete at ``now``."""

    @abstractmethod
    def window_ms(self, info: ExchangeInfo) -> int:
        """How long one window is (a whole number of candles)."""

    def align(self, ts: int) -> int:
        """Window boundaries are aligned to this (candle starts)."""
        return ts

    async def prepare(
        self, client: ExchangeClient, storage: DataCollectionStorage, missing: IntervalSet
    ) -> IntervalSet:
        """Validate against the exchange and cover what needs no fetching; return what remains."""
        return missing

    @abstractmethod
    def fetch(self, client: ExchangeClient, window: Interval) -> AsyncIterator[Chunk]:
        """Fetch one window, yielding chunks to write in order."""

    #: How many of this job's windows may be fetched at once (their writes stay in
    #: order). 1 for jobs whose windows depend on the one before.
    windows_in_flight: int = 1

    def progress_units(self, interval: Interval) -> int:
        """How many progress units (candles, by default ms/window) an interval is."""
        return 1

    def request_seconds(self, info: ExchangeInfo) -> float | None:
        """What one page request costs under the exchange's rate limit (ccxt's costs)."""
        from ..exchanges import request_seconds

        return request_seconds(info, info.ohlcv_endpoint, info.page_limit)

    #: What the rows are made from, for their lineage (:attr:`source`).
    made_from: str = "candles"

    @property
    def source(self) -> str:
        """The lineage stored with this job's rows: ``backfill:<exchange> <what>``, e.g.
        ``backfill:binance candles``, ``backfill:kraken trades->1m``."""
        return f"backfill:{self.key.exchange} {self.made_from}"


def split_windows(missing: IntervalSet, size: int, align: Callable[[int], int]) -> list[Interval]:
    """Cut each missing interval into windows of at most ``size`` ms on aligned boundaries
    (``align`` of the end too: months are not all ``size / n`` long)."""
    out: list[Interval] = []
    for iv in missing:
        lo = iv.start
        while lo < iv.end:
            base = align(lo)
            hi = min(iv.end, align(base + size))
            if hi <= lo:  # defensive: never an empty window
                hi = min(iv.end, lo + size)
            out.append(Interval(lo, hi))
            lo = hi
    return out


@define
class Plan:
    """What a job would do: the missing ranges and their windows (``dry_run``).

    ``requests`` is the least number of page requests (one a window; trades
    windows may need more pages), ``seconds`` what they take at the exchange's
    rate limit (``None`` when unknown).
    """

    key: DatasetKey
    required: Interval | None
    missing: IntervalSet
    windows: list[Interval]
    seconds: float | None = None

    @property
    def requests(self) -> int:
        """Page requests: one a window (at least)."""
        return len(self.windows)


def progress_shown(progress: bool) -> bool:
    """Whether ``progress=True`` draws bars here: only where someone watches them,
    when stderr is a terminal or inside a Jupyter/IPython kernel (a notebook)."""
    if not progress:
        return False
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty is not None and isatty()) or _in_kernel()


def _in_kernel() -> bool:
    # only if IPython is loaded already: importing it to ask would cost a second
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    shell = get() if get is not None else None
    return getattr(shell, "kernel", None) is not None


def _bar_class() -> Any:
    """tqdm's widget bar in a notebook that has ipywidgets (the ``notebook`` extra), else
    its text bar; without ipywidgets a notebook is told which extra brings the widgets
    (tqdm itself would only say that ``IProgress`` was not found)."""
    if _in_kernel():
        try:
            importlib.import_module("ipywidgets")  # tqdm.notebook's widgets
        except ImportError as exc:
            log.warning("%s; showing text bars", missing_extra("progress bars", "notebook", exc))
            from tqdm.std import tqdm as text_bar

            return text_bar
    from tqdm.auto import tqdm

    return tqdm


def progress_label(key: DatasetKey) -> str:
    """A bar's label: ``binance BTC/USDT 1h`` (the kind for datasets without a timeframe)."""
    return f"{key.exchange} {key.symbol} {key.timeframe or key.kind}"


class _Progress:
    """Progress of every job of a :func:`run_jobs` call: the caller's callback, and
    one bar a running job when bars are shown (:func:`progress_shown`)."""

    def __init__(self, shown: bool, callback: ProgressCallback | None) -> None:
        self.shown, self.callback = shown, callback
        # a notebook keeps its finished bars; a terminal clears them for the summary
        self.leave = shown and _in_kernel()

    def job(self, job: BackfillJob, total: int) -> _JobProgress:
        bar: Any = None
        if self.shown and total > 0:
            tqdm = _bar_class()
            unit = "candle" if job.key.timeframe else "window"
            bar = tqdm(total=total, desc=progress_label(job.key), unit=unit, leave=self.leave)
        return _JobProgress(job, total, bar, self.callback)


class _JobProgress:
    def __init__(
        self, job: BackfillJob, total: int, bar: Any, callback: ProgressCallback | None
    ) -> None:
        self.job, self.total, self.bar, self.callback = job, total, bar, callback
        self.done = 0

    def add(self, step: int) -> None:
        self.done += step
        if self.bar is not None:
            self.bar.update(step)
        if self.callback is not None:
            self.callback(self.job, self.done, self.total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class ProgressFeed:
    """Progress that jobs report from elsewhere (Dask workers): each
    ``update(job, done, total, attempt)`` moves that job's bar (when :func:`progress_shown`)
    and calls ``callback(job, done, total)``, as :func:`run_jobs` does locally. A new
    ``attempt`` of a job (retried on another worker) starts its count again.

    >>> feed = ProgressFeed(False, print)
    >>> feed.update(job, 1000, 1440, attempt="a")
    """

    def __init__(self, progress: bool, callback: ProgressCallback | None) -> None:
        self._bars = _Progress(progress_shown(progress), callback)
        self._jobs: dict[int, tuple[str, _JobProgress]] = {}
        self._retired: set[str] = set()

    def update(self, job: BackfillJob, done: int, total: int, attempt: str) -> None:
        """``job`` (its ``attempt``) has ``done`` of ``total`` units written."""
        if attempt in self._retired:  # a late word from an attempt since replaced
            return
        seen = self._jobs.get(id(job))
        if seen is None or seen[0] != attempt:
            if seen is not None:
                self._retired.add(seen[0])
                seen[1].close()
            seen = self._jobs[id(job)] = (attempt, self._bars.job(job, total))
        bar = seen[1]
        if done > bar.done:
            bar.add(done - bar.done)

    def close(self) -> None:
        """Close every bar."""
        for _, bar in self._jobs.values():
            bar.close()


def initial_reports(
    jobs: Sequence[BackfillJob], storage: DataCollectionStorage, now: int
) -> list[JobReport]:
    """Each job's required range, what coverage has of it and what is missing (one
    coverage read per job, no exchange request)."""
    reports = []
    for job in jobs:
        report = JobReport(job.key, job.required(now))
        if report.required is not None:
            cov = storage.coverage(job.key)
            report.already_covered = cov & report.required
            report.missing = IntervalSet([report.required]) - cov
        reports.append(report)
    return reports


async def plan_jobs(
    jobs: Sequence[BackfillJob],
    storage: DataCollectionStorage,
    info: ExchangeInfo,
    *,
    now: int,
) -> list[Plan]:
    """The windows each job would fetch, asking the exchange nothing."""
    plans = []
    for job in jobs:
        req = job.required(now)
        if req is None:
            plans.append(Plan(job.key, None, IntervalSet(), []))
            continue
        cov = await asyncio.to_thread(storage.coverage, job.key)
        missing = IntervalSet([req]) - cov
        windows = split_windows(missing, job.window_ms(info), job.align)
        each = job.request_seconds(info)
        seconds = None if each is None else each * len(windows)
        plans.append(Plan(job.key, req, missing, windows, seconds))
    return plans


async def run_jobs(
    jobs: Sequence[BackfillJob],
    storage: DataCollectionStorage,
    client: ExchangeClient,
    *,
    now: int,
    concurrency: int = 4,
    progress: bool = True,
    progress_callback: ProgressCallback | None = None,
    reports: list[JobReport] | None = None,
) -> list[JobReport]:
    """Run ``jobs`` against one exchange, at most ``concurrency`` at a time.

    ``reports`` are the jobs' :func:`initial_reports` when the caller has them
    already (coverage is then not read again). ``progress`` draws a bar per
    running job, labelled by :func:`progress_label`, where someone watches
    (:func:`progress_shown`); ``progress_callback(job, done, total)`` is called
    with each job's units (candles) as they are written, bars or not.

    Returns one :class:`JobReport` per job, in order. A window that fails after
    the client's retries is reported and not covered; the others go on.
    Cancelling stops at a window boundary: every write already started completes.
    """
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidRequest(f"concurrency must be an int >= 1, got {concurrency!r}")
    if reports is None:  # coverage reads block: off the loop, as writes are
        reports = await asyncio.to_thread(initial_reports, jobs, storage, now)
    todo = [(j, r) for j, r in zip(jobs, reports, strict=True) if r.missing]
    if not todo:
        return reports
    bars = _Progress(progress_shown(progress), progress_callback)
    sem = asyncio.Semaphore(concurrency)

    async def one(job: BackfillJob, report: JobReport) -> None:
        async with sem:
            await _run_job(job, report, storage, client, bars)

    try:
        async with asyncio.TaskGroup() as tg:
            for job, report in todo:
                tg.create_task(one(job, report))
    except BaseExceptionGroup as eg:
        raise first_leaf(eg) from None
    return reports


async def _run_job(
    job: BackfillJob,
    report: JobReport,
    storage: DataCollectionStorage,
    client: ExchangeClient,
    bars: _Progress,
) -> None:
    lease = storage.dataset_lease(job.key)
    if lease is None:
        await _run_owned_job(job, report, storage, client, bars)
        return
    # one machine at a time fills a dataset: hold its lease, then take coverage again,
    # so what another machine stored while this one waited is not fetched twice
    async with held_async(lease, wait=JOB_LEASE_WAIT, what=f"fill {job.key}", error=StorageError):
        covered = await asyncio.to_thread(storage.coverage, job.key)
        report.already_covered |= report.missing & covered
        report.missing = report.missing - covered
        await _run_owned_job(job, report, storage, client, bars)


async def _run_owned_job(
    job: BackfillJob,
    report: JobReport,
    storage: DataCollectionStorage,
    client: ExchangeClient,
    bars: _Progress,
) -> None:
    from ..exchanges import SessionStats, request_tally  # aiohttp: only once fetching

    t0 = time.perf_counter()
    # count this job's requests, not those of jobs running beside it on the client
    tally = SessionStats()
    request_tally.set(tally)
    bar = bars.job(job, sum(job.progress_units(iv) for iv in report.missing))
    try:
        try:
            missing = await job.prepare(client, storage, report.missing)
        except ExchangeError as exc:
            # e.g. the listing request failed after its retries: nothing of this
            # job is fetched or covered; the other jobs go on
            report.failed = list(report.missing)
            report.errors.append(f"preparing {job.key}: {exc}")
            log.warning("%s: could not prepare: %s", job.key, exc)
            return
        skipped = sum(job.progress_units(iv) for iv in report.missing - missing)
        if skipped:
            bar.add(skipped)
        windows = split_windows(missing, job.window_ms(client.info), job.align)
        report.windows = len(windows)
        if windows:
            log.info("%s: fetching %s in %d window(s)", job.key, ranges(missing), len(windows))
        await _fetch_in_order(job, windows, client, storage, report, bar)
        log.info(
            "%s: stored %d row(s) in %d request(s)%s", job.key, report.rows, tally.requests,
            f"; {len(report.failed)} window(s) failed" if report.failed else "",
        )  # fmt: skip
    finally:
        bar.close()
        report.requests = tally.requests
        report.seconds = time.perf_counter() - t0


async def _fetch_in_order(
    job: BackfillJob,
    windows: list[Interval],
    client: ExchangeClient,
    storage: DataCollectionStorage,
    report: JobReport,
    bar: _JobProgress,
) -> None:
    """Fetch up to ``job.windows_in_flight`` windows at once, write them in window order.

    The windows are known in advance, so a single symbol keeps several requests in
    flight (the exchange's budget, not a round trip, sets the pace). Writes stay in
    order and each covers only what it stores: a cancel or crash leaves coverage
    a prefix of what was fetched, never ahead of the rows. Windows fetched but not
    yet written when cancelled are dropped and fetched again by the next run.
    """
    ahead = max(1, job.windows_in_flight)
    todo = iter(windows)
    pending: collections.deque[tuple[Interval, asyncio.Task[_Fetched]]] = collections.deque()

    def top_up() -> None:
        while len(pending) < ahead:
            w = next(todo, None)
            if w is None:
                return
            pending.append((w, asyncio.create_task(_collect(job, client, w))))

    try:
        top_up()
        while pending:
            w, task = pending.popleft()
            fetched = await task  # anything but an ExchangeError is a bug: raised
            top_up()  # the next window's request goes out while this one is written
            for chunk in fetched.chunks:
                report.rows += await _write(storage, job, chunk)
                if chunk.confirmed is not None:
                    bar.add(job.progress_units(chunk.confirmed))
            if fetched.error is not None:
                report.failed.append(w)
                report.errors.append(f"{w}: {fetched.error}")
                log.warning("%s: window %s failed: %s", job.key, w, fetched.error)
    finally:
        for _, task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*(t for _, t in pending), return_exceptions=True)


@define
class _Fetched:
    """A window's chunks, and the error that ended it early (chunks before it stand)."""

    chunks: list[Chunk]
    error: ExchangeError | None = None


async def _collect(job: BackfillJob, client: ExchangeClient, window: Interval) -> _Fetched:
    out = _Fetched([])
    try:
        async for chunk in job.fetch(client, window):
            out.chunks.append(chunk)
    except ExchangeError as exc:
        out.error = exc
    return out


async def _write(storage: DataCollectionStorage, job: BackfillJob, chunk: Chunk) -> int:
    # A write started is finished even when the task is cancelled: the thread
    # would run on anyway, and the caller must not think it did not happen.
    task = asyncio.ensure_future(
        asyncio.to_thread(
            storage.write, job.key, chunk.frame, covered=chunk.confirmed, source=job.source
        )
    )
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


def candles_in(interval: Interval, step: int) -> int:
    """Candles of ``step`` ms in an aligned interval."""
    return max(1, math.ceil(interval.duration / step))
