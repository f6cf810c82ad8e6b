"""``DataCollector``: runs live collectors, restarts them, watches their health, refills gaps."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Final, Literal, Self

import pandas as pd
from attrs import define, field, frozen

from ._errors import ExchangeError, InvalidRequest
from ._intervals import Interval, IntervalSet
from ._keys import DatasetKey
from ._time import Timeframe
from .collectors import Clock, DataSourceCollector, as_clock, load_collectors, load_config
from .storage import DataCollectionStorage, default_storage, open_storage

__all__ = ["Backoff", "DataCollector", "load_collectors", "load_config"]

log: Final = logging.getLogger("mdcollect.collector")

#: Seconds after a hole's end before it is refilled (the exchange publishes trades and
#: candles of the last moment a little late).
GAP_GRACE: Final = 1.0

State = Literal["idle", "starting", "running", "backoff", "stopped", "disabled", "failed"]


@frozen
class Backoff:
    """Restart delays: ``initial * factor**n`` capped at ``maximum``, each with up to
    ``jitter`` (a fraction) taken off at random; a run that lasted ``reset_after``
    seconds starts the sequence again.

    >>> Backoff(initial=1.0, maximum=60.0).delay(3) <= 8.0
    True
    """

    initial: float = 1.0
    maximum: float = 60.0
    factor: float = 2.0
    jitter: float = 0.25
    reset_after: float = 60.0

    def __attrs_post_init__(self) -> None:
        if not (0 < self.initial <= self.maximum) or self.factor < 1 or not 0 <= self.jitter < 1:
            raise InvalidRequest(
                f"restart backoff needs 0 < initial <= maximum, factor >= 1, 0 <= jitter < 1; "
                f"got {self!r}"
            )

    def delay(self, attempt: int) -> float:
        """Seconds to wait before restart number ``attempt`` (0-based)."""
        d = min(self.maximum, self.initial * self.factor ** min(attempt, 64))
        return d * (1 - self.jitter * random.random())


class _Tracked(DataCollectionStorage):
    """The storage handed to one collector: counts what reaches storage and spots gaps."""

    def __init__(self, inner: DataCollectionStorage, slot: _Slot, owner: DataCollector) -> None:
        self.inner = inner
        self.url = inner.url
        self._slot = slot
        self._owner = owner
        self._lock = threading.Lock()
        self._cov_end: dict[DatasetKey, int] = {}

    def write(
        self,
        key: DatasetKey | str,
        frame: pd.DataFrame,
        *,
        covered: Interval | IntervalSet | None = None,
    ) -> int:
        n = self.inner.write(key, frame, covered=covered)
        k = key if isinstance(key, DatasetKey) else DatasetKey.parse(key)
        spans = [covered] if isinstance(covered, Interval) else list(covered or ())
        gaps: list[tuple[DatasetKey, Interval]] = []
        with self._lock:
            slot = self._slot
            slot.rows_stored += n
            if n:
                slot.last_data = self._owner.clock.monotonic()
                slot.last_data_ms = self._owner.clock.time_ms()
            # spans in order, as if written one by one: what lies between them is a gap
            for span in spans:
                end = self._cov_end.get(k)
                gap = None
                if end is None:
                    gap = self._resume_gap(k, span.start)
                elif span.start > end:
                    gap = Interval(end, span.start)
                self._cov_end[k] = span.end if end is None else max(end, span.end)
                if gap is not None:
                    gaps.append((k, gap))
                if end is None or gap is not None:
                    gaps += self._derived_gaps(k, span.start, gap)
        for gk, g in gaps:
            self._owner._gap_found(self._slot, gk, g)
        return n

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
        for dk in self._slot.collector.derived_keys(key):
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
        window = self._owner.resume_window
        if window <= 0:
            return None
        # rows written just now already reached the store: look before them
        before = self.inner.coverage(key) & Interval(0, start)
        if not before:
            return None
        prior = before[-1].end
        if prior >= start:
            return None
        if start - prior > window * 1000:
            log.warning(
                "%s: %s was last covered %s, more than resume_window (%gs) ago; "
                "not refilled (ensure_data fills longer holes)",
                self._slot.collector.name,
                key,
                pd.Timestamp(prior, unit="ms", tz="UTC"),
                window,
            )
            return None
        return Interval(prior, start)

    def read(self, *args: Any, **kwargs: Any) -> pd.DataFrame:
        return self.inner.read(*args, **kwargs)

    def coverage(self, key: DatasetKey | str) -> IntervalSet:
        return self.inner.coverage(key)

    def _write(self, key: DatasetKey, frame: pd.DataFrame, covered: IntervalSet | None) -> int:
        return self.inner._write(key, frame, covered)

    def _read(
        self, key: DatasetKey, start: int | None, end: int | None, columns: list[str] | None
    ) -> pd.DataFrame:
        return self.inner._read(key, start, end, columns)

    def _keys(self) -> list[DatasetKey]:
        return self.inner._keys()

    def _delete(self, key: DatasetKey, start: int | None, end: int | None) -> None:
        self.inner._delete(key, start, end)

    def _store(self, key: str, payload: str, timestamp: int) -> None:
        self.inner._store(key, payload, timestamp)

    def _fetch(self, key: str, start: int, end: int) -> list[tuple[int, str]]:
        return self.inner._fetch(key, start, end)


@define(eq=False)
class _Slot:
    collector: DataSourceCollector
    should_run: bool = True
    state: State = "idle"
    task: asyncio.Task[None] | None = None
    restarts: int = 0
    silent_restarts: int = 0
    errors: int = 0
    permanent_errors: int = 0  # in a row, with nothing stored in between
    last_error: str | None = None
    started: float | None = None  # monotonic, current run
    first_started: float | None = None
    rows_stored: int = 0
    last_data: float | None = None
    last_data_ms: int | None = None
    gaps_found: int = 0
    gaps_filled: int = 0
    gaps_waiting: int = 0  # holes reaching into candles not closed yet
    delays: list[float] = field(factory=list)
    storage: _Tracked | None = None


class DataCollector:
    """Runs collectors concurrently; restarts crashed or silent ones; refills gaps.

    * A collector that raises is logged with its traceback, counted, and
      restarted after ``restart_backoff`` (a :class:`Backoff`: capped exponential
      with jitter, so a crash loop does not spin). A bad request
      (:class:`~mdcollect.InvalidRequest`, e.g. an unknown symbol) is not
      retried: the collector is marked ``failed``; so is one that met a permanent
      exchange error (a 4xx, an unsupported method) ``max_permanent_errors``
      times in a row with nothing stored in between. :meth:`enable` retries it.
    * A collector whose feed shows no sign of life (data, a successful poll,
      or any websocket frame: the exchange's pings, or pongs to the pings sent
      every ``max_silence / 3`` seconds) for ``max_silence`` seconds is
      restarted. A quiet market still answers pings, so it causes no
      reconnect storm; a stalled connection does not, so it is replaced.
    * Freshness is measured from what reaches storage: each collector writes
      through a wrapper of ``storage``. When a collector's coverage resumes after
      a hole (a reconnect), the hole is refilled through the backfill engine, so
      stored closed candles and trades have no gap. So is the hole between what
      the store already held and a collector's first data (the daemon was
      down), when it is at most ``resume_window`` seconds long (0: never).
    * :meth:`stop` flushes every buffered row (``stop_timeout`` seconds at most).
    * Health (:meth:`health`, :meth:`status`): a collector is unhealthy when it
      failed, is waiting to restart after an error, has a silent feed, has
      met only errors since it started (nothing stored), or has stored nothing
      ``first_data_grace`` seconds after it started (plus what its kind needs
      to wait, such as a candle closing: ``collector.first_data_within``).
    * Time is read from ``clock`` (a :class:`~mdcollect.collectors.Clock`; the
      system clocks by default), which every collector added here shares:
      silence, backoff resets, gap grace and the ages reported. Tests pass a
      :class:`~mdcollect.collectors.ManualClock` and advance it.

    ``storage`` is a :class:`~mdcollect.DataCollectionStorage`, a URL, or
    ``None`` for the default store.

    >>> collectors = load_collectors("collect.toml")
    >>> async with DataCollector(collectors, "arctic+lmdb:///data/md", max_silence=30) as dc:
    ...     await asyncio.sleep(3600)
    ...     dc.status()["collectors"]["binance:trades:BTC/USDT"]["restarts"]
    0

    Logs go to the ``mdcollect.collector`` logger. Added in 0.1.0.
    """

    def __init__(
        self,
        collectors: Iterable[DataSourceCollector],
        storage: DataCollectionStorage | str | None = None,
        *,
        restart_backoff: Backoff | float = Backoff(),
        max_silence: float = 60.0,
        backfill_gaps: bool = True,
        stop_timeout: float = 30.0,
        check_interval: float | None = None,
        max_permanent_errors: int = 3,
        resume_window: float = 6 * 3600.0,
        first_data_grace: float = 60.0,
        clock: Clock | None = None,
    ) -> None:
        self.clock: Clock = as_clock(clock)
        if isinstance(restart_backoff, int | float) and not isinstance(restart_backoff, bool):
            restart_backoff = Backoff(initial=float(restart_backoff))
        if not isinstance(restart_backoff, Backoff):
            raise InvalidRequest(
                f"restart_backoff must be a Backoff or seconds, got {restart_backoff!r}"
            )
        if (
            isinstance(max_silence, bool)
            or not isinstance(max_silence, int | float)
            or max_silence <= 0
        ):
            raise InvalidRequest(f"max_silence must be seconds > 0, got {max_silence!r}")
        if (
            isinstance(max_permanent_errors, bool)
            or not isinstance(max_permanent_errors, int)
            or max_permanent_errors < 1
        ):
            raise InvalidRequest(
                f"max_permanent_errors must be an int >= 1, got {max_permanent_errors!r}"
            )
        self.max_permanent_errors = max_permanent_errors
        if (
            isinstance(resume_window, bool)
            or not isinstance(resume_window, int | float)
            or resume_window < 0
        ):
            raise InvalidRequest(f"resume_window must be seconds >= 0, got {resume_window!r}")
        self.resume_window = float(resume_window)
        if (
            isinstance(first_data_grace, bool)
            or not isinstance(first_data_grace, int | float)
            or first_data_grace < 0
        ):
            raise InvalidRequest(f"first_data_grace must be seconds >= 0, got {first_data_grace!r}")
        self.first_data_grace = float(first_data_grace)
        self.backoff = restart_backoff
        self.max_silence = float(max_silence)
        self.backfill_gaps = backfill_gaps
        self.stop_timeout = float(stop_timeout)
        self.check_interval = (
            float(check_interval) if check_interval is not None else min(1.0, self.max_silence / 4)
        )
        if isinstance(storage, DataCollectionStorage):
            self.storage = storage
            self._owns_storage = False
        elif isinstance(storage, str):
            self.storage = open_storage(storage)
            self._owns_storage = True
        elif storage is None:
            self.storage = default_storage()
            self._owns_storage = True
        else:
            raise InvalidRequest(f"storage must be a storage or a URL, got {storage!r}")
        self._slots: dict[str, _Slot] = {}
        for c in collectors:
            self._add_slot(c)
        self._running = False
        self._started: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._gaps: asyncio.Queue[tuple[_Slot, DatasetKey, Interval]] | None = None
        # holes reaching into candles not closed yet: (due on self.clock, slot, key, hole)
        self._waiting: list[tuple[int, _Slot, DatasetKey, Interval]] = []
        self._backfiller: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()

    @classmethod
    def from_config(cls, config: Any, **overrides: Any) -> DataCollector:
        """A collector for a config file or dict (see :func:`load_config`).

        >>> dc = DataCollector.from_config("collect.toml")
        """
        cfg = load_config(config)
        opts: dict[str, Any] = dict(cfg.options)
        if isinstance(opts.get("restart_backoff"), dict):
            opts["restart_backoff"] = Backoff(**opts["restart_backoff"])
        opts.update(overrides)
        storage = opts.pop("storage", cfg.storage)
        return cls(cfg.collectors, storage, **opts)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start every enabled collector in the background (returns at once)."""
        if self._running:
            return
        self._loop = asyncio.get_running_loop()
        self._running = True
        self._stopped.clear()
        self._started = self.clock.monotonic()
        self._gaps = asyncio.Queue(1000)
        self._backfiller = asyncio.create_task(self._backfill_loop(), name="mdcollect backfill")
        for slot in self._slots.values():
            if slot.should_run:
                self._launch(slot)
        log.info("started %d collectors", len(self._slots))

    async def run(self) -> None:
        """Start, then run until :meth:`stop` is called (or this task is cancelled)."""
        await self.start()
        try:
            await self._stopped.wait()
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Stop every collector, flushing their buffered rows, and the gap backfills."""
        if not self._running:
            self._stopped.set()
            return
        self._running = False
        tasks = []
        for slot in self._slots.values():
            if slot.task is not None:
                slot.task.cancel()
                tasks.append(slot.task)
        if self._backfiller is not None:
            self._backfiller.cancel()
            tasks.append(self._backfiller)
        if tasks:
            await asyncio.wait(tasks, timeout=self.stop_timeout + 5)
        for _, slot, _, _ in self._waiting:
            slot.gaps_waiting -= 1
        self._waiting.clear()
        for slot in self._slots.values():
            slot.task = None
            if slot.state != "failed":
                slot.state = "stopped" if slot.should_run else "disabled"
            await slot.collector.aclose()
        self._stopped.set()
        log.info("stopped")

    def close(self) -> None:
        """Close the storage if this collector opened it."""
        if self._owns_storage:
            self.storage.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------------ runtime changes

    @property
    def collectors(self) -> list[DataSourceCollector]:
        """The collectors, in the order they were added."""
        return [s.collector for s in self._slots.values()]

    def add(self, collector: DataSourceCollector) -> None:
        """Add a collector (started at once when running). Names must be unique."""
        slot = self._add_slot(collector)
        if self._running:
            self._launch(slot)

    async def remove(self, name: str) -> DataSourceCollector:
        """Stop a collector (flushing it) and forget it; returns it."""
        slot = self._slot(name)
        await self._halt(slot)
        del self._slots[name]
        await slot.collector.aclose()
        return slot.collector

    async def disable(self, name: str) -> None:
        """Stop a collector (flushing it) but keep it, to :meth:`enable` later."""
        slot = self._slot(name)
        slot.should_run = False
        await self._halt(slot)
        slot.state = "disabled"

    def enable(self, name: str) -> None:
        """Run a disabled (or failed) collector again."""
        slot = self._slot(name)
        slot.should_run = True
        slot.permanent_errors = 0
        if self._running and slot.task is None:
            self._launch(slot)
        elif not self._running:
            slot.state = "idle"

    # ------------------------------------------------------------------ reports

    def status(self) -> dict[str, Any]:
        """Plain-dict status: overall, then per collector name.

        >>> dc.status()["collectors"]["binance:trades:BTC/USDT"]["state"]
        'running'
        """
        now = self.clock.monotonic()
        cols = {name: self._slot_status(slot, now) for name, slot in self._slots.items()}
        return {
            "running": self._running,
            "uptime": (now - self._started) if self._started is not None and self._running else 0.0,
            "is_healthy": all(c["is_healthy"] for c in cols.values()),
            "issues": [f"{n}: {i}" for n, c in cols.items() for i in c["issues"]],
            "collectors": cols,
        }

    def health(self) -> dict[str, Any]:
        """Plain-dict health: ``is_healthy``, the ``issues`` list, and per collector
        its state, freshness (from what reached storage) and issues.

        >>> dc.health()["is_healthy"]
        True
        """
        st = self.status()
        return {
            "is_healthy": st["is_healthy"],
            "issues": st["issues"],
            "collectors": {
                n: {
                    k: c[k]
                    for k in (
                        "state",
                        "is_healthy",
                        "issues",
                        "time_since_data",
                        "last_message_time",
                        "restarts",
                        "rows_dropped",
                    )
                }
                for n, c in st["collectors"].items()
            },
        }

    def _slot_status(self, slot: _Slot, now: float) -> dict[str, Any]:
        c = slot.collector
        s = c.stats
        issues: list[str] = []
        since_data = None if slot.last_data is None else now - slot.last_data
        hb = c.heartbeat()
        since_hb = None if hb is None else now - hb
        if slot.should_run and self._running:
            if slot.state == "failed":
                issues.append(f"failed: {slot.last_error}")
            elif slot.state == "backoff":
                issues.append(f"restarting after error: {slot.last_error}")
            if since_hb is not None and since_hb > self.max_silence:
                issues.append(f"feed silent for {since_hb:.0f}s")
            if slot.rows_stored == 0 and slot.first_started is not None and slot.state != "failed":
                # counted from the first start, not the current run: a collector that
                # keeps crashing before its first row must not look fresh after each restart
                waited = now - slot.first_started
                grace = self.first_data_grace + c.first_data_within
                if slot.errors:
                    issues.append(
                        f"only errors since it started {waited:.0f}s ago ({slot.errors} errors,"
                        f" no data stored); last: {slot.last_error}"
                    )
                elif waited > grace:
                    issues.append(
                        f"no data stored in the {waited:.0f}s since it started"
                        f" (allowed: {grace:g}s)"
                    )
            if c.buffered_rows >= c.buffer_rows * 0.5:
                issues.append(f"write buffer {c.buffered_rows}/{c.buffer_rows} rows")
        if s.rows_dropped:
            issues.append(f"{s.rows_dropped} rows dropped (storage unavailable)")
        return {
            "name": c.name,
            "exchange": c.exchange,
            "symbols": list(c.symbols),
            "kinds": c.kinds,
            "mode": c.mode,
            "state": slot.state,
            "should_be_running": slot.should_run,
            "messages_received": s.messages_received,
            "messages_processed": s.rows_written,
            "rows_received": s.rows_received,
            "rows_written": s.rows_written,
            "rows_stored": slot.rows_stored,
            "rows_buffered": c.buffered_rows,
            "messages_queued": c.queued_messages,
            "rows_dropped": s.rows_dropped,
            "duplicates": s.duplicates,
            "feed_overflows": s.feed_overflows,
            "write_errors": s.write_errors,
            "errors": slot.errors,
            "restarts": slot.restarts,
            "silent_restarts": slot.silent_restarts,
            "gaps_found": slot.gaps_found,
            "gaps_filled": slot.gaps_filled,
            "gaps_waiting": slot.gaps_waiting,
            "uptime": (now - slot.started)
            if slot.started is not None and slot.state == "running"
            else 0.0,
            "last_message_time": s.last_message,
            "last_data_time": slot.last_data_ms,
            "last_error": slot.last_error or s.last_error,
            "time_since_data": since_data,
            "time_since_heartbeat": since_hb,
            "issues": issues,
            "is_healthy": not issues,
        }

    # ------------------------------------------------------------------ internals

    def _add_slot(self, collector: DataSourceCollector) -> _Slot:
        if not isinstance(collector, DataSourceCollector):
            raise InvalidRequest(f"expected a DataSourceCollector, got {collector!r}")
        if collector.name in self._slots:
            raise InvalidRequest(f"a collector named {collector.name!r} is already present")
        collector.clock = self.clock  # one timeline for the feed's heartbeat and the checks
        slot = _Slot(collector)
        slot.storage = _Tracked(self.storage, slot, self)
        self._slots[collector.name] = slot
        return slot

    def _slot(self, name: str) -> _Slot:
        slot = self._slots.get(name)
        if slot is None:
            raise InvalidRequest(f"no collector named {name!r}; present: {sorted(self._slots)}")
        return slot

    def _launch(self, slot: _Slot) -> None:
        slot.state = "starting"
        slot.task = asyncio.create_task(
            self._supervise(slot), name=f"supervise {slot.collector.name}"
        )

    async def _halt(self, slot: _Slot) -> None:
        task, slot.task = slot.task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task], timeout=self.stop_timeout + 5)

    async def _supervise(self, slot: _Slot) -> None:
        c = slot.collector
        attempt = 0
        assert slot.storage is not None
        keepalive = getattr(c.client(), "ws_keepalive", None)
        if keepalive is not None:
            keepalive(self.max_silence / 3)
        while slot.should_run and self._running:
            slot.state = "running"
            slot.started = self.clock.monotonic()
            stored = slot.rows_stored
            if slot.first_started is None:
                slot.first_started = slot.started
            run = asyncio.create_task(c.run(slot.storage), name=f"run {c.name}")
            try:
                reason = await self._watch(slot, run)
            except asyncio.CancelledError:
                run.cancel()
                await asyncio.wait([run], timeout=self.stop_timeout)
                raise
            except InvalidRequest as exc:
                slot.errors += 1
                slot.last_error = repr(exc)
                slot.state = "failed"
                log.error("%s: bad request, not restarted: %s", c.name, exc)
                slot.task = None
                return
            except Exception as exc:  # any crash is logged, counted and restarted with backoff
                slot.errors += 1
                slot.last_error = repr(exc)
                permanent = isinstance(exc, ExchangeError) and not exc.transient
                if permanent and slot.rows_stored == stored:
                    slot.permanent_errors += 1
                else:
                    slot.permanent_errors = int(permanent)
                if slot.permanent_errors >= self.max_permanent_errors:
                    slot.state = "failed"
                    slot.task = None
                    log.error(
                        "%s: permanent error %d times in a row, not restarted: %s",
                        c.name,
                        slot.permanent_errors,
                        exc,
                    )
                    return
                if isinstance(exc, ExchangeError) and exc.transient:
                    log.warning("%s: %s; reconnecting", c.name, exc)
                else:
                    log.error("%s: crashed; restarting", c.name, exc_info=exc)
            else:
                slot.permanent_errors = 0
                log.warning("%s: %s; restarting", c.name, reason)
                if reason == "silent":
                    slot.silent_restarts += 1
            if not (slot.should_run and self._running):
                break
            if self.clock.monotonic() - slot.started >= self.backoff.reset_after:
                attempt = 0
            delay = self.backoff.delay(attempt)
            attempt += 1
            slot.restarts += 1
            slot.delays.append(delay)
            slot.state = "backoff"
            await asyncio.sleep(delay)

    async def _watch(self, slot: _Slot, run: asyncio.Task[None]) -> str:
        """Wait for ``run`` to end (its error propagates) or to fall silent (then cancel it)."""
        c = slot.collector
        while True:
            done, _ = await asyncio.wait([run], timeout=self.check_interval)
            if done:
                run.result()
                return "ended"
            hb = c.heartbeat()
            assert slot.started is not None
            last = max(hb if hb is not None else slot.started, slot.started)
            silent = self.clock.monotonic() - last
            if silent > self.max_silence:
                log.warning("%s: no sign of life for %.1fs", c.name, silent)
                run.cancel()
                await asyncio.wait([run], timeout=self.stop_timeout)
                if run.done() and not run.cancelled() and run.exception() is not None:
                    log.debug("%s: run ended with %r", c.name, run.exception())
                return "silent"

    # -- gaps

    def _gap_found(self, slot: _Slot, key: DatasetKey, gap: Interval) -> None:
        """Called from the writer thread when coverage resumes after a hole."""
        slot.gaps_found += 1
        log.info("%s: gap %s in %s; backfilling", slot.collector.name, gap, key)
        loop = self._loop
        if loop is None or not self.backfill_gaps:
            return
        loop.call_soon_threadsafe(self._queue_gap, slot, key, gap)

    def _queue_gap(self, slot: _Slot, key: DatasetKey, gap: Interval) -> None:
        if self._gaps is None or not self._running:
            return
        # a hole reaching into a candle that is still open waits for it to close
        due = gap.end + int(GAP_GRACE * 1000)
        if due > self.clock.time_ms():
            slot.gaps_waiting += 1
            self._waiting.append((due, slot, key, gap))
            return
        try:
            self._gaps.put_nowait((slot, key, gap))
        except asyncio.QueueFull:
            log.error(
                "%s: too many gaps queued; %s %s not backfilled", slot.collector.name, key, gap
            )

    def _release_due(self) -> None:
        """Queue the waiting holes whose candles have closed (on ``self.clock``)."""
        now = self.clock.time_ms()
        due = [w for w in self._waiting if w[0] <= now]
        if not due:
            return
        self._waiting = [w for w in self._waiting if w[0] > now]
        for _, slot, key, gap in due:
            slot.gaps_waiting -= 1
            self._queue_gap(slot, key, gap)

    async def _backfill_loop(self) -> None:
        assert self._gaps is not None
        while True:
            self._release_due()
            try:
                slot, key, gap = await asyncio.wait_for(self._gaps.get(), self.check_interval)
            except TimeoutError:
                continue
            for attempt in range(5):
                try:
                    if await self._backfill(slot, key, gap):
                        slot.gaps_filled += 1
                        break
                except InvalidRequest as exc:
                    log.error("%s: cannot backfill %s %s: %s", slot.collector.name, key, gap, exc)
                    break
                except Exception as exc:  # an exchange or storage failure: try again later
                    log.warning("%s: backfill of %s failed: %r", slot.collector.name, key, exc)
                await asyncio.sleep(self.backoff.delay(attempt))

    async def _backfill(self, slot: _Slot, key: DatasetKey, gap: Interval) -> bool:
        from .backfill import run_jobs

        if not (IntervalSet([gap]) - self.storage.coverage(key)):
            return True  # refilled already (the same hole found twice)
        jobs = slot.collector.backfill_jobs(key, gap)
        if not jobs:
            return True
        client = slot.collector.client()
        reports = await run_jobs(
            jobs, self.storage, client, now=self.clock.time_ms(), progress=False
        )
        ok = all(r.ok for r in reports)
        if ok:
            log.info("%s: backfilled %s %s", slot.collector.name, key, gap)
        return ok
