"""The clock the live side reads: monotonic seconds for ages, wall-clock ms for stamps.

Silence detection, the batching age, backoff resets, gap grace and the ages
in ``status()`` are all read from one injectable :class:`Clock`, so a test
moves time forward instead of sleeping, and a loaded machine cannot turn a
test's timing into a restart. Waiting itself (poll pacing, restart delays)
stays on the event loop: a clock only says what time it is.

Wall-clock time is the exchange's time too (poll windows, receipt stamps),
so a test with a :class:`ManualClock` hands the same clock to its
:class:`~mdcollect.testing.ExchangeEmulator` (``clock=clock.time_ms``).
"""

from __future__ import annotations

import threading
import time
from typing import Final, Protocol, runtime_checkable

from .._errors import InvalidRequest
from .._time import now_ms

__all__ = ["SYSTEM_CLOCK", "Clock", "ManualClock", "SystemClock", "as_clock"]


@runtime_checkable
class Clock(Protocol):
    """What the live side asks of a clock.

    ``monotonic()`` is seconds on a clock that never goes back (ages, deadlines);
    ``time_ms()`` is wall-clock ms since the epoch (stamps, the exchange's "now").
    """

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""
        ...

    def time_ms(self) -> int:
        """Wall-clock milliseconds since the Unix epoch, UTC."""
        ...


class SystemClock:
    """The real clocks: :func:`time.monotonic` and the wall clock. The default."""

    def monotonic(self) -> float:
        """:func:`time.monotonic`."""
        return time.monotonic()

    def time_ms(self) -> int:
        """The wall clock in ms."""
        return now_ms()

    def __repr__(self) -> str:
        return "SystemClock()"


#: The clock every collector uses unless given another.
SYSTEM_CLOCK: Final = SystemClock()


def as_clock(clock: object) -> Clock:
    """``clock``, or the system clock for ``None``; :class:`~mdcollect.InvalidRequest`
    for anything that is not a :class:`Clock`."""
    if clock is None:
        return SYSTEM_CLOCK
    if not isinstance(clock, Clock):
        raise InvalidRequest(
            f"clock must have monotonic() and time_ms() (a mdcollect.collectors.Clock), "
            f"got {clock!r}"
        )
    return clock


class ManualClock:
    """A clock that moves only when told: both readings advance together.

    For tests: give it to a :class:`~mdcollect.DataCollector` (``clock=``) and to the
    :class:`~mdcollect.testing.ExchangeEmulator` (``clock=clock.time_ms``), then
    :meth:`advance` it where the test would otherwise sleep. Thread-safe (the
    emulator reads it from its own thread).

    >>> clock = ManualClock(1_700_000_000_000)
    >>> clock.advance(1.5)
    >>> clock.time_ms(), clock.monotonic()
    (1700000001500, 1.5)
    """

    def __init__(self, start_ms: int | None = None) -> None:
        if start_ms is None:
            start_ms = now_ms()
        if isinstance(start_ms, bool) or not isinstance(start_ms, int) or start_ms < 0:
            raise InvalidRequest(
                f"start_ms must be ms since the epoch (an int >= 0), got {start_ms!r}"
            )
        self._lock = threading.Lock()
        self._start_ms = start_ms
        self._elapsed_ms = 0

    def monotonic(self) -> float:
        """Seconds advanced so far."""
        with self._lock:
            return self._elapsed_ms / 1000

    def time_ms(self) -> int:
        """The start time plus what was advanced."""
        with self._lock:
            return self._start_ms + self._elapsed_ms

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (>= 0), to the millisecond."""
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise InvalidRequest(f"a clock advances by seconds >= 0, got {seconds!r}")
        with self._lock:
            self._elapsed_ms += round(seconds * 1000)

    def __repr__(self) -> str:
        return f"ManualClock(time_ms={self.time_ms()})"
