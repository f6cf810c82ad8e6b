"""Distributed backfill on Dask: ``ensure_data(..., executor=client)``.

The caller plans (input rules, one coverage read: nothing missing, the cluster
is asked nothing) and submits one task per dataset job that has something
missing; the cluster's workers run them. What each side guarantees:

* **One client per worker process.** A worker keeps one event loop thread and,
  on it, one :class:`~mdcollect.exchanges.ExchangeClient` per exchange (markets
  loaded once) and one open store per URL, for every task it runs.
* **One rate budget per host.** Workers call
  :func:`~mdcollect.exchanges.share_budgets_on_host`: the workers of a machine
  share its IP, so they draw on one window (a locked file in the temp dir).
* **One writer per dataset.** Each job holds its dataset's lease while it fills
  it (the engine does, on a store with ``?lease=...``), then takes coverage again.
* **Retried from coverage.** A worker killed mid-job: Dask runs the task again
  elsewhere; it starts from what coverage says is stored, so nothing is fetched
  or written twice beyond the window the kill interrupted (upserted, never
  duplicated).
* **Progress reaches the caller.** Workers log each written window as an event
  on a topic of this call; the caller feeds them to its bars and
  ``progress_callback``. A task's result carries its steps too, so a step whose
  event arrives after the result is still delivered, once.

Dask is optional (``pip install 'mdcollect[dask]'``); ``import mdcollect`` never
imports it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
import uuid
from collections.abc import Sequence
from typing import Any, Final

from attrs import define, field, frozen

from ._errors import InvalidRequest, MdcollectError
from ._redact import redact
from .backfill import BackfillJob, JobReport, ProgressCallback, ProgressFeed, run_jobs
from .exchanges import ExchangeClient, SessionStats, request_tally, share_budgets_on_host
from .storage import DataCollectionStorage, open_storage

__all__ = [
    "ClientSpec",
    "check_executor",
    "check_shared_store",
    "connect",
    "run_on_cluster",
]

log = logging.getLogger("mdcollect.distributed")

#: What a user without dask is told to install.
DASK_MISSING: Final = "pip install 'mdcollect[dask]'"
#: Seconds to wait for the cluster to have a worker before giving up.
WORKER_WAIT: Final = 60.0
#: How often the caller looks at its tasks and progress events (seconds).
POLL: Final = 0.2
#: Times a task that failed with an error (not a lost worker) is tried again.
RETRIES: Final = 2


def _distributed() -> Any:
    """The ``distributed`` package, or :class:`InvalidRequest` saying how to install it."""
    try:
        import distributed
    except ImportError as exc:
        raise InvalidRequest(
            f"running the jobs on a Dask cluster (executor=, --scheduler) needs dask: "
            f"{DASK_MISSING}"
        ) from exc
    return distributed


def check_executor(executor: object) -> Any:
    """``executor`` if it is a (synchronous) ``dask.distributed.Client``; otherwise, or
    when dask is not installed, :class:`InvalidRequest` saying what to pass or install."""
    distributed = _distributed()
    if not isinstance(executor, distributed.Client):
        raise InvalidRequest(
            f"executor must be a dask.distributed.Client (or None to run here), "
            f"got {type(executor).__name__}"
        )
    if executor.asynchronous:
        raise InvalidRequest(
            "executor must be a synchronous dask.distributed.Client (Client(address)); "
            "ensure_data_async waits on it off the event loop"
        )
    return executor


def check_shared_store(store: DataCollectionStorage) -> None:
    """Refuse a store the workers cannot reach: ``memory://`` lives in this process.

    Paths (``arctic+lmdb://``, ``parquet://``) must be on every worker: fine for a
    ``LocalCluster`` on this machine; on several machines use ``arctic+s3://`` (with a
    ``lease=``) or ``redis://``."""
    if store.url.partition("://")[0].lower() == "memory":
        raise InvalidRequest(
            f"storage {store.url!r} lives in this process; the workers of a Dask cluster "
            "cannot share it: use arctic+s3://...?lease=redis://... (several machines), or "
            "an arctic+lmdb:// or parquet:// path every worker sees (a LocalCluster here)"
        )


