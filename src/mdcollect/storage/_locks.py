"""Cross-process locks: one writer per dataset at a time.

ArcticDB and Parquet read-modify-write a dataset; two processes doing so at once
would lose rows (last writer wins). An exclusive ``flock`` on a lock file per
dataset serialises them across processes and threads (every acquisition opens
its own file description, so threads of one process exclude each other too).

A wait for a lock is bounded (:data:`LOCK_TIMEOUT`): a writer that hangs while
holding one (a stuck disk, a process stopped with SIGSTOP) turns every later
write into a :class:`~mdcollect.StorageError` naming the lock file, not a hang.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .._errors import StorageError

#: Seconds a writer waits for another one to release a dataset's lock. A write of a
#: year of minute candles holds it for about a second; this is far beyond any.
LOCK_TIMEOUT: float = 600.0


@contextmanager
def file_lock(path: Path, timeout: float | None = None) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the ``with`` block;
    :class:`StorageError` after ``timeout`` seconds (:data:`LOCK_TIMEOUT`) of waiting."""
    limit = LOCK_TIMEOUT if timeout is None else timeout
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(fd, path, limit)
        yield
    finally:
        # closing the descriptor releases the lock, also when the process dies
        os.close(fd)


def _acquire(fd: int, path: Path, limit: float) -> None:
    deadline = time.monotonic() + limit
    pause = 0.001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                raise StorageError(
                    f"lock {str(path)!r} is still held by another writer after {limit:g} s; "
                    "is a process writing this dataset stuck?"
                ) from None
            # flock has no timed wait: poll, backing off to 50 ms
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.05)
