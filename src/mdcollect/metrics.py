"""Prometheus metrics of live collection and exchange access, through ``prometheus-client``.

Nothing is counted twice: the metrics are read at scrape time from what the
library counts anyway (``DataCollector.status()``, the collectors' stats and each
exchange's process-wide tally), so a collector pays nothing per row for being
watched. :class:`MdcollectMetrics` is a ``prometheus_client`` collector;
register it in your own registry, or let :func:`start_metrics_server` (``mdcollect
collect --metrics-port``) or the service's ``/metrics`` serve it.

>>> from prometheus_client import CollectorRegistry, generate_latest
>>> registry = CollectorRegistry()
>>> registry.register(MdcollectMetrics(dc))
>>> print(generate_latest(registry).decode())
"""

from __future__ import annotations

import logging
import threading
import urllib.request
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from ._errors import InvalidRequest
from .collectors import WRITE_BUCKETS, CollectorWorkers
from .exchanges import all_exchange_totals

log = logging.getLogger("mdcollect.metrics")

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from .collectors import DataCollector

__all__ = [
    "MdcollectMetrics",
    "WorkerMetrics",
    "metrics_registry",
    "metrics_text",
    "start_metrics_server",
    "workers_registry",
]

#: (metric, help, the status field it reads) of each collector counter
_COUNTERS = (
    ("rows_stored", "rows the collector stored", "rows_stored"),
    ("messages", "feed messages received", "messages_received"),
    ("restarts", "restarts, after a crash, a silent feed or by hand", "restarts"),
    ("reconnects", "restarts after a transient exchange error or a silent feed", "reconnects"),
    ("gaps_found", "holes found in what the collector wrote", "gaps_found"),
    ("gaps_filled", "holes refilled through the backfill engine", "gaps_filled"),
    ("gaps_abandoned", "holes that could not be refilled", "gaps_abandoned"),
    ("rows_dropped", "rows given up because storage stayed down", "rows_dropped"),
    ("write_errors", "storage writes that failed (each retried)", "write_errors"),
    ("errors", "errors the collector met", "errors"),
    ("raw_frames", "websocket frames stored in the raw dataset (raw=True)", "raw_frames"),
)
#: (metric, help, the status field it reads) of each collector gauge
_GAUGES = (
    ("queue_depth", "feed messages waiting to be processed", "messages_queued"),
    ("rows_buffered", "rows waiting to be written", "rows_buffered"),
)
_EXCHANGE = (
    ("exchange_requests", "HTTP requests sent (retries included)", "requests"),
    ("exchange_retries", "requests retried after a transient failure", "retries"),
    ("exchange_rate_limited", "429 answers", "rate_limited"),
    ("exchange_banned", "418 answers (IP banned for a while)", "banned"),
)


class MdcollectMetrics(Collector):
    """Collector metrics of one :class:`~mdcollect.DataCollector` (labelled
    ``collector``, ``exchange``, ``kind``), and exchange metrics of the process
    (labelled ``exchange``). Without a ``DataCollector``: the exchange metrics only.
    """

    def __init__(self, collector: DataCollector | None = None) -> None:
        self.collector = collector

    def collect(self) -> Iterable[Metric]:
        """The metrics now (called by ``prometheus_client`` on each scrape)."""
        yield from self._exchange_metrics()
        if self.collector is not None:
            yield from self._collector_metrics(self.collector)

    def describe(self) -> Iterable[Metric]:
        """Nothing up front: the metrics are read at scrape time."""
        return []

    @staticmethod
    def _exchange_metrics() -> Iterator[Metric]:
        totals = all_exchange_totals()
        for name, help_, attr in _EXCHANGE:
            fam = CounterMetricFamily(f"mdcollect_{name}", help_, labels=["exchange"])
            for key, t in sorted(totals.items()):
                fam.add_metric([key], getattr(t, attr))
            yield fam
        wait = CounterMetricFamily(
            "mdcollect_exchange_retry_after_wait_seconds",
            "seconds waited because an exchange asked to (Retry-After)",
            labels=["exchange"],
        )
        for key, t in sorted(totals.items()):
            wait.add_metric([key], t.retry_after_seconds)
        yield wait

    @staticmethod
    def _collector_metrics(dc: DataCollector) -> Iterator[Metric]:
        status = dc.status()
        labels = ["collector", "exchange", "kind"]
        rows: list[tuple[list[str], dict[str, Any], Any]] = []
        for name, st in status["collectors"].items():
            c = next((c for c in dc.collectors if c.name == name), None)
            if c is None:  # removed between status() and now
                continue
            rows.append(([name, str(st["exchange"]), str(c.kind)], st, c))
        for metric, help_, field in _COUNTERS:
            fam = CounterMetricFamily(f"mdcollect_collector_{metric}", help_, labels=labels)
            for lv, st, _ in rows:
                fam.add_metric(lv, st[field])
            yield fam
        for metric, help_, field in _GAUGES:
            gauge = GaugeMetricFamily(f"mdcollect_collector_{metric}", help_, labels=labels)
            for lv, st, _ in rows:
                gauge.add_metric(lv, st[field])
            yield gauge
        up = GaugeMetricFamily(
            "mdcollect_collector_healthy", "1 when the collector is healthy", labels=labels
        )
        running = GaugeMetricFamily(
            "mdcollect_collector_running", "1 when the collector runs now", labels=labels
        )
        lag = GaugeMetricFamily(
            "mdcollect_collector_lag_seconds",
            "seconds between now and the exchange time of the newest message received",
            labels=labels,
        )
        for lv, st, _ in rows:
            up.add_metric(lv, 1.0 if st["is_healthy"] else 0.0)
            running.add_metric(lv, 1.0 if st["state"] == "running" else 0.0)
            if st["lag_seconds"] is not None:  # the status's figure, on the same clock
                lag.add_metric(lv, max(0.0, st["lag_seconds"]))
        yield up
        yield running
        yield lag
        hist = HistogramMetricFamily(
            "mdcollect_storage_write_seconds",
            "how long the collectors' storage writes took",
            labels=labels,
        )
        for lv, _, c in rows:
            lat = c.stats.write_latency
            cumulative, buckets = 0, []
            for bound, n in zip((*map(str, WRITE_BUCKETS), "+Inf"), lat.counts, strict=True):
                cumulative += n
                buckets.append((bound, cumulative))
            hist.add_metric(lv, buckets, lat.total)
        yield hist
        cb = CounterMetricFamily(
            "mdcollect_callback_errors", "row callbacks (on_rows) that raised", labels=["callback"]
        )
        dropped = CounterMetricFamily(
            "mdcollect_callback_dropped", "writes a slow row callback missed", labels=["callback"]
        )
        for s in status["callbacks"]:
            cb.add_metric([s["callback"]], s["errors"])
            dropped.add_metric([s["callback"]], s["dropped"])
        yield cb
        yield dropped


