"""Webhook alerts on a ``DataCollector``'s state changes.

:class:`AlertWatch` compares each collector's status with the one before (every
``check_interval``) and raises an :class:`Alert` when a collector becomes
unhealthy, fails or comes back, when a gap could not be refilled, when storage
writes fail, or when rows were dropped. :class:`WebhookAlerts` POSTs each alert
as JSON (with a Slack-compatible ``text`` field), retrying with the one
:class:`~mdcollect._backoff.Backoff`, each attempt under a deadline; the same alert
for the same collector is not repeated within ``repeat_after`` seconds and no
more than ``max_per_minute`` go out, so a flapping feed does not flood anyone.
The webhook URL is a secret (Slack's carry their token in the path): only its
scheme and host ever reach a repr, a log line or the status.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from attrs import define, field, frozen

from .._backoff import Backoff, parse_retry_after
from .._errors import InvalidRequest
from .._rules import non_negative, positive
from ._clock import Clock

__all__ = ["Alert", "AlertEvent", "AlertWatch", "WebhookAlerts", "as_alerts"]

log: Final = logging.getLogger("mdcollect.collector.alerts")

AlertEvent = Literal[
    "unhealthy", "failed", "recovered", "gap_unfilled", "write_failures", "rows_dropped"
]


@frozen
class Alert:
    """One state change of one collector, as sent."""

    event: AlertEvent
    collector: str
    message: str
    time_ms: int

    def payload(self) -> dict[str, Any]:
        """The JSON body: the fields, an ISO time, and a one-line ``text`` (Slack)."""
        when = dt.datetime.fromtimestamp(self.time_ms / 1000, dt.UTC)
        return {
            "event": self.event,
            "collector": self.collector,
            "message": self.message,
            "time": when.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "text": f"mdcollect: {self.collector}: {self.event}: {self.message}",
        }


def _http_url(_instance: Any, _attribute: Any, value: Any) -> None:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        shown = _shown(value) if isinstance(value, str) else repr(value)
        raise InvalidRequest(f"alert webhook must be an http(s) URL, got {shown}")


def _shown(url: str) -> str:
    """Only the scheme and host of ``url``: its path and query may hold a token."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        return "a value that is not an http(s) URL"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}/..."


