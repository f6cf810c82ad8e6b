"""Fault injection and per-venue rate limiting for the emulator.

Faults are matched per request in the order they were added; the first match
whose ``rate`` draw succeeds applies. Draws come from a ``random.Random`` seeded
by the emulator's seed, so a seeded run injects the same faults on the same
requests.
"""

from __future__ import annotations

import enum
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import attrs

__all__ = ["Fault", "FaultKind", "Faults", "Limit", "RateLimiter"]


class FaultKind(enum.StrEnum):
    """What an injected fault does to a matching request.

    Added in 0.1.0.
    """

    #: HTTP 500/502/503 with a gateway-style HTML body (ccxt: ExchangeNotAvailable).
    HTTP_500 = "500"
    HTTP_502 = "502"
    HTTP_503 = "503"
    #: HTTP 504 gateway timeout (ccxt: RequestTimeout).
    HTTP_504 = "504"
    #: The venue's own rate-limit answer with ``Retry-After``; Binance bans (418)
    #: clients that keep requesting before ``Retry-After`` has passed.
    RATE_LIMIT = "429"
    #: Binance-style IP ban: HTTP 418 with ``Retry-After``.
    BAN = "418"
    #: Binance's answer to a request from a restricted country: HTTP 451 with its JSON
    #: message (ccxt: ExchangeNotAvailable).
    GEO_BLOCK = "451"
    #: CloudFront's HTML 403 "configured to block access from your country", as in
    #: front of Bybit.
    FORBIDDEN = "403"
    #: Answer correctly after ``delay`` seconds.
    SLOW = "slow"
    #: Hang for ``delay`` seconds (default 60), longer than a client timeout.
    TIMEOUT = "timeout"
    #: Close the connection without sending a response.
    DROP = "drop"
    #: HTTP 200 with a complete response whose JSON is cut in half.
    MALFORMED = "malformed"
    #: Announce the full body length, send half of it, close the connection.
    TRUNCATED = "truncated"
    #: Correct page with some rows repeated.
    DUPLICATE_ROWS = "duplicate"
    #: Correct page that also repeats the last row of the previous page.
    OVERLAP_ROWS = "overlap"
    #: HTTP 200 with no rows, although the span asked has some (a page cut to nothing).
    EMPTY_PAGE = "empty"
    #: HTTP 200 with only the older half of the rows (a page cut short).
    SHORT_PAGE = "short"


def _kind(value: FaultKind | str | int) -> FaultKind:
    return FaultKind(str(value))


@attrs.frozen
class Fault:
    """A switchable fault: what happens, to which requests, how often.

    ``route`` is a route name (``"klines"``, ``"market/history-candles"``, ``"OHLC"``)
    or a regular expression searched in the request path; ``exchange`` a venue or
    ccxt id (``"binance"``, ``"binanceusdm"``, ``"okx"``...). ``count=N`` limits the
    fault to the next N matching requests; ``rate=p`` applies it with probability p
    (seeded). ``retry_after`` is sent with 429/418; ``delay`` is used by ``slow``
    (default 0.5 s) and ``timeout`` (default 60 s).

    Example::

        emu.faults.add(Fault("503", route="klines", count=2))
        emu.faults.add(Fault(FaultKind.DROP, exchange="okx", rate=0.1))

    Added in 0.1.0.
    """

    kind: FaultKind = attrs.field(converter=_kind)
    rate: float = 1.0
    route: str | None = None
    exchange: str | None = None
    count: int | None = None
    retry_after: float = 1.0
    delay: float | None = None

    def matches(self, venue: str, route: str, path: str, aliases: dict[str, str]) -> bool:
        if self.exchange is not None and aliases.get(self.exchange, self.exchange) != venue:
            return False
        if self.route is None:
            return True
        return self.route == route or re.search(self.route, path) is not None

    @property
    def seconds(self) -> float:
        if self.delay is not None:
            return self.delay
        return 60.0 if self.kind is FaultKind.TIMEOUT else 0.5


