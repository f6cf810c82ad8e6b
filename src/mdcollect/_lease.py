"""Leases: one holder at a time, across processes and machines, that expire when the
holder dies (even by SIGKILL) and are renewed while it works.

* :class:`RedisLease` -- ``SET name value NX PX ttl`` takes it; the holder renews it with
  a compare-and-set script (only while the value is still its own) and releases it the
  same way. A holder that dies stops renewing: the key expires ``ttl`` after its last
  renewal.
* :class:`S3Lease` -- an object in an S3 bucket written with conditional requests
  (``If-None-Match: *`` to create, ``If-Match: ETAG`` to renew, take over or release),
  holding the holder's record and its expiry (wall clock, ms): for a store on S3 with no
  Redis beside it. The machines' clocks must agree to well within the ttl (NTP).
* :class:`FileLease` -- ``fcntl.flock`` on a lock file, for stores on a local disk: the
  kernel drops a dead holder's lock the moment it dies.

:func:`held` holds a lease for a ``with`` block from a thread (waiting for it, bounded,
and renewing it in the background); the collectors' :class:`~mdcollect.collectors.Leadership`
drives one from asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ._errors import InvalidRequest, MdcollectError, missing_extra
from ._redact import redact, secrets_in

__all__ = [
    "DEFAULT_TTL",
    "FileLease",
    "Lease",
    "LeaseError",
    "RedisLease",
    "S3Lease",
    "describe_holder",
    "held",
    "held_async",
    "redis_client",
]

log: Final = logging.getLogger("mdcollect.lease")

#: Seconds a lease lasts without renewal: a Redis standby takes over within this plus
#: one poll (``ttl / 5``) of the leader's death.
DEFAULT_TTL: Final = 10.0


class LeaseError(MdcollectError):
    """The lease's backend could not be reached (Redis down, the lock file unwritable)."""


def _identity() -> dict[str, Any]:
    """Who holds a lease: shown to standbys and in the status (never a secret)."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "since": int(time.time() * 1000),
        "token": uuid.uuid4().hex,
    }


def describe_holder(holder: dict[str, Any] | None) -> str:
    """``host pid N`` of a holder record, or ``unknown``."""
    if not holder:
        return "unknown"
    return f"{holder.get('host', '?')} pid {holder.get('pid', '?')}"


class Lease(ABC):
    """A lease one process at a time holds; ``ttl`` and ``poll`` in seconds.

    The methods block (briefly: every network call has a timeout); :class:`Leadership`
    calls them off the event loop.
    """

    ttl: float
    poll: float
    #: Where the lease lives, for people (credentials redacted).
    where: str

    @abstractmethod
    def acquire(self) -> bool:
        """Take the lease if free (or renew it if ours); whether we hold it now."""

    @abstractmethod
    def renew(self) -> bool:
        """Extend our lease by ``ttl``; False when it is not ours (any more)."""

    @abstractmethod
    def release(self) -> None:
        """Give the lease up, if it is still ours."""

    @abstractmethod
    def holder(self) -> dict[str, Any] | None:
        """The holder's record (``host``, ``pid``, ``since``), or None when free."""

    def close(self) -> None:
        """Release the lease if ours and free the resources it holds."""
        self.release()


# renew/release only while the value is still ours: a lease that expired and was
# taken by another process must never be extended or deleted by the old holder
_RENEW: Final = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE: Final = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


def redis_client(url: str, timeout: float) -> Any:
    """A Redis client for leases at ``url`` (its ``prefix``/``compression`` options left
    out) whose every call gives up after ``timeout`` seconds."""
    import redis

    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    rest = [(k, v) for k, v in query if k not in ("prefix", "compression")]
    return redis.Redis.from_url(
        urlunsplit(parts._replace(query=urlencode(rest))),
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
    )


