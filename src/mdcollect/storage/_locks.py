"""Cross-process locks: one writer per dataset at a time.

ArcticDB and Parquet read-modify-write a dataset; two processes doing so at once
would lose rows (last writer wins). An exclusive ``flock`` on a lock file per
dataset serialises them across processes and threads (every acquisition opens
its own file description, so threads of one process exclude each other too).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the ``with`` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        # closing the descriptor releases the lock, also when the process dies
        os.close(fd)
