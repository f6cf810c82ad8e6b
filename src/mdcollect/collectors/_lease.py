"""One leader: a lease that two ``mdcollect collect`` on the same config and store share.

Two processes started with the same collector config on the same store must not
both collect. Each holds or waits for a lease named after the config's identity
(:func:`lease_name`: the storage URL and the collectors' names, so two different
configs never block each other):

* :class:`RedisLease` -- ``SET name value NX PX ttl`` takes it; the holder renews it
  every ``ttl / 3`` with a compare-and-set script (only while the value is still its
  own) and releases it the same way. A holder that dies stops renewing: the key
  expires ``ttl`` after its last renewal and a standby takes it at its next poll.
* :class:`FileLease` -- ``fcntl.flock`` on a lock file, for stores on a local disk.
  The kernel drops a dead holder's lock the moment it dies (even by SIGKILL), so a
  standby takes over at its next poll. On NFS ``flock`` is emulated with the
  server's byte-range locks: a client that dies keeps the lock until the server's
  lock lease for it expires (NFSv4: about 90 s), a server restart may lose it, and
  a mount with ``nolock`` grants every client the lock -- use a Redis lease there.

:class:`Leadership` drives a lease from asyncio: :meth:`~Leadership.try_acquire`
once per poll while standing by, :meth:`~Leadership.keep` while leading. The
leader counts its lease valid until ``ttl`` after it *sent* its last successful
renewal (on the monotonic clock); when a renewal fails (Redis down) it retries,
and once less than ``ttl / 3`` of that validity is left -- or the lease turns out
to be someone else's -- :meth:`~Leadership.keep` returns, so the collection stops
(flushing) before a standby can take the lease. A leader paused past its ttl
(SIGSTOP, a VM freeze) notices on resuming; rows it had in flight may then be
written after the new leader started: the same exchange's rows, and writes are
upserts (by timestamp, by id for trades), so nothing is stored twice. Storage has no
fencing token that would refuse such a late write.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import socket
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import platformdirs

from .._errors import InvalidRequest, MdcollectError, missing_extra
from .._redact import redact, secrets_in
from ._base import DataSourceCollector

__all__ = [
    "DEFAULT_TTL",
    "FileLease",
    "Leadership",
    "Lease",
    "LeaseError",
    "RedisLease",
    "default_lease",
    "describe_holder",
    "lease_name",
    "parse_lease",
]

log: Final = logging.getLogger("mdcollect.collector")

#: Seconds a lease lasts without renewal: a Redis standby takes over within this plus
#: one poll (``ttl / 5``) of the leader's death.
DEFAULT_TTL: Final = 10.0

Role = Literal["standby", "leader"]


class LeaseError(MdcollectError):
    """The lease's backend could not be reached (Redis down, the lock file unwritable)."""


def lease_name(storage_url: str, collectors: Iterable[DataSourceCollector]) -> str:
    """The lease of a config: the same storage and collectors give the same name.

    Credentials in the URL play no part (the name is derived from its redacted form).

    >>> lease_name("redis://db:6379/0", load_collectors("collect.toml"))
    'collect-3f2a9c0e51d7b8a4'
    """
    names = sorted(c.name for c in collectors)
    text = "\n".join([redact(storage_url), *names])
    return "collect-" + hashlib.sha256(text.encode()).hexdigest()[:16]


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

    def __init__(self, url: str, name: str, ttl: float = DEFAULT_TTL, poll: float | None = None):
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
        rest = [(k, v) for k, v in query if k not in ("prefix", "compression")]
        # short timeouts: a renewal that cannot complete within a third of the ttl
        # is as good as failed (the leader stops before the lease can expire)
        timeout = max(0.1, ttl / 3)
        try:
            self._redis = redis.Redis.from_url(
                urlunsplit(parts._replace(query=urlencode(rest))),
                socket_connect_timeout=timeout,
                socket_timeout=timeout,
            )
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


def parse_lease(text: str, name: str, ttl: float = DEFAULT_TTL) -> Lease:
    """The lease ``--lease`` names: ``redis://HOST:PORT/DB`` or ``file:PATH``.

    >>> parse_lease("file:/var/lib/md/collect.lock", "collect-demo")
    FileLease(...)
    """
    if text.startswith(("redis://", "rediss://")):
        return RedisLease(text, name, ttl)
    if text.startswith("file:") and len(text) > len("file:"):
        path = text[len("file:") :]
        if path.startswith("//"):  # file:///path
            path = path[2:]
        return FileLease(path, ttl)
    raise InvalidRequest(
        f"--lease {redact(text)!r} is not a lease; use redis://HOST:PORT/DB or file:PATH"
    )


