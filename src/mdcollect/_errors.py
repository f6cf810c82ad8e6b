"""The exception tree of mdcollect.

::

    MdcollectError
    ├── InvalidRequest      bad user input (symbol, timeframe, date, range, URL, frame)
    ├── StorageError        a backend failed to read or write
    ├── ExchangeError       an exchange call failed (``.transient`` tells if retrying may help)
    └── RemoteError         the data-collection service answered with an error

Errors of the libraries underneath (ccxt, arcticdb, redis, httpx) are translated at the
boundary with the cause chained (``raise StorageError(...) from exc``).
"""

from __future__ import annotations

__all__ = [
    "ExchangeError",
    "InvalidRequest",
    "MdcollectError",
    "RemoteError",
    "StorageError",
    "first_leaf",
    "missing_extra",
]


class MdcollectError(Exception):
    """Root of every error mdcollect raises on purpose."""


class InvalidRequest(MdcollectError, ValueError):
    """Bad user input, raised before any network call or write.

    The message names the bad value and what is allowed::

        >>> Timeframe.parse("7x")
        Traceback (most recent call last):
        InvalidRequest: timeframe '7x' is not supported; allowed: 1s, 1m, 3m, ...
    """


class StorageError(MdcollectError):
    """A storage backend failed (I/O, server unreachable, corrupt data)."""


class ExchangeError(MdcollectError):
    """An exchange request failed.

    ``transient`` is true for failures worth retrying (network errors, timeouts, 5xx,
    rate limits) and false for permanent ones (bad symbol, bad request, auth).
    ``retry_after`` is the server's requested delay in seconds, when it gave one.
    """

    def __init__(
        self, message: str, *, transient: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after


class RemoteError(MdcollectError):
    """The data-collection service answered with an error status, or could not be reached.

    ``transient`` is true when asking again later may succeed (5xx, 429, a timeout or
    refused connection); ``retry_after`` is the service's ``Retry-After`` in seconds,
    when it gave one. A subclass may set either as a class attribute.
    """

    transient: bool = False
    retry_after: float | None = None

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        transient: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        if transient is not None:
            self.transient = transient
        if retry_after is not None:
            self.retry_after = retry_after


def first_leaf(eg: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first error inside ``eg`` (nested groups followed down): what a
    ``TaskGroup`` of ours raises in place of the group, so callers catch the
    error they expect rather than a group around it."""
    exc: BaseException = eg
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def missing_extra(feature: str, extra: str, exc: ImportError) -> str:
    """The message for an optional dependency that is not installed: what needs it and the
    extra that brings it, as one could paste it into a shell (the quotes keep zsh from
    globbing the brackets), then the missing module.

    >>> missing_extra("the redis:// storage", "redis", ModuleNotFoundError(name="redis"))
    "the redis:// storage needs the 'redis' extra: pip install 'mdcollect[redis]' (no module 'redis')"
    """
    return (
        f"{feature} needs the {extra!r} extra: pip install 'mdcollect[{extra}]' "
        f"(no module {exc.name or str(exc)!r})"
    )


# Public under ``mdcollect``: tracebacks and reprs show ``mdcollect.ExchangeError``,
# the name users import and catch, not this private module's.
for _cls in (MdcollectError, InvalidRequest, StorageError, ExchangeError, RemoteError):
    _cls.__module__ = "mdcollect"
