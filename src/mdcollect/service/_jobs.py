"""Sync jobs: ``ensure_data`` runs as a task the request waits for up to a timeout,
then leaves running in the background under a job id.

What keeps a busy service bounded:

* at most ``max_running`` jobs run at once; a sync that would start one more is
  refused (:class:`JobsFull`, answered 503 with ``Retry-After``);
* a sync identical to a running one (same exchange, timeframe, dates, padding and set
  of symbols) joins it: same job, same report, the exchange asked once;
* a job waits while another one is fetching any of its datasets (exchange, symbol,
  timeframe), then fetches only what is still missing: two overlapping syncs never
  fetch the same dataset at the same time;
* finished jobs are kept ``keep_seconds`` and at most ``keep`` of them;
* :meth:`Jobs.close` (service shutdown) refuses new jobs, cancels the running ones and
  waits for them, boundedly. A cancelled job stops at a window boundary: writes already
  started complete, so coverage never claims rows that are not stored.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal

from attrs import define, field

from .._api import SyncRequest
from .._errors import ExchangeError, InvalidRequest, MdcollectError, StorageError

__all__ = [
    "DEFAULT_KEEP_JOBS",
    "DEFAULT_KEEP_SECONDS",
    "DEFAULT_MAX_JOBS",
    "JobStatus",
    "Jobs",
    "JobsFull",
    "SyncJob",
]

log: Final = logging.getLogger("mdcollect.service")

JobStatus = Literal["running", "completed", "failed", "cancelled"]

DEFAULT_MAX_JOBS: Final = 4
DEFAULT_KEEP_JOBS: Final = 200
DEFAULT_KEEP_SECONDS: Final = 3600.0
#: Seconds :meth:`Jobs.close` waits for cancelled jobs to finish their started writes.
CLOSE_TIMEOUT: Final = 10.0

_Identity = tuple[str, frozenset[str], str, str, str, int, tuple[str, ...]]
_Dataset = tuple[str, str, str]  # exchange, symbol, timeframe


def error_status(exc: BaseException) -> int:
    """The HTTP status an error of a sync job maps to."""
    if isinstance(exc, InvalidRequest):
        return 400
    if isinstance(exc, ExchangeError):
        return 502
    if isinstance(exc, StorageError):
        return 503
    return 500


class JobsFull(MdcollectError):
    """No room for one more sync job (``max_jobs`` running), or the service is stopping."""

    def __init__(self, message: str, retry_after: int | None) -> None:
        super().__init__(message)
        #: seconds after which a retry may find room; None when the service is stopping
        self.retry_after = retry_after


def _identity(request: SyncRequest) -> _Identity:
    return (
        request.exchange,
        frozenset(request.symbols),
        request.timeframe,
        request.start_date,
        request.end_date,
        request.padding_days,
        request.kinds,
    )


def _datasets(request: SyncRequest) -> frozenset[_Dataset]:
    return frozenset((request.exchange, s, request.timeframe) for s in request.symbols)


@define
class SyncJob:
    """One sync job: its request, task and outcome; ``joined`` counts the identical
    requests that joined it while it ran."""

    id: str
    request: SyncRequest
    task: asyncio.Task[dict[str, Any]]
    created: float = field(factory=time.time)
    status: JobStatus = "running"
    background: bool = False
    report: dict[str, Any] | None = None
    error: str | None = None
    http_status: int = 200
    finished: float | None = None
    joined: int = 0
    _clock: Callable[[], float] = field(default=time.time, repr=False, alias="clock")
    _cancelled_by_request: bool = field(default=False, repr=False, init=False)

    def cancel(self) -> None:
        """Cancel by request (``DELETE /api/v1/sync/{id}``): the job stops at a window
        boundary, writes already started complete; it ends ``cancelled``."""
        self._cancelled_by_request = True
        self.task.cancel()

    def _done(self, task: asyncio.Task[dict[str, Any]]) -> None:
        self.finished = self._clock()
        if task.cancelled() and self._cancelled_by_request:
            self.status, self.error = "cancelled", "cancelled by request"
            self.http_status = 409
            return
        if task.cancelled():
            self.status, self.error = "failed", "cancelled: the service is stopping"
            self.http_status = 503
            return
        exc = task.exception()  # retrieved here, so never "never retrieved"
        if exc is None:
            self.status, self.report = "completed", task.result()
            return
        self.status, self.error, self.http_status = "failed", str(exc), error_status(exc)
        if self.http_status == 500:
            log.error("sync job %s failed", self.id, exc_info=exc)
        else:
            log.warning("sync job %s failed: %s", self.id, exc)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (what the service answers)."""
        out: dict[str, Any] = {
            "job_id": self.id,
            "status": self.status,
            "background": self.background,
            "joined": self.joined,
            "request": self.request.body(),
            "report": self.report,
            "error": self.error,
            "created": round(self.created, 3),
            "finished": None if self.finished is None else round(self.finished, 3),
        }
        if self.status == "running":
            out["message"] = (
                "still running in the background after the request timeout; "
                f"poll GET /api/v1/sync/{self.id} for its status and report"
            )
        return out


