"""Retrying exchange calls: the backoff policy and the translation of ccxt errors.

Transient failures (network errors, timeouts, 5xx, 429 rate limits, garbled
responses) are retried with capped exponential backoff and jitter; a server's
``Retry-After`` is honoured. Permanent ones (bad symbol, bad request, auth, not
supported, other 4xx) are raised at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Final, Literal, TypeVar

import aiohttp
import ccxt
from attrs import field, frozen, validators

from .._errors import ExchangeError

__all__ = ["RetryPolicy", "translate_error"]

log: Final = logging.getLogger("mdcollect.exchanges")

T = TypeVar("T")
Jitter = Literal["full", "equal", "none"]

_MAX_MESSAGE: Final = 300


@frozen(kw_only=True)
class RetryPolicy:
    """Capped exponential backoff with jitter for transient exchange errors.

    The n-th retry waits ``min(max_delay, base_delay * 2 ** (n - 1))``, jittered:
    ``full`` draws uniformly from ``[0, d]``, ``equal`` from ``[d/2, d]``, ``none``
    waits ``d``. A server's ``Retry-After`` is a floor for the wait; one longer
    than ``max_retry_after`` is not waited for, the error is raised instead (its
    ``retry_after`` tells the caller when to come back).

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

    max_attempts: int = field(default=5, validator=validators.ge(1))
    base_delay: float = field(default=0.5, validator=validators.ge(0))
    max_delay: float = field(default=30.0, validator=validators.ge(0))
    jitter: Jitter = field(default="full", validator=validators.in_(("full", "equal", "none")))
    max_retry_after: float = 120.0
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, repr=False)
    random: Callable[[], float] = field(default=random.random, repr=False)

    def backoff(self, retry: int) -> float:
        """The un-jittered wait before the ``retry``-th retry (1-based), capped."""
        exponent = min(max(retry - 1, 0), 62)
        return float(min(self.max_delay, self.base_delay * 2**exponent))

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """The wait before the ``retry``-th retry, jittered, at least ``retry_after``."""
        d = self.backoff(retry)
        if self.jitter == "full":
            d = d * self.random()
        elif self.jitter == "equal":
            d = d / 2 + d / 2 * self.random()
        if retry_after is not None:
            d = max(d, retry_after)
        return d

    async def run(
        self,
        attempt: Callable[[], Awaitable[T]],
        *,
        what: str = "request",
        on_retry: Callable[[ExchangeError, float], None] | None = None,
    ) -> T:
        """Await ``attempt()`` until it succeeds, retrying transient :class:`ExchangeError`\\ s.

        ``attempt`` must raise :class:`ExchangeError` (see :func:`translate_error`);
        anything else propagates at once. The last error is raised when the
        attempts are exhausted.
        """
        n = 1
        while True:
            try:
                return await attempt()
            except ExchangeError as exc:
                if not exc.transient or n >= self.max_attempts:
                    raise
                if exc.retry_after is not None and exc.retry_after > self.max_retry_after:
                    raise
                wait = self.delay(n, exc.retry_after)
                log.warning(
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


_PERMANENT_CCXT: Final = (
    ccxt.BadRequest,  # includes BadSymbol
    ccxt.AuthenticationError,  # includes PermissionDenied
    ccxt.NotSupported,
    ccxt.ArgumentsRequired,
    ccxt.InvalidNonce,
    ccxt.ExchangeClosedByUser,
)
_TRANSIENT_CCXT: Final = (ccxt.NetworkError, ccxt.BadResponse)


def _is_transient_status(status: int) -> bool:
    return status >= 500 or status in (408, 425, 429)


def translate_error(
    exc: BaseException,
    *,
    where: str,
    status: int | None = None,
    retry_after: float | None = None,
    malformed: bool = False,
) -> ExchangeError:
    """The :class:`ExchangeError` for a failed ccxt call (raise it ``from exc``).

    ``status`` and ``retry_after`` describe the HTTP response of this very
    request when one arrived; ``malformed`` says its body was not valid JSON.
    In order: a malformed body is transient; ccxt's permanent classes
    (``BadRequest``/``BadSymbol``, ``AuthenticationError``, ``NotSupported``,
    ``InvalidNonce``) are permanent; ccxt's rate-limit classes
    (``DDoSProtection``/``RateLimitExceeded``, from 429, Binance's 418, Bybit's
    403) are transient; then the HTTP status (5xx, 408, 425, 429 transient, other
    4xx permanent, whatever class ccxt chose: it maps a bare 400 or 404 to
    ``ExchangeNotAvailable``); then ``NetworkError`` and ``BadResponse`` are
    transient; an aiohttp failure ccxt wrapped as a plain ``ExchangeError`` (a
    truncated body) is transient; anything else is permanent.
    """
    text = str(exc).strip() or type(exc).__name__
    if len(text) > _MAX_MESSAGE:
        text = text[:_MAX_MESSAGE] + "..."
    transient: bool
    if malformed and not isinstance(exc, _PERMANENT_CCXT):
        transient = True
        text = f"malformed JSON response ({type(exc).__name__}: {text})"
    elif isinstance(exc, _PERMANENT_CCXT):
        transient = False
    elif isinstance(exc, ccxt.DDoSProtection | ccxt.RateLimitExceeded):
        # rate limits come as 429, 418 (Binance) or 403 (Bybit): ccxt knows which
        transient = True
    elif status is not None and status >= 400:
        transient = _is_transient_status(status)
    elif isinstance(exc, _TRANSIENT_CCXT):
        transient = True
    elif isinstance(exc, ccxt.BaseError):
        transient = isinstance(exc.__cause__, aiohttp.ClientError | TimeoutError)
    elif isinstance(exc, aiohttp.ClientError | TimeoutError | ConnectionError):
        transient = True
    else:
        # ccxt's parser choked: a garbled (non-JSON) body is worth another try,
        # a parser failing on valid JSON is not.
        transient = False
        text = f"unexpected response ({type(exc).__name__}: {text})"
    kind = "transient" if transient else "permanent"
    status_text = f" HTTP {status}" if status is not None else ""
    return ExchangeError(
        f"{where} failed ({kind}{status_text}): {text}",
        transient=transient,
        retry_after=retry_after if transient else None,
    )
