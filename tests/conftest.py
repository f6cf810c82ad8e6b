"""Shared fixtures: real servers on loopback (redis-server, moto S3) and storages."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mdcollect
from mdcollect import DataCollectionStorage

BACKENDS = ["memory", "parquet", "arctic_lmdb", "arctic_s3", "redis"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


class RedisServer:
    """A real ``redis-server`` process on a free loopback port (stoppable and restartable)."""

    def __init__(self, workdir: Path) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.exe = exe
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture(scope="session", autouse=True)
def _own_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``MDCOLLECT_HOME`` in this worker's temporary folder: a test using the default
    store without saying so reaches neither the user's store nor another worker's."""
    home = tmp_path_factory.getbasetemp() / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MDCOLLECT_HOME", str(home))
        yield home


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[dict[str, str | int]]:
    """A local moto S3 server on 127.0.0.1, in its own process.

    In-process (``ThreadedMotoServer``) would hang: ArcticDB holds the GIL through
    some S3 calls, so a server thread in the same process can never answer.
    """
    port = free_port()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port)
        yield {"host": "127.0.0.1", "port": port, "access": "testing", "secret": "testing"}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def make_bucket(s3: dict[str, str | int]) -> str:
    import boto3

    bucket = f"b{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3",
        endpoint_url=f"http://{s3['host']}:{s3['port']}",
        aws_access_key_id=str(s3["access"]),
        aws_secret_access_key=str(s3["secret"]),
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def storage_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "memory":
        return "memory://"
    if backend == "parquet":
        return f"parquet://{tmp_path / 'pq'}"
    if backend == "arctic_lmdb":
        return f"arctic+lmdb://{tmp_path / 'lmdb'}"
    if backend == "arctic_s3":
        s3 = request.getfixturevalue("s3_server")
        bucket = make_bucket(s3)
        return (
            f"arctic+s3://{s3['host']}:{bucket}?port={s3['port']}"
            f"&access={s3['access']}&secret={s3['secret']}"
        )
    if backend == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        import redis

        redis.Redis(host="127.0.0.1", port=server.port).flushall()
        return server.url
    raise AssertionError(backend)


@pytest.fixture
def open_store(storage_url: str) -> Iterator[Callable[[], DataCollectionStorage]]:
    """Opens storages on this test's URL; ``memory://`` hands back the same instance."""
    opened: list[DataCollectionStorage] = []
    memory: list[DataCollectionStorage] = []

    def _open() -> DataCollectionStorage:
        if storage_url == "memory://":
            if not memory:
                memory.append(mdcollect.open_storage(storage_url))
            return memory[0]
        st = mdcollect.open_storage(storage_url)
        opened.append(st)
        return st

    yield _open
    for st in [*opened, *memory]:
        st.close()


@pytest.fixture
def store(open_store: Callable[[], DataCollectionStorage]) -> DataCollectionStorage:
    return open_store()


# -- frame builders -------------------------------------------------------------------

MINUTE = 60_000
DAY = 86_400_000
T0 = 1_704_067_200_000  # 2024-01-01T00:00Z


def candles(start_ms: int, n: int, step: int = MINUTE, seed: int = 0) -> pd.DataFrame:
    """``n`` deterministic candles from ``start_ms``, every ``step`` ms."""
    rng = np.random.default_rng(seed)
    close = 100 + np.cumsum(rng.normal(0, 1, n))
    # a long walk would go below zero, which no market (and storage.write) accepts:
    # reflect it at 1 (a short walk, under ~10,000 rows, is unchanged)
    close = np.where(close < 1, 2 - close, close)
    open_ = np.r_[100.0, close[:-1]]
    high = np.maximum(open_, close) + rng.random(n)
    low = np.minimum(open_, close) - rng.random(n)
    vol = rng.random(n) * 10
    idx = pd.DatetimeIndex(
        pd.to_datetime(start_ms + np.arange(n, dtype=np.int64) * step, unit="ms", utc=True),
        name="timestamp",
    )
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": vol}, index=idx
    )


def run_python(code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (the project's venv)."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, check=False
    )
