"""Sync jobs: ``ensure_data`` runs as a task the request waits for up to a timeout,
then leaves running in the background under a job id."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Coroutine
from typing import Any, Final, Literal

from attrs import define, field

from .._errors import ExchangeError, InvalidRequest, StorageError
from ..remote._validation import SyncRequest

__all__ = ["JobStatus", "Jobs", "SyncJob"]

log: Final = logging.getLogger("mdcollect.service")

JobStatus = Literal["running", "completed", "failed"]


def error_status(exc: BaseException) -> int:
    """The HTTP status an error of a sync job maps to."""
    if isinstance(exc, InvalidRequest):
        return 400
    if isinstance(exc, ExchangeError):
        return 502
    if isinstance(exc, StorageError):
        return 503
    return 500


@define
class SyncJob:
    """One ``POST /api/v1/sync``: its request, task and outcome."""

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

    def _done(self, task: asyncio.Task[dict[str, Any]]) -> None:
        self.finished = time.time()
        if task.cancelled():
            self.status, self.error, self.http_status = "failed", "cancelled", 503
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
    """The service's sync jobs; keeps the last ``keep`` finished ones."""

    def __init__(self, keep: int = 200) -> None:
        self.keep = keep
        self._jobs: OrderedDict[str, SyncJob] = OrderedDict()

    def start(self, request: SyncRequest, work: Coroutine[Any, Any, dict[str, Any]]) -> SyncJob:
        """Run ``work`` as a new job."""
        task = asyncio.get_running_loop().create_task(work)
        job = SyncJob(uuid.uuid4().hex, request, task)
        task.add_done_callback(job._done)
        self._jobs[job.id] = job
        self._prune()
        return job

    def get(self, job_id: str) -> SyncJob | None:
        """The job with that id, if it is still kept."""
        return self._jobs.get(job_id)

    def counts(self) -> dict[str, int]:
        """Jobs per status."""
        out = {"running": 0, "completed": 0, "failed": 0}
        for job in self._jobs.values():
            out[job.status] += 1
        return out

    async def cancel_all(self) -> None:
        """Cancel running jobs and wait for them (service shutdown)."""
        tasks = [j.task for j in self._jobs.values() if not j.task.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _prune(self) -> None:
        finished = [k for k, j in self._jobs.items() if j.status != "running"]
        for k in finished[: max(0, len(finished) - self.keep)]:
            del self._jobs[k]
