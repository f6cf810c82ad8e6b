"""``run_sync``: the loop behind every sync call (``ensure_data``, ``load_*``).

Each call gets a fresh loop, as ``asyncio.run`` gives, but the loops share one
default executor, so a call that only reads coverage does not start and join
threads every time. These tests pin what ``asyncio.run`` guarantees and what
sharing must not break: Ctrl-C, leftover tasks, nesting, fork.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading

import pytest

from mdcollect._sync import run_sync


async def _worker_ident() -> int:
    return await asyncio.to_thread(threading.get_ident)


async def _worker_name() -> str:
    return await asyncio.to_thread(lambda: threading.current_thread().name)


def test_calls_share_one_executor_that_outlives_each_loop() -> None:
    names = {run_sync(_worker_name()) for _ in range(50)}
    # asyncio.run would give each call its own executor (threads "asyncio_0"...),
    # started and joined every time; the shared one keeps its pool across loops
    assert all(n.startswith("mdcollect-io") for n in names), names
    pool = [t for t in threading.enumerate() if t.name.startswith("mdcollect-io")]
    assert 1 <= len(pool) <= 32  # bounded: idle workers serve the next call


def test_leftover_tasks_are_cancelled_and_their_cleanup_runs() -> None:
    cleaned = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.set()

    async def main() -> int:
        asyncio.get_running_loop().create_task(forever())
        await asyncio.sleep(0)
        return 7

    assert run_sync(main()) == 7
    assert cleaned.is_set()


def test_errors_propagate_unchanged() -> None:
    async def boom() -> None:
        await asyncio.to_thread(lambda: None)
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        run_sync(boom())
    assert run_sync(_worker_ident()) != threading.get_ident()  # the executor survives


def test_inside_a_running_loop_runs_in_a_helper_thread() -> None:
    async def outer() -> int:
        return run_sync(_worker_ident())

    assert isinstance(asyncio.run(outer()), int)


def test_ctrl_c_cancels_the_coroutine_then_raises_keyboard_interrupt() -> None:
    started = threading.Event()
    cleaned = threading.Event()

    async def main() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        finally:
            cleaned.set()

    def interrupt() -> None:
        assert started.wait(10)
        os.kill(os.getpid(), signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Thread(target=interrupt, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            run_sync(main())
    finally:
        signal.signal(signal.SIGINT, previous)
    assert cleaned.is_set()  # the coroutine's finally ran before the interrupt surfaced
    assert signal.getsignal(signal.SIGINT) is previous


def _in_child(queue: multiprocessing.Queue[int]) -> None:
    queue.put(run_sync(_worker_ident()))


def test_a_forked_child_gets_its_own_executor() -> None:
    run_sync(_worker_ident())  # the parent's pool has an idle worker now
    ctx = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[int] = ctx.Queue()
    child = ctx.Process(target=_in_child, args=(queue,))
    child.start()
    try:
        # the parent's idle worker does not exist in the child: without a new
        # executor there, the child's call would wait forever
        assert isinstance(queue.get(timeout=30), int)
    finally:
        child.join(30)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0
