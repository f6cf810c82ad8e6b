"""Row callbacks: ``DataCollector.on_rows(kind, callback)``.

Collectors write in a worker thread; a bot wants to hear about the rows once they
are stored. Each callback gets its own bounded queue and its own task on the
supervisor's loop, so a slow callback delays only itself and a failing one is
counted and logged, never felt by the writes: storage has the rows before any
callback hears of them. A queue that fills (the callback is slower than the feed)
drops its oldest batches and counts them.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final

import pandas as pd
from attrs import define, field

from .._errors import InvalidRequest
from .._keys import KINDS, DatasetKey
from .._schema import normalize_frame

__all__ = ["RowCallback", "RowCallbacks"]

log: Final = logging.getLogger("mdcollect.collector")

#: ``callback(key, rows)``: a function or a coroutine function; ``rows`` is the frame
#: just stored (read-only: shared with other callbacks).
RowCallback = Callable[[DatasetKey, pd.DataFrame], Awaitable[None] | None]

#: Batches a callback may fall behind by before the oldest are dropped.
DEFAULT_BACKLOG: Final = 1_000


@define(eq=False)
class _Subscription:
    kind: str | None
    callback: RowCallback
    backlog: int
    pending: deque[tuple[DatasetKey, pd.DataFrame]] = field(init=False)
    lock: threading.Lock = field(factory=threading.Lock)
    wake: asyncio.Event | None = None
    task: asyncio.Task[None] | None = None
    calls: int = 0
    errors: int = 0
    dropped: int = 0
    last_error: str | None = None

    def __attrs_post_init__(self) -> None:
        self.pending = deque()

    @property
    def name(self) -> str:
        return getattr(self.callback, "__qualname__", repr(self.callback))


class RowCallbacks:
    """The callbacks registered on one :class:`~mdcollect.DataCollector`."""

    def __init__(self) -> None:
        self._subs: list[_Subscription] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(
        self, kind: str | None, callback: RowCallback, *, backlog: int = DEFAULT_BACKLOG
    ) -> Callable[[], None]:
        """Register ``callback`` for rows of ``kind`` (``None``: every kind); returns
        a function that unregisters it."""
        if kind is not None and kind not in KINDS:
            raise InvalidRequest(
                f"kind {kind!r} is not valid for on_rows; allowed: {', '.join(KINDS)} or None"
            )
        if not callable(callback):
            raise InvalidRequest(f"callback must be callable, got {callback!r}")
        if isinstance(backlog, bool) or not isinstance(backlog, int) or backlog < 1:
            raise InvalidRequest(f"backlog must be a positive integer, got {backlog!r}")
        sub = _Subscription(kind, callback, backlog)
        self._subs.append(sub)
        if self._loop is not None:
            self._start(sub)

        def remove() -> None:
            if sub in self._subs:
                self._subs.remove(sub)
            if sub.task is not None:
                sub.task.cancel()

        return remove

    def start(self) -> None:
        """Start dispatching on the running loop (``DataCollector.start``)."""
        self._loop = asyncio.get_running_loop()
        for sub in self._subs:
            self._start(sub)

    async def stop(self, deadline: float) -> None:
        """Deliver what is queued (``deadline`` seconds at most), then stop."""
        self._loop = None
        tasks = [s.task for s in self._subs if s.task is not None]
        for sub in self._subs:
            if sub.wake is not None:
                sub.wake.set()  # a dispatcher seeing no loop drains and ends
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=deadline)
            for t in late:
                t.cancel()
            if late:
                await asyncio.wait(late, timeout=1.0)
        for sub in self._subs:
            sub.task = None
            sub.wake = None

    def publish(self, key: DatasetKey, rows: pd.DataFrame) -> None:
        """Queue ``rows`` just stored under ``key`` for the matching callbacks (any
        thread; never blocks, never raises), in the form storage reads give: the UTC
        ``timestamp`` index, as any frame handed to users."""
        loop = self._loop
        if loop is None or rows.empty:
            return
        subs = [s for s in self._subs if s.kind is None or s.kind == key.kind]
        if subs and "timestamp" in rows.columns:
            # candle and snapshot collectors write ms in a column; storage accepted them,
            # so they normalise without error
            rows = normalize_frame(key.kind, rows)
        for sub in subs:
            with sub.lock:
                if len(sub.pending) >= sub.backlog:
                    sub.pending.popleft()
                    sub.dropped += 1
                sub.pending.append((key, rows))
            wake = sub.wake
            if wake is not None:
                try:
                    loop.call_soon_threadsafe(wake.set)
                except RuntimeError:  # the loop closed under us: nothing left to wake
                    return

    def stats(self) -> list[dict[str, Any]]:
        """Per callback: kind, name, calls, errors, dropped batches, last error."""
        return [
            {
                "kind": s.kind,
                "callback": s.name,
                "calls": s.calls,
                "errors": s.errors,
                "dropped": s.dropped,
                "queued": len(s.pending),
                "last_error": s.last_error,
            }
            for s in self._subs
        ]

    def _start(self, sub: _Subscription) -> None:
        if sub.task is None:
            sub.wake = asyncio.Event()
            if sub.pending:
                sub.wake.set()
            sub.task = asyncio.create_task(self._dispatch(sub), name=f"on_rows {sub.name}")

    async def _dispatch(self, sub: _Subscription) -> None:
        is_async = inspect.iscoroutinefunction(sub.callback) or inspect.iscoroutinefunction(
            getattr(sub.callback, "__call__", None)  # noqa: B004 - an async __call__
        )
        wake = sub.wake
        assert wake is not None
        while True:
            await wake.wait()
            wake.clear()
            while True:
                with sub.lock:
                    if not sub.pending:
                        break
                    key, rows = sub.pending.popleft()
                sub.calls += 1
                try:
                    if is_async:
                        await sub.callback(key, rows)  # type: ignore[misc]
                    else:
                        # in a worker thread: a slow callback must not stall the feeds
                        result = await asyncio.to_thread(sub.callback, key, rows)
                        if inspect.isawaitable(result):
                            await result
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # counted and logged; the rows are stored anyway
                    sub.errors += 1
                    sub.last_error = repr(exc)
                    log.warning(
                        "on_rows callback %s failed on %d rows of %s: %r",
                        sub.name, len(rows), key, exc,
                    )  # fmt: skip
            if self._loop is None:  # stopping, and everything queued was delivered
                return
