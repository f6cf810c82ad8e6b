"""``CollectorWorkers``: collectors sharded over worker processes, supervised as one.

``mdcollect collect CONFIG --workers N`` runs N children (``mdcollect collect`` on its
shard of the config, see :func:`~mdcollect.collectors.shard_symbols`), each with its own
ccxt.pro session, ``DataCollector`` and writer, so frame parsing uses N cores. The
parent starts them together, restarts one that dies (with a backoff; the new one
refills the hole through the gap machinery), stops them together (SIGTERM: each
flushes; past ``stop_timeout``, SIGKILL), and reads the status file each child writes
to give one status. A child stops by itself when its stdin closes, so children never
outlive a parent that was killed (they would collect without the parent's lease).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from attrs import define, field

from .._backoff import Backoff

__all__ = ["CollectorWorkers"]

log = logging.getLogger("mdcollect.collectors")

#: seconds a child killed after ``stop_timeout`` has to be reaped
_REAP = 10.0


@define
class _Worker:
    index: int
    command: list[str]
    status_file: Path
    symbols: list[str]
    proc: asyncio.subprocess.Process | None = None
    restarts: int = 0
    last_exit: int | None = None
    rows_before: int = 0  # rows stored by the worker's earlier runs
    task: asyncio.Task[None] | None = None
    doc: dict[str, Any] = field(factory=dict)  # the newest status file read


class CollectorWorkers:
    """Worker processes run as one daemon: ``async with`` starts them and stops them.

    ``commands[i]`` starts worker ``i``, which writes its status (as ``mdcollect collect
    --status-file``) to ``status_files[i]`` and collects ``symbols[i]``. ``status()``
    has the shape of :meth:`DataCollector.status` over every worker's collectors, plus
    ``workers``: per worker its pid, whether it runs, its restarts, last exit code,
    symbols and rows stored (over all its runs).
    """

    def __init__(
        self,
        commands: Sequence[Sequence[str]],
        status_files: Sequence[Path],
        symbols: Sequence[Sequence[str]],
        *,
        stop_timeout: float = 60.0,
        restart_backoff: Backoff | None = None,
    ) -> None:
        self.workers = [
            _Worker(i, list(cmd), Path(path), list(syms))
            for i, (cmd, path, syms) in enumerate(zip(commands, status_files, symbols, strict=True))
        ]
        self.stop_timeout = stop_timeout
        self.backoff = restart_backoff or Backoff(initial=1.0, maximum=30.0)
        self._stopping = asyncio.Event()

    async def __aenter__(self) -> CollectorWorkers:
        self._stopping.clear()
        for w in self.workers:
            w.task = asyncio.create_task(self._supervise(w), name=f"worker {w.index}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def close(self) -> None:
        """Nothing to release beyond what leaving ``async with`` did (as ``DataCollector``)."""

    async def stop(self) -> None:
        """SIGTERM every worker and wait for each to flush and exit (SIGKILL past
        ``stop_timeout``)."""
        self._stopping.set()
        tasks = [w.task for w in self.workers if w.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        for w in self.workers:
            w.task = None
            self._read(w)

    async def _supervise(self, w: _Worker) -> None:
        attempt = 0
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            w.status_file.unlink(missing_ok=True)  # a dead run's file is not this run's
            w.doc = {}
            started = loop.time()
            try:
                w.proc = await asyncio.create_subprocess_exec(
                    *w.command,
                    stdin=asyncio.subprocess.PIPE,  # closed when this process dies: it stops
                    stdout=asyncio.subprocess.DEVNULL,
                    start_new_session=True,  # a terminal's Ctrl-C reaches the parent alone
                )
            except OSError as exc:  # out of processes or memory: try again after a wait
                log.error("could not start worker %d: %s", w.index, exc)
                w.restarts += 1
                await self._pause(attempt)
                attempt += 1
                continue
            stopping = asyncio.ensure_future(self._stopping.wait())
            exited = asyncio.ensure_future(w.proc.wait())
            try:
                await asyncio.wait([stopping, exited], return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
                if not exited.done():
                    await self._terminate(w.proc)
                    exited.cancel()
            self._read(w)
            w.rows_before += _rows(w.doc)
            w.last_exit = w.proc.returncode
            if self._stopping.is_set():
                return
            w.restarts += 1
            if loop.time() - started >= self.backoff.reset_after:
                attempt = 0
            log.warning(
                "worker %d (pid %d) exited with %s; restarting it",
                w.index, w.proc.pid, w.last_exit,
            )  # fmt: skip
            await self._pause(attempt)
            attempt += 1

    async def _pause(self, attempt: int) -> None:
        """The backoff's wait before restart ``attempt``, cut short by a stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), self.backoff.delay(attempt))

    async def _terminate(self, proc: asyncio.subprocess.Process) -> None:
        """SIGTERM, then SIGKILL after ``stop_timeout``; each wait has its deadline."""
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), self.stop_timeout)
        except TimeoutError:
            log.error("a worker (pid %d) did not stop in %ss: killed", proc.pid, self.stop_timeout)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await asyncio.wait_for(proc.wait(), _REAP)

    def _read(self, w: _Worker) -> None:
        try:
            doc = json.loads(w.status_file.read_text())
        except (OSError, ValueError):  # not written yet, or gone with a restart
            return
        if isinstance(doc, dict) and doc.get("pid") == (w.proc.pid if w.proc else None):
            w.doc = doc

    def metrics_urls(self) -> list[tuple[int, str]]:
        """``(worker index, URL)`` of each running worker's ``/metrics``."""
        out = []
        for w in self.workers:
            self._read(w)
            port = w.doc.get("metrics_port")
            if self._alive(w) and isinstance(port, int):
                out.append((w.index, f"http://127.0.0.1:{port}/metrics"))
        return out

    @staticmethod
    def _alive(w: _Worker) -> bool:
        return w.proc is not None and w.proc.returncode is None

    def status(self) -> dict[str, Any]:
        """Every worker's collectors in one status, and a row per worker."""
        collectors: dict[str, Any] = {}
        issues: list[str] = []
        rows = []
        rss = cpu = 0.0
        for w in self.workers:
            self._read(w)
            st = w.doc.get("status") or {}
            collectors.update(st.get("collectors") or {})
            issues += st.get("issues") or []
            proc = st.get("process") or {}
            rss += proc.get("rss_bytes", 0)
            cpu += proc.get("cpu_seconds", 0.0)
            alive = self._alive(w)
            if not alive and not self._stopping.is_set():
                issues.append(f"worker {w.index}: not running (exit {w.last_exit}), restarting")
            rows.append(
                {
                    "index": w.index,
                    "pid": None if w.proc is None else w.proc.pid,
                    "running": alive,
                    "restarts": w.restarts,
                    "last_exit": w.last_exit,
                    "symbols": w.symbols,
                    "rows_stored": w.rows_before + (_rows(w.doc) if alive else 0),
                }
            )
        running = any(r["running"] for r in rows)
        return {
            "running": running,
            "uptime": max((w.doc.get("status") or {}).get("uptime", 0.0) for w in self.workers),
            "is_healthy": not issues and all(c["is_healthy"] for c in collectors.values()),
            "issues": issues,
            "collectors": collectors,
            "callbacks": [],
            "alerts": None,
            "workers": rows,
            "process": {"rss_bytes": int(rss), "cpu_seconds": cpu},
        }


def _rows(doc: dict[str, Any]) -> int:
    cols = (doc.get("status") or {}).get("collectors") or {}
    return sum(int(c.get("rows_stored", 0)) for c in cols.values())
