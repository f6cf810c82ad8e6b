"""Pacing by the exchange's own rolling-window budget, shared by every client of it.

Exchanges count request *weight* in a rolling (or per-minute) window: Binance
spot allows 6,000 weight a minute and a 1000-candle klines page weighs 2. ccxt's
throttler spaces requests evenly at that rate, so a job that needs 1,072 weight
waits ~11 s for a budget it could spend at once. A :class:`WeightLimiter` lets a
burst through up to the budget and then waits for the oldest weight to leave the
window: requests go out as fast as the exchange allows, never faster.

How it hooks into ccxt: ccxt computes each request's cost from its endpoint
table and awaits ``exchange.throttle(cost)`` before sending, but only when
``enableRateLimit`` is true. :class:`~mdcollect.exchanges.ExchangeClient` keeps
``enableRateLimit`` on and replaces that instance's ``throttle`` with
:meth:`WeightLimiter.throttle` for exchanges whose budget the registry knows
(:attr:`ExchangeInfo.budget`), so ccxt's evenly spaced throttler is off exactly
there; other exchanges keep ccxt's throttler. ``enableRateLimit=False`` turns
pacing off altogether, ``rateLimit=`` keeps ccxt's throttler at that spacing.

One limiter per exchange budget and host in the process (:func:`limiter_for`):
every client and job of Binance spot in a process draws on the same 6,000.
Several processes on one machine share one IP, so one budget:
:func:`share_budgets_on_host` (what each Dask worker calls) makes the process's
limiters :class:`HostWeightLimiter` instances, whose window is a small file in a
directory every process on the host sees, read and written under an exclusive
``flock``: the simplest sharing that is correct across processes, at the cost
of a file lock per request (microseconds, against a request's milliseconds).

The exchange's own word wins: usage headers (Binance ``X-MBX-USED-WEIGHT-1M``,
Bybit ``X-Bapi-Limit-Status``/``X-Bapi-Limit``/``X-Bapi-Limit-Reset-Timestamp``)
raise the weight counted when the exchange counts more (another process on the
same IP), and the limit it announces (Binance's ``rateLimits`` in
``exchangeInfo``, Bybit's ``X-Bapi-Limit``, the window in the Binance header's
name) replaces the published one, so a lower budget is honoured before any 429.
OKX and Kraken send no usage headers on public REST; they keep ccxt's throttler.

A request's weight is dated when its answer arrives (the exchange counted it
at or before then), so the local count never expires weight before the
exchange does.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import os
import re
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Final

from attrs import define, frozen

from .._time import DAY, HOUR, MINUTE, SECOND, ms_to_seconds

__all__ = [
    "Budget",
    "HostWeightLimiter",
    "Usage",
    "WeightLimiter",
    "binance_body",
    "binance_headers",
    "bybit_headers",
    "limiter_for",
    "share_budgets_on_host",
]

log: Final = logging.getLogger("mdcollect.exchanges")


@frozen
class Usage:
    """What one answer says about the budget: weight ``used`` in the current window,
    and when known the ``limit`` and the ``window`` (seconds) it is counted in."""

    used: float | None = None
    limit: float | None = None
    window: float | None = None


#: Reads :class:`Usage` from an answer's headers (``None``: nothing there).
HeaderReader = Callable[[Mapping[str, str]], "Usage | None"]
#: Reads :class:`Usage` (a limit and window) from a parsed JSON body.
BodyReader = Callable[[Any], "Usage | None"]


@frozen
class Budget:
    """An exchange's published rate budget: ``capacity`` weight per ``window`` seconds.

    ``name`` says which budget (``binance.spot``): keys sharing it share a limiter.
    ``weight_per_cost`` turns ccxt's cost units (its ``api`` table) into the
    exchange's weight: Binance spot's klines cost 0.4 in ccxt and weigh 2, so 5.
    ``headers`` and ``body`` read what the exchange says of its own budget.

    >>> Budget("binance.spot", 6000, 60.0, 5.0).weight(0.4)
    2.0
    """

    name: str
    capacity: float
    window: float
    weight_per_cost: float = 1.0
    headers: HeaderReader | None = None
    body: BodyReader | None = None

    def weight(self, cost: float | None) -> float:
        """The weight of a request ccxt costs ``cost``."""
        return (1.0 if cost is None else float(cost)) * self.weight_per_cost


_UNIT_MS: Final = {"S": SECOND, "M": MINUTE, "H": HOUR, "D": DAY}
_BINANCE_USED: Final = re.compile(r"^x-mbx-used-weight-(\d+)([smhd])$", re.IGNORECASE)
_BINANCE_INTERVALS: Final = {"SECOND": "S", "MINUTE": "M", "HOUR": "H", "DAY": "D"}


def binance_headers(headers: Mapping[str, str]) -> Usage | None:
    """Binance's ``X-MBX-USED-WEIGHT-(intervalNum)(intervalLetter)``: the IP's weight
    used in that interval (the name says the window).

    >>> binance_headers({"X-MBX-USED-WEIGHT-1M": "42"})
    Usage(used=42.0, limit=None, window=60.0)
    """
    for name, value in headers.items():
        m = _BINANCE_USED.match(name)
        if m is not None:
            used = _number(value)
            if used is not None:
                return Usage(used, None, ms_to_seconds(int(m[1]) * _UNIT_MS[m[2].upper()]))
    return None


def binance_body(body: Any) -> Usage | None:
    """The ``REQUEST_WEIGHT`` entry of Binance's ``exchangeInfo`` ``rateLimits``.

    >>> binance_body({"rateLimits": [{"rateLimitType": "REQUEST_WEIGHT",
    ...     "interval": "MINUTE", "intervalNum": 1, "limit": 6000}]})
    Usage(used=None, limit=6000.0, window=60.0)
    """
    if not isinstance(body, Mapping):
        return None
    for entry in body.get("rateLimits") or ():
        if not isinstance(entry, Mapping) or entry.get("rateLimitType") != "REQUEST_WEIGHT":
            continue
        letter = _BINANCE_INTERVALS.get(str(entry.get("interval")))
        limit, num = _number(entry.get("limit")), _number(entry.get("intervalNum"))
        if letter is not None and limit and num:
            return Usage(None, limit, ms_to_seconds(num * _UNIT_MS[letter]))
    return None


def bybit_headers(headers: Mapping[str, str]) -> Usage | None:
    """Bybit's ``X-Bapi-Limit`` (requests allowed in the window) and
    ``X-Bapi-Limit-Status`` (remaining); each request weighs 1.

    >>> bybit_headers({"X-Bapi-Limit": "600", "X-Bapi-Limit-Status": "590"})
    Usage(used=10.0, limit=600.0, window=None)
    """
    lower = {k.lower(): v for k, v in headers.items()}
    limit = _number(lower.get("x-bapi-limit"))
    remaining = _number(lower.get("x-bapi-limit-status"))
    if limit is None or remaining is None:
        return None
    return Usage(max(0.0, limit - remaining), limit, None)


def _number(value: object) -> float | None:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return out if out >= 0 else None


@define
class _Event:
    at: float
    weight: float


#: The weight event of the request running in the current task, dated again when
#: its answer arrives.
_current_event: Final[ContextVar[_Event | None]] = ContextVar(
    "mdcollect_limiter_event", default=None
)


class WeightLimiter:
    """A rolling window of request weight: bursts up to the budget, then waits.

    ``clock`` returns seconds (monotonic by default); waits go through ``sleep``.
    Usable from several event loops one after another (the sync ``ensure_data``
    runs each call in its own): it holds no loop-bound object.

    >>> limiter = WeightLimiter(Budget("binance.spot", 6000, 60.0, 5.0))
    >>> await limiter.acquire(2.0)      # at once while the window has room
    """

    def __init__(
        self,
        budget: Budget,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.budget = budget
        self.capacity: float = budget.capacity
        self.window: float = budget.window
        self._clock = clock
        self._sleep = sleep
        self._events: deque[_Event] = deque()
        # re-entrant: log lines inside the lock show the limiter, whose repr takes it
        self._lock = threading.RLock()
        #: seconds waited for the budget so far, and how many requests waited
        self.waited: float = 0.0
        self.waits: int = 0

    def __repr__(self) -> str:
        return (
            f"WeightLimiter({self.capacity:g} weight / {self.window:g} s, used {self.used():g}, "
            f"{self.waits} waits of {self.waited:.1f} s in all)"
        )

    def used(self) -> float:
        """Weight counted in the current window."""
        with self._lock:
            return self._used(self._clock())

    def _live(self, now: float) -> list[_Event]:
        # events are re-dated when answered, so the deque is only roughly in order:
        # drop the expired head, and skip expired ones behind a later-dated event
        cutoff = now - self.window
        events = self._events
        while events and events[0].at <= cutoff:
            events.popleft()
        return [e for e in events if e.at > cutoff]

    def _used(self, now: float) -> float:
        return sum(e.weight for e in self._live(now))

    def _try(self, weight: float) -> float:
        """Take ``weight`` now (0.0) or say how long until the window has room."""
        with self._lock:
            now = self._clock()
            live = self._live(now)
            used = sum(e.weight for e in live)
            # a request heavier than the whole budget goes alone into an empty window
            if used + weight <= self.capacity or not live:
                event = _Event(now, weight)
                self._events.append(event)
                _current_event.set(event)
                return 0.0
            excess = used + weight - self.capacity
            freed = 0.0
            for e in sorted(live, key=lambda e: e.at):
                freed += e.weight
                if freed >= excess:
                    return max(e.at + self.window - now, 0.001)
            return self.window

    async def acquire(self, weight: float) -> None:
        """Wait until ``weight`` fits in the window, then count it."""
        while True:
            wait = self._try(weight)
            if wait <= 0:
                return
            self.waited += wait
            self.waits += 1
            log.debug("%r: waiting %.3f s for %g weight", self, wait, weight)
            await self._sleep(wait)

    async def throttle(self, cost: float | None = None) -> None:
        """ccxt's ``throttle(cost)``: acquire the weight of a request ccxt costs ``cost``."""
        await self.acquire(self.budget.weight(cost))

    def answered(self, headers: Mapping[str, str]) -> None:
        """An answer arrived in this task: date its weight now, and take in what its
        headers say of the budget."""
        event = _current_event.get()
        if event is not None:
            with self._lock:
                event.at = max(event.at, self._clock())
            _current_event.set(None)
        reader = self.budget.headers
        usage = reader(headers) if reader is not None else None
        if usage is not None:
            self.observe(usage)

    def observe(self, usage: Usage) -> None:
        """Take in the exchange's own figures: its limit and window replace ours, and
        weight it counts beyond ours (other clients on the IP) is counted too."""
        with self._lock:
            self._adopt(usage)
            if usage.used is not None:
                now = self._clock()
                extra = usage.used - self._used(now)
                if extra > 0:
                    self._events.append(_Event(now, extra))

    def _adopt(self, usage: Usage) -> None:
        """The exchange's own limit and window replace ours (under ``self._lock``)."""
        if usage.limit is not None and usage.limit > 0 and usage.limit != self.capacity:
            log.info("%s: the exchange announces %g weight a window", self, usage.limit)
            self.capacity = usage.limit
        if usage.window is not None and usage.window > 0 and usage.window != self.window:
            self.window = usage.window

    def observe_body(self, body: Any) -> None:
        """Take in a budget announced in a JSON answer (Binance ``exchangeInfo``)."""
        reader = self.budget.body
        usage = reader(body) if reader is not None else None
        if usage is not None:
            self.observe(usage)