class Jobs:
    """The service's sync jobs (see the module docstring for the bounds).

    ``clock`` gives seconds since the epoch (``created``/``finished`` and the
    ``keep_seconds`` expiry); tests inject one.
    """

    def __init__(
        self,
        *,
        max_running: int = DEFAULT_MAX_JOBS,
        keep: int = DEFAULT_KEEP_JOBS,
        keep_seconds: float = DEFAULT_KEEP_SECONDS,
        retry_after: int = 5,
        close_timeout: float = CLOSE_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_running = max_running
        self.keep = keep
        self.keep_seconds = keep_seconds
        self.retry_after = retry_after
        self.close_timeout = close_timeout
        self._clock = clock
        self._jobs: OrderedDict[str, SyncJob] = OrderedDict()
        # the loop thread adds jobs, endpoints in the thread pool (status) read them
        self._lock = threading.Lock()
        self._running: dict[_Identity, SyncJob] = {}
        self._busy: dict[_Dataset, asyncio.Event] = {}  # set when its holder ends
        self._closed = False

    def submit(
        self, request: SyncRequest, work: Callable[[], Awaitable[dict[str, Any]]]
    ) -> tuple[SyncJob, bool]:
        """The running job identical to ``request`` (joined: True), else a new job
        running ``work()`` once its datasets are free; :class:`JobsFull` when there
        is no room."""
        if self._closed:
            raise JobsFull("the service is stopping; no new sync jobs", None)
        ident = _identity(request)
        running = self._running.get(ident)
        if running is not None:
            running.joined += 1
            return running, True
        if len(self._running) >= self.max_running:
            raise JobsFull(
                f"{len(self._running)} sync jobs are running, the most this service runs at "
                f"once (max_jobs); retry in {self.retry_after} s, or poll a running job",
                self.retry_after,
            )
        job_id = uuid.uuid4().hex
        task = asyncio.get_running_loop().create_task(
            self._run(request, work), name=f"sync job {job_id}"
        )
        job = SyncJob(job_id, request, task, created=self._clock(), clock=self._clock)
        self._running[ident] = job
        task.add_done_callback(job._done)
        task.add_done_callback(lambda _: self._forget_running(ident, job))
        with self._lock:
            self._jobs[job.id] = job
            self._prune()
        return job, False

    def get(self, job_id: str) -> SyncJob | None:
        """The job with that id, if it is still kept."""
        with self._lock:
            self._prune()
            return self._jobs.get(job_id)

    def counts(self) -> dict[str, int]:
        """Jobs per status."""
        out = {"running": 0, "completed": 0, "failed": 0, "cancelled": 0}
        with self._lock:
            self._prune()
            for job in self._jobs.values():
                out[job.status] += 1
        return out

    def list(self) -> list[SyncJob]:
        """The jobs still kept, oldest first."""
        with self._lock:
            self._prune()
            return list(self._jobs.values())

    async def cancel(self, job: SyncJob) -> None:
        """Cancel a running ``job`` by request and wait, at most ``close_timeout`` s, for
        it to end (its started writes complete, so coverage stays true)."""
        job.cancel()
        await asyncio.wait([job.task], timeout=self.close_timeout)

    def cancel_running(self) -> None:
        """Refuse new jobs and cancel the running ones (the service is stopping)."""
        self._closed = True
        for job in list(self._running.values()):
            job.task.cancel()

    async def close(self) -> None:
        """Cancel running jobs and wait, at most ``close_timeout`` s, for them to end."""
        self.cancel_running()
        with self._lock:
            tasks = [j.task for j in self._jobs.values() if not j.task.done()]
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=self.close_timeout)
        if pending:
            log.error(
                "%d sync job(s) still running %.0f s after cancel", len(pending), self.close_timeout
            )

    async def _run(
        self, request: SyncRequest, work: Callable[[], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        wanted = _datasets(request)
        # Claim every dataset at once, or wait for a job holding one to end: nothing is
        # awaited between the check and the claim, so two jobs never hold parts of each
        # other's claims.
        while holders := {self._busy[d] for d in wanted if d in self._busy}:
            log.info("sync waits for another job fetching %s", sorted(wanted & self._busy.keys()))
            await next(iter(holders)).wait()
        mine = asyncio.Event()
        self._busy.update(dict.fromkeys(wanted, mine))
        try:
            return await work()
        finally:
            for d in wanted:
                del self._busy[d]
            mine.set()

    def _forget_running(self, ident: _Identity, job: SyncJob) -> None:
        if self._running.get(ident) is job:
            del self._running[ident]

    def _prune(self) -> None:  # under self._lock
        expired = self._clock() - self.keep_seconds
        finished = [k for k, j in self._jobs.items() if j.status != "running"]
        old = set(finished[: max(0, len(finished) - self.keep)])
        for k in finished:
            job = self._jobs[k]
            if k in old or (job.finished is not None and job.finished <= expired):
                del self._jobs[k]
