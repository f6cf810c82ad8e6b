"""``DataCollector``: runs live collectors, restarts them, watches their health, refills gaps.

The supervisor hands each collector the real storage and a write observer
(:data:`~mdcollect.collectors.WriteObserver`) that counts what reached storage
and shows the coverage written to the collector's :class:`~._gaps.GapTracker`;
the gaps it spots go to one :class:`~._gaps.GapRefiller`. Restarts wait on the
one :class:`~mdcollect._backoff.Backoff`; every crash that is not a transient
exchange error counts towards giving up (``max_crashes``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Sequence
from types import TracebackType
from typing import Any, Final, Literal, Self

import pandas as pd
from attrs import define, field

from .._audit import JUMP_MADS, MARK_BAND, ZERO_VOLUME_RUN, AuditParams, audit_datasets, repair_span
from .._backoff import Backoff
from .._errors import ExchangeError, InvalidRequest, MdcollectError
from .._intervals import Interval, IntervalSet
from .._keys import DatasetKey
from .._logs import LogCallback, check_log_callback, forwarding_logs, with_logs
from .._time import SECOND
from ..storage import DataCollectionStorage, default_storage, open_storage
from ._alerts import AlertWatch, WebhookAlerts
from ._base import DataSourceCollector, WriteObserver
from ._callbacks import RowCallback, RowCallbacks
from ._clock import Clock, as_clock
from ._config import load_config
from ._gaps import GapCounts, GapRefiller, GapTracker
from ._options import SupervisorOptions

__all__ = ["DataCollector"]

log: Final = logging.getLogger("mdcollect.collector")

#: The default restart schedule: 1 s doubling up to a minute, a quarter jittered.
_RESTART_BACKOFF: Final = Backoff()

#: Seconds of the clock over which ``rows_per_second`` is measured.
RATE_WINDOW: Final = 60.0

State = Literal["idle", "starting", "running", "backoff", "stopped", "disabled", "failed"]


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
    crashes: int = 0  # in a row, with nothing stored in between; transient errors aside
    delays: list[float] = field(factory=list)
    restart_times: deque[float] = field(factory=deque)  # monotonic, within restart_window
    last_restart_ms: int | None = None
    last_restart_reason: str | None = None
    reconnects: int = 0  # restarts after a transient exchange error or a silent feed
    connected: float = 0.0  # seconds run in the runs that ended
    run_started: float | None = None  # monotonic, while a run is on
    recent: deque[tuple[float, int]] = field(factory=deque)  # (monotonic, rows) stored
    gaps: GapCounts = field(init=False)
    tracker: GapTracker | None = None
    lock: threading.Lock = field(factory=threading.Lock)

    def __attrs_post_init__(self) -> None:
        self.gaps = GapCounts(self.collector)


class DataCollector:
    """Runs collectors concurrently; restarts crashed or silent ones; refills gaps.

    * A collector that raises is logged with its traceback, counted, and
      restarted after ``restart_backoff`` (a :class:`Backoff`: capped exponential
      with jitter, so a crash loop does not spin). A bad request
      (:class:`~mdcollect.InvalidRequest`, e.g. an unknown symbol) is not
      retried: the collector is marked ``failed``; so is one that met a permanent
      exchange error (a 4xx, an unsupported method) ``max_permanent_errors``
      times in a row with nothing stored in between, and one that crashed
      ``max_crashes`` times in a row with nothing stored in between, whatever
      the error (a parsing bug): only a transient exchange error (a dropped
      connection, a 5xx) is retried for as long as it lasts. :meth:`enable`
      retries a failed collector; ``status()`` says why it failed.
    * A collector whose feed shows no sign of life (data, a successful poll,
      or any websocket frame: the exchange's pings, or pongs to the pings sent
      every ``max_silence / 3`` seconds) for ``max_silence`` seconds is
      restarted. A quiet market still answers pings, so it causes no
      reconnect storm; a stalled connection does not, so it is replaced.
    * Freshness is measured from what reaches storage: each collector writes to
      ``storage`` itself and tells the supervisor what each write stored (a write
      observer, see :meth:`DataSourceCollector.run`). When a collector's coverage
      resumes after a hole (a reconnect), the hole is refilled through the
      backfill engine, so stored closed candles and trades have no gap. So is the hole between what
      the store already held and a collector's first data (the daemon was
      down), when it is at most ``resume_window`` seconds long (0: never).
    * :meth:`stop` flushes every buffered row (``stop_timeout`` seconds at most).
    * Health (:meth:`health`, :meth:`status`): a collector is unhealthy when it
      failed, is waiting to restart after an error, has a silent feed, has
      met only errors since it started (nothing stored), or has stored nothing
      ``first_data_grace`` seconds after it started (plus what its kind needs
      to wait, such as a candle closing: ``collector.first_data_within``).
    * ``audit_interval`` (seconds, 0: never) audits the datasets the collectors
      wrote, since the supervisor started, every that many seconds
      (:func:`mdcollect.audit`'s checks), and refills each error finding's span
      through the gap refiller (its rows and coverage deleted first): at most
      ``audit_max_refills`` spans waiting at once (the rest are refilled after a
      later audit), none shorter than ``audit_min_gap`` seconds. ``status()["audit"]``
      counts the runs, the findings of the last one and the refills.
    * Time is read from ``clock`` (a :class:`~mdcollect.collectors.Clock`; the
      system clocks by default), which every collector added here shares:
      silence, backoff resets, gap grace and the ages reported. Tests pass a
      :class:`~mdcollect.collectors.ManualClock` and advance it.

    * ``raw=True`` makes every collector store the exchange's websocket frames as
      well, with their receipt time, compressed, in the ``raw`` dataset of its
      exchange and channel (its kind): :func:`mdcollect.replay` turns a captured day
      back into the rows (a collector's own ``raw=True`` does it for that one).

    ``storage`` is a :class:`~mdcollect.DataCollectionStorage`, a URL, or
    ``None`` for the default store.

    >>> collectors = load_collectors("collect.toml")
    >>> async with DataCollector(collectors, "arctic+lmdb:///data/md", max_silence=30) as dc:
    ...     await asyncio.sleep(3600)
    ...     dc.status()["collectors"]["binance:trades:BTC/USDT"]["restarts"]
    0

    Every keyword option is a field of the options class ``SupervisorOptions``
    (checked there; a config file may set any of them, see :func:`load_config`).
    Logs go to the ``mdcollect.collector`` logger.
    """

    def __init__(
        self,
        collectors: Iterable[DataSourceCollector],
        storage: DataCollectionStorage | str | None = None,
        *,
        restart_backoff: Backoff | float = _RESTART_BACKOFF,
        max_silence: float = 60.0,
        backfill_gaps: bool = True,
        stop_timeout: float = 30.0,
        check_interval: float | None = None,
        max_permanent_errors: int = 3,
        resume_window: float = 6 * 3600.0,
        first_data_grace: float = 60.0,
        clock: Clock | None = None,
        max_crashes: int = 20,
        max_restarts: int | None = None,
        restart_window: float = 3600.0,
        alerts: WebhookAlerts | str | None = None,
        audit_interval: float = 0.0,
        audit_max_refills: int = 4,
        audit_min_gap: float = 0.0,
        log_callback: LogCallback | None = None,
        raw: bool = False,
    ) -> None:
        #: given each line the collector logs (``"WARNING mdcollect.collector: ..."``)
        self.log_callback: LogCallback | None = check_log_callback(log_callback)
        self.clock: Clock = as_clock(clock)
        opts = SupervisorOptions(
            restart_backoff=restart_backoff,
            max_silence=max_silence,
            backfill_gaps=backfill_gaps,
            stop_timeout=stop_timeout,
            check_interval=check_interval,
            max_permanent_errors=max_permanent_errors,
            max_crashes=max_crashes,
            resume_window=resume_window,
            first_data_grace=first_data_grace,
            max_restarts=max_restarts,
            restart_window=restart_window,
            alerts=alerts,
            audit_interval=audit_interval,
            audit_max_refills=audit_max_refills,
            audit_min_gap=audit_min_gap,
            raw=raw,
        )
        self.backoff: Backoff = opts.restart_backoff
        self.max_silence = float(opts.max_silence)
        self.backfill_gaps = opts.backfill_gaps
        self.stop_timeout = float(opts.stop_timeout)
        self.check_interval = (
            float(opts.check_interval)
            if opts.check_interval is not None
            else min(1.0, self.max_silence / 4)
        )
        self.max_permanent_errors = opts.max_permanent_errors
        self.max_crashes = opts.max_crashes
        self.resume_window = float(opts.resume_window)
        self.first_data_grace = float(opts.first_data_grace)
        self.max_restarts = opts.max_restarts
        self.restart_window = float(opts.restart_window)
        self._callbacks = RowCallbacks()
        self.alerts: WebhookAlerts | None = opts.alerts
        self._alert_watch = (
            None if self.alerts is None else AlertWatch(self.alerts.submit, self.clock)
        )
        self._alert_task: asyncio.Task[None] | None = None
        self.audit_interval = float(opts.audit_interval)
        self.audit_max_refills = opts.audit_max_refills
        self.audit_min_gap = float(opts.audit_min_gap)
        #: every collector stores its websocket frames too (``raw`` kind; see
        #: :meth:`DataSourceCollector.raw_key` and :func:`mdcollect.replay`)
        self.raw = opts.raw
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
        self._refiller = GapRefiller(
            self.storage, self.clock, self.backoff, check_interval=self.check_interval
        )
        self._backfiller: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        # the datasets the collectors wrote (and whose), for the scheduled audit
        self._written: dict[DatasetKey, _Slot] = {}
        self._audits = _AuditCounts()
        self._auditor: asyncio.Task[None] | None = None

    @classmethod
    def from_config(cls, config: Any, **overrides: Any) -> DataCollector:
        """A collector for a config file or dict (see :func:`load_config`).

        >>> dc = DataCollector.from_config("collect.toml")
        """
        cfg = load_config(config)
        opts: dict[str, Any] = dict(cfg.options)  # restart_backoff may be a table
        opts.update(overrides)
        storage = opts.pop("storage", cfg.storage)
        return cls(cfg.collectors, storage, **opts)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start every enabled collector in the background (returns at once)."""
        if self._running:
            return
        with forwarding_logs(self.log_callback):
            self._start()

    def _start(self) -> None:
        self._running = True
        self._stopped.clear()
        self._started = self.clock.monotonic()
        self._refiller.open()
        self._callbacks.start()
        if self._alert_watch is not None:
            self._alert_task = asyncio.create_task(
                self._logged(self._watch_alerts()), name="mdcollect alert watch"
            )
        self._backfiller = asyncio.create_task(
            self._logged(self._refiller.run()), name="mdcollect backfill"
        )
        if self.audit_interval > 0:
            self._audits.since_ms = self.clock.time_ms()
            self._auditor = asyncio.create_task(
                self._logged(self._audit_loop()), name="mdcollect audit"
            )
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
        if self._alert_task is not None:
            # first: a stopping collector is not a state change worth an alert
            self._alert_task.cancel()
            await asyncio.gather(self._alert_task, return_exceptions=True)
            self._alert_task = None
        self._running = False
        self._refiller.close()  # gaps found from here on are left to the next run
        tasks = []
        for slot in self._slots.values():
            if slot.task is not None:
                slot.task.cancel()
                tasks.append(slot.task)
        if self._backfiller is not None:
            self._backfiller.cancel()
            tasks.append(self._backfiller)
        if self._auditor is not None:
            self._auditor.cancel()
            tasks.append(self._auditor)
            self._auditor = None
        if tasks:
            await asyncio.wait(tasks, timeout=self.stop_timeout + 5)
        for slot in self._slots.values():
            slot.task = None
            if slot.state != "failed":
                slot.state = "stopped" if slot.should_run else "disabled"
            await slot.collector.aclose()
        await self._callbacks.stop(self.stop_timeout)  # the rows flushed above included
        if self.alerts is not None:
            await self.alerts.drain(self.stop_timeout)
        self._stopped.set()
        with forwarding_logs(self.log_callback):
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
        slot.crashes = 0
        if self._running and slot.task is None:
            self._launch(slot)
        elif not self._running:
            slot.state = "idle"

    async def restart(self, name: str) -> None:
        """Restart one collector now (flushing it first), without waiting for a backoff:
        also a ``failed`` or disabled one, whose error counts start afresh."""
        slot = self._slot(name)
        await self._halt(slot)
        self._manual_restart(slot)

    async def restart_all(self) -> None:
        """Restart every collector that is not disabled (failed ones included)."""
        slots = [s for s in self._slots.values() if s.should_run or s.state == "failed"]
        await asyncio.gather(*(self._halt(s) for s in slots))
        for slot in slots:
            self._manual_restart(slot)

    async def add_symbols(self, name: str, symbols: Sequence[str] | str) -> list[str]:
        """Collect ``symbols`` too with collector ``name``, without interrupting its
        other symbols (each new one is checked with the exchange first: an unknown
        symbol raises :class:`~mdcollect.InvalidRequest`); returns the symbols that
        were new. A collector whose feed cannot take new symbols live is restarted.

        >>> await dc.add_symbols("binance:trades:BTC/USDT", ["SOL/USDT"])
        ['SOL/USDT']
        """
        slot = self._slot(name)
        live = slot.collector.changes_symbols_live
        new = await slot.collector.add_symbols(symbols)
        if new and not live:
            await self._rerun(slot, f"symbols added: {', '.join(new)}")
        return new

    async def remove_symbols(self, name: str, symbols: Sequence[str] | str) -> list[str]:
        """Stop collecting ``symbols`` with collector ``name`` (the rows they received
        are written); the others go on. Returns the symbols removed.

        >>> await dc.remove_symbols("binance:trades:BTC/USDT", ["SOL/USDT"])
        ['SOL/USDT']
        """
        slot = self._slot(name)
        live = slot.collector.changes_symbols_live
        gone = await slot.collector.remove_symbols(symbols)
        if gone and not live:
            await self._rerun(slot, f"symbols removed: {', '.join(gone)}")
        return gone

    async def _rerun(self, slot: _Slot, why: str) -> None:
        """Restart a running ``slot`` now (its counts kept): its feed takes changes only
        when it starts."""
        if self._running and slot.task is not None and slot.state in ("starting", "running"):
            await self._halt(slot)
            slot.last_restart_ms = self.clock.time_ms()
            slot.last_restart_reason = why
            slot.restarts += 1
            self._launch(slot)

    def running(self) -> list[str]:
        """Names of the collectors that are running now (started, not waiting to
        restart, not failed, disabled or stopped)."""
        return [n for n, s in self._slots.items() if s.state in ("starting", "running")]

    def failed(self) -> list[str]:
        """Names of the collectors that gave up (see ``status()`` for why); they stay
        so until :meth:`restart` or :meth:`enable`."""
        return [n for n, s in self._slots.items() if s.state == "failed"]

    def on_rows(
        self, kind: str | None, callback: RowCallback, *, backlog: int = 1_000
    ) -> Callable[[], None]:
        """Call ``callback(key, rows)`` with the rows of ``kind`` (``None``: every kind)
        each collector stores, once they are stored; returns a function that
        unregisters it.

        ``callback`` may be a function (run in a worker thread) or a coroutine function
        (awaited on the collector's loop). Each callback has its own queue: a slow one
        delays only itself, and falls behind by at most ``backlog`` writes before its
        oldest are dropped (counted); one that raises is logged and counted
        (``status()["callbacks"]``), never retried, and never affects storage. Treat
        ``rows`` as read-only: callbacks share it. On :meth:`stop`, what is queued is
        delivered (``stop_timeout`` seconds at most).

        >>> async def on_candle(key, rows):
        ...     print(key.symbol, rows["close"].iloc[-1])
        >>> unsubscribe = dc.on_rows("ohlcv", on_candle)
        """
        return self._callbacks.add(kind, callback, backlog=backlog)

    # ------------------------------------------------------------------ reports

    def status(self) -> dict[str, Any]:
        """Plain-dict status: overall, then per collector name.

        Beside its counters, each collector reports, on the supervisor's clock:

        * ``rows_per_second``: rows stored in the last :data:`RATE_WINDOW` (60) seconds,
          divided by 60, or by the time since the collector first started when that is
          shorter (0.0 before it starts);
        * ``lag_seconds``: the clock's now minus the exchange's timestamp of the newest
          row received (``last_exchange_time``; for candles the candle's open time, so
          the lag includes the candle's length); ``None`` before any row;
        * ``reconnects``: restarts after a transient exchange error (a dropped
          connection, a 5xx) plus restarts of a silent feed (``silent_restarts``);
        * ``connection_uptime``: seconds its runs have been connected in all, the
          current one included (against ``uptime``: the current run only);
        * ``raw``: whether it stores its websocket frames, ``raw_frames`` how many
          it stored (in the ``raw`` dataset; not counted as rows).

        ``process`` holds this process's ``rss_bytes`` and ``cpu_seconds`` (see
        :func:`process_figures`).

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
            "callbacks": self._callbacks.stats(),
            "alerts": None if self.alerts is None else self.alerts.stats(),
            "audit": self._audits.to_dict(self.audit_interval),
            "process": process_figures(),
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
            "last_restart_time": slot.last_restart_ms,
            "last_restart_reason": slot.last_restart_reason,
            "gaps_found": slot.gaps.found,
            "gaps_filled": slot.gaps.filled,
            "gaps_waiting": slot.gaps.waiting,
            "gaps_abandoned": slot.gaps.abandoned,
            "uptime": (now - slot.started)
            if slot.started is not None and slot.state == "running"
            else 0.0,
            "last_message_time": s.last_message,
            "last_exchange_time": s.last_exchange_time,
            "last_data_time": slot.last_data_ms,
            "last_error": slot.last_error or s.last_error,
            "time_since_data": since_data,
            "time_since_heartbeat": since_hb,
            "issues": issues,
            "is_healthy": not issues,
            **self._figures(slot, now),
            "raw": c.raw,
            "raw_frames": s.raw_frames,
        }

    def _figures(self, slot: _Slot, now: float) -> dict[str, Any]:
        """``rows_per_second``, ``lag_seconds``, ``reconnects``, ``connection_uptime``
        of ``slot`` (see :meth:`status`)."""
        with slot.lock:
            _prune_recent(slot.recent, now)
            recent = sum(rows for _, rows in slot.recent)
            connected = slot.connected
            if slot.run_started is not None:
                connected += now - slot.run_started
        # a collector younger than the window is measured over its age
        span = min(RATE_WINDOW, now - slot.first_started) if slot.first_started is not None else 0
        newest = slot.collector.stats.last_exchange_time
        return {
            "rows_per_second": recent / span if span > 0 else 0.0,
            "lag_seconds": None if newest is None else (self.clock.time_ms() - newest) / SECOND,
            "reconnects": slot.reconnects,
            "connection_uptime": connected,
        }

    # ------------------------------------------------------------------ internals

    def _add_slot(self, collector: DataSourceCollector) -> _Slot:
        if not isinstance(collector, DataSourceCollector):
            raise InvalidRequest(f"expected a DataSourceCollector, got {collector!r}")
        if collector.name in self._slots:
            raise InvalidRequest(f"a collector named {collector.name!r} is already present")
        collector.clock = self.clock  # one timeline for the feed's heartbeat and the checks
        if self.raw and collector.mode != "poll":  # a polling one has no frames
            collector.raw = True
        slot = _Slot(collector)
        slot.tracker = GapTracker(collector, self.storage, resume_window=self.resume_window)
        self._slots[collector.name] = slot
        return slot

    def _observer(self, slot: _Slot) -> WriteObserver:
        """What ``slot``'s collector calls after each write (in the writer thread):
        counts what reached storage and spots the gaps the write revealed."""
        tracker = slot.tracker
        assert tracker is not None

        def on_write(key: DatasetKey, frame: pd.DataFrame, covered: IntervalSet, rows: int) -> None:
            self._written[key] = slot
            with slot.lock:
                slot.rows_stored += rows
                if rows:
                    slot.last_data = self.clock.monotonic()
                    slot.last_data_ms = self.clock.time_ms()
                    slot.recent.append((slot.last_data, rows))
                    _prune_recent(slot.recent, slot.last_data)
            if rows:
                self._callbacks.publish(key, frame)
            for gap_key, gap in tracker.observe(key, covered):
                self._gap_found(slot, gap_key, gap)

        return on_write

    def _slot(self, name: str) -> _Slot:
        slot = self._slots.get(name)
        if slot is None:
            raise InvalidRequest(f"no collector named {name!r}; present: {sorted(self._slots)}")
        return slot

    def _launch(self, slot: _Slot) -> None:
        slot.state = "starting"
        slot.task = asyncio.create_task(
            self._logged(self._supervise(slot)), name=f"supervise {slot.collector.name}"
        )

    def _logged(self, coro: Coroutine[Any, Any, None]) -> Coroutine[Any, Any, None]:
        # a task outlives start(): it routes its own lines (and its subtasks') to the callback
        return coro if self.log_callback is None else with_logs(self.log_callback, coro)

    async def _halt(self, slot: _Slot) -> None:
        task, slot.task = slot.task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task], timeout=self.stop_timeout + 5)

    async def _supervise(self, slot: _Slot) -> None:
        c = slot.collector
        attempt = 0
        on_write = self._observer(slot)
        keepalive = getattr(c.client(), "ws_keepalive", None)
        if keepalive is not None:
            keepalive(self.max_silence / 3)
        while slot.should_run and self._running:
            slot.state = "running"
            slot.started = self.clock.monotonic()
            stored = slot.rows_stored
            if slot.first_started is None:
                slot.first_started = slot.started
            run = asyncio.create_task(c.run(self.storage, on_write=on_write), name=f"run {c.name}")
            slot.run_started = slot.started
            try:
                reason = await self._watch(slot, run)
            except asyncio.CancelledError:
                run.cancel()
                await asyncio.wait([run], timeout=self.stop_timeout)
                raise
            except InvalidRequest as exc:
                slot.errors += 1
                slot.last_error = repr(exc)
                self._fail(slot, "bad request", exc)
                return
            except Exception as exc:  # any crash is logged, counted and restarted with backoff
                why = self._count_crash(slot, exc, progressed=slot.rows_stored != stored)
                if why is not None:
                    self._fail(slot, why, exc)
                    return
                if isinstance(exc, ExchangeError) and exc.transient:
                    slot.reconnects += 1
                    log.warning("%s: %s; reconnecting", c.name, exc)
                else:
                    log.error("%s: crashed; restarting", c.name, exc_info=exc)
                cause = repr(exc)
            else:
                slot.permanent_errors = 0
                slot.crashes = 0
                log.warning("%s: %s; restarting", c.name, reason)
                if reason == "silent":
                    slot.silent_restarts += 1
                    slot.reconnects += 1
                cause = (
                    f"feed silent for more than {self.max_silence:g}s"
                    if reason == "silent"
                    else "run ended"
                )
            finally:
                self._run_ended(slot)
            if not (slot.should_run and self._running):
                break
            if self._restart_cap_reached(slot):
                why = f"restarted {self.max_restarts} times within {self.restart_window:g}s"
                slot.last_error = f"{why}; last cause: {cause}"
                self._fail(slot, why, MdcollectError(cause))
                return
            slot.last_restart_ms = self.clock.time_ms()
            slot.last_restart_reason = cause
            if self.clock.monotonic() - slot.started >= self.backoff.reset_after:
                attempt = 0
            delay = self.backoff.delay(attempt)
            attempt += 1
            slot.restarts += 1
            slot.delays.append(delay)
            slot.state = "backoff"
            await asyncio.sleep(delay)

    def _run_ended(self, slot: _Slot) -> None:
        """Add ``slot``'s run that just ended to its connected time."""
        with slot.lock:
            if slot.run_started is not None:
                slot.connected += self.clock.monotonic() - slot.run_started
                slot.run_started = None

    def _restart_cap_reached(self, slot: _Slot) -> bool:
        """Count a restart of ``slot``; whether it is one more than ``max_restarts``
        within ``restart_window`` seconds."""
        now = self.clock.monotonic()
        slot.restart_times.append(now)
        while slot.restart_times[0] <= now - self.restart_window:
            slot.restart_times.popleft()
        return self.max_restarts is not None and len(slot.restart_times) > self.max_restarts

    def _manual_restart(self, slot: _Slot) -> None:
        """Start ``slot`` again at once, by hand: its error and restart counts start afresh."""
        slot.should_run = True
        slot.permanent_errors = 0
        slot.crashes = 0
        slot.restart_times.clear()
        slot.restarts += 1
        slot.last_restart_ms = self.clock.time_ms()
        slot.last_restart_reason = "restarted by hand"
        if self._running:
            self._launch(slot)
        else:
            slot.state = "idle"

    def _count_crash(self, slot: _Slot, exc: Exception, *, progressed: bool) -> str | None:
        """Count a crash of ``slot``'s run; why to give up on it, or ``None`` to restart.

        ``progressed``: the run stored rows. Crashes in a row with nothing stored in
        between are capped: permanent exchange errors at ``max_permanent_errors``,
        every crash but a transient exchange error at ``max_crashes``."""
        slot.errors += 1
        slot.last_error = repr(exc)
        transient = isinstance(exc, ExchangeError) and exc.transient
        permanent = isinstance(exc, ExchangeError) and not exc.transient
        if permanent and not progressed:
            slot.permanent_errors += 1
        else:
            slot.permanent_errors = int(permanent)
        if progressed:
            slot.crashes = 0
        if not transient:  # a parsing bug crashes again at once: give up at a cap
            slot.crashes += 1
        if slot.crashes >= self.max_crashes:
            return f"crashed {slot.crashes} times in a row with nothing stored"
        if slot.permanent_errors >= self.max_permanent_errors:
            return f"permanent error {slot.permanent_errors} times in a row"
        return None

    def _fail(self, slot: _Slot, why: str, exc: Exception) -> None:
        """Mark ``slot`` failed (not restarted until :meth:`enable`), saying why."""
        slot.state = "failed"
        slot.task = None
        # a bug's traceback is worth logging; a refusal of ours or the exchange's is not
        trace = None if isinstance(exc, MdcollectError) else exc
        log.error("%s: %s, not restarted: %s", slot.collector.name, why, exc, exc_info=trace)

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

    async def _watch_alerts(self) -> None:
        """Compare the status with the last one every ``check_interval``; alert on changes."""
        watch = self._alert_watch
        assert watch is not None
        while True:
            await asyncio.sleep(self.check_interval)
            try:
                watch.check(self.status())
            except Exception:  # alerting must never take the collection down
                log.exception("alert check failed")

    # -- gaps

    def _gap_found(self, slot: _Slot, key: DatasetKey, gap: Interval) -> None:
        """Called from the writer thread when coverage resumes after a hole."""
        slot.gaps.found += 1
        log.info("%s: gap %s in %s; backfilling", slot.collector.name, gap, key)
        if self.backfill_gaps:
            self._refiller.add(slot.gaps, key, gap)

    # -- the scheduled audit

    async def _audit_loop(self) -> None:
        """Audit every ``audit_interval`` seconds on ``self.clock`` until cancelled."""
        last = self.clock.monotonic()
        while True:
            await asyncio.sleep(self.check_interval)
            if self.clock.monotonic() - last < self.audit_interval:
                continue
            last = self.clock.monotonic()
            try:
                await self._audit_once()
            except MdcollectError as exc:  # a storage failure: the next run tries again
                self._audits.last_error = str(exc)
                log.warning("scheduled audit failed: %s", exc)

    async def _audit_once(self) -> None:
        counts = self._audits
        written = dict(self._written)
        now = self.clock.time_ms()
        params = AuditParams(counts.since_ms, now, ZERO_VOLUME_RUN, JUMP_MADS, MARK_BAND)
        audits = await asyncio.to_thread(audit_datasets, self.storage, sorted(written), params)
        # refills still waiting: those whose span is not covered again yet
        waiting = []
        for key, span in counts.queued:
            cov = await asyncio.to_thread(self.storage.coverage, key)
            if not cov.contains(span):
                waiting.append((key, span))
        errors = [(d.key, f) for d in audits for f in d.findings if f.severity == "error"]
        deferred = too_small = refills = 0
        min_gap = int(self.audit_min_gap * 1000)
        for key, f in errors:
            span = repair_span(f)
            if (key, span) in waiting:
                continue
            if span.end - span.start < min_gap:
                too_small += 1
                continue
            if len(waiting) >= self.audit_max_refills or not self.backfill_gaps:
                deferred += 1
                continue
            log.info("audit: %s %s %s; refilling", key, f.check, span)
            await asyncio.to_thread(self.storage.delete, key, span.start, span.end)
            self._gap_found(written[key], key, span)
            waiting.append((key, span))
            refills += 1
        # the counts change together, once the run is done (status() may be read meanwhile)
        counts.queued = waiting
        counts.errors = len(errors)
        counts.warnings = sum(len(d.findings) for d in audits) - len(errors)
        counts.deferred, counts.too_small = deferred, too_small
        counts.refills += refills
        counts.last_run_ms, counts.last_error = now, None
        counts.runs += 1


def _prune_recent(recent: deque[tuple[float, int]], now: float) -> None:
    """Forget the writes older than :data:`RATE_WINDOW` (under the slot's lock)."""
    while recent and recent[0][0] <= now - RATE_WINDOW:
        recent.popleft()


def process_figures() -> dict[str, Any]:
    """This process's resident memory (``rss_bytes``, from ``/proc/self/statm``; the
    peak from :mod:`resource` where there is no ``/proc``) and CPU time (``cpu_seconds``,
    user plus system).

    >>> process_figures()["cpu_seconds"] > 0
    True
    """
    try:
        with open("/proc/self/statm") as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        rss = peak if sys.platform == "darwin" else peak * 1024  # bytes there, KiB here
    t = os.times()
    return {"rss_bytes": rss, "cpu_seconds": t.user + t.system}


@define
class _AuditCounts:
    """What the scheduled audits found and did (``status()["audit"]``)."""

    since_ms: int | None = None
    runs: int = 0
    last_run_ms: int | None = None
    errors: int = 0
    warnings: int = 0
    refills: int = 0
    deferred: int = 0
    too_small: int = 0
    last_error: str | None = None
    queued: list[tuple[DatasetKey, Interval]] = field(factory=list)

    def to_dict(self, interval: float) -> dict[str, Any]:
        return {
            "interval": interval,
            "runs": self.runs,
            "last_run_ms": self.last_run_ms,
            "errors": self.errors,
            "warnings": self.warnings,
            "refills": self.refills,
            "refills_waiting": len(self.queued),
            "deferred": self.deferred,
            "too_small": self.too_small,
            "last_error": self.last_error,
        }