class Faults:
    """The emulator's fault switchboard (``emu.faults``); thread-safe.

    Example::

        emu.faults.add(Fault("429", route="klines", count=1, retry_after=2))
        ...
        emu.faults.clear()

    Added in 0.1.0.
    """

    def __init__(self, seed: int = 0, aliases: dict[str, str] | None = None) -> None:
        self._lock = threading.Lock()
        self._faults: list[list[Any]] = []  # [fault, remaining]
        self._rng = random.Random(seed)
        self._aliases = dict(aliases or {})

    def add(self, fault: Fault) -> Fault:
        """Switch a fault on; returns it (for :meth:`remove`)."""
        with self._lock:
            self._faults.append([fault, fault.count])
        return fault

    def remove(self, fault: Fault) -> None:
        """Switch one fault off."""
        with self._lock:
            self._faults = [f for f in self._faults if f[0] is not fault]

    def clear(self) -> None:
        """Switch every fault off."""
        with self._lock:
            self._faults.clear()

    def __iter__(self) -> Iterator[Fault]:
        with self._lock:
            return iter([f[0] for f in self._faults])

    def __len__(self) -> int:
        with self._lock:
            return len(self._faults)

    def pick(self, venue: str, route: str, path: str) -> Fault | None:
        """The fault to apply to this request, if any (consumes ``count``)."""
        with self._lock:
            for entry in self._faults:
                fault, remaining = entry
                if not fault.matches(venue, route, path, self._aliases):
                    continue
                if fault.rate < 1.0 and self._rng.random() >= fault.rate:
                    continue
                if remaining is not None:
                    entry[1] = remaining - 1
                    if entry[1] <= 0:
                        self._faults.remove(entry)
                return fault  # type: ignore[no-any-return]
        return None


@attrs.frozen
class Limit:
    """A rolling-window budget: ``capacity`` weight per ``window`` seconds.

    Added in 0.1.0.
    """

    capacity: int
    window: float


class RateLimiter:
    """Rolling-window weight accounting per bucket, with Binance-style bans.

    ``clock`` returns seconds (monotonic by default). After a 429 the bucket is
    in back-off until ``Retry-After`` has passed. A request inside the back-off is
    answered 429 again; a client that keeps requesting (``ban_after`` requests
    inside one back-off) is answered 418 and banned for ``ban_seconds`` when
    ``bans`` is true. Binance bans for "repeatedly violating rate limits and/or
    failing to back off after receiving 429s": requests already in flight when
    the first 429 was sent are not yet a ban.
    """

    def __init__(
        self,
        ban_seconds: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
        ban_after: int = 5,
    ) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, deque[tuple[float, int]]] = {}
        self._backoff: dict[str, float] = {}
        self._violations: dict[str, int] = {}
        self._banned: dict[str, float] = {}
        self.ban_seconds = ban_seconds
        self.ban_after = ban_after
        self._clock = clock

    def used(self, bucket: str, limit: Limit) -> int:
        """Weight used in the current window."""
        with self._lock:
            return self._used(bucket, limit, self._clock())

    def _used(self, bucket: str, limit: Limit, now: float) -> int:
        events = self._events.setdefault(bucket, deque())
        while events and events[0][0] <= now - limit.window:
            events.popleft()
        return sum(w for _, w in events)

    def check_ban(self, bucket: str, bans: bool) -> tuple[int, float] | None:
        """``(418, retry_after)`` when the bucket is banned or keeps ignoring a 429,
        ``(429, retry_after)`` for a request inside the back-off (bans on), else ``None``."""
        with self._lock:
            now = self._clock()
            until = self._banned.get(bucket, 0.0)
            if until > now:
                return 418, until - now
            backoff = self._backoff.get(bucket, 0.0)
            if bans and backoff > now:
                n = self._violations.get(bucket, 0) + 1
                self._violations[bucket] = n
                if n < self.ban_after:
                    return 429, backoff - now
                until = now + self.ban_seconds
                self._banned[bucket] = until
                return 418, until - now
        return None

    def note_429(self, bucket: str, retry_after: float) -> None:
        """Remember that the client was told to wait ``retry_after`` seconds."""
        with self._lock:
            now = self._clock()
            if self._backoff.get(bucket, 0.0) <= now:
                self._violations[bucket] = 0
            self._backoff[bucket] = max(self._backoff.get(bucket, 0.0), now + retry_after)

    def ban(self, bucket: str, seconds: float) -> None:
        with self._lock:
            self._banned[bucket] = self._clock() + seconds

    def charge(self, bucket: str, limit: Limit, weight: int) -> tuple[bool, int, float]:
        """Charge ``weight``: ``(allowed, used_after, retry_after_seconds)``.

        A refused request is still counted, as Binance counts it.
        """
        with self._lock:
            now = self._clock()
            used = self._used(bucket, limit, now)
            events = self._events[bucket]
            events.append((now, weight))
            used += weight
            if used <= limit.capacity:
                return True, used, 0.0
            # Wait until enough old weight leaves the window.
            excess = used - limit.capacity
            freed = 0
            retry = limit.window
            for t, w in events:
                freed += w
                if freed >= excess:
                    retry = t + limit.window - now
                    break
            return False, used, max(retry, 0.001)

    def reset(self) -> None:
        with self._lock:
            self._events.clear()
            self._backoff.clear()
            self._violations.clear()
            self._banned.clear()