def default_lease(storage_url: str, name: str, ttl: float = DEFAULT_TTL) -> Lease | None:
    """The lease of a store when none is given: in Redis for a Redis store; a lock
    file beside a local store (``parquet://``, ``arctic+lmdb://``); a lock file in
    the user state dir for other remote stores; none for ``memory://`` (a memory store
    is private to its process, so two processes never share one)."""
    scheme = storage_url.split("://", 1)[0].lower()
    if scheme in ("redis", "rediss"):
        return RedisLease(storage_url, name, ttl)
    if scheme == "memory":
        return None
    if scheme in ("parquet", "arctic+lmdb"):
        store = Path(storage_url.split("://", 1)[1].split("?", 1)[0]).expanduser().resolve()
        return FileLease(store.parent / f".{store.name}.{name}.lock", ttl)
    return FileLease(Path(platformdirs.user_state_dir("mdcollect")) / f"{name}.lock", ttl)


class Leadership:
    """Drives a :class:`Lease` from asyncio: stand by, lead, notice a lost lease.

    ::

        leadership = Leadership(RedisLease(url, lease_name(url, collectors)))
        while not stop.is_set():
            if not await leadership.try_acquire():
                await asyncio.sleep(leadership.lease.poll)   # standby
                continue
            await dc.start()
            why = await leadership.keep()                      # returns once lost
            await dc.stop()

    ``role`` is ``"leader"`` or ``"standby"``; ``holder`` the last holder seen.
    """

    def __init__(self, lease: Lease, *, monotonic: Callable[[], float] = time.monotonic):
        self.lease = lease
        self.role: Role = "standby"
        self.holder: dict[str, Any] | None = None
        self._monotonic = monotonic
        self._valid_until = 0.0
        self._announced: str | None = None

    async def _call(self, fn: Callable[[], Any]) -> Any:
        # the lease's own timeouts bound the call; this deadline bounds it here too
        deadline = max(0.2, self.lease.ttl / 3)
        try:
            return await asyncio.wait_for(asyncio.to_thread(fn), deadline)
        except TimeoutError as exc:
            raise LeaseError(f"lease {self.lease.where}: no answer in {deadline:g}s") from exc

    async def try_acquire(self) -> bool:
        """Take the lease if free; True when this process leads now. A lease backend
        that cannot be reached counts as held by someone else (logged)."""
        sent = self._monotonic()
        try:
            got = bool(await self._call(self.lease.acquire))
        except LeaseError as exc:
            if str(exc) != self._announced:  # once per outage, not once per poll
                self._announced = str(exc)
                log.warning("standby: %s", exc)
            return False
        if got:
            self.role, self._valid_until = "leader", sent + self.lease.ttl
            self.holder = await self._holder()
            self._announced = None
            log.info("leader: holding the lease %s", self.lease.where)
            return True
        self.holder = await self._holder()
        who = describe_holder(self.holder)
        if who != self._announced:
            self._announced = who
            log.info("standby: leader is %s (lease %s)", who, self.lease.where)
        return False

    async def _holder(self) -> dict[str, Any] | None:
        try:
            holder = await self._call(self.lease.holder)
        except LeaseError:
            return None
        return holder if isinstance(holder, dict) else None

    async def keep(self) -> str:
        """Renew the lease every ``ttl / 3`` while leading; return why it was lost.

        Returns once the lease is someone else's, or once less than ``ttl / 3`` of its
        validity is left without a renewal (the time the caller has to stop and flush
        before a standby may take over). Cancel it to stop leading on purpose."""
        ttl = self.lease.ttl
        margin = ttl / 3
        wait = ttl / 3
        while True:
            left = self._valid_until - margin - self._monotonic()
            await asyncio.sleep(max(0.0, min(wait, left)))
            if self._monotonic() >= self._valid_until - margin:
                return self._lost(f"not renewed within {ttl - margin:g}s")
            sent = self._monotonic()
            try:
                ours = bool(await self._call(self.lease.renew))
            except LeaseError as exc:
                log.warning("leader: renewing failed: %s", exc)
                wait = ttl / 10  # retry soon: the lease is running out
                continue
            if not ours:
                return self._lost("the lease is held by another process")
            self._valid_until = sent + ttl
            wait = ttl / 3

    def _lost(self, why: str) -> str:
        self.role = "standby"
        log.warning("leader: lost the lease %s (%s); standing by", self.lease.where, why)
        return why

    async def release(self) -> None:
        """Give the lease up (when stopping); errors are logged, not raised."""
        self.role = "standby"
        try:
            await self._call(self.lease.release)
        except LeaseError as exc:
            log.warning("could not release the lease: %s", exc)