#: Seconds a :class:`HostWeightLimiter` rounds weight up to: its window file holds at
#: most ``window / GRAIN`` numbers (240 for a minute), and weight leaves the window at
#: most this much later than it would (never earlier).
GRAIN: Final = 0.25


class HostWeightLimiter(WeightLimiter):
    """A :class:`WeightLimiter` whose window every process on this host shares.

    The window is a JSON object in ``path``: weight per :data:`GRAIN` of time (the
    key is the grain's end, ``at / GRAIN`` rounded up), read and rewritten under an
    exclusive ``flock`` for each request and answer, so two processes never both
    take the last room in the window. Time is wall-clock seconds (``clock``),
    comparable between processes. Weight the exchange's headers count beyond the
    shared window (processes not sharing the file) is added to it, as in the base
    class.

    >>> limiter = HostWeightLimiter(Budget("binance.spot", 6000, 60.0, 5.0), Path("/tmp/b.json"))
    """

    def __init__(
        self,
        budget: Budget,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        super().__init__(budget, clock=clock, sleep=sleep)
        self.path = path
        self._open: tuple[int, int] | None = None  # (pid, descriptor)
        #: the grain and weight of the request running in the current task
        self._current: ContextVar[tuple[int, float] | None] = ContextVar(
            "mdcollect_host_event", default=None
        )

    @staticmethod
    def _grain(at: float) -> int:
        return math.ceil(at / GRAIN)

    def _fd(self) -> int:
        # one descriptor per process: a flock belongs to the open file, which a forked
        # child would share; and no close per request (ext4 flushes a file truncated
        # and closed, milliseconds each time)
        if self._open is None or self._open[0] != os.getpid():
            self._open = (os.getpid(), os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        return self._open[1]

    @contextmanager
    def _shared(self) -> Iterator[dict[int, float]]:
        """The live weight per grain of the shared window, locked; changes are written back."""
        import fcntl

        with self._lock:
            fd = self._fd()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                try:
                    stored = json.loads(os.pread(fd, 1 << 20, 0) or b"{}")
                except ValueError:  # a process killed mid-write: start the window afresh
                    stored = {}
                first = self._grain(self._clock() - self.window) + 1
                grains = {int(k): float(v) for k, v in stored.items() if int(k) >= first}
                yield grains
                data = json.dumps({str(k): v for k, v in grains.items() if v > 0}).encode()
                os.pwrite(fd, data, 0)
                os.ftruncate(fd, len(data))
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def used(self) -> float:
        """Weight counted in the current window by every process of the host."""
        with self._shared() as grains:
            return sum(grains.values())

    def _try(self, weight: float) -> float:
        with self._shared() as grains:
            now = self._clock()
            used = sum(grains.values())
            if used + weight <= self.capacity or not grains:
                g = self._grain(now)
                grains[g] = grains.get(g, 0.0) + weight
                self._current.set((g, weight))
                return 0.0
            excess, freed = used + weight - self.capacity, 0.0
            for g in sorted(grains):
                freed += grains[g]
                if freed >= excess:
                    return max(g * GRAIN + self.window - now, 0.001)
            return self.window

    def answered(self, headers: Mapping[str, str]) -> None:
        """Date this task's request when its answer arrived, in the shared window."""
        taken = self._current.get()
        if taken is not None:
            g, weight = taken
            with self._shared() as grains:
                later = self._grain(self._clock())
                if later > g:
                    if g in grains:
                        grains[g] = max(0.0, grains[g] - weight)
                    grains[later] = grains.get(later, 0.0) + weight
            self._current.set(None)
        reader = self.budget.headers
        usage = reader(headers) if reader is not None else None
        if usage is not None:
            self.observe(usage)

    def observe(self, usage: Usage) -> None:
        """As :meth:`WeightLimiter.observe`, counting extra weight in the shared window."""
        with self._lock:
            self._adopt(usage)
        if usage.used is not None:
            with self._shared() as grains:
                extra = usage.used - sum(grains.values())
                if extra > 0:
                    g = self._grain(self._clock())
                    grains[g] = grains.get(g, 0.0) + extra


_limiters: dict[tuple[str, str], WeightLimiter] = {}
_limiters_lock = threading.Lock()
#: Where this process's limiters keep their shared windows (None: in the process).
_host_dir: Path | None = None


def share_budgets_on_host(directory: str | os.PathLike[str] | None = None) -> Path:
    """Make every limiter this process creates from now on share its budget with the
    other processes on this host that called this with the same ``directory``
    (default: ``mdcollect-budgets-UID`` in the system temp dir): workers on one machine
    share its IP, so the exchange counts their requests together. Returns the
    directory. Dask workers of ``ensure_data(executor=...)`` call it.

    >>> share_budgets_on_host()
    PosixPath('/tmp/mdcollect-budgets-1000')
    """
    global _host_dir
    where = Path(directory) if directory is not None else Path(tempfile.gettempdir())
    if directory is None:  # one per user: another's folder would not be writable
        where = where / f"mdcollect-budgets-{getattr(os, 'getuid', lambda: 0)()}"
    where.mkdir(parents=True, exist_ok=True)
    with _limiters_lock:
        if _host_dir != where:
            _host_dir = where
            _limiters.clear()  # clients made from now on draw on the shared budget
    return where


def limiter_for(budget: Budget, host: str) -> WeightLimiter:
    """The process's limiter of ``budget`` at ``host`` (the exchange's, or the
    ``base_url`` a client was pointed at): made on first use, then shared by every
    client of that exchange (and, after :func:`share_budgets_on_host`, by every
    process on this host).

    >>> limiter_for(budget, "api.binance.com") is limiter_for(budget, "api.binance.com")
    True
    """
    with _limiters_lock:
        limiter = _limiters.get((budget.name, host))
        if limiter is None:
            if _host_dir is None:
                limiter = WeightLimiter(budget)
            else:
                digest = hashlib.sha256(host.encode()).hexdigest()[:16]
                path = _host_dir / f"{budget.name}-{digest}.json"
                limiter = HostWeightLimiter(budget, path)
            _limiters[(budget.name, host)] = limiter
        return limiter
