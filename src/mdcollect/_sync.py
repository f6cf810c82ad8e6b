"""Run a coroutine from sync code, also inside a running event loop (Jupyter)."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)``, or, when this thread already runs a loop, the same in a
    helper thread (the caller blocks, as a sync call does)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        in_loop = False
    else:
        in_loop = True
    if not in_loop:
        # outside the except block: errors of the call are not chained to the
        # "no running event loop" probe
        return asyncio.run(coro)
    result: list[T] = []
    error: list[BaseException] = []
    ctx = contextvars.copy_context()

    def target() -> None:
        try:
            result.append(ctx.run(asyncio.run, coro))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, name="mdcollect-sync", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]
