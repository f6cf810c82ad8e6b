"""Leases across machines: the S3 lease's conditional writes, an S3 store's ``?lease=``
option, and the lease a write and a backfill job hold (processes in
tests/backfill/test_cross_machine.py)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from mdcollect import InvalidRequest, open_storage
from mdcollect._lease import RedisLease, S3Lease, held
from mdcollect.storage import DataCollectionStorage

from ..conftest import RedisServer, make_bucket


def s3_client(s3: dict[str, Any]) -> Any:
    import boto3

    return boto3.client(
        "s3", endpoint_url=f"http://{s3['host']}:{s3['port']}",
        aws_access_key_id=s3["access"], aws_secret_access_key=s3["secret"],
        region_name="us-east-1",
    )  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.ms = 1_700_000_000_000

    def __call__(self) -> int:
        return self.ms


def test_s3_lease_one_holder_renew_release_and_takeover_after_expiry(
    s3_server: dict[str, Any],
) -> None:
    bucket = make_bucket(s3_server)
    client, clock = s3_client(s3_server), Clock()
    a = S3Lease(client, bucket, "leases/x.json", ttl=10, clock=clock)
    b = S3Lease(client, bucket, "leases/x.json", ttl=10, clock=clock)
    assert b.holder() is None
    assert a.acquire() and a.acquire()  # taking it again is a renewal
    assert not b.acquire()
    holder = b.holder()
    assert holder is not None and holder["pid"] == a._me["pid"] and "token" not in holder
    clock.ms += 9_000
    assert a.renew()  # valid 10 s from now
    clock.ms += 9_000
    assert not b.acquire()  # renewed: not expired yet
    clock.ms += 1_001  # a stopped renewing (died): expired
    assert b.acquire()
    assert not a.renew() and not a.acquire()  # the old holder cannot extend b's lease
    a.release()  # nor release it
    assert b.holder() is not None and not a.acquire()
    b.release()
    assert b.holder() is None and a.acquire()


def test_s3_lease_creation_race_has_one_winner(s3_server: dict[str, Any]) -> None:
    """If-None-Match: * on a missing object: the second create is refused (412)."""
    bucket = make_bucket(s3_server)
    client = s3_client(s3_server)
    a = S3Lease(client, bucket, "y.json", ttl=10)
    b = S3Lease(client, bucket, "y.json", ttl=10)
    assert a._put(a._expiry(), IfNoneMatch="*") is not None
    assert b._put(b._expiry(), IfNoneMatch="*") is None


def test_held_waits_for_the_holder_then_times_out_naming_it(redis_server: RedisServer) -> None:
    from mdcollect import StorageError

    a = RedisLease(redis_server.url, "t-held", ttl=5)
    b = RedisLease(redis_server.url, "t-held", ttl=5)
    slept: list[float] = []
    with (
        held(a, timeout=1, what="write x"),
        pytest.raises(StorageError, match=r"write x: the lease .* is still held by .* pid"),
        held(b, timeout=0.05, what="write x", error=StorageError, sleep=slept.append),
    ):
        pass
    assert slept and max(slept) <= 0.25
    released = threading.Event()
    with held(b, timeout=1, what="write x"):  # free again once a's block ended
        released.set()
    assert released.is_set()


def s3_url(s3: dict[str, Any], bucket: str, query: str) -> str:
    return (
        f"arctic+s3://{s3['host']}:{bucket}?port={s3['port']}&access={s3['access']}"
        f"&secret={s3['secret']}{query}"
    )


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("&lease=zk://h:1", "lease 'zk://h:1' in storage URL .* is not valid; use lease=redis"),
        ("&lease_ttl=5", "has lease_ttl but no lease="),
        ("&lease=s3&lease_ttl=0", "lease_ttl '0' is not valid; use seconds from 0.5 to 3600"),
        ("&lease=s3&lease_ttl=soon", "lease_ttl 'soon' is not valid"),
    ],
)
def test_bad_lease_options_are_refused(s3_server: dict[str, Any], query: str, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        open_storage(s3_url(s3_server, "nobucket", query))


def test_lease_credentials_never_reach_output(
    s3_server: dict[str, Any], redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    from mdcollect import DatasetKey

    bucket = make_bucket(s3_server)
    url = s3_url(s3_server, bucket, f"&lease=redis://:hunter2@127.0.0.1:{redis_server.port}/0")
    caplog.set_level("DEBUG")
    with open_storage(url) as store:
        assert "hunter2" not in repr(store) and "hunter2" not in str(store.url)
        key = DatasetKey("x", "A/B", "ohlcv", "1m")
        store.write(key, _candles(), covered=None)
        lease = store.dataset_lease(key)
        assert lease is not None and "hunter2" not in lease.where
    assert "hunter2" not in caplog.text
    with pytest.raises(InvalidRequest) as caught:
        open_storage(s3_url(s3_server, bucket, "&lease=zk://u:hunter2@h"))
    assert "hunter2" not in str(caught.value)


def _candles() -> Any:
    from ..conftest import candles

    return candles(1_704_067_200_000, 3)


@pytest.mark.parametrize("lease", ["redis", "s3"])
def test_a_leased_store_reads_and_writes_and_gives_job_leases(
    s3_server: dict[str, Any], redis_server: RedisServer, lease: str
) -> None:
    from mdcollect import DatasetKey, Interval

    bucket = make_bucket(s3_server)
    spec = f"redis://127.0.0.1:{redis_server.port}/0" if lease == "redis" else "s3"
    key = DatasetKey("x", "A/B", "ohlcv", "1m")
    with open_storage(s3_url(s3_server, bucket, f"&lease={spec}&lease_ttl=2")) as store:
        assert isinstance(store, DataCollectionStorage)
        frame = _candles()
        store.write(key, frame, covered=Interval(1_704_067_200_000, 1_704_067_380_000))
        assert len(store.read(key)) == 3
        job = store.dataset_lease(key)
        other = store.dataset_lease(key)
        assert job is not None and other is not None and job.ttl == 2
        assert job.acquire() and not other.acquire()
        job.release()
        assert other.acquire()
        other.release()
    with open_storage(s3_url(s3_server, bucket, "")) as plain:
        assert plain.dataset_lease(key) is None  # no lease named: none
        assert len(plain.read(key)) == 3  # the same data: the lease is not part of the store


def test_cli_lease_option(
    s3_server: dict[str, Any], redis_server: RedisServer, tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from mdcollect import DatasetKey
    from mdcollect.cli import main

    args = ["--emulate", "--no-progress", "ensure", "BTC/USDT", "-x", "binance", "-t", "1d",
            "--start", "2024-01-01", "--end", "2024-01-03", "--padding-days", "0"]  # fmt: skip
    assert main(["--storage", f"parquet://{tmp_path}/p", *args, "--lease", "s3"]) == 2
    assert "--lease is for a store that several machines write" in capsys.readouterr().err
    bucket = make_bucket(s3_server)
    url = s3_url(s3_server, bucket, "")
    assert main(["--storage", url, *args, "--lease", redis_server.url]) == 0
    import redis

    keys = redis.Redis(host="127.0.0.1", port=redis_server.port).keys("mdcollect:lease:*")
    assert keys == []  # every lease taken was given back
    with open_storage(url) as store:
        assert len(store.read(DatasetKey("binance", "BTC/USDT", "ohlcv", "1d"))) == 3


def test_machines_spelling_the_store_differently_share_its_leases(
    s3_server: dict[str, Any], redis_server: RedisServer
) -> None:
    from mdcollect import DatasetKey

    bucket = make_bucket(s3_server)
    lease = f"&lease={redis_server.url}"
    spellings = [
        s3_url(s3_server, bucket, lease),
        s3_url(s3_server, bucket, f"&region=eu-west-1{lease}"),
        s3_url(s3_server, bucket, lease).replace(f"{s3_server['host']}:", "localhost:", 1),
    ]
    key = DatasetKey("x", "A/B", "ohlcv", "1m")
    names = set()
    for url in spellings:
        with open_storage(url) as store:
            got = store.dataset_lease(key)
            assert isinstance(got, RedisLease)
            names.add(got.key)
    assert len(names) == 1, names


def test_a_percent_encoded_lease_url_keeps_its_password(
    s3_server: dict[str, Any], redis_server: RedisServer
) -> None:
    bucket = make_bucket(s3_server)
    encoded = f"redis%3A%2F%2F%3Ahunter2%40127.0.0.1%3A{redis_server.port}%2F0"
    with open_storage(s3_url(s3_server, bucket, f"&lease={encoded}")) as store:
        assert "hunter2" not in repr(store) and "hunter2" not in store.url


def test_a_release_never_loses_to_a_renewal_in_flight(s3_server: dict[str, Any]) -> None:
    """The renewal thread and the holder's release both replace the ETag: one at a time."""
    bucket = make_bucket(s3_server)
    client = s3_client(s3_server)
    a = S3Lease(client, bucket, "race.json", ttl=30)
    b = S3Lease(client, bucket, "race.json", ttl=30)
    for _ in range(10):
        assert a.acquire()
        renewal = threading.Thread(target=a.renew)
        renewal.start()
        a.release()
        renewal.join()
        assert b.acquire(), "a released lease is still taken"
        b.release()


