"""The one wait schedule of the library: capped, jittered exponential backoff.

:class:`Backoff` is the value every retry and restart takes: exchange requests
(through :class:`RetryPolicy`), the HTTP client of the data-collection service,
collectors retrying a failed write, and the supervisor restarting a crashed
collector. :class:`RetryPolicy` adds what a retried request needs on top: a
number of attempts and a server's ``Retry-After`` as a floor.

This module sits in the model layer: it imports neither ccxt nor httpx.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal, TypeVar

from attrs import field, frozen

from ._errors import ExchangeError, InvalidRequest
from ._rules import non_negative, positive

__all__ = ["EMPTY_PAGE_REASKS", "Backoff", "Jitter", "RetryPolicy", "parse_retry_after"]

T = TypeVar("T")

#: How often a page that came back empty is asked again when a row is known to be
#: there (a candle or a trade the last page showed): an empty answer then is the
#: exchange's hiccup, not the end of its data. Candle and trade paging share it.
EMPTY_PAGE_REASKS: Final = 3

#: How much of each wait is drawn at random: ``full`` from ``[0, d]``, ``equal`` from
#: ``[d/2, d]``, ``none`` waits ``d``.
Jitter = Literal["full", "equal", "none"]
_JITTER: Final[dict[str, float]] = {"full": 1.0, "equal": 0.5, "none": 0.0}


def _check_jitter(_instance: Any, attribute: Any, value: Any) -> None:
    if isinstance(value, str):
        if value not in _JITTER:
            raise InvalidRequest(
                f"{attribute.name} {value!r} is not valid; use one of {', '.join(_JITTER)} "
                "or a fraction in [0, 1]"
            )
        return
    non_negative(maximum=1.0)(_instance, attribute, value)


def _check_maximum(instance: Any, attribute: Any, value: Any) -> None:
    non_negative()(instance, attribute, value)
    if value < instance.initial:
        raise InvalidRequest(
            f"{attribute.name} {value!r} is below initial {instance.initial!r}; "
            "the cap must be at least the first wait"
        )


def _check_factor(_instance: Any, attribute: Any, value: Any) -> None:
    positive()(_instance, attribute, value)
    if value < 1:
        raise InvalidRequest(f"{attribute.name} must be a number >= 1, got {value!r}")


@frozen
class Backoff:
    """Waits that grow as ``initial * factor**attempt``, capped at ``maximum``, jittered.

    ``jitter`` is the fraction of each wait drawn at random: the wait for
    ``attempt`` (0-based) is ``d * (1 - jitter * (1 - r))`` with ``d`` the capped
    value and ``r`` uniform in ``[0, 1)``; ``"full"``, ``"equal"`` and ``"none"``
    name 1, 0.5 and 0. A run that lasted ``reset_after`` seconds starts a restart
    sequence again (the supervisor's rule; retries ignore it).

    >>> b = Backoff(initial=0.5, maximum=4.0, jitter=0)
    >>> [b.delay(n) for n in range(6)]
    [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    >>> Backoff(initial=1.0, maximum=60.0).delay(3) <= 8.0
    True
    >>> Backoff(initial=2.0, maximum=1.0)
    Traceback (most recent call last):
    ...
    mdcollect.InvalidRequest: maximum 1.0 is below initial 2.0; the cap must be at least the first wait
    """

    initial: float = field(default=1.0, validator=non_negative())
    maximum: float = field(default=60.0, validator=_check_maximum)
    factor: float = field(default=2.0, validator=_check_factor)
    jitter: float | Jitter = field(default=0.25, validator=_check_jitter)
    reset_after: float = field(default=60.0, validator=non_negative())

    def ceiling(self, attempt: int) -> float:
        """The un-jittered wait before ``attempt`` (0-based): the most it can be."""
        exponent = min(max(attempt, 0), 64)
        return float(min(self.maximum, self.initial * self.factor**exponent))

    def delay(self, attempt: int, *, rand: Callable[[], float] = random.random) -> float:
        """The wait before ``attempt`` (0-based), jittered with ``rand()`` in ``[0, 1)``."""
        j = _JITTER[self.jitter] if isinstance(self.jitter, str) else float(self.jitter)
        d = self.ceiling(attempt)
        if j == 0:
            return d
        return d * (1 - j * (1 - rand()))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date).

    >>> parse_retry_after("2.5")
    2.5
    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0)
    10.0
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds or seconds < 0:  # NaN or in the past
        return 0.0
    return seconds


def _check_attempts(_instance: Any, attribute: Any, value: Any) -> None:
    positive(integer=True)(_instance, attribute, value)


@frozen(kw_only=True)
class RetryPolicy:
    """Attempts of one request, waits from a :class:`Backoff`, ``Retry-After`` as a floor.

    The n-th retry (1-based) waits ``min(max_delay, base_delay * 2 ** (n - 1))``,
    jittered (see :class:`Backoff`). A server's ``Retry-After`` is a floor for the
    wait; one longer than ``max_retry_after`` is not waited for, the error is
    raised instead (its ``retry_after`` tells the caller when to come back).

    >>> policy = RetryPolicy(max_attempts=3, base_delay=0.1, jitter="none")
    >>> [policy.delay(n) for n in (1, 2, 3)]
    [0.1, 0.2, 0.4]
    >>> policy.delay(1, retry_after=2.0)
    2.0

    ``sleep`` and ``random`` are injectable for tests::

        slept = []
        async def record(seconds: float) -> None:
            slept.append(seconds)
        RetryPolicy(sleep=record)
    """

    max_attempts: int = field(default=5, validator=_check_attempts)
    base_delay: float = field(default=0.5, validator=non_negative())
    max_delay: float = field(default=30.0, validator=non_negative())
    jitter: Jitter = field(default="full", validator=_check_jitter)
    max_retry_after: float = field(default=120.0, validator=non_negative())
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, repr=False)
    random: Callable[[], float] = field(default=random.random, repr=False)
    schedule: Backoff = field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        # after the validators, so a bad setting is named as the user wrote it
        schedule = Backoff(
            initial=self.base_delay,
            maximum=max(self.max_delay, self.base_delay),
            jitter=self.jitter,
        )
        object.__setattr__(self, "schedule", schedule)

    def backoff(self, retry: int) -> float:
        """The un-jittered wait before the ``retry``-th retry (1-based), capped."""
        return min(self.schedule.ceiling(retry - 1), self.max_delay)

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """The wait before the ``retry``-th retry, jittered, at least ``retry_after``."""
        d = min(self.schedule.delay(retry - 1, rand=self.random), self.max_delay)
        if retry_after is not None:
            d = max(d, retry_after)
        return d

    def next_wait(self, attempt: int, error: BaseException) -> float | None:
        """The wait before retrying after ``attempt`` (1-based) failed with ``error``, or
        ``None`` when ``error`` is to be raised: it is not ``transient``, the attempts are
        used up, or its ``retry_after`` exceeds ``max_retry_after``.

        The decision of :meth:`run`, without I/O, for a driver of its own (the sync
        HTTP client of the service).
        """
        retry_after: float | None = getattr(error, "retry_after", None)
        if not getattr(error, "transient", False) or attempt >= self.max_attempts:
            return None
        if retry_after is not None and retry_after > self.max_retry_after:
            return None
        return self.delay(attempt, retry_after)

    async def run(
        self,
        attempt: Callable[[], Awaitable[T]],
        *,
        what: str = "request",
        on_retry: Callable[[Any, float], None] | None = None,
        retry_on: tuple[type[BaseException], ...] | None = None,
        log: logging.Logger | None = None,
    ) -> T:
        """Await ``attempt()`` until it succeeds, retrying transient errors.

        An error of a type in ``retry_on`` (default: :class:`~mdcollect.ExchangeError`)
        is retried when its ``transient`` attribute is true, at least its
        ``retry_after`` seconds later; anything else propagates at once. The last
        error is raised when the attempts are exhausted. Retries are logged on
        ``log`` (default ``mdcollect.exchanges``).
        """
        if retry_on is None:
            retry_on = (ExchangeError,)
        logger = log if log is not None else logging.getLogger("mdcollect.exchanges")
        n = 1
        while True:
            try:
                return await attempt()
            except retry_on as exc:
                wait = self.next_wait(n, exc)
                if wait is None:
                    raise
                logger.warning(
                    "%s failed (attempt %d/%d), retrying in %.3fs: %s",
                    what,
                    n,
                    self.max_attempts,
                    wait,
                    exc,
                )
                if on_retry is not None:
                    on_retry(exc, wait)
            await self.sleep(wait)
            n += 1
