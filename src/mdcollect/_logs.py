"""Log lines handed to a host application: the ``log_callback`` of backfill and collection.

A web UI or a bot's own logger passes ``log_callback=fn`` to :func:`mdcollect.ensure_data`
(and the other backfill entry points) or :class:`mdcollect.DataCollector`; ``fn`` then
receives each line that call logs, as ``"LEVEL logger: message"`` (INFO and above by
default), and only the lines of that call: calls running side by side each get their
own (the route is a context variable, inherited by the tasks a call starts).

The lines still reach the ``logging`` handlers the application configured on the root
logger (or any logger above ``mdcollect``), exactly as without a callback: while a
callback listens, the ``mdcollect`` logger lets INFO lines through for it (unless the
application set that logger's level itself, which is then respected), and only what
passed each logger's own level before goes on to those handlers. A handler attached to a
logger *below* ``mdcollect`` (``mdcollect.backfill``) with no level of its own sees the
INFO lines too while a callback listens: give it a level.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, Final, TypeVar

from attrs import define

from ._errors import InvalidRequest

__all__ = ["LogCallback", "check_log_callback", "forwarding_logs", "with_logs"]

T = TypeVar("T")

#: Receives one formatted log line.
LogCallback = Callable[[str], None]

_ROOT: Final = "mdcollect"
_FORMAT: Final = logging.Formatter("%(levelname)s %(name)s: %(message)s")


@define
class _Route:
    callback: LogCallback
    level: int
    failures: int = 0


_route: Final[contextvars.ContextVar[_Route | None]] = contextvars.ContextVar(
    "mdcollect_log_route", default=None
)


class _Forwarder(logging.Handler):
    """Installed on the ``mdcollect`` logger while at least one callback listens."""

    def __init__(self, propagate: bool) -> None:
        super().__init__(logging.NOTSET)
        self.propagate = propagate
        self.users = 0
        self.setFormatter(_FORMAT)

    def emit(self, record: logging.LogRecord) -> None:
        route = _route.get()
        if route is not None and record.levelno >= route.level:
            try:
                route.callback(self.format(record))
            except Exception:  # a host's callback must never break a backfill
                route.failures += 1
                if route.failures == 1:  # logging's report, once per call, not per line
                    self.handleError(record)
        if self.propagate and record.levelno >= _original_level(record.name):
            parent = logging.getLogger(_ROOT).parent
            if parent is not None:
                parent.handle(record)


_lock: Final = threading.Lock()
_forwarder: _Forwarder | None = None
_saved_level: int = logging.NOTSET
_our_level: int | None = None  # the level set for the callbacks, if any


def _original_level(name: str) -> int:
    """The effective level the logger ``name`` had without the callbacks: what the
    application's handlers above ``mdcollect`` saw before."""
    logger: logging.Logger | None = logging.getLogger(name)
    while logger is not None:
        level = _saved_level if logger.name == _ROOT else logger.level
        if level != logging.NOTSET:
            return level
        logger = logger.parent
    return logging.WARNING


def _install(level: int) -> None:
    global _forwarder, _saved_level
    with _lock:
        logger = logging.getLogger(_ROOT)
        if _forwarder is None:
            _saved_level = logger.level
            _forwarder = _Forwarder(logger.propagate)
            logger.addHandler(_forwarder)
            logger.propagate = False
        _forwarder.users += 1
        # the application's own level on the logger is respected; else let ``level`` through
        if _saved_level == logging.NOTSET and (
            logger.level == logging.NOTSET or level < logger.level
        ):
            global _our_level
            logger.setLevel(level)
            _our_level = level


def _uninstall() -> None:
    global _forwarder
    with _lock:
        if _forwarder is None:
            return
        _forwarder.users -= 1
        if _forwarder.users:
            return
        global _our_level
        logger = logging.getLogger(_ROOT)
        logger.removeHandler(_forwarder)
        logger.propagate = _forwarder.propagate
        if logger.level == _our_level:  # a level the application set meanwhile stays
            logger.setLevel(_saved_level)
        _our_level = None
        _forwarder = None


def check_log_callback(callback: object) -> LogCallback | None:
    """``callback`` when it is ``None`` or callable; :class:`InvalidRequest` otherwise."""
    if callback is not None and not callable(callback):
        raise InvalidRequest(
            f"log_callback must be a function taking one str (a log line), got {callback!r}"
        )
    return callback  # type: ignore[return-value]


@contextmanager
def forwarding_logs(callback: LogCallback | None, level: int = logging.INFO) -> Iterator[None]:
    """Within the block (and the tasks it starts), ``callback`` gets each log line.

    >>> lines = []
    >>> with forwarding_logs(lines.append):
    ...     logging.getLogger("mdcollect.backfill").info("BTC/USDT: 3 windows")
    >>> lines
    ['INFO mdcollect.backfill: BTC/USDT: 3 windows']
    """
    if callback is None:
        yield
        return
    _install(level)
    token = _route.set(_Route(callback, level))
    try:
        yield
    finally:
        _route.reset(token)
        _uninstall()


async def with_logs(callback: LogCallback | None, coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro`` with ``callback`` receiving its lines (and those of the tasks it
    starts); for a task that outlives the call that starts it (a collector's)."""
    with forwarding_logs(callback):
        return await coro