async def test_a_cancelled_wait_gives_back_the_lease_its_call_took(
    redis_server: RedisServer,
) -> None:
    import asyncio

    from mdcollect._lease import held_async

    class SlowNetwork(RedisLease):
        """A Redis lease whose take is slow to answer (a slow link)."""

        def acquire(self) -> bool:
            started.set()
            time.sleep(0.3)
            try:
                return super().acquire()
            finally:
                taken.set()

    started, taken = threading.Event(), threading.Event()
    lease = SlowNetwork(redis_server.url, "t-cancel", ttl=30)

    async def job() -> None:
        async with held_async(lease, wait=10, what="fill x"):
            raise AssertionError("not reached: cancelled while taking the lease")

    task = asyncio.create_task(job())
    await asyncio.to_thread(started.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(taken.wait, 5)  # the call in flight did take it...
    assert RedisLease(redis_server.url, "t-cancel", ttl=30).holder() is None  # ...and gave it back


def test_an_unreachable_lease_backend_is_a_bounded_storage_error() -> None:
    from mdcollect import StorageError

    from ..conftest import free_port

    lease = RedisLease(f"redis://127.0.0.1:{free_port()}/0", "t-down", ttl=1)
    started = time.monotonic()
    with (
        pytest.raises(StorageError, match=r"write x: the lease .* is not reachable .* after 0.3 s"),
        held(lease, timeout=0.3, what="write x", error=StorageError),
    ):
        pass
    assert time.monotonic() - started < 5
