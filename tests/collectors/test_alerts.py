"""Webhook alerts: a real local HTTP receiver hears a collector fail, retries ride out
a 503, a refusing hook is not retried, repeats and bursts are held back, and the
webhook URL (a secret: Slack's carry their token in the path) never reaches output."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from mdcollect import DataCollector, InvalidRequest, open_storage
from mdcollect.collectors import Alert, Backoff, ManualClock, WebhookAlerts, load_config
from mdcollect.collectors._alerts import AlertWatch
from mdcollect.testing import ExchangeEmulator

from .conftest import client, wait_until
from .test_supervisor import SYM, Unparsable

TOKEN = "T0SECRET/B0SECRET/xoxb-very-secret"
QUICK = Backoff(0.001, 0.001, jitter=0)


class Receiver:
    """A local webhook: records each POSTed JSON body, answers the queued statuses
    (then 200)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.json())
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status, text="ok")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hooks/{tail:.*}", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    rec.url = f"http://127.0.0.1:{port}/hooks/{TOKEN}"
    try:
        yield rec
    finally:
        await runner.cleanup()


async def test_a_failed_collector_is_announced_once_without_the_secret(
    emu: ExchangeEmulator, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="mdcollect")
    store = open_storage("memory://")
    cl = client(emu)
    bad = Unparsable(cl, [SYM], name="bad")
    dc = DataCollector(
        [bad], store, restart_backoff=QUICK, max_crashes=2, check_interval=0.05,
        alerts=receiver.url, clock=ManualClock(),
    )  # fmt: skip
    try:
        async with dc:
            await wait_until(lambda: receiver.bodies, 20)
            status = dc.status()
    finally:
        await cl.close()
    body = receiver.bodies[0]
    assert body["event"] == "failed" and body["collector"] == "bad", body
    assert "KeyError" in body["message"] and body["text"].startswith("mdcollect: bad: failed: ")
    assert body["time"].endswith("Z")
    assert [b["event"] for b in receiver.bodies] == ["failed"]  # announced once
    host = receiver.url.split("/hooks/")[0]
    assert status["alerts"]["sent"] == 1 and status["alerts"]["webhook"] == host + "/..."
    shown = [repr(dc.alerts), str(status), caplog.text]
    assert all("SECRET" not in s for s in shown)


async def test_a_503_is_retried_and_a_400_is_not(receiver: Receiver) -> None:
    clock = ManualClock()
    alerts = WebhookAlerts(url=receiver.url, backoff=Backoff(0.01, 0.01, jitter=0))
    receiver.statuses = [503, 503]
    assert alerts.submit(Alert("failed", "a", "down", clock.time_ms()), clock.monotonic())
    await wait_until(lambda: alerts.sent == 1, 10)
    assert len(receiver.bodies) == 3 and alerts.failed == 0  # two 503s, then delivered
    receiver.statuses = [400]
    assert alerts.submit(Alert("failed", "b", "down", clock.time_ms()), clock.monotonic())
    await wait_until(lambda: alerts.failed == 1, 10)
    assert len(receiver.bodies) == 4 and alerts.last_error == "HTTP 400"
    await alerts.drain(5)


async def test_repeats_and_bursts_are_held_back(receiver: Receiver) -> None:
    clock = ManualClock()
    alerts = WebhookAlerts(url=receiver.url, repeat_after=300, max_per_minute=3)

    def send(collector: str, event: str = "unhealthy") -> bool:
        return alerts.submit(Alert(event, collector, "x", clock.time_ms()), clock.monotonic())  # type: ignore[arg-type]

    assert send("a") and not send("a")  # the same alert within repeat_after
    assert send("a", "recovered") and send("b")
    assert not send("c")  # the fourth in a minute
    clock.advance(61)
    assert send("c") and not send("a")  # a new minute; "a unhealthy" still within 300 s
    clock.advance(300)
    assert send("a")
    await wait_until(lambda: alerts.sent == 5, 10)
    await alerts.drain(5)
    assert alerts.suppressed == 3
    assert [(b["collector"], b["event"]) for b in receiver.bodies] == [
        ("a", "unhealthy"), ("a", "recovered"), ("b", "unhealthy"), ("c", "unhealthy"),
        ("a", "unhealthy"),
    ]  # fmt: skip


def _status(**collectors: dict[str, Any]) -> dict[str, Any]:
    base = {"state": "running", "is_healthy": True, "issues": [], "last_error": None,
            "write_errors": 0, "rows_dropped": 0, "gaps_abandoned": 0}  # fmt: skip
    return {"collectors": {n: {**base, **c} for n, c in collectors.items()}}


def test_state_changes_become_alerts() -> None:
    clock = ManualClock()
    got: list[Alert] = []
    watch = AlertWatch(lambda a, now: got.append(a) is None, clock)
    assert watch.check(_status(a={})) == []
    events = [
        _status(a={"is_healthy": False, "issues": ["feed silent for 90s"]}),
        _status(a={"is_healthy": False, "issues": ["feed silent for 95s"]}),  # no change
        _status(a={"state": "failed", "is_healthy": False, "last_error": "KeyError('x')"}),
        _status(a={"state": "running"}),
        _status(a={"write_errors": 2, "last_error": "OSError('disk full')"}),
        _status(a={"write_errors": 2, "rows_dropped": 10, "gaps_abandoned": 1}),
    ]
    for st in events:
        watch.check(st)
    assert [(a.event, a.collector) for a in got] == [
        ("unhealthy", "a"), ("failed", "a"), ("recovered", "a"), ("write_failures", "a"),
        ("rows_dropped", "a"), ("gap_unfilled", "a"),
    ]  # fmt: skip
    assert got[0].message == "feed silent for 90s"
    assert "disk full" in got[3].message and got[3].message.startswith("2 storage writes failed")
    assert got[4].message.startswith("10 rows dropped")


def test_alerts_from_a_config_table_and_bad_values() -> None:
    cfg = load_config(
        {"collectors": [{"exchange": "binance", "symbols": ["BTC/USDT"], "kinds": ["trades"]}],
         "alerts": {"url": f"https://hooks.example.com/{TOKEN}", "repeat_after": 60}}
    )  # fmt: skip
    dc = DataCollector(cfg.collectors, "memory://", **cfg.options)
    assert dc.alerts is not None and dc.alerts.repeat_after == 60
    assert repr(dc.alerts) == "WebhookAlerts(url='https://hooks.example.com/...', repeat_after=60)"
    with pytest.raises(InvalidRequest, match="alert webhook must be an http") as bad:
        DataCollector([], "memory://", alerts=f"ftp://hooks.example.com/{TOKEN}")
    assert "SECRET" not in str(bad.value)
    with pytest.raises(InvalidRequest, match=r"unknown field\(s\) \['retries'\]"):
        DataCollector([], "memory://", alerts={"url": "https://h.example.com/x", "retries": 3})
    with pytest.raises(InvalidRequest, match="repeat_after must be a number >= 0, got -1"):
        WebhookAlerts(url="https://h.example.com/x", repeat_after=-1)


async def test_stop_delivers_what_is_queued(receiver: Receiver) -> None:
    alerts = WebhookAlerts(url=receiver.url)
    clock = ManualClock()
    for name in ("a", "b", "c"):
        alerts.submit(Alert("failed", name, "down", clock.time_ms()), clock.monotonic())
    await alerts.drain(10)
    assert [b["collector"] for b in receiver.bodies] == ["a", "b", "c"]
    await asyncio.sleep(0)