def metrics_registry(collector: DataCollector | None = None) -> CollectorRegistry:
    """A registry with mdcollect's metrics and the process's (CPU, memory, open files)."""
    registry = CollectorRegistry()
    registry.register(MdcollectMetrics(collector))
    ProcessCollector(registry=registry)
    return registry


def metrics_text(collector: DataCollector | None = None) -> str:
    """The metrics now, in the Prometheus text format.

    >>> print(metrics_text(dc))
    """
    return generate_latest(metrics_registry(collector)).decode()


def start_metrics_server(
    port: int,
    collector: DataCollector | CollectorWorkers | None = None,
    *,
    addr: str = "127.0.0.1",
) -> tuple[WSGIServer, threading.Thread]:
    """Serve ``/metrics`` on ``addr:port`` from a daemon thread (port 0: any free
    port, read it from ``server.server_port``); returns the server and its thread.
    ``server.shutdown()`` stops it. With :class:`~mdcollect.collectors.CollectorWorkers`:
    the workers' metrics (see :class:`WorkerMetrics`)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise InvalidRequest(f"metrics port must be an integer from 0 to 65535, got {port!r}")
    registry = (
        workers_registry(collector)
        if isinstance(collector, CollectorWorkers)
        else metrics_registry(collector)
    )
    try:
        return start_http_server(port, addr=addr, registry=registry)
    except OSError as exc:
        raise InvalidRequest(f"cannot serve metrics on {addr}:{port}: {exc.strerror}") from exc


class WorkerMetrics(Collector):
    """The metrics of ``mdcollect collect --workers N`` in one endpoint: at each scrape,
    every running worker's ``/metrics`` (each worker serves its own on a loopback port)
    and this supervising process's, each sample labelled ``worker`` (``"0"``...,
    ``"supervisor"``), so ``sum by (exchange)`` and the like add the workers up; and per
    worker ``mdcollect_worker_up`` and ``mdcollect_worker_restarts``.
    """

    #: seconds one worker's scrape may take before it is left out of this one
    timeout = 5.0

    def __init__(self, workers: CollectorWorkers) -> None:
        self.workers = workers

    def describe(self) -> Iterable[Metric]:
        """Nothing up front: the metrics are read at scrape time."""
        return []

    def collect(self) -> Iterable[Metric]:
        """The workers' metrics now, merged by family (called on each scrape)."""
        from prometheus_client.parser import text_string_to_metric_families

        families: dict[str, Metric] = {}

        def merge(fams: Iterable[Metric], worker: str) -> None:
            for fam in fams:
                out = families.setdefault(
                    fam.name, Metric(fam.name, fam.documentation, fam.type, fam.unit)
                )
                for s in fam.samples:
                    out.add_sample(s.name, {**s.labels, "worker": worker}, s.value)

        for index, url in self.workers.metrics_urls():
            try:
                with urllib.request.urlopen(url, timeout=self.timeout) as answer:
                    text = answer.read().decode()
            except OSError as exc:  # exiting or restarting: its figures return with it
                log.warning("could not scrape worker %d's metrics: %s", index, exc)
                continue
            merge(text_string_to_metric_families(text), str(index))
        own = CollectorRegistry()
        ProcessCollector(registry=own)
        merge(own.collect(), "supervisor")
        yield from families.values()
        st = self.workers.status()["workers"]
        up = GaugeMetricFamily("mdcollect_worker_up", "1 when the worker runs", labels=["worker"])
        restarts = CounterMetricFamily(
            "mdcollect_worker_restarts", "times the worker died and was restarted",
            labels=["worker"],
        )  # fmt: skip
        for w in st:
            up.add_metric([str(w["index"])], 1.0 if w["running"] else 0.0)
            restarts.add_metric([str(w["index"])], w["restarts"])
        yield up
        yield restarts


def workers_registry(workers: CollectorWorkers) -> CollectorRegistry:
    """A registry with the metrics of a :class:`~mdcollect.collectors.CollectorWorkers`."""
    registry = CollectorRegistry()
    registry.register(WorkerMetrics(workers))
    return registry
