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
import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final, Literal

import platformdirs

from .._errors import InvalidRequest
from .._lease import (
    DEFAULT_TTL,
    FileLease,
    Lease,
    LeaseError,
    RedisLease,
    describe_holder,
)
from .._redact import redact
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

Role = Literal["standby", "leader"]


def lease_name(storage_url: str, collectors: Iterable[DataSourceCollector]) -> str:
    """The lease of a config: the same storage and collectors give the same name.

    Credentials in the URL play no part (the name is derived from its redacted form).

    >>> lease_name("redis://db:6379/0", load_collectors("collect.toml"))
    'collect-3f2a9c0e51d7b8a4'
    """
    names = sorted(c.name for c in collectors)
    text = "\n".join([redact(storage_url), *names])
    return "collect-" + hashlib.sha256(text.encode()).hexdigest()[:16]


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

    async def release(self) -> bool:
        """Give the lease up (when stopping); False when that failed (logged, not
        raised: the lease then expires after its ttl)."""
        self.role = "standby"
        try:
            await self._call(self.lease.release)
        except LeaseError as exc:
            log.warning("could not release the lease: %s", exc)
            return False
        return True
