"""The suite runs on pytest-xdist workers, and a hung test still fails on time there.

pyproject.toml's pytest options spread the tests over workers (``-n auto``, at most
4); each worker starts its own servers (``redis_server``, ``s3_server``: free ports,
its own temporary folders) and has its own ``MDCOLLECT_HOME``. pytest-timeout's ``signal`` method needs the test in
the worker's main thread, which xdist gives it: a test that hangs fails with
"Timeout" and the others still run.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

HANGS = """
import threading


def test_hangs():
    threading.Event().wait()  # nothing will ever set it


def test_passes():
    pass
"""


def test_a_hung_test_fails_on_time_under_xdist_and_the_rest_run(tmp_path: Path) -> None:
    (tmp_path / "test_hangs.py").write_text(HANGS)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"),
         "--rootdir", str(tmp_path), "-p", "no:cacheprovider", "--timeout", "1",
         str(tmp_path / "test_hangs.py")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "created: " in out and " workers" in out, out  # it ran on xdist workers
    assert "Timeout (>1.0s) from pytest-timeout" in out, out
    assert "1 failed, 1 passed" in out, out
    assert time.monotonic() - started < 60


def test_the_default_store_is_the_workers_own(
    worker_id: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A test using the default store without saying so reaches neither the user's
    store nor another worker's: ``MDCOLLECT_HOME`` is in the worker's temporary folder."""
    from mdcollect.storage import default_storage_url

    base = tmp_path_factory.getbasetemp()
    assert default_storage_url() == f"arctic+lmdb://{(base / 'home' / 'arctic').resolve()}"
    if worker_id != "master":
        assert base.name == f"popen-{worker_id}"