class RedisLease(Lease):
    """A lease in Redis: ``SET NX PX`` to take, compare-and-set to renew and release.

    ``url`` is a ``redis://[user:password@]HOST[:PORT][/DB][?prefix=P]`` URL (the
    storage's, or another server's); the key is ``{prefix}lease:{name}``. A standby
    polls every ``poll`` seconds (``ttl / 5`` by default), so it takes over within
    ``ttl + poll`` of the holder's death.

    >>> lease = RedisLease("redis://127.0.0.1:6379/0", "collect-demo", ttl=10)
    >>> lease.acquire()
    True
    """

    def __init__(
        self, url: str, name: str, ttl: float = DEFAULT_TTL, poll: float | None = None,
        *, client: Any = None,
    ) -> None:  # fmt: skip
        try:
            import redis
        except ImportError as exc:
            raise MdcollectError(missing_extra("a Redis lease", "redis", exc)) from exc

        _check_times(ttl, poll)
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("redis", "rediss") or not parts.hostname:
            raise InvalidRequest(
                f"redis lease URL {redact(url)!r} is not valid; use redis://HOST:PORT/DB"
            )
        query = parse_qsl(parts.query, keep_blank_values=True)
        prefix = next((v for k, v in query if k == "prefix" and v), "mdcollect:")
        # short timeouts: a renewal that cannot complete within a third of the ttl
        # is as good as failed (the leader stops before the lease can expire)
        timeout = max(0.1, ttl / 3)
        # ``client``: a connection pool shared by many leases of one server (a store's
        # per-dataset leases), made with such timeouts by :func:`redis_client`
        self._owns_client = client is None
        try:
            self._redis = client if client is not None else redis_client(url, timeout)
        except ValueError as exc:
            message = f"redis lease URL {redact(url)!r} is not valid: {exc}"
            raise InvalidRequest(redact(message, secrets_in(url))) from exc
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._secrets = secrets_in(url)
        self.ttl = float(ttl)
        self.poll = float(poll) if poll is not None else self.ttl / 5
        self.key = f"{prefix}lease:{name}"
        self.where = f"{redact(url)} key {self.key}"
        self._me = _identity()
        self._value = json.dumps(self._me, sort_keys=True)

    def _do(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except self._errors as exc:
            raise LeaseError(redact(f"redis lease {self.where}: {exc}", self._secrets)) from exc

    def acquire(self) -> bool:
        ms = int(self.ttl * 1000)
        if self._do(lambda: self._redis.set(self.key, self._value, nx=True, px=ms)):
            return True
        return self.renew()

    def renew(self) -> bool:
        ms = int(self.ttl * 1000)
        return bool(self._do(lambda: self._redis.eval(_RENEW, 1, self.key, self._value, ms)))

    def release(self) -> None:
        self._do(lambda: self._redis.eval(_RELEASE, 1, self.key, self._value))

    def holder(self) -> dict[str, Any] | None:
        raw = self._do(lambda: self._redis.get(self.key))
        return None if raw is None else _record(raw)

    def close(self) -> None:
        try:
            with contextlib.suppress(LeaseError):
                self.release()
        finally:
            if self._owns_client:
                self._redis.close()


class FileLease(Lease):
    """A lease as an OS lock (``fcntl.flock``) on a lock file, for local stores.

    A holder that dies, even by SIGKILL, loses the lock at once (the kernel closes
    its files), so a standby polling every ``poll`` seconds (0.25 by default) takes
    over at its next poll; ``ttl`` only paces :class:`Leadership`'s checks. The holder
    writes its record (``host``, ``pid``) into the file for standbys to show. Not
    for NFS (see the module's notes): use a :class:`RedisLease` there.

    >>> lease = FileLease("/data/.md.collect.lock")
    >>> lease.acquire()
    True
    """

    def __init__(self, path: str | Path, ttl: float = DEFAULT_TTL, poll: float = 0.25):
        _check_times(ttl, poll)
        self.path = Path(path)
        if self.path.is_dir():
            raise InvalidRequest(f"lease file {str(self.path)!r} is a directory; give a file path")
        self.ttl = float(ttl)
        self.poll = float(poll)
        self.where = str(self.path)
        self._fd: int | None = None
        self._me = _identity()

    def acquire(self) -> bool:
        if self._fd is not None:
            return True
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise LeaseError(f"lease file {self.where}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as exc:
            os.close(fd)
            raise LeaseError(f"lease file {self.where}: cannot lock it: {exc}") from exc
        self._fd = fd
        with contextlib.suppress(OSError):  # the record is for people; the lock is the lease
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(self._me, sort_keys=True).encode(), 0)
        return True

    def renew(self) -> bool:
        return self._fd is not None  # the kernel holds the lock for as long as we live

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing drops the lock

    def holder(self) -> dict[str, Any] | None:
        if self._fd is not None:
            return dict(self._me)
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise LeaseError(f"lease file {self.where}: {exc}") from exc
        return _record(raw) if raw else None


def _record(raw: bytes | str) -> dict[str, Any]:
    try:
        rec = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(rec, dict):
        return {}
    rec.pop("token", None)
    return rec


def _check_times(ttl: float, poll: float | None) -> None:
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0.1 <= ttl <= 3600:
        raise InvalidRequest(f"lease ttl must be a number of seconds from 0.1 to 3600, got {ttl!r}")
    if poll is not None and (
        isinstance(poll, bool) or not isinstance(poll, int | float) or not 0 < poll <= ttl
    ):
        raise InvalidRequest(
            f"lease poll must be a number of seconds above 0 and at most the ttl ({ttl:g}),"
            f" got {poll!r}"
        )


def _now_ms() -> int:
    return int(time.time() * 1000)


class S3Lease(Lease):
    """A lease as one object in an S3 bucket, kept with conditional writes.

    The object holds the holder's record and ``expires`` (wall clock, ms). To take a
    free lease: ``PutObject`` with ``If-None-Match: *`` (only if no object exists) or,
    over an expired record, with ``If-Match`` on the ETag just read; to renew or release
    (``expires`` 0): ``If-Match`` on our own last ETag. S3 does these atomically (AWS
    since 2024): of two machines racing for a free lease, one gets HTTP 412. The
    machines' clocks must agree to well within ``ttl`` (NTP does).

    ``client`` is a boto3 S3 client (short timeouts, no retries of its own: a renewal
    that cannot complete soon is as good as failed).
    """

    def __init__(
        self, client: Any, bucket: str, key: str, ttl: float = DEFAULT_TTL,
        poll: float | None = None, *, where: str | None = None,
        clock: Callable[[], int] = _now_ms,
    ) -> None:  # fmt: skip
        _check_times(ttl, poll)
        self._s3 = client
        self.bucket = bucket
        self.key = key
        self.ttl = float(ttl)
        self.poll = float(poll) if poll is not None else self.ttl / 5
        self.where = where or f"s3 bucket {bucket} key {key}"
        self._me = _identity()
        self._etag: str | None = None
        self._clock = clock
        # a renewal (a background thread) and a release (the holder's thread) each read
        # and replace the ETag: one at a time, or the release loses to the renewal
        self._lock = threading.RLock()

    def _call(self, fn: Callable[[], Any]) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

        try:
            return fn()
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("NoSuchKey", "404") or status == 404:
                return None
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
                return False  # another holder won the race, or changed the record
            raise LeaseError(redact(f"s3 lease {self.where}: {exc}")) from exc
        except (BotoCoreError, OSError) as exc:
            raise LeaseError(redact(f"s3 lease {self.where}: {exc}")) from exc

    def _read(self) -> tuple[dict[str, Any] | None, str | None]:
        def get() -> tuple[dict[str, Any], str]:
            answer = self._s3.get_object(Bucket=self.bucket, Key=self.key)
            body = answer["Body"].read()
            try:
                record = json.loads(body)
            except ValueError:
                record = {}
            return (record if isinstance(record, dict) else {}), str(answer["ETag"])

        got = self._call(get)
        return got if got else (None, None)

    def _put(self, expires: int, **condition: str) -> str | None:
        body = json.dumps({**self._me, "expires": expires}, sort_keys=True).encode()
        answer = self._call(
            lambda: self._s3.put_object(Bucket=self.bucket, Key=self.key, Body=body, **condition)
        )
        return str(answer["ETag"]) if answer else None

    def _expiry(self) -> int:
        return self._clock() + int(self.ttl * 1000)

    def acquire(self) -> bool:
        with self._lock:
            return self._acquire()

    def _acquire(self) -> bool:
        if self._etag is not None and self.renew():
            return True
        record, etag = self._read()
        if record is None:
            self._etag = self._put(self._expiry(), IfNoneMatch="*")
        elif int(record.get("expires") or 0) <= self._clock() and etag is not None:
            self._etag = self._put(self._expiry(), IfMatch=etag)
        else:
            return False
        return self._etag is not None

    def renew(self) -> bool:
        with self._lock:
            if self._etag is None:
                return False
            self._etag = self._put(self._expiry(), IfMatch=self._etag)
            return self._etag is not None

    def release(self) -> None:
        with self._lock:
            etag, self._etag = self._etag, None
            if etag is not None:
                self._put(0, IfMatch=etag)  # expired at once; a lost race: not ours

    def holder(self) -> dict[str, Any] | None:
        record, _ = self._read()
        if not record or int(record.get("expires") or 0) <= self._clock():
            return None
        record.pop("expires", None)
        return _record(json.dumps(record))


def _renew_pause(lease: Lease, failed: bool) -> float:
    # a third of the ttl between renewals; a failed one is retried soon, while the lease
    # still has two thirds of its time
    return lease.ttl / 10 if failed else lease.ttl / 3


@contextlib.contextmanager
def held(
    lease: Lease,
    *,
    timeout: float,
    what: str,
    error: type[MdcollectError] = LeaseError,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Lease]:
    """Hold ``lease`` for the ``with`` block: wait for it (polling, at most ``timeout``
    seconds, then ``error`` naming ``what`` and the holder; a backend that cannot be
    reached meanwhile is retried, then named), renew it every ``ttl / 3`` from a
    background thread while the block runs (a failed renewal again after ``ttl / 10``),
    release it after.

    A renewal that finds the lease taken (the holder was paused past its ttl) is logged
    as an error; the block is not interrupted (storage has no fencing token).
    """
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        try:
            if lease.acquire():
                break
            problem = f"still held by {describe_holder(lease.holder())}"
        except LeaseError as exc:
            problem = f"not reachable ({exc})"
        left = deadline - time.monotonic()
        if left <= 0:
            raise error(f"{what}: the lease {lease.where} is {problem} after {timeout:g} s")
        sleep(min(pause, left))
        pause = min(pause * 2, lease.poll, 0.25)
    stop = threading.Event()

    def keep() -> None:
        failed = False
        while not stop.wait(_renew_pause(lease, failed)):
            try:
                ours = lease.renew()
            except LeaseError as exc:
                log.warning("%s: renewing the lease failed: %s", what, exc)
                failed = True
                continue
            failed = False
            if not ours:
                log.error("%s: the lease %s was lost while held", what, lease.where)
                return

    # the renewals' log lines belong to the caller (a log_callback's route)
    context = contextvars.copy_context()
    renewer = threading.Thread(
        target=context.run, args=(keep,), name=f"mdcollect lease {what}", daemon=True
    )
    renewer.start()
    try:
        yield lease
    finally:
        stop.set()
        renewer.join(timeout=lease.ttl)
        try:
            lease.release()
        except LeaseError as exc:  # it expires on its own
            log.warning("%s: releasing the lease failed: %s", what, exc)


@contextlib.asynccontextmanager
async def held_async(
    lease: Lease, *, wait: float, what: str, error: type[MdcollectError] = LeaseError
) -> AsyncIterator[Lease]:
    """:func:`held` for asyncio: the lease's calls run in threads (each bounded by the
    backend's own timeouts), the waits and renewals are tasks of the running loop.

    Cancelled while taking the lease, it gives back a lease the call in flight took."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait  # a deadline of its own: it raises naming the holder
    pause = 0.005
    told = False
    while True:
        attempt = asyncio.ensure_future(asyncio.to_thread(lease.acquire))
        try:
            got = await asyncio.shield(attempt)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                if await attempt:
                    await asyncio.to_thread(lease.release)
            raise
        except LeaseError as exc:
            got, problem = False, f"not reachable ({exc})"
        else:
            problem = ""
        if got:
            break
        if not problem:
            problem = f"still held by {describe_holder(await asyncio.to_thread(lease.holder))}"
        left = deadline - loop.time()
        if left <= 0:
            raise error(f"{what}: the lease {lease.where} is {problem} after {wait:g} s")
        if not told:
            log.info("%s: waiting: the lease %s is %s", what, lease.where, problem)
            told = True
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 2, lease.poll)

    async def keep() -> None:
        failed = False
        while True:
            await asyncio.sleep(_renew_pause(lease, failed))
            try:
                ours = await asyncio.to_thread(lease.renew)
            except LeaseError as exc:
                log.warning("%s: renewing the lease failed: %s", what, exc)
                failed = True
                continue
            failed = False
            if not ours:
                log.error("%s: the lease %s was lost while held", what, lease.where)
                return

    renewer = asyncio.create_task(keep(), name=f"mdcollect lease {what}")
    try:
        yield lease
    finally:
        renewer.cancel()
        await asyncio.gather(renewer, return_exceptions=True)
        try:
            # a renewal still running in its thread finishes first (the lease's own lock)
            await asyncio.shield(asyncio.to_thread(lease.release))
        except LeaseError as exc:  # it expires on its own
            log.warning("%s: releasing the lease failed: %s", what, exc)
