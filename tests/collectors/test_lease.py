"""The leases of one leader: Redis (a real redis-server) and a lock file, and
:class:`Leadership` noticing a lease it can no longer renew."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from mdcollect import InvalidRequest
from mdcollect.collectors import (
    FileLease,
    Leadership,
    RedisLease,
    default_lease,
    lease_name,
    load_collectors,
    parse_lease,
)

from ..conftest import RedisServer


def _name() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def test_redis_lease_one_holder_renew_and_release(redis_server: RedisServer) -> None:
    name = _name()
    a = RedisLease(redis_server.url, name, ttl=5)
    b = RedisLease(redis_server.url, name, ttl=5)
    try:
        assert a.acquire() and not b.acquire()
        holder = b.holder()
        assert holder is not None and holder["pid"] == os.getpid() and "host" in holder
        assert "token" not in holder  # the compare-and-set value is not shown
        raw = redis.Redis(port=redis_server.port)
        ttl_before = raw.pttl(f"mdcollect:lease:{name}")
        assert 0 < ttl_before <= 5000
        assert a.renew() and not b.renew()
        b.release()  # not b's: nothing happens
        assert not b.acquire() and a.holder() is not None
        a.release()
        assert a.holder() is None and b.acquire()
    finally:
        a.close()
        b.close()


def test_redis_lease_expires_and_the_old_holder_cannot_renew(redis_server: RedisServer) -> None:
    name = _name()
    a = RedisLease(redis_server.url, name, ttl=0.3)
    b = RedisLease(redis_server.url, name, ttl=5)
    try:
        assert a.acquire()
        deadline = time.monotonic() + 5
        while not b.acquire():  # a stopped renewing: the key expires after its ttl
            assert time.monotonic() < deadline, "the lease never expired"
            time.sleep(0.05)
        assert not a.renew()  # b's now: the compare-and-set refuses a
        a.release()
        assert b.renew()  # and a's release left it alone
    finally:
        a.close()
        b.close()


def test_redis_lease_prefix_from_the_url(redis_server: RedisServer) -> None:
    name = _name()
    lease = RedisLease(redis_server.url + "?prefix=other:", name, ttl=5)
    try:
        assert lease.acquire()
        assert redis.Redis(port=redis_server.port).exists(f"other:lease:{name}")
    finally:
        lease.close()


def test_file_lease_one_holder_and_release(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "x.lock"
    a, b = FileLease(path), FileLease(path)
    assert a.acquire() and not b.acquire()
    holder = b.holder()
    assert holder is not None and holder["pid"] == os.getpid()
    assert a.renew() and not b.renew()
    a.release()
    assert b.holder() is None  # released: the record is cleared
    assert b.acquire() and not a.acquire()
    b.close()


HOLD = """
import sys, time
from mdcollect.collectors import FileLease
lease = FileLease(sys.argv[1])
assert lease.acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_file_lease_of_a_killed_holder_is_free_at_once(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        lease = FileLease(path)
        assert not lease.acquire()
        holder = lease.holder()
        assert holder is not None and holder["pid"] == proc.pid
        proc.kill()
        proc.wait(30)
        assert lease.acquire()  # the kernel dropped the dead holder's lock
        lease.close()
    finally:
        proc.kill()
        proc.wait(30)


async def test_leader_stops_before_the_lease_expires_when_redis_is_gone(
    private_redis: RedisServer,
) -> None:
    """Redis goes away under a leader: ``keep()`` returns while the lease it last
    renewed is still valid (a third of the ttl left to stop and flush), so a standby
    can never take over while it still collects."""
    ttl = 1.5
    leadership = Leadership(RedisLease(private_redis.url, _name(), ttl=ttl))
    try:
        assert await leadership.try_acquire() and leadership.role == "leader"
        keeper = asyncio.create_task(leadership.keep())
        await asyncio.sleep(0)  # the keeper started: renewals run
        private_redis.stop()
        stopped = time.monotonic()
        why = await asyncio.wait_for(keeper, 10)
        took = time.monotonic() - stopped
        assert "not renewed" in why and leadership.role == "standby"
        # its last renewal was at most ttl/3 before Redis stopped: the lease was valid
        # for ttl after it; keep() gave up with at least ttl/3 of that left
        assert took <= ttl - ttl / 3 + 0.3, took  # slack for a busy machine
    finally:
        leadership.lease._redis.close()  # type: ignore[attr-defined]


async def test_leader_notices_a_lease_taken_by_another(redis_server: RedisServer) -> None:
    name = _name()
    leadership = Leadership(RedisLease(redis_server.url, name, ttl=0.6))
    other = RedisLease(redis_server.url, name, ttl=5)
    try:
        assert await leadership.try_acquire()
        redis.Redis(port=redis_server.port).delete(f"mdcollect:lease:{name}")
        assert other.acquire()
        why = await asyncio.wait_for(leadership.keep(), 5)
        assert "another process" in why
        assert not await leadership.try_acquire() and leadership.role == "standby"
        assert leadership.holder is not None and leadership.holder["pid"] == os.getpid()
    finally:
        other.close()
        leadership.lease.close()


def test_lease_name_is_the_config_identity() -> None:
    cfg = {"collectors": [{"exchange": "binance", "symbols": ["BTC/USDT"], "kinds": ["trades"]}]}
    other = {"collectors": [{"exchange": "binance", "symbols": ["ETH/USDT"], "kinds": ["trades"]}]}
    one = lease_name("parquet:///data/a", load_collectors(cfg))
    assert one == lease_name("parquet:///data/a", load_collectors(cfg))
    assert one != lease_name("parquet:///data/b", load_collectors(cfg))
    assert one != lease_name("parquet:///data/a", load_collectors(other))
    # credentials play no part: the same store with a new password is the same lease
    assert lease_name("redis://u:pw1@db:6379/0", load_collectors(cfg)) == lease_name(
        "redis://u:pw2@db:6379/0", load_collectors(cfg)
    )


def test_default_and_named_leases(tmp_path: Path) -> None:
    assert default_lease("memory://", "n") is None
    lease = default_lease(f"parquet://{tmp_path}/store", "n")
    assert isinstance(lease, FileLease) and lease.path == tmp_path / ".store.n.lock"
    assert isinstance(default_lease("redis://127.0.0.1:1/0", "n"), RedisLease)
    assert isinstance(parse_lease(f"file:{tmp_path}/l", "n"), FileLease)
    assert isinstance(parse_lease("redis://u:pw@127.0.0.1:1/0", "n"), RedisLease)
    with pytest.raises(InvalidRequest, match=r"'zk://h'.*redis://HOST:PORT/DB or file:PATH"):
        parse_lease("zk://h", "n")
    with pytest.raises(InvalidRequest, match=r"ttl .* got 0"):
        FileLease(tmp_path / "l", ttl=0)


async def test_a_lease_never_shows_its_password() -> None:
    from mdcollect.collectors import LeaseError

    closed = RedisLease("redis://app:SECRET@127.0.0.1:1/0", _name(), ttl=1)
    assert "SECRET" not in closed.where and "app:***@" in closed.where
    with pytest.raises(LeaseError) as err:
        closed.acquire()  # nothing listens on port 1
    assert "SECRET" not in str(err.value) and "127.0.0.1:1" in str(err.value)
    leadership = Leadership(closed)
    assert not await leadership.try_acquire()  # unreachable: stand by, never lead
    assert leadership.role == "standby"
    closed.close()
