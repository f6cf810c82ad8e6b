"""Run a coroutine from sync code, also inside a running event loop (Jupyter)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import os
import signal
import threading
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class _SharedExecutor(ThreadPoolExecutor):
    """The default executor of every loop :func:`run_sync` makes, kept across calls.

    ``asyncio.run`` gives each call a new loop, a new default executor and a thread
    to shut it down; for a sync call that finds everything stored (a backtest's
    pre-hook, every run) those threads cost more than the coverage reads. A loop's
    ``close()`` shuts its default executor down without waiting: a no-op here, so
    the worker threads (daemon threads, as every ThreadPoolExecutor's) serve the
    next call.
    """

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Keep serving: the executor outlives each loop."""


def _new_executor() -> _SharedExecutor:
    # 32 as asyncio's own default cap: a storage call run in a worker may itself make
    # a sync call (a nested loop on the same pool), which must find a free worker
    return _SharedExecutor(max_workers=32, thread_name_prefix="mdcollect-io")


_EXECUTOR = _new_executor()


def _after_fork() -> None:
    # a forked child has none of the parent's worker threads, though the executor
    # counts them idle: work submitted to it would wait forever
    global _EXECUTOR
    _EXECUTOR = _new_executor()


os.register_at_fork(after_in_child=_after_fork)


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    # what asyncio.run does on its way out: cancel what the coroutine left running
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler(
                {"message": "unhandled exception during run_sync() shutdown",
                 "exception": task.exception(), "task": task}
            )  # fmt: skip


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)`` on a loop whose default executor is the shared one.

    As ``asyncio.run``: Ctrl-C in the main thread cancels the coroutine (its
    cleanup runs) and then raises ``KeyboardInterrupt``; leftover tasks are
    cancelled and async generators closed before the loop closes.
    """
    loop = asyncio.new_event_loop()
    loop.set_default_executor(_EXECUTOR)
    task = loop.create_task(coro)
    interrupted = False

    def on_sigint() -> None:
        nonlocal interrupted
        interrupted = True
        task.cancel()

    handled = False
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    ):
        # the loop's own handler: it wakes the loop whichever thread the signal hits
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C as plain Python
            loop.add_signal_handler(signal.SIGINT, on_sigint)
            handled = True
    try:
        try:
            return loop.run_until_complete(task)
        except asyncio.CancelledError:
            if interrupted:
                raise KeyboardInterrupt from None
            raise
    finally:
        if handled:
            loop.remove_signal_handler(signal.SIGINT)  # back to default_int_handler
        try:
            _cancel_all(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion and return its result, as ``asyncio.run`` does, or,
    when this thread already runs a loop, the same in a helper thread (the caller
    blocks, as a sync call does)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        in_loop = False
    else:
        in_loop = True
    if not in_loop:
        # outside the except block: errors of the call are not chained to the
        # "no running event loop" probe
        return _run(coro)
    result: list[T] = []
    error: list[BaseException] = []
    ctx = contextvars.copy_context()

    def target() -> None:
        try:
            result.append(ctx.run(functools.partial(_run, coro)))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, name="mdcollect-sync", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]