@define(kw_only=True, repr=False)
class WebhookAlerts:
    """Send alerts to a webhook (Slack, Mattermost, a pager's incoming hook, your own).

    >>> alerts = WebhookAlerts(url="https://hooks.example.com/T000/B000/XXXX")
    >>> alerts
    WebhookAlerts(url='https://hooks.example.com/...', repeat_after=900.0)
    >>> dc = DataCollector(collectors, storage, alerts=alerts)
    """

    url: str = field(validator=_http_url)
    repeat_after: float = field(default=900.0, validator=non_negative())
    max_per_minute: int = field(default=20, validator=positive(integer=True))
    attempts: int = field(default=5, validator=positive(integer=True))
    request_timeout: float = field(default=10.0, validator=positive())
    backoff: Backoff = field(factory=lambda: Backoff(initial=1.0, maximum=30.0))
    sent: int = field(default=0, init=False)
    failed: int = field(default=0, init=False)
    suppressed: int = field(default=0, init=False)
    last_error: str | None = field(default=None, init=False)
    _last: dict[tuple[str, str], float] = field(factory=dict, init=False)
    _recent: deque[float] = field(factory=deque, init=False)
    _queue: asyncio.Queue[Alert] | None = field(default=None, init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False)

    def __repr__(self) -> str:
        return f"WebhookAlerts(url={_shown(self.url)!r}, repeat_after={self.repeat_after})"

    def stats(self) -> dict[str, Any]:
        """Where alerts go (scheme and host only) and how many were sent, failed and
        held back (repeats within ``repeat_after``, or over ``max_per_minute``)."""
        return {
            "webhook": _shown(self.url),
            "sent": self.sent,
            "failed": self.failed,
            "suppressed": self.suppressed,
            "queued": 0 if self._queue is None else self._queue.qsize(),
            "last_error": self.last_error,
        }

    def submit(self, alert: Alert, now: float) -> bool:
        """Queue ``alert`` unless it repeats one within ``repeat_after`` or the minute's
        budget is spent (``now``: monotonic seconds); True when queued."""
        last = self._last.get((alert.collector, alert.event))
        while self._recent and self._recent[0] <= now - 60.0:
            self._recent.popleft()
        if (last is not None and now - last < self.repeat_after) or (
            len(self._recent) >= self.max_per_minute
        ):
            self.suppressed += 1
            log.info("alert held back (repeat or rate limit): %s", alert.payload()["text"])
            return False
        self._last[(alert.collector, alert.event)] = now
        self._recent.append(now)
        if self._queue is None:
            self._queue = asyncio.Queue()
        self._queue.put_nowait(alert)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._deliver(), name="mdcollect alerts")
        return True

    async def drain(self, deadline: float) -> None:
        """Send what is queued (``deadline`` seconds at most), then stop."""
        task, self._task = self._task, None
        if task is None:
            return
        queue = self._queue
        if queue is not None and not queue.empty():
            done, _ = await asyncio.wait([task], timeout=deadline)
            if done:
                return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def _deliver(self) -> None:
        import aiohttp

        queue = self._queue
        assert queue is not None
        timeout = aiohttp.ClientTimeout(total=self.request_timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not queue.empty():
                alert = queue.get_nowait()
                await self._send(session, alert)

    async def _send(self, session: Any, alert: Alert) -> None:
        import aiohttp

        body = alert.payload()
        for attempt in range(self.attempts):
            wait: float | None = None
            try:
                async with session.post(self.url, json=body) as resp:
                    if resp.status < 300:
                        self.sent += 1
                        return
                    why = f"HTTP {resp.status}"
                    if resp.status != 429 and resp.status < 500:
                        self._give_up(alert, why)  # the hook refuses it: retrying won't help
                        return
                    wait = parse_retry_after(resp.headers.get("Retry-After"))
            except (aiohttp.ClientError, TimeoutError) as exc:
                why = type(exc).__name__
            self.last_error = why
            if attempt + 1 < self.attempts:
                delay = self.backoff.delay(attempt)
                await asyncio.sleep(max(delay, wait or 0.0))
        self._give_up(alert, why)

    def _give_up(self, alert: Alert, why: str) -> None:
        self.failed += 1
        self.last_error = why
        log.warning(
            "alert not delivered to %s (%s): %s", _shown(self.url), why, alert.payload()["text"]
        )


def as_alerts(value: Any) -> WebhookAlerts | None:
    """``DataCollector(alerts=...)``: a :class:`WebhookAlerts`, a webhook URL, a table
    of its fields (a TOML config's ``[alerts]``), or ``None``."""
    if value is None or isinstance(value, WebhookAlerts):
        return value
    if isinstance(value, str):
        return WebhookAlerts(url=value)
    if isinstance(value, Mapping):
        allowed = {"url", "repeat_after", "max_per_minute", "attempts", "request_timeout"}
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise InvalidRequest(
                f"alerts has unknown field(s) {unknown}; allowed: {sorted(allowed)}"
            )
        if "url" not in value:
            raise InvalidRequest("alerts needs a url (the webhook)")
        return WebhookAlerts(**value)
    raise InvalidRequest(
        f"alerts must be a WebhookAlerts, a webhook URL or a table of its fields, got {type(value).__name__}"
    )


@define
class _Seen:
    healthy: bool = True
    failed: bool = False
    write_errors: int = 0
    rows_dropped: int = 0
    gaps_abandoned: int = 0


class AlertWatch:
    """Turns successive ``DataCollector.status()`` snapshots into alerts."""

    def __init__(self, sink: Callable[[Alert, float], bool], clock: Clock) -> None:
        self._sink = sink
        self._clock = clock
        self._seen: dict[str, _Seen] = {}

    def check(self, status: Mapping[str, Any]) -> list[Alert]:
        """Compare ``status`` with the last one; send and return the alerts it raises."""
        now_ms, now = self._clock.time_ms(), self._clock.monotonic()
        out: list[Alert] = []

        def raise_(event: AlertEvent, name: str, message: str) -> None:
            alert = Alert(event, name, message, now_ms)
            out.append(alert)
            self._sink(alert, now)

        for name, st in status["collectors"].items():
            seen = self._seen.setdefault(name, _Seen())
            failed = st["state"] == "failed"
            healthy = bool(st["is_healthy"])
            if failed and not seen.failed:
                raise_("failed", name, f"not restarted: {st['last_error']}")
            elif not healthy and seen.healthy and not failed:
                raise_("unhealthy", name, "; ".join(st["issues"]))
            elif healthy and (not seen.healthy or seen.failed):
                raise_("recovered", name, f"healthy again, state {st['state']}")
            if st["write_errors"] > seen.write_errors:
                raise_("write_failures", name,
                       f"{st['write_errors'] - seen.write_errors} storage writes failed"
                       f" (last error: {st['last_error']})")  # fmt: skip
            if st["rows_dropped"] > seen.rows_dropped:
                raise_("rows_dropped", name,
                       f"{st['rows_dropped'] - seen.rows_dropped} rows dropped"
                       " (storage unavailable)")  # fmt: skip
            if st.get("gaps_abandoned", 0) > seen.gaps_abandoned:
                raise_("gap_unfilled", name,
                       f"{st['gaps_abandoned'] - seen.gaps_abandoned} gaps could not be"
                       " refilled")  # fmt: skip
            seen.failed, seen.healthy = failed, healthy
            seen.write_errors, seen.rows_dropped = st["write_errors"], st["rows_dropped"]
            seen.gaps_abandoned = st.get("gaps_abandoned", 0)
        return out