#: Seconds ``mdcollect ensure --scheduler`` waits to reach the scheduler.
CONNECT_TIMEOUT: Final = 10.0
_SCHEMES: Final = ("tcp", "tls", "ucx", "ws", "wss")


def connect(address: object) -> Any:
    """A ``dask.distributed.Client`` of the scheduler at ``address`` (``tcp://HOST:PORT``),
    for ``mdcollect ensure --scheduler``; :class:`InvalidRequest` naming the address when
    it is malformed or nothing answers there within :data:`CONNECT_TIMEOUT`."""
    if not isinstance(address, str) or address.partition("://")[0] not in _SCHEMES:
        raise InvalidRequest(
            f"scheduler {address!r} is not a Dask scheduler address; expected "
            f"tcp://HOST:PORT (schemes: {', '.join(_SCHEMES)})"
        )
    distributed = _distributed()
    try:
        return distributed.Client(address, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        raise InvalidRequest(
            f"no Dask scheduler answered at {redact(address)} within {CONNECT_TIMEOUT:g} s: {exc}"
        ) from exc


@frozen
class ClientSpec:
    """How a worker builds its exchange client: ``ExchangeClient(key, base_url, **config)``
    (no credentials: :meth:`~mdcollect.exchanges.ExchangeClient.replica_config`)."""

    key: str
    base_url: str | None = None
    config: dict[str, Any] = field(factory=dict)
    emulated: bool = False

    @classmethod
    def of(cls, client: ExchangeClient) -> ClientSpec:
        """The spec of a caller's client."""
        return cls(client.key, client.base_url, client.replica_config(), client.emulated)

    def cache_key(self) -> str:
        """Equal for specs that build like clients."""
        return json.dumps(
            [self.key, self.base_url, self.config, self.emulated], sort_keys=True, default=repr
        )


class _Secret:
    """A store URL in a task's arguments: shown redacted (Dask logs task arguments)."""

    def __init__(self, raw: str) -> None:
        self.raw = raw

    def __repr__(self) -> str:
        return repr(redact(self.raw))


@define
class _TaskResult:
    report: JobReport
    markets_requests: int
    attempt: str
    steps: list[tuple[int, int]]


async def run_on_cluster(
    executor: Any,
    jobs: Sequence[BackfillJob],
    reports: Sequence[JobReport],
    store: DataCollectionStorage,
    spec: ClientSpec,
    *,
    now: int,
    progress: bool,
    progress_callback: ProgressCallback | None,
) -> tuple[list[JobReport], int]:
    """Run the ``jobs`` whose ``reports`` have something missing on the cluster, one task
    each; return every job's report (in order) and the requests the workers made to
    load markets."""
    import distributed

    await asyncio.to_thread(_wait_for_workers, executor)
    call = uuid.uuid4().hex[:12]
    topic = f"mdcollect-progress-{call}"
    events: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
    executor.subscribe_topic(topic, lambda event: events.put(event[1]))
    url = _Secret(store.shared_url())
    todo = [i for i, r in enumerate(reports) if r.missing]
    futures = {
        executor.submit(
            run_task, spec, url, jobs[i], reports[i], now, topic, i,
            key=f"mdcollect-ensure-{call}-{i}", pure=False, retries=RETRIES,
        ): i
        for i in todo
    }  # fmt: skip
    feed = ProgressFeed(progress, progress_callback)
    out, markets = list(reports), 0
    finished: set[int] = set()
    try:
        pending = set(futures)
        while pending:
            try:
                waited = await asyncio.to_thread(
                    distributed.wait, pending, timeout=POLL, return_when="FIRST_COMPLETED"
                )
                done, pending = set(waited.done), set(waited.not_done)
            except TimeoutError:
                done = set()
            _feed_events(events, jobs, feed, finished)
            for fut in done:
                i = futures[fut]
                try:
                    result: _TaskResult = await asyncio.to_thread(fut.result)
                except MdcollectError:
                    raise  # the library's own error, raised on the worker: as it is
                except Exception as exc:
                    raise MdcollectError(
                        f"the Dask cluster could not run {jobs[i]}: {exc}"
                    ) from exc
                finished.add(i)
                for done_units, total in result.steps:  # those whose event is late
                    feed.update(jobs[i], done_units, total, result.attempt)
                out[i], markets = result.report, markets + result.markets_requests
    finally:
        for fut in futures:
            if not fut.done():
                fut.cancel()
        executor.unsubscribe_topic(topic)
        feed.close()
    return out, markets


def _wait_for_workers(executor: Any) -> None:
    try:
        executor.wait_for_workers(1, timeout=WORKER_WAIT)
    except TimeoutError as exc:
        raise MdcollectError(
            f"the Dask cluster {executor.scheduler.address} has had no worker for {WORKER_WAIT:g} s"
        ) from exc


def _feed_events(
    events: queue.SimpleQueue[dict[str, Any]],
    jobs: Sequence[BackfillJob],
    feed: ProgressFeed,
    finished: set[int],
) -> None:
    while True:
        try:
            ev = events.get_nowait()
        except queue.Empty:
            return
        i = int(ev["index"])
        if i not in finished:
            feed.update(jobs[i], int(ev["done"]), int(ev["total"]), str(ev["attempt"]))


# -- on the workers ------------------------------------------------------------------------

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_clients: dict[str, ExchangeClient] = {}
_stores: dict[str, DataCollectionStorage] = {}


def _worker_loop() -> asyncio.AbstractEventLoop:
    """The worker process's event loop, on a thread of its own: its clients live there."""
    global _loop
    with _lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(
                target=loop.run_forever, name="mdcollect-worker-loop", daemon=True
            ).start()
            _loop = loop
        return _loop


def _client(spec: ClientSpec) -> ExchangeClient:
    key = spec.cache_key()
    client = _clients.get(key)
    if client is None:
        client = _clients[key] = ExchangeClient(spec.key, spec.base_url, **spec.config)
        client.emulated = spec.emulated
    return client


def _store(url: str) -> DataCollectionStorage:
    with _lock:
        store = _stores.get(url)
        if store is None:
            store = _stores[url] = open_storage(url)
        return store


def run_task(
    spec: ClientSpec,
    url: _Secret,
    job: BackfillJob,
    report: JobReport,
    now: int,
    topic: str,
    index: int,
) -> _TaskResult:
    """One dataset job, on a worker (the task :func:`run_on_cluster` submits)."""
    from distributed import get_worker

    worker = get_worker()
    share_budgets_on_host()
    store = _store(url.raw)
    attempt = uuid.uuid4().hex[:12]
    steps: list[tuple[int, int]] = []

    def step(_job: BackfillJob, done: int, total: int) -> None:
        steps.append((done, total))
        msg = {"index": index, "attempt": attempt, "done": done, "total": total}
        worker.log_event(topic, msg)

    async def run() -> _TaskResult:
        client = _client(spec)  # made on the loop it lives on
        tally = SessionStats()
        request_tally.set(tally)  # this task's market loading (0 once loaded)
        await client.load_markets()
        markets = tally.requests
        # a retry (the worker before was lost) starts from what is stored now
        covered = await asyncio.to_thread(store.coverage, job.key)
        report.already_covered |= report.missing & covered
        report.missing = report.missing - covered
        await run_jobs(
            [job], store, client, now=now, concurrency=1, progress=False,
            progress_callback=step, reports=[report],
        )  # fmt: skip
        return _TaskResult(report, markets, attempt, steps)

    return asyncio.run_coroutine_threadsafe(run(), _worker_loop()).result()
