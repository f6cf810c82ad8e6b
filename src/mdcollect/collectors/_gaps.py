"""Gaps in live data: spotted as a collector writes, refilled through the backfill engine.

A collector's coverage of a dataset grows span by span as it writes. When a span
starts after the end of the last one (a reconnect, a stall, ccxt's cache
overflowing), the hole between them is a gap; so is the hole between what the
store held before the collector started and its first live data (the daemon was
down), when at most ``resume_window`` seconds long. :class:`GapTracker` spots
them from the writes it is shown (a :data:`~mdcollect.collectors.WriteObserver`
of the supervisor calls it, in the writer thread); :class:`GapRefiller` refills
them on the event loop, each once the candles it reaches into have closed
(:data:`GAP_GRACE` after its end, on the supervisor's clock), retrying failures
with the supervisor's :class:`~mdcollect._backoff.Backoff`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Final

from attrs import define

from .._backoff import Backoff, RetryPolicy
from .._errors import InvalidRequest
from .._intervals import Interval, IntervalSet
from .._keys import DatasetKey
from .._time import Timeframe, ms_to_timestamp
from ..storage import DataCollectionStorage
from ._base import DataSourceCollector
from ._clock import Clock

__all__ = ["GAP_GRACE", "GapCounts", "GapRefiller", "GapTracker"]

log: Final = logging.getLogger("mdcollect.collector")

#: Seconds after a hole's end before it is refilled (the exchange publishes trades and
#: candles of the last moment a little late).
GAP_GRACE: Final = 1.0

#: Attempts at refilling one gap before it is given up (and logged).
_REFILL_ATTEMPTS: Final = 5


@define(eq=False)
class GapCounts:
    """The gaps of one collector: found, refilled, and waiting for their candles to close."""

    collector: DataSourceCollector
    found: int = 0
    filled: int = 0
    waiting: int = 0
    abandoned: int = 0  # given up after every attempt, or refused: left as holes


class GapTracker:
    """Spots the holes in what one collector writes to ``storage``.

    :meth:`observe` is shown each write's coverage in order (from the writer
    thread); it returns the holes it revealed, in the written dataset and in the
    datasets the collector derives from it (candles from trades).
    """

    def __init__(
        self,
        collector: DataSourceCollector,
        storage: DataCollectionStorage,
        *,
        resume_window: float,
    ) -> None:
        self.collector = collector
        self.storage = storage
        self.resume_window = resume_window
        self._lock = threading.Lock()
        self._cov_end: dict[DatasetKey, int] = {}

    def observe(self, key: DatasetKey, covered: IntervalSet) -> list[tuple[DatasetKey, Interval]]:
        """The holes ``covered`` (just written to ``key``) leaves after what came before."""
        gaps: list[tuple[DatasetKey, Interval]] = []
        with self._lock:
            # spans in order, as if written one by one: what lies between them is a gap
            for span in covered:
                end = self._cov_end.get(key)
                gap = None
                if end is None:
                    gap = self._resume_gap(key, span.start)
                elif span.start > end:
                    gap = Interval(end, span.start)
                self._cov_end[key] = span.end if end is None else max(end, span.end)
                if gap is not None:
                    gaps.append((key, gap))
                if end is None or gap is not None:
                    gaps += self._derived_gaps(key, span.start, gap)
        return gaps

    def _derived_gaps(
        self, key: DatasetKey, start: int, gap: Interval | None
    ) -> list[tuple[DatasetKey, Interval]]:
        """Holes in datasets built from ``key`` (candles from trades) when ``key``'s
        coverage starts anew at ``start``: a session's candles begin at the first
        whole candle after ``start``, so a hole in the trades is a hole in the
        candles widened to whole candles. Found here, at once, rather than when the
        next live candle closes: with a reconnect more often than a candle's length
        (Binance drops connections daily) that would be never."""
        out: list[tuple[DatasetKey, Interval]] = []
        for dk in self.collector.derived_keys(key):
            assert dk.timeframe is not None
            tf = Timeframe.parse(dk.timeframe)
            head = tf.ceil(start)
            dgap = (
                Interval(tf.floor(gap.start), tf.ceil(gap.end))
                if gap is not None
                else self._resume_gap(dk, head)
            )
            self._cov_end[dk] = max(self._cov_end.get(dk, head), head)
            if dgap is not None:
                out.append((dk, dgap))
        return out

    def _resume_gap(self, key: DatasetKey, start: int) -> Interval | None:
        """The hole between what the store held before this collector and its first
        live data at ``start`` (the daemon was down), when short enough to refill."""
        window = self.resume_window
        if window <= 0:
            return None
        # rows written just now already reached the store: look before them
        before = self.storage.coverage(key) & Interval(0, start)
        if not before:
            return None
        prior = before[-1].end
        if prior >= start:
            return None
        if start - prior > window * 1000:
            log.warning(
                "%s: %s was last covered %s, more than resume_window (%gs) ago; "
                "not refilled (ensure_data fills longer holes)",
                self.collector.name,
                key,
                ms_to_timestamp(prior),
                window,
            )
            return None
        return Interval(prior, start)


class _NotYet(Exception):
    """A refill that did not complete: worth another attempt."""

    transient = True


class GapRefiller:
    """Refills gaps through the backfill engine, one at a time, on the event loop.

    :meth:`add` (thread-safe) queues a gap; :meth:`run` works the queue until
    cancelled. A gap reaching into a candle not closed yet (on ``clock``) waits
    until it has, plus :data:`GAP_GRACE`. A failed refill is retried
    ``_REFILL_ATTEMPTS`` times with waits from ``backoff``, then logged and dropped.
    """

    def __init__(
        self,
        storage: DataCollectionStorage,
        clock: Clock,
        backoff: Backoff,
        *,
        check_interval: float,
    ) -> None:
        self.storage = storage
        self.clock = clock
        self.check_interval = check_interval
        self.retry = RetryPolicy(
            max_attempts=_REFILL_ATTEMPTS,
            base_delay=backoff.initial,
            max_delay=backoff.maximum,
            jitter=backoff.jitter,  # type: ignore[arg-type]  # a fraction is valid too
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[GapCounts, DatasetKey, Interval]] | None = None
        # holes reaching into candles not closed yet: (due on self.clock, counts, key, hole)
        self._waiting: list[tuple[int, GapCounts, DatasetKey, Interval]] = []

    def open(self) -> None:
        """Accept gaps from now on (call on the event loop that will :meth:`run`)."""
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue(1000)

    def close(self) -> None:
        """Forget the gaps still waiting; accept no more."""
        self._queue = None
        for _, counts, _, _ in self._waiting:
            counts.waiting -= 1
        self._waiting.clear()

    def add(self, counts: GapCounts, key: DatasetKey, gap: Interval) -> None:
        """Queue ``gap`` of ``key`` for refilling (from any thread)."""
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._queue_gap, counts, key, gap)

    def _queue_gap(self, counts: GapCounts, key: DatasetKey, gap: Interval) -> None:
        if self._queue is None:
            return
        # a hole reaching into a candle that is still open waits for it to close
        due = gap.end + int(GAP_GRACE * 1000)
        if due > self.clock.time_ms():
            counts.waiting += 1
            self._waiting.append((due, counts, key, gap))
            return
        try:
            self._queue.put_nowait((counts, key, gap))
        except asyncio.QueueFull:
            log.error(
                "%s: too many gaps queued; %s %s not backfilled", counts.collector.name, key, gap
            )

    def _release_due(self) -> None:
        """Queue the waiting holes whose candles have closed (on ``self.clock``)."""
        now = self.clock.time_ms()
        due = [w for w in self._waiting if w[0] <= now]
        if not due:
            return
        self._waiting = [w for w in self._waiting if w[0] > now]
        for _, counts, key, gap in due:
            counts.waiting -= 1
            self._queue_gap(counts, key, gap)

    async def run(self) -> None:
        """Refill queued gaps until cancelled."""
        queue = self._queue
        assert queue is not None, "open() first"
        while True:
            self._release_due()
            try:
                # asyncio.timeout, not wait_for: 3.11's wait_for drops a cancel that comes
                # as the item does, and the item with it (a gap nobody refills)
                async with asyncio.timeout(self.check_interval):
                    counts, key, gap = await queue.get()
            except TimeoutError:
                continue
            await self._refill(counts, key, gap)

    async def _refill(self, counts: GapCounts, key: DatasetKey, gap: Interval) -> None:
        name = counts.collector.name

        async def attempt() -> None:
            try:
                done = await self.backfill(counts.collector, key, gap)
            except InvalidRequest:
                raise
            except Exception as exc:  # an exchange or storage failure: try again later
                raise _NotYet(f"{exc!r}") from exc
            if not done:
                raise _NotYet("some windows were not filled")

        try:
            await self.retry.run(
                attempt, what=f"{name}: backfill of {key} {gap}", retry_on=(_NotYet,), log=log
            )
        except InvalidRequest as exc:
            counts.abandoned += 1
            log.error("%s: cannot backfill %s %s: %s", name, key, gap, exc)
        except _NotYet as exc:
            counts.abandoned += 1
            log.error(
                "%s: backfill of %s %s failed %d times, given up: %s",
                name, key, gap, _REFILL_ATTEMPTS, exc,
            )  # fmt: skip
        else:
            counts.filled += 1

    async def backfill(
        self, collector: DataSourceCollector, key: DatasetKey, gap: Interval
    ) -> bool:
        """Refill ``gap`` of ``key`` with ``collector``'s backfill jobs; True when complete."""
        from ..backfill import run_jobs

        # coverage is a storage read: off the event loop, as writes are
        covered = await asyncio.to_thread(self.storage.coverage, key)
        if not (IntervalSet([gap]) - covered):
            return True  # refilled already (the same hole found twice)
        jobs = collector.backfill_jobs(key, gap)
        if not jobs:
            return True
        client = collector.client()
        reports = await run_jobs(
            jobs, self.storage, client, now=self.clock.time_ms(), progress=False
        )
        ok = all(r.ok for r in reports)
        if ok:
            log.info("%s: backfilled %s %s", collector.name, key, gap)
        return ok
